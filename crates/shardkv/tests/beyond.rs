//! Beyond the course: replicas crash and restart during shard moves, moved shards are
//! garbage-collected once their new owner has them, shards that do not move keep serving
//! while a move is stuck, and randomized runs of joins, leaves, moves, crashes and partitions
//! under concurrent clients end with a heal-and-make-progress phase and a linearizability
//! check. `SYNOD_SEEDS=200 cargo test --release -p synod-shardkv random` sweeps more seeds.

mod common;

use std::time::Duration;

use rand::Rng;
use synod_kvpaxos::KvOp;
use synod_shardctl::CtlOp;
use synod_shardkv::server_id;
use synod_sim::{seed_from_env, Nemesis, NetConfig, NodeId};

use common::*;

fn keys() -> Vec<String> {
    (0..6).map(|i| format!("k{i}")).collect()
}

/// Busy clients append while shards move back and forth and one replica of each group
/// crashes and restarts (from its durable state) in the middle of every move.
#[test]
fn crash_and_restart_during_shard_moves() {
    let mut c = Cluster::new(seed_from_env(11), false);
    c.join(GIDS[0]);
    c.join(GIDS[1]);
    let clerks: Vec<_> = (0..4).map(|_| c.clerk()).collect();
    for round in 0..4 {
        for (i, &k) in clerks.iter().enumerate() {
            let key = keys()[(i + round) % 6].clone();
            let ops = (0..5)
                .map(|n| {
                    Op::Kv(KvOp::Append {
                        key: key.clone(),
                        value: format!("{i}.{round}.{n} "),
                    })
                })
                .collect();
            c.submit(k, ops);
        }
        let gid = GIDS[round % 2];
        let ctl = c.clerk();
        c.submit(
            ctl,
            (0..SHARDS)
                .map(|shard| Op::Ctl(CtlOp::Move { shard, gid }))
                .collect(),
        );
        c.sim.run_for(Duration::from_millis(150));
        for g in GIDS {
            c.sim.crash(server_id(g, round % REPLICAS));
        }
        c.sim.run_for(Duration::from_millis(400));
        for g in GIDS {
            c.sim.restart(server_id(g, round % REPLICAS));
        }
        c.wait(&clerks, Duration::from_secs(60), "appends during moves");
    }
    let ck = c.clerk();
    for key in keys() {
        c.get(ck, &key);
    }
    c.check_linearizable();
}

/// Once the new owner confirms, the old owner deletes the moved shards: its outgoing table
/// empties and the bytes it holds return to zero.
#[test]
fn moved_shards_are_garbage_collected() {
    let mut c = Cluster::new(seed_from_env(12), false);
    let ck = c.clerk();
    c.join(GIDS[0]);
    let value = "x".repeat(1000);
    for key in shard_keys() {
        c.put(ck, &key, &value);
    }
    // Replica 0 may not have learned the last put yet when the clerk hears its answer.
    c.sim
        .require(Duration::from_secs(5), "group 100 holds the data", |s| {
            s.node::<synod_shardkv::GroupServer>(server_id(GIDS[0], 0))
                .is_some_and(|g| g.state().data_bytes() >= 10_000)
        });
    c.join(GIDS[1]);
    c.leave(GIDS[0]);
    c.sim.require(
        Duration::from_secs(10),
        "group 100 forgets its shards",
        |s| {
            (0..REPLICAS).all(|i| {
                s.node::<synod_shardkv::GroupServer>(server_id(GIDS[0], i))
                    .is_some_and(|g| g.state().data_bytes() == 0 && g.state().outgoing.is_empty())
            })
        },
    );
    for key in shard_keys() {
        assert_eq!(c.get(ck, &key), value);
    }
    c.check_linearizable();
}

/// While a shard's move is stuck (its new owner cannot reach a majority), the shards that
/// stay where they are keep answering.
#[test]
fn unaffected_shards_keep_serving_during_a_long_move() {
    let mut c = Cluster::new(seed_from_env(13), false);
    let ck = c.clerk();
    c.join(GIDS[0]);
    c.join(GIDS[1]);
    let keys = shard_keys();
    for key in &keys {
        c.put(ck, key, "v");
    }
    // Group 101 loses its majority, then one of group 100's shards moves to it.
    for i in 0..2 {
        c.sim.crash(server_id(GIDS[1], i));
    }
    let staying: Vec<usize> = {
        let s = c.server(GIDS[0], 0).unwrap().state();
        s.shards.keys().copied().collect()
    };
    let moving = staying[0];
    c.ctl(CtlOp::Move {
        shard: moving,
        gid: GIDS[1],
    });
    c.sim.run_for(Duration::from_secs(2));
    for &shard in &staying[1..] {
        assert_eq!(
            c.get(ck, &keys[shard]),
            "v",
            "shard {shard} stopped serving"
        );
    }
    let stuck = c.clerk();
    c.submit(
        stuck,
        vec![Op::Kv(KvOp::Get {
            key: keys[moving].clone(),
        })],
    );
    c.sim.run_for(Duration::from_secs(3));
    assert!(!c.idle(stuck), "a shard without a serving owner answered");
    for i in 0..2 {
        c.sim.restart(server_id(GIDS[1], i));
    }
    c.wait(
        &[stuck],
        Duration::from_secs(30),
        "the moved shard serves again",
    );
    assert_eq!(
        c.sim.node::<Clerk>(stuck).unwrap().results,
        vec!["v".to_string()]
    );
    c.check_linearizable();
}

