//! The course's primary/backup tests, one per scenario, with its numbers (ping interval
//! 100 ms, dead after 5 missed pings, waits of 10 or 15 intervals, 5 s of concurrent clients,
//! 20 s of repeated crashes, 4 s and 5 s delays in the partition tests). Sleeps are virtual.
//! Every history goes through the linearizability checker; appends also through the course's
//! `checkAppends`. After every simulated step, invariants check that view changes are legal
//! and that a backup in step with its primary holds the same data.

mod support;

use std::time::Duration;

use rand::Rng;
use support::*;
use synod_pbservice::{PbError, PbMsg, Request};
use synod_sim::{seed_from_env, NodeId};
use synod_viewservice::{DEAD_PINGS, PING_INTERVAL};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A cluster with the view service running for a second, as every course test starts.
fn cluster(seed: u64) -> Cluster {
    let mut c = Cluster::new(seed_from_env(seed));
    c.sim.run_for(secs(1.0));
    c
}

/// Starts `servers` and waits for a primary and a backup among them, then `settle`.
fn with_primary_and_backup(c: &mut Cluster, servers: u64, intervals: u32, settle: f64) {
    for n in 1..=servers {
        c.start_server(n);
    }
    assert!(
        c.wait_view(intervals, |v| v.primary.is_some() && v.backup.is_some()),
        "no primary and backup: {:?}",
        c.view()
    );
    c.sim.run_for(secs(settle));
}

#[test]
fn basic_fail() {
    let mut c = cluster(1);
    let s1 = c.start_server(1);
    c.sim.run_for(secs(1.0));
    assert_eq!(c.view().primary, Some(s1), "first primary");

    // Single primary, no backup.
    c.put("111", "v1");
    c.check("111", "v1");
    c.put("2", "v2");
    c.check("2", "v2");
    c.put("1", "v1a");
    c.check("1", "v1a");
    c.append("ak", "hello");
    c.check("ak", "hello");
    c.put("ak", "xx");
    c.append("ak", "yy");
    c.check("ak", "xxyy");

    // Add a backup.
    let s2 = c.start_server(2);
    assert!(
        c.wait_view(DEAD_PINGS * 2, |v| v.backup == Some(s2)),
        "backup never came up"
    );
    c.put("3", "33");
    c.check("3", "33");
    c.sim.run_for(secs(0.3));
    c.put("4", "44");
    c.check("4", "44");

    // Count RPCs to the view service: the servers ping, the clerk does not ask per operation.
    let before = c.sim.stats(VS).received;
    let start = c.sim.now();
    for i in 0..100 {
        c.put(&format!("xk{i}"), &i.to_string());
    }
    let elapsed = c.sim.now() - start;
    let rpcs = c.sim.stats(VS).received - before;
    let allowed = 2 * (elapsed.as_nanos() / PING_INTERVAL.as_nanos()) as u64 + 20;
    assert!(
        rpcs <= allowed,
        "too many view service RPCs: {rpcs} > {allowed} in {elapsed:?}"
    );

    // Primary failure.
    c.kill(s1);
    assert!(
        c.wait_view(DEAD_PINGS * 2, |v| v.primary == Some(s2)),
        "backup never switched to primary: {:?}",
        c.view()
    );
    c.check("1", "v1a");
    c.check("3", "33");
    c.check("4", "44");

    // Kill the last server; a new one must not become active.
    c.kill(s2);
    let s3 = c.start_server(3);
    c.sim.run_for(secs(1.0));
    c.fresh_client();
    c.start_op(get("1"));
    c.sim.run_for(secs(2.0));
    assert_eq!(
        c.probe_result(),
        None,
        "a Get was answered by a lone new server"
    );
    assert_ne!(c.view().primary, Some(s3));
    c.check_linearizable();
}

