//! Beyond the course: replicas crash and restart from durable state or with a wiped disk,
//! and randomized runs mix crashes, partitions, loss and duplication under concurrent
//! clients, each ending with a heal-and-make-progress phase and a linearizability check.
//!
//! `SYNOD_SEEDS=2000 cargo test --release -p synod-kvpaxos random` sweeps more seeds.

mod common;

use std::time::Duration;

use rand::Rng;
use synod_kvpaxos::KvReplica;
use synod_node::NodeId;
use synod_paxos::Membership;
use synod_rsm::voter_shortage;
use synod_rsm::CatchUp;
use synod_sim::{seed_from_env, Nemesis, NetConfig};

use common::*;

/// Every replica crashes and restarts, one at a time, while clients write; acknowledged
/// writes survive because the acceptors' votes were synced before they answered.
#[test]
fn crash_and_restart_with_durable_state() {
    let n = 3;
    let mut c = Cluster::new(seed_from_env(31), n);
    let keys: Vec<String> = (0..3).map(|k| format!("k{k}")).collect();
    let clients: Vec<_> = (0..4)
        .map(|_| c.busy_clerk(&[0, 1, 2], keys.clone(), true))
        .collect();
    for round in 0..6 {
        let victim = server(round % n);
        c.sim.run_for(Duration::from_millis(300));
        c.sim.crash(victim);
        c.sim.run_for(Duration::from_millis(300));
        c.sim.restart(victim);
    }
    // All three down at once, then back: only the disks remain.
    for i in 0..n {
        c.sim.crash(server(i));
    }
    for i in 0..n {
        c.sim.restart(server(i));
    }
    c.stop(&clients);
    c.wait_idle(
        &clients,
        Duration::from_secs(30),
        "clients finish after restarts",
    );
    let ck = c.clerk(&[0, 1, 2]);
    for key in &keys {
        c.get(ck, key);
    }
    assert!(c.history.completed() > 50, "too little progress");
    c.check_linearizable();
}

/// A replica loses its disk while the others have compacted their logs past everything it
/// knew: it rejoins (voting only above the others' horizon) and installs a snapshot.
#[test]
fn wiped_replica_catches_up_from_a_snapshot() {
    let n = 3;
    let mut c = Cluster::new(seed_from_env(32), n);
    let ck = c.clerk(&[0, 1, 2]);
    for i in 0..50 {
        c.append(ck, "log", &format!("{i},"));
    }
    c.sim.crash(server(2));
    for i in 50..100 {
        c.append(ck, "log", &format!("{i},"));
    }
    c.sim.restart_wiped(server(2));
    let expected: String = (0..100).map(|i| format!("{i},")).collect();
    c.sim.require(
        Duration::from_secs(30),
        "the wiped replica catches up and rejoins",
        |s| {
            s.node::<KvReplica>(server(2)).is_some_and(|r| {
                r.kv().data.get("log") == Some(&expected.clone().into_bytes())
                    && matches!(r.paxos().membership(), Membership::Voting { .. })
            })
        },
    );
    // With replica 0 down, the rejoined replica is needed for a majority.
    c.sim.crash(server(0));
    let only2 = c.clerk(&[2]);
    c.append(only2, "log", "100,");
    c.check(only2, "log", &format!("{expected}100,"));
    c.check_linearizable();
}

/// The replica being caught up by a snapshot: who sends it, and how much arrived.
fn receiving(c: &Cluster, i: usize) -> Option<(NodeId, u64, u64)> {
    let r = c.sim.node::<KvReplica>(server(i))?;
    match r.status(server(i)).catch_up {
        Some(CatchUp::Receiving {
            from,
            received,
            total,
        }) => Some((from, received, total)),
        _ => None,
    }
}