/// One randomized run: clients and reconfigurations throughout, faults switched every 500 ms
/// by `faults`; then heal and require every client to finish, and check the history.
fn random_run(seed: u64, mut faults: impl FnMut(&mut Cluster)) {
    let mut c = Cluster::new(seed, false);
    c.sim.set_network(NetConfig {
        drop: 0.02,
        duplicate: 0.02,
        ..NetConfig::reliable()
    });
    c.join(GIDS[0]);
    let clerks: Vec<_> = (0..4).map(|_| c.clerk()).collect();
    let ctl = c.clerk();
    for step in 0..8u64 {
        for (i, &k) in clerks.iter().enumerate() {
            if c.idle(k) {
                let key = keys()[c.sim.rng().gen_range(0..6)].clone();
                let op = match c.sim.rng().gen_range(0..3) {
                    0 => KvOp::Get { key },
                    1 => KvOp::Put {
                        key,
                        value: format!("{i}.{step}"),
                    },
                    _ => KvOp::Append {
                        key,
                        value: format!("{i}.{step} "),
                    },
                };
                c.submit(k, vec![Op::Kv(op)]);
            }
        }
        if c.idle(ctl) {
            let gid = GIDS[c.sim.rng().gen_range(0..3)];
            let op = match c.sim.rng().gen_range(0..3) {
                0 => CtlOp::Join {
                    gid,
                    servers: addrs(gid),
                },
                // Group 100 never leaves: with no group at all, shards would have no owner
                // to hand their data to (see docs/shardkv.md).
                1 if gid != GIDS[0] => CtlOp::Leave { gid },
                _ => CtlOp::Move {
                    shard: c.sim.rng().gen_range(0..SHARDS),
                    gid,
                },
            };
            c.submit(ctl, vec![Op::Ctl(op)]);
        }
        faults(&mut c);
        c.sim.run_for(Duration::from_millis(500));
    }
    c.sim.heal_all();
    c.wait(
        &[ctl],
        Duration::from_secs(30),
        "controller operations finish",
    );
    c.wait(
        &clerks,
        Duration::from_secs(60),
        "clients finish after heal",
    );
    let ck = c.clerk();
    c.put(ck, "final", "done");
    assert_eq!(c.get(ck, "final"), "done");
    c.check_linearizable();
}

/// Crashes of any server, a lone server of a group isolated, or everything healed.
fn random_faults(c: &mut Cluster) {
    match c.sim.rng().gen_range(0..3) {
        0 => {
            let victim = server_id(
                GIDS[c.sim.rng().gen_range(0..3)],
                c.sim.rng().gen_range(0..3),
            );
            c.sim.crash(victim);
        }
        1 => {
            let gid = GIDS[c.sim.rng().gen_range(0..3)];
            let lone = server_id(gid, c.sim.rng().gen_range(0..3));
            c.sim.isolate(lone);
        }
        _ => c.sim.heal_all(),
    }
}

#[test]
fn random_reconfigurations_and_faults_are_linearizable() {
    for seed in synod_sim::seeds(4) {
        random_run(seed, random_faults);
    }
}

/// The targeted nemesis on group 100 (which never leaves, so it always owns shards):
/// dueling leaders, a bridge server, one-way links, crashes and one lost disk, while shards
/// move.
#[test]
fn targeted_nemesis_while_shards_move_is_linearizable() {
    let seeds = synod_sim::seeds(3);
    for &seed in &seeds {
        let group: Vec<NodeId> = (0..3).map(|i| server_id(GIDS[0], i)).collect();
        let mut nemesis = Nemesis::new(group, 1);
        random_run(seed, |c| {
            nemesis.step(&mut c.sim);
        });
    }
    println!("targeted nemesis: seeds {seeds:?} passed");
}