#[test]
fn at_most_once_append_unreliable() {
    let mut c = cluster(2);
    let s1 = c.start_server(1);
    c.sim.set_unreliable(s1, true);
    // No backup will appear.
    c.wait_view(DEAD_PINGS * 2, |v| v.backup.is_some());
    c.sim.run_for(secs(0.5));
    let mut expected = String::new();
    for i in 0..100 {
        c.append("counter", &i.to_string());
        expected.push_str(&i.to_string());
    }
    c.check("counter", &expected);
    let dropped = c.sim.stats(s1).dropped() + c.sim.sim_stats().dropped_total();
    assert!(
        dropped > 0,
        "the server was unreliable but nothing was lost"
    );
    c.check_linearizable();
}

#[test]
fn put_right_after_backup_and_primary_failure() {
    let mut c = cluster(3);
    let s1 = c.start_server(1);
    c.sim.run_for(secs(1.0));
    let s2 = c.start_server(2);
    c.sim.run_for(secs(1.0));
    let s3 = c.start_server(3);
    assert!(c.wait_view(DEAD_PINGS * 3, |v| v.primary.is_some()
        && v.backup.is_some()));
    c.sim.run_for(secs(1.0));
    let view = c.view();
    assert_eq!(
        (view.primary, view.backup),
        (Some(s1), Some(s2)),
        "{view:?}"
    );
    c.put("a", "aa");
    c.put("b", "bb");
    c.put("c", "cc");
    c.check("a", "aa");
    c.check("b", "bb");
    c.check("c", "cc");

    // Put() immediately after backup failure.
    c.kill(s2);
    c.put("a", "aaa");
    c.check("a", "aaa");
    let old = view.num;
    assert!(c.wait_view(DEAD_PINGS * 3, |v| v.num > old
        && v.primary.is_some()
        && v.backup.is_some()));
    c.sim.run_for(secs(1.0));
    let view = c.view();
    assert_eq!(
        (view.primary, view.backup),
        (Some(s1), Some(s3)),
        "{view:?}"
    );
    c.check("a", "aaa");

    // Put() immediately after primary failure.
    c.kill(s1);
    c.put("b", "bbb");
    c.check("b", "bbb");
    let old = view.num;
    assert!(c.wait_view(DEAD_PINGS * 3, |v| v.num > old && v.primary.is_some()));
    c.sim.run_for(secs(1.0));
    c.check("a", "aaa");
    c.check("b", "bbb");
    c.check("c", "cc");
    c.check_linearizable();
}

/// Three clients Put random values to keys "0" and "1" for 5 s; then the primary and the
/// backup must hold the same values, and the backup must serve them after fail-over.
fn concurrent_puts(seed: u64, unreliable: bool) {
    let mut c = cluster(seed);
    with_primary_and_backup(&mut c, 2, DEAD_PINGS * 2, 0.5);
    let view = c.view();
    let (primary, backup) = (view.primary.unwrap(), view.backup.unwrap());
    if unreliable {
        c.sim.set_unreliable(primary, true);
        c.sim.set_unreliable(backup, true);
        c.put("0", "x");
        c.put("1", "x");
    }
    for _ in 0..3 {
        c.add_client(
            Box::new(|_, rng| {
                let key = rng.gen_range(0..2).to_string();
                Some(put(&key, &rng.gen::<u32>().to_string()))
            }),
            Duration::ZERO,
        );
    }
    c.sim.run_for(secs(5.0));
    c.stop_clients(secs(30.0));
    c.sim.run_for(secs(1.0));
    let at_primary: Vec<String> = ["0", "1"]
        .iter()
        .map(|k| stored(c.server(primary), k))
        .collect();
    assert!(at_primary.iter().all(|v| !v.is_empty()), "{at_primary:?}");
    assert_eq!(c.server(backup).store(), c.server(primary).store());
    c.kill(primary);
    assert!(c.wait_view(DEAD_PINGS * 2, |v| v.primary == Some(backup)));
    c.sim.set_unreliable(backup, false);
    for (key, value) in ["0", "1"].iter().zip(&at_primary) {
        c.check(key, value);
    }
    c.check_linearizable();
}

#[test]
fn concurrent_puts_to_the_same_key() {
    concurrent_puts(4, false);
}

#[test]
fn concurrent_puts_to_the_same_key_unreliable() {
    concurrent_puts(6, true);
}