/// A wiped replica catches up through a snapshot sent in many small chunks, over a network
/// that loses, duplicates and reorders them, while its sender crashes and restarts in the
/// middle of the transfer and so does the receiver itself. It ends with exactly the state
/// of the others.
#[test]
fn streamed_snapshot_survives_loss_reordering_and_crashes_at_both_ends() {
    let n = 3;
    let chunk = 512;
    let mut c = Cluster::new_with(seed_from_env(33), n, move |r| r.with_snapshot_chunk(chunk));
    let ck = c.clerk(&[0, 1, 2]);
    let value = "v".repeat(1000);
    for i in 0..60 {
        c.put(ck, &format!("key{i}"), &value);
    }
    c.sim.crash(server(2));
    for i in 60..80 {
        c.put(ck, &format!("key{i}"), &value);
    }
    c.sim.set_network(NetConfig::hostile());
    c.sim.restart_wiped(server(2));
    // Some chunks in, the sender crashes and comes back.
    c.sim
        .require(Duration::from_secs(30), "the transfer starts", |s| {
            let c2 = s.node::<KvReplica>(server(2));
            c2.is_some_and(|r| {
                matches!(r.status(server(2)).catch_up,
                    Some(CatchUp::Receiving { received, total, .. }) if received > 8 * chunk as u64 && received < total / 2)
            })
        });
    let (sender, _, total) = receiving(&c, 2).expect("receiving");
    assert!(
        total > 100 * chunk as u64,
        "a snapshot of {total} bytes is not many chunks"
    );
    c.sim.crash(sender);
    c.sim.run_for(Duration::from_millis(300));
    c.sim.restart(sender);
    // Later, the receiver crashes mid-transfer and restarts from its disk.
    c.sim
        .require(Duration::from_secs(30), "the transfer goes on", |s| {
            s.node::<KvReplica>(server(2)).is_some_and(|r| {
                matches!(r.status(server(2)).catch_up,
                    Some(CatchUp::Receiving { received, .. }) if received > 16 * chunk as u64)
            })
        });
    c.sim.crash(server(2));
    c.sim.run_for(Duration::from_millis(100));
    c.sim.restart(server(2));
    c.sim.heal_all();
    c.sim.require(
        Duration::from_secs(60),
        "the wiped replica installs a snapshot and follows the log",
        |s| {
            let others = s.node::<KvReplica>(server(0)).map(|r| r.kv().data.clone());
            s.node::<KvReplica>(server(2)).is_some_and(|r| {
                r.status(server(2)).catch_up.is_none()
                    && matches!(r.paxos().membership(), Membership::Voting { .. })
                    && r.kv().data.len() == 80
                    && Some(&r.kv().data) == others.as_ref()
            })
        },
    );
    // And it serves: with replica 0 down, it is needed for a majority.
    c.sim.crash(server(0));
    let only2 = c.clerk(&[2]);
    c.put(only2, "after", "catch-up");
    c.check(only2, "key79", &value);
    c.check_linearizable();
}

/// One randomized run: faults switched every 100 ms for 5 s of virtual time by `faults`,
/// with five clients on shared keys; then heal and require every client to finish.
fn random_run(seed: u64, n: usize, mut faults: impl FnMut(&mut Cluster)) {
    let mut c = Cluster::new(seed, n);
    c.sim.set_network(NetConfig::hostile());
    let keys: Vec<String> = (0..3).map(|k| format!("k{k}")).collect();
    let all: Vec<usize> = (0..n).collect();
    let clients: Vec<_> = (0..5)
        .map(|_| c.busy_clerk(&all, keys.clone(), true))
        .collect();
    for _ in 0..50 {
        faults(&mut c);
        c.sim.run_for(Duration::from_millis(100));
    }
    assert!(
        c.sim.sim_stats().dropped_total() > 0,
        "faults dropped nothing"
    );
    // Liveness: once everything is healed, the clients make progress and then finish.
    c.sim.heal_all();
    let before = c.history.completed();
    c.sim
        .require(Duration::from_secs(20), "progress after healing", |_| {
            c.history.completed() >= before + 50
        });
    c.stop(&clients);
    c.wait_idle(
        &clients,
        Duration::from_secs(60),
        "every client finishes after healing",
    );
    let ck = c.clerk(&all);
    c.put(ck, "after", "heal");
    c.check(ck, "after", "heal");
    c.check_linearizable();
}

