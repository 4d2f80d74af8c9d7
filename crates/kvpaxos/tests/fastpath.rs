//! The fast path: under concurrent load, requests share Paxos instances (batches), a stable
//! leader proposes with one round trip per instance and keeps several in flight, and
//! leader crashes and partitions cost neither safety (one value per instance, checked after
//! every step; linearizable histories) nor, once healed, progress.

mod common;

use std::time::Duration;

use synod_kvpaxos::KvReplica;
use synod_sim::seed_from_env;

use common::*;

/// Many clients on every replica: far fewer instances than operations are decided, every
/// append lands exactly once and in order, and the history is linearizable.
#[test]
fn concurrent_requests_share_instances() {
    let mut c = Cluster::new(seed_from_env(71), 3);
    let keys: Vec<String> = (0..12).map(|k| format!("k{k}")).collect();
    let clients: Vec<_> = (0..18)
        .map(|_| c.busy_clerk(&[0, 1, 2], keys.clone(), true))
        .collect();
    c.sim.run_for(Duration::from_secs(1));
    c.stop(&clients);
    c.wait_idle(&clients, Duration::from_secs(10), "clients finish");
    let ops = c.history.completed();
    let instances = c.replica(0).paxos().max().map_or(0, |m| m + 1) as usize;
    assert!(
        ops > instances,
        "{ops} operations in {instances} instances: requests are not batched"
    );
    c.check_linearizable();
}

fn wait_for_leader(c: &mut Cluster, limit: Duration, not: Option<usize>) -> usize {
    c.sim.require(limit, "a leader is elected", |s| {
        (0..c.n).any(|i| {
            Some(i) != not
                && s.node::<KvReplica>(server(i))
                    .is_some_and(|r| r.paxos().leading())
        })
    });
    c.leaders()
        .into_iter()
        .find(|&i| Some(i) != not)
        .expect("just seen")
}

/// An idle cluster elects one leader and keeps it: every replica agrees who leads.
#[test]
fn one_stable_leader_is_elected() {
    let mut c = Cluster::new(seed_from_env(72), 3);
    let ck = c.clerk(&[0, 1, 2]);
    c.put(ck, "a", "1");
    wait_for_leader(&mut c, Duration::from_secs(5), None);
    // Campaigns that overlapped the first election settle within an election timeout.
    c.sim.run_for(Duration::from_secs(1));
    let elected = c.leaders();
    assert_eq!(elected.len(), 1, "leaders {elected:?}");
    let leader = elected[0];
    for _ in 0..10 {
        c.sim.run_for(Duration::from_millis(200));
        assert_eq!(c.leaders(), vec![leader], "leadership changed while idle");
    }
    for i in 0..3 {
        let now = c.sim.now();
        let seen = c.replica(i).paxos().leader(now).map(|(id, _)| id);
        assert_eq!(seen, Some(server(leader)), "replica {i} follows another");
    }
    c.check(ck, "a", "1");
    c.check_linearizable();
}

/// The leader crashes while batches are in flight: the others elect a new leader and go
/// on; the old one restarts from its disk and catches up; nothing is lost or applied twice.
#[test]
fn leader_crash_in_the_middle_of_a_batch() {
    let mut c = Cluster::new(seed_from_env(73), 3);
    let keys: Vec<String> = (0..12).map(|k| format!("k{k}")).collect();
    let clients: Vec<_> = (0..8)
        .map(|_| c.busy_clerk(&[0, 1, 2], keys.clone(), true))
        .collect();
    let old = wait_for_leader(&mut c, Duration::from_secs(5), None);
    // Under load: the leader has instances in flight whenever it is looked at.
    c.sim.run_for(Duration::from_millis(300));
    c.sim.crash(server(old));
    let new = wait_for_leader(&mut c, Duration::from_secs(5), Some(old));
    assert_ne!(new, old);
    let before = c.history.completed();
    c.sim.require(
        Duration::from_secs(5),
        "progress without the old leader",
        |_| c.history.completed() >= before + 50,
    );
    c.sim.restart(server(old));
    c.stop(&clients);
    c.wait_idle(&clients, Duration::from_secs(20), "clients finish");
    let ck = c.clerk(&[old]);
    c.put(ck, "after", "crash");
    c.check(ck, "after", "crash");
    let end = c.replica(new).status(server(new)).applied;
    c.sim
        .require(Duration::from_secs(5), "the old leader catches up", |s| {
            let (Some(r), Some(l)) = (
                s.node::<KvReplica>(server(old)),
                s.node::<KvReplica>(server(new)),
            ) else {
                return false;
            };
            r.status(server(old)).applied >= end && r.kv().data == l.kv().data
        });
    c.check_linearizable();
}