#[test]
fn concurrent_appends_to_the_same_key() {
    let mut c = cluster(5);
    with_primary_and_backup(&mut c, 2, DEAD_PINGS * 2, 0.5);
    let view = c.view();
    let (primary, backup) = (view.primary.unwrap(), view.backup.unwrap());
    let counts = [50, 50, 50];
    for (i, &count) in counts.iter().enumerate() {
        c.add_client(append_plan(i as u64, "k", count), Duration::ZERO);
    }
    c.wait_clients(secs(60.0));
    c.sim.run_for(secs(1.0));
    let value = stored(c.server(primary), "k");
    check_appends(&value, &counts);
    c.kill(primary);
    assert!(c.wait_view(DEAD_PINGS * 2, |v| v.primary == Some(backup)));
    assert_eq!(stored(c.server(backup), "k"), value);
    c.check("k", &value);
    c.check_linearizable();
}

/// Kills a random server every 2 s (restarting it, empty, 1 s later) for 20 s while `clients`
/// run, as the course's killer goroutine does.
fn repeatedly_crash(c: &mut Cluster) {
    let end = c.sim.now() + secs(20.0);
    while c.sim.now() < end {
        let victim = NodeId(c.sim.rng().gen_range(1..=3));
        c.kill(victim);
        c.sim.run_for(secs(1.0));
        c.start_server(victim.0);
        c.sim.run_for(secs(1.0));
    }
}

#[test]
fn repeated_crash_and_restart() {
    let mut c = cluster(7);
    with_primary_and_backup(&mut c, 3, DEAD_PINGS, 0.5);
    for client in 0..2u64 {
        // Each client reads one of its own ten keys, then writes it.
        let mut key = String::new();
        c.add_client(
            Box::new(move |n, rng| {
                if n % 2 == 0 {
                    key = (client * 1_000_000 + rng.gen_range(0..10)).to_string();
                    Some(get(&key))
                } else {
                    Some(put(&key, &rng.gen::<u32>().to_string()))
                }
            }),
            secs(0.01),
        );
    }
    repeatedly_crash(&mut c);
    c.stop_clients(secs(30.0));
    c.fresh_client();
    c.put("aaa", "bbb");
    c.check("aaa", "bbb");
    assert!(c.history.completed() > 100, "clients made little progress");
    c.check_linearizable();
}

#[test]
fn repeated_crash_and_restart_unreliable() {
    let mut c = cluster(8);
    for n in 1..=3 {
        let id = c.start_server(n);
        c.sim.set_unreliable(id, true);
    }
    assert!(c.wait_view(DEAD_PINGS * 3, |v| v.primary.is_some()
        && v.backup.is_some()));
    c.sim.run_for(secs(0.5));
    let clients: Vec<NodeId> = (0..2)
        .map(|i| c.add_client(append_plan(i, "0", u64::MAX), secs(0.01)))
        .collect();
    repeatedly_crash(&mut c);
    c.stop_clients(secs(60.0));
    let counts: Vec<u64> = clients.iter().map(|&id| c.client(id).completed()).collect();
    c.fresh_client();
    let value = c.get("0");
    check_appends(&value, &counts);
    c.put("aaa", "bbb");
    c.check("aaa", "bbb");
    assert!(
        counts.iter().all(|&n| n > 10),
        "clients made little progress: {counts:?}"
    );
    c.check_linearizable();
}

/// The course's partition tests: s1 is primary with backup s2 and `a` = "1"; then s1 is cut
/// off from the view service (but not from clients or s2), and a client's Get("a"), started
/// now, reaches s1 only `delay` later, after the view service made s2 primary.
struct Partitioned {
    c: Cluster,
    s1: NodeId,
    s2: NodeId,
    stale: NodeId,
    /// The stale Get as the history records it: invoked when it was sent.
    stale_op: synod_sim::OpId,
    deliver_at: Duration,
}