#[test]
fn random_faults_are_linearizable() {
    for seed in synod_sim::seeds(12) {
        let n = 3;
        let mut wiped = false;
        let mut down = None;
        random_run(seed, n, |c| {
            // A crashed replica comes back at the next switch, so faults do not pile up into
            // a cluster that is simply dead for the rest of the run.
            if let Some(id) = down.take() {
                c.sim.restart(id);
            }
            let target = server(c.sim.rng().gen_range(0..n));
            match c.sim.rng().gen_range(0..8) {
                0 => {
                    c.sim.crash(target);
                    down = Some(target);
                }
                // One lost disk per run; more than a minority lost is beyond what Paxos
                // survives.
                1 if !wiped => {
                    wiped = true;
                    c.sim.restart_wiped(target);
                }
                2 => c.sim.isolate(target),
                3 => c.sim.set_unreliable(target, true),
                4 => {
                    let a = c.sim.rng().gen_range(0..n);
                    c.part(&[&[a], &[(a + 1) % n, (a + 2) % n]]);
                }
                _ => {
                    c.sim.heal();
                    c.set_unreliable(false);
                }
            }
        });
    }
}

/// The targeted nemesis (dueling leaders, a bridge replica, one-way links, a wipe in the
/// middle) on 3 and on 5 replicas, every history checked for linearizability.
#[test]
fn targeted_nemesis_is_linearizable() {
    let seeds = synod_sim::seeds(6);
    for &seed in &seeds {
        for n in [3, 5] {
            let mut nemesis = Nemesis::new((0..n).map(server).collect(), 1);
            random_run(seed, n, |c| {
                nemesis.step(&mut c.sim);
            });
        }
    }
    println!("targeted nemesis: seeds {seeds:?} passed on 3 and 5 replicas");
}

/// A replica cut off while 600 writes were decided learns them all once it can reach the
/// others again, with no client traffic at all: in bulk (`Learn`, up to 256 decisions per
/// round trip), not one hole-filling proposal per instance (which took 100 ms each, a
/// minute for these).
#[test]
fn an_idle_replica_catches_up_in_bulk() {
    let mut c = Cluster::new(seed_from_env(41), 3);
    let ck = c.clerk(&[0, 1]);
    c.sim.isolate(server(2));
    for i in 0..600 {
        c.put(ck, "k", &i.to_string());
    }
    let applied = |c: &Cluster, i: usize| c.replica(i).status(server(i)).applied;
    let target = applied(&c, 0);
    assert!(
        applied(&c, 2) < target,
        "the isolated replica applied everything"
    );
    c.sim.heal();
    let started = c.sim.now();
    c.sim.require(
        Duration::from_secs(2),
        "the healed replica catches up",
        |s| {
            s.node::<KvReplica>(server(2))
                .is_some_and(|r| r.status(server(2)).applied >= target)
        },
    );
    println!(
        "caught up {} instances in {:?} of virtual time",
        target.map_or(0, |t| t + 1),
        c.sim.now() - started
    );
}

/// Two replicas of three lose their disks at once. Neither can rejoin (a rejoining replica
/// vouches for nothing, and one voter is no majority), so nothing is decided and nothing
/// contradicts; the status reports say why, for `synod status` to print. With one of the
/// two disks back in its place (a restart instead of a wipe), the group recovers.
#[test]
fn two_lost_disks_of_three_wedge_safely_and_say_so() {
    let mut c = Cluster::new(seed_from_env(42), 3);
    let ck = c.clerk(&[0, 1, 2]);
    c.put(ck, "k", "before");
    c.sim.restart_wiped(server(1));
    c.sim.restart_wiped(server(2));
    c.submit(ck, put("k", "during"));
    c.sim.run_for(Duration::from_secs(15));
    let reports: Vec<_> = (0..3).map(|i| c.replica(i).status(server(i))).collect();
    assert_eq!(reports[1].membership, Membership::Rejoining);
    assert_eq!(reports[2].membership, Membership::Rejoining);
    let shortage = voter_shortage(&reports, 3).expect("the wedge is reported");
    assert_eq!((shortage.voters, shortage.needed), (1, 2));
    assert_eq!(shortage.excluded.len(), 2);

    // A single lost disk is within what the group tolerates: no shortage once it rejoined.
    let mut c = Cluster::new(seed_from_env(43), 3);
    let ck = c.clerk(&[0, 1, 2]);
    c.put(ck, "k", "before");
    c.sim.restart_wiped(server(1));
    c.put(ck, "k", "after");
    c.sim
        .require(Duration::from_secs(20), "replica 1 rejoins", |s| {
            s.node::<KvReplica>(server(1))
                .is_some_and(|r| r.paxos().membership() != Membership::Rejoining)
        });
    c.put(ck, "k", "later");
    let reports: Vec<_> = (0..3).map(|i| c.replica(i).status(server(i))).collect();
    assert_eq!(voter_shortage(&reports, 3), None);
}