/// A partition leaves the leader with a minority (2 of 5): there nothing is decided and no
/// read is answered (stale or not); the majority elects a new leader and goes on; after
/// healing, the old leader catches up and one leader remains.
#[test]
fn partition_isolating_the_leader_with_a_minority() {
    let n = 5;
    let mut c = Cluster::new(seed_from_env(74), n);
    let ck = c.clerk(&[0, 1, 2, 3, 4]);
    c.put(ck, "x", "before");
    let old = wait_for_leader(&mut c, Duration::from_secs(5), None);
    let minority = [old, (old + 1) % n];
    let majority: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
    // Clients of the minority, with sessions (so their reads take the barrier path): a
    // write and a read that must not complete once the partition is in place.
    let stuck_w = c.clerk(&minority);
    let stuck_r = c.clerk(&minority);
    c.put(stuck_w, "w", "1");
    c.put(stuck_r, "r", "1");
    c.part(&[&minority, &majority]);
    c.submit(stuck_w, put("x", "minority"));
    c.submit(stuck_r, get("x"));
    let ckm = c.clerk(&majority);
    c.put(ckm, "x", "majority");
    let new = wait_for_leader(&mut c, Duration::from_secs(5), Some(old));
    assert!(
        majority.contains(&new),
        "the new leader {new} is in the majority"
    );
    c.sim.run_for(Duration::from_secs(2));
    assert!(
        !c.clerk_ref(stuck_w).idle(),
        "a write completed in the minority"
    );
    assert!(
        !c.clerk_ref(stuck_r).idle(),
        "a read completed in the minority"
    );
    c.check(ckm, "x", "majority");
    c.sim.heal();
    c.wait_idle(
        &[stuck_w, stuck_r],
        Duration::from_secs(10),
        "minority clients finish",
    );
    let end = c.replica(new).status(server(new)).applied;
    // The old leader hears of the higher ballot and steps down (it may win a later election
    // again: leadership is only for liveness), and catches up.
    c.sim
        .require(Duration::from_secs(5), "the old leader catches up", |s| {
            let (Some(r), Some(l)) = (
                s.node::<KvReplica>(server(old)),
                s.node::<KvReplica>(server(new)),
            ) else {
                return false;
            };
            r.status(server(old)).applied >= end && r.kv().data == l.kv().data
        });
    c.sim
        .require(Duration::from_secs(5), "a single leader again", |s| {
            (0..n)
                .filter(|&i| {
                    s.node::<KvReplica>(server(i))
                        .is_some_and(|r| r.paxos().leading())
                })
                .count()
                == 1
        });
    c.check_linearizable();
}

/// Randomized: the current leader is crashed or cut off again and again under load, with
/// lossy links; every run ends with healing, required progress and a linearizability check.
#[test]
fn random_leader_failures_are_linearizable() {
    for seed in synod_sim::seeds(6) {
        let n = 3;
        let mut c = Cluster::new(seed, n);
        let keys: Vec<String> = (0..3).map(|k| format!("k{k}")).collect();
        let clients: Vec<_> = (0..5)
            .map(|_| c.busy_clerk(&[0, 1, 2], keys.clone(), true))
            .collect();
        let mut down = None;
        for _ in 0..12 {
            if let Some(id) = down.take() {
                c.sim.restart(id);
            }
            c.sim.heal();
            c.set_unreliable(false);
            let leader = c.leaders().first().copied();
            let victim = leader.unwrap_or_else(|| rand::Rng::gen_range(c.sim.rng(), 0..n));
            match rand::Rng::gen_range(c.sim.rng(), 0..4) {
                0 | 1 => {
                    c.sim.crash(server(victim));
                    down = Some(server(victim));
                }
                2 => c.sim.isolate(server(victim)),
                _ => c.set_unreliable(true),
            }
            let pause = rand::Rng::gen_range(c.sim.rng(), 100..600);
            c.sim.run_for(Duration::from_millis(pause));
        }
        if let Some(id) = down {
            c.sim.restart(id);
        }
        c.sim.heal_all();
        c.set_unreliable(false);
        let before = c.history.completed();
        c.sim
            .require(Duration::from_secs(20), "progress after healing", |_| {
                c.history.completed() >= before + 50
            });
        c.stop(&clients);
        c.wait_idle(&clients, Duration::from_secs(30), "clients finish");
        c.check_linearizable();
    }
}

/// Gets from a client with a session are answered after a read barrier, without log
/// entries: many reads leave the log where it was, and see every earlier write.
#[test]
fn reads_take_no_log_entries() {
    let mut c = Cluster::new(seed_from_env(75), 3);
    let writer = c.clerk(&[0, 1, 2]);
    let readers: Vec<_> = (0..3).map(|i| c.clerk(&[i])).collect();
    for &r in &readers {
        c.put(r, "session", "open");
    }
    for round in 0..10 {
        let value = round.to_string();
        c.put(writer, "k", &value);
        // The log's end as the most advanced replica knows it (the others may not have
        // heard of the last put yet).
        let log_end = |c: &Cluster| (0..3).map(|i| c.replica(i).paxos().max()).max();
        let end = log_end(&c);
        for &r in &readers {
            c.check(r, "k", &value);
        }
        assert_eq!(log_end(&c), end, "a read took a log entry");
    }
    c.check_linearizable();
}