impl Partitioned {
    fn new(seed: u64, delay: f64) -> Self {
        let mut c = cluster(seed);
        let s1 = c.start_server(1);
        c.sim.run_for(secs(1.0));
        assert_eq!(c.view().primary, Some(s1));
        let s2 = c.start_server(2);
        c.sim.run_for(secs(1.0));
        assert_eq!(c.view().backup, Some(s2));
        c.put("a", "1");
        c.check("a", "1");
        c.sim.block_link(s1, VS);
        c.sim.block_link(VS, s1);
        let stale = NodeId(NodeId::FIRST_CLIENT + 500);
        c.sim.add_node(stale, RawClient::default);
        let stale_op = c.history.invoke(500, synod_check::kv::KvInput::get("a"));
        let deliver_at = c.sim.now() + secs(delay);
        assert!(
            c.wait_view(DEAD_PINGS * 3, |v| v.primary == Some(s2)),
            "s2 never became primary: {:?}",
            c.view()
        );
        Partitioned {
            c,
            s1,
            s2,
            stale,
            stale_op,
            deliver_at,
        }
    }

    /// Runs until the delayed Get reaches s1, delivers it, and gives s1 `wait` to answer.
    fn deliver_stale_get(&mut self, wait: f64) -> Vec<PbMsg> {
        let until = self.deliver_at.saturating_sub(self.c.sim.now());
        self.c.sim.run_for(until);
        let s1 = self.s1;
        self.c.sim.call(self.stale, |raw: &mut RawClient, ctx| {
            let request = Request {
                client: 500,
                seq: 1,
                op: get("a"),
            };
            raw.send(ctx, s1, request);
        });
        self.c.sim.run_for(secs(wait));
        let answers: Vec<PbMsg> = self
            .c
            .sim
            .node::<RawClient>(self.stale)
            .unwrap()
            .answers
            .iter()
            .map(|(_, msg)| msg.clone())
            .collect();
        for answer in &answers {
            if let PbMsg::Reply {
                result: Ok(value), ..
            } = answer
            {
                let value = course_output(value);
                assert_ne!(value, "1", "the old primary served a stale Get");
                self.c.history.complete(self.stale_op, value);
            }
        }
        answers
    }
}

#[test]
fn old_primary_does_not_serve_gets() {
    let mut p = Partitioned::new(9, 4.0);
    p.c.sim.run_for(secs(0.2));
    p.c.fresh_client();
    p.c.put("a", "111");
    p.c.check("a", "111");
    let answers = p.deliver_stale_get(5.0);
    // s1 forwards the Get, s2 refuses it with the newer view, s1 steps down.
    assert_eq!(
        answers,
        vec![PbMsg::Reply {
            seq: 1,
            result: Err(PbError::WrongServer)
        }]
    );
    assert!(!p.c.server(p.s1).is_primary(p.s1));
    p.c.fresh_client();
    p.c.check("a", "111");
    p.c.check_linearizable();
}

#[test]
fn partitioned_old_primary_does_not_complete_gets() {
    let mut p = Partitioned::new(10, 5.0);
    let s3 = p.c.start_server(3);
    let s2 = p.s2;
    assert!(p.c.wait_view(DEAD_PINGS * 3, |v| v.primary == Some(s2)
        && v.backup == Some(s3)));
    p.c.sim.run_for(secs(2.0));
    p.c.fresh_client();
    p.c.put("a", "2");
    p.c.check("a", "2");
    p.c.kill(s2);
    // s1 forwards the Get to its old backup s2, which is dead: no answer at all.
    let answers = p.deliver_stale_get(6.0);
    assert!(answers.is_empty(), "{answers:?}");
    p.c.fresh_client();
    p.c.check("a", "2");
    p.c.check_linearizable();
}

/// Same seed, same run: the whole cluster, clients included, is deterministic.
#[test]
fn runs_are_reproducible() {
    let digest = |seed| {
        let mut c = Cluster::new(seed);
        with_primary_and_backup(&mut c, 3, DEAD_PINGS * 2, 0.1);
        c.add_client(append_plan(0, "k", 20), Duration::ZERO);
        c.sim.run_for(secs(2.0));
        c.sim.digest()
    };
    assert_eq!(digest(11), digest(11));
    assert_ne!(digest(11), digest(12));
}