/// A new cluster whose replicas start one at a time, in every order, seconds apart, with
/// clients writing from the start and one replica losing its disk (declared: it rejoins)
/// in the middle: it forms, serves every client, and the history is linearizable. Prints
/// the formation time (first write acknowledged after the second replica is up).
#[test]
fn replicas_started_one_at_a_time_in_every_order_form_a_cluster() {
    for (k, order) in synod_testkit::START_ORDERS.iter().enumerate() {
        let seed = seed_from_env(50 + k as u64);
        let mut c = Cluster::new(seed, 3);
        // Not started yet is down: crash every replica at once, then start them in order.
        for i in 0..3 {
            c.sim.crash(server(i));
        }
        let clients: Vec<_> = (0..3)
            .map(|_| c.busy_clerk(&[0, 1, 2], vec!["a".into(), "b".into()], true))
            .collect();
        let mut formation = None;
        for (position, &i) in order.iter().enumerate() {
            c.sim.restart(server(i));
            if position == 1 {
                let majority_at = c.sim.now();
                c.sim
                    .require(Duration::from_secs(10), "a majority serves", |s| {
                        s.now() > majority_at && c.history.completed() > 0
                    });
                formation = Some(c.sim.now() - majority_at);
            }
            let gap = c.sim.rng().gen_range(0..=5_000);
            c.sim.run_for(Duration::from_millis(gap));
        }
        c.sim.restart_wiped(server(order[1]));
        c.sim.run_for(Duration::from_secs(8));
        c.stop(&clients);
        c.wait_idle(&clients, Duration::from_secs(30), "every client finishes");
        c.check_linearizable();
        println!(
            "order {order:?} (seed {seed}): first write acknowledged {:?} after a majority was up",
            formation.expect("three replicas")
        );
    }
}

/// A follower on a lossy link to its leader, and cut off from the third replica, serves its
/// clients at the leader's pace: it forwards their requests to the leader, and learns the
/// decisions it missed in bulk (`Learn`) as soon as it finds itself stuck, so its clients do
/// not wait for one hole-filling proposal per instance (the "lossy leader" stall of
/// docs/paxos.md, measured before bulk learning existed).
#[test]
fn a_follower_on_a_lossy_link_serves_its_clients_at_the_leaders_pace() {
    let seed = seed_from_env(43);
    let mut c = Cluster::new(seed, 3);
    let warm = c.clerk(&[0, 1, 2]);
    c.put(warm, "k", "0");
    c.sim
        .require(Duration::from_secs(5), "a stable leader", |s| {
            !leaders(s, 3).is_empty()
        });
    let leader = c.leaders()[0];
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    c.sim.block_link(server(other), server(follower));
    c.sim.block_link(server(follower), server(other));
    c.sim.set_link_drop(server(leader), server(follower), 0.3);
    c.sim.set_link_drop(server(follower), server(leader), 0.3);
    let ck = c.clerk(&[follower]);
    let mut waits = Vec::new();
    for i in 1..=100 {
        let started = c.sim.now();
        c.put(ck, "k", &i.to_string());
        waits.push(c.sim.now() - started);
    }
    waits.sort();
    let (median, worst) = (waits[waits.len() / 2], waits[waits.len() - 1]);
    println!(
        "seed {seed}: 100 puts through the lagging follower, median {median:?}, worst {worst:?}"
    );
    c.check_linearizable();
    // A put that waited for the follower to fill its holes one proposal at a time (100 ms
    // each, and more at this loss) would take several times this.
    assert!(
        median < Duration::from_millis(80),
        "median {median:?}: the follower's clients wait for it to catch up"
    );
}
