//! Beyond the course: replicas crash and restart during shard moves, moved shards are
//! garbage-collected once their new owner has them, shards that do not move keep serving
//! while a move is stuck, and randomized runs of joins, leaves, moves, crashes and partitions
//! under concurrent clients end with a heal-and-make-progress phase and a linearizability
//! check, also with read-heavy clients whose Gets take the read barrier while shards move;
//! a Get at a shard's old owner right after the move out answers WrongGroup; Gets add no
//! log entry. `SYNOD_SEEDS=200 cargo test --release -p synod-shardkv random` sweeps more
//! seeds.

mod common;

use std::time::Duration;

use rand::Rng;
use synod_keyspace::{Command, Reply};
use synod_kvpaxos::KvOp;
use synod_node::{Context, Node, TimerToken};
use synod_rsm::{Commands, RsmMsg};
use synod_shardctl::CtlOp;
use synod_shardkv::{server_id, GroupServer, ShardMsg, ShardReply};
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
                        key: key.clone().into(),
                        value: format!("{i}.{round}.{n} ").into(),
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
            key: keys[moving].clone().into(),
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

/// What the clients of a randomized run do.
#[derive(Clone, Copy)]
enum Load {
    /// One operation per client per step, a third of them Gets, from cold sessions (a
    /// session's first command on a shard, a Get included, goes through the log).
    Mixed,
    /// Every client first writes every key (so its sessions know every shard those keys are
    /// in, and its Gets skip the log), then four operations per step, three in four Gets:
    /// reads racing the shard moves.
    ReadMostly,
    /// As `ReadMostly`, but each client's four operations per step are one pipeline
    /// ([`Op::Batch`]): batch requests of one group's reads and writes across its shards
    /// (and of reads only), racing the shard moves, which cut them short.
    Batched,
}

/// One randomized run: clients and reconfigurations throughout, faults switched every 500 ms
/// by `faults`; then heal and require every client to finish, and check the history.
fn random_run(seed: u64, load: Load, mut faults: impl FnMut(&mut Cluster)) {
    let mut c = Cluster::new(seed, false);
    c.sim.set_network(NetConfig {
        drop: 0.02,
        duplicate: 0.02,
        ..NetConfig::reliable()
    });
    c.join(GIDS[0]);
    let clerks: Vec<_> = (0..4).map(|_| c.clerk()).collect();
    let ctl = c.clerk();
    let (per_step, gets_in_four) = match load {
        Load::Mixed => (1, None),
        Load::ReadMostly | Load::Batched => {
            for (i, &k) in clerks.iter().enumerate() {
                let writes = keys()
                    .into_iter()
                    .map(|key| {
                        let value = format!("{i}.init ");
                        Op::Kv(KvOp::Put {
                            key: key.into(),
                            value: value.into(),
                        })
                    })
                    .collect();
                c.submit(k, writes);
            }
            c.wait(
                &clerks,
                Duration::from_secs(30),
                "every client writes every key",
            );
            (4, Some(3))
        }
    };
    for step in 0..8u64 {
        for (i, &k) in clerks.iter().enumerate() {
            if c.idle(k) {
                let ops: Vec<Op> = (0..per_step)
                    .map(|n| {
                        let key = keys()[c.sim.rng().gen_range(0..6)].clone();
                        let value = format!("{i}.{step}.{n} ");
                        let kind = match gets_in_four {
                            Some(gets) if c.sim.rng().gen_range(0..4) < gets => 0,
                            Some(_) => c.sim.rng().gen_range(1..3),
                            None => c.sim.rng().gen_range(0..3),
                        };
                        Op::Kv(match kind {
                            0 => KvOp::Get { key: key.into() },
                            1 => KvOp::Put {
                                key: key.into(),
                                value: value.into(),
                            },
                            _ => KvOp::Append {
                                key: key.into(),
                                value: value.into(),
                            },
                        })
                    })
                    .collect();
                let ops = match load {
                    Load::Batched => vec![Op::Batch(batch_of(&mut c, ops))],
                    Load::Mixed | Load::ReadMostly => ops,
                };
                c.submit(k, ops);
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

/// A pipeline of `ops`' commands: either as they are (commands of random keys make batches
/// across a group's shards), or, half the time, each on the first one's key (one shard's
/// reads and writes in one batch).
fn batch_of(c: &mut Cluster, ops: Vec<Op>) -> Vec<KvOp> {
    let one_key = c.sim.rng().gen_bool(0.5);
    let mut kv: Vec<KvOp> = ops
        .into_iter()
        .filter_map(|op| match op {
            Op::Kv(kv) => Some(kv),
            Op::Batch(_) | Op::Ctl(_) => None,
        })
        .collect();
    if one_key {
        let key = synod_shardkv::key_of(&kv[0]).to_vec();
        for op in &mut kv {
            match op {
                KvOp::Get { key: k } | KvOp::Put { key: k, .. } | KvOp::Append { key: k, .. } => {
                    *k = key.clone();
                }
                KvOp::Redis(_) => unreachable!("the simulated clients send no Redis command"),
            }
        }
    }
    kv
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
        random_run(seed, Load::Mixed, random_faults);
    }
}

/// Read-mostly clients while groups join, leave and shards move, under the random fault mix
/// and, on group 100, the targeted nemesis: every history is linearizable, so no Get was
/// answered by a group that had moved its shard away, or before the shard's data arrived.
#[test]
fn reads_racing_shard_moves_are_linearizable() {
    let seeds = synod_sim::seeds(3);
    for &seed in &seeds {
        random_run(seed, Load::ReadMostly, random_faults);
        let group: Vec<NodeId> = (0..3).map(|i| server_id(GIDS[0], i)).collect();
        let mut nemesis = Nemesis::new(group, 1);
        random_run(seed, Load::ReadMostly, |c| {
            nemesis.step(&mut c.sim);
        });
    }
    println!("reads racing shard moves: seeds {seeds:?} passed");
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
        random_run(seed, Load::Mixed, |c| {
            nemesis.step(&mut c.sim);
        });
    }
    println!("targeted nemesis: seeds {seeds:?} passed");
}

/// Pipelined batches (reads and writes across a group's shards; one shard's) racing joins,
/// leaves and moves, under the random fault mix and the targeted nemesis: every history,
/// with each command an operation of its own invoked when its pipeline starts, is
/// linearizable, so no command of a batch cut short by a move was applied twice or out of
/// order. (Eight seeds: seed 5 is the first to fail if a group applies a batch past its
/// first command of a shard it does not serve.)
#[test]
fn batches_racing_shard_moves_are_linearizable() {
    let seeds = synod_sim::seeds(8);
    for &seed in &seeds {
        random_run(seed, Load::Batched, random_faults);
        let group: Vec<NodeId> = (0..3).map(|i| server_id(GIDS[0], i)).collect();
        let mut nemesis = Nemesis::new(group, 1);
        random_run(seed, Load::Batched, |c| {
            nemesis.step(&mut c.sim);
        });
    }
    println!("batches racing shard moves: seeds {seeds:?} passed");
}

/// A bare client that sends one request at a time to the server a test names and keeps every
/// reply, so a test can see what one particular replica answers (a [`Clerk`] would take a
/// WrongGroup answer as a cue to go elsewhere, and hide it).
struct Probe {
    client: u64,
    replies: Vec<(NodeId, u64, ShardReply)>,
}

impl Node for Probe {
    type Msg = ShardMsg;

    fn on_start(&mut self, _ctx: &mut dyn Context<ShardMsg>) {}

    fn on_message(&mut self, _ctx: &mut dyn Context<ShardMsg>, from: NodeId, msg: ShardMsg) {
        if let ShardMsg::Group(RsmMsg::Reply { seq, reply }) = msg {
            self.replies.push((from, seq, reply));
        }
    }

    fn on_timer(&mut self, _ctx: &mut dyn Context<ShardMsg>, _token: TimerToken) {}
}

/// How long the probe waits for an answer before it sends its request again.
const PROBE_RETRY: Duration = Duration::from_millis(100);

/// Sends request `seq` for `op` (one command, or a batch) from `probe` to `to` until `to`
/// answers it, and returns the answer.
fn ask(c: &mut Cluster, probe: NodeId, to: NodeId, seq: u64, op: Commands<KvOp>) -> ShardReply {
    let answered = |s: &synod_sim::Simulator<ShardMsg>| {
        s.node::<Probe>(probe)
            .and_then(|p| p.replies.iter().find(|r| r.0 == to && r.1 == seq))
            .map(|r| r.2.clone())
    };
    for _ in 0..100 {
        c.sim.call(probe, |p: &mut Probe, ctx| {
            ctx.send(to, ShardMsg::Group(op.request(p.client, seq)));
        });
        if c.sim.run_until(PROBE_RETRY, |s| answered(s).is_some()) {
            return answered(&c.sim).expect("answered");
        }
    }
    panic!("{to} did not answer request {seq} ({op:?})");
}

/// A replica of a shard's old owner that missed the move (cut off while its group decided
/// it, the new owner installed the shard and took a write) still holds the old value when
/// it hears from its group again. Asked for the key at once, it must learn the move through
/// the read barrier before it checks ownership, and answer WrongGroup, not the old value.
#[test]
fn a_read_at_the_old_owner_after_the_move_out_is_wrong_group() {
    let mut c = Cluster::new(seed_from_env(21), false);
    c.join(GIDS[0]);
    let key = shard_keys()[3].clone();
    let shard = 3;
    let probe = NodeId(NodeId::FIRST_CLIENT + 500);
    c.sim.add_node(probe, || Probe {
        client: 7_000,
        replies: Vec::new(),
    });
    c.sim
        .require(Duration::from_secs(5), "group 100 serves the shard", |s| {
            (0..REPLICAS).all(|i| {
                s.node::<GroupServer>(server_id(GIDS[0], i))
                    .is_some_and(|g| g.state().shards.contains_key(&shard))
            })
        });
    // The probe's session on the shard (its first command there is logged).
    let put = KvOp::Put {
        key: key.clone().into(),
        value: "old".into(),
    };
    let reply = ask(&mut c, probe, server_id(GIDS[0], 0), 1, Commands::One(put));
    assert!(matches!(reply, ShardReply::Written { .. }), "{reply:?}");
    let lagging = server_id(GIDS[0], 2);
    let holds = |c: &Cluster, value: &str| {
        c.sim.node::<GroupServer>(lagging).is_some_and(|g| {
            g.state()
                .shards
                .get(&shard)
                .is_some_and(|s| s.data.get(&key).map(Vec::as_slice) == Some(value.as_bytes()))
        })
    };
    c.sim.require(
        Duration::from_secs(5),
        "the lagging replica has the put",
        |s| {
            s.node::<GroupServer>(lagging).is_some_and(|g| {
                g.state()
                    .shards
                    .get(&shard)
                    .is_some_and(|sh| sh.data.get(&key).is_some())
            })
        },
    );
    c.sim.isolate(lagging);
    c.join(GIDS[1]);
    c.ctl(CtlOp::Move {
        shard,
        gid: GIDS[1],
    });
    let ck = c.clerk();
    c.put(ck, &key, "new");
    assert!(
        c.server(GIDS[1], 0)
            .is_some_and(|g| g.state().shards.contains_key(&shard)),
        "the new owner serves the shard"
    );
    assert!(
        holds(&c, "old"),
        "the cut-off replica still serves the old value in its old configuration"
    );
    c.sim.heal();
    let get = KvOp::Get {
        key: key.clone().into(),
    };
    let reply = ask(&mut c, probe, lagging, 2, Commands::One(get.clone()));
    assert_eq!(reply, ShardReply::WrongGroup { shard });
    let reply = ask(&mut c, probe, server_id(GIDS[1], 1), 3, Commands::One(get));
    assert_eq!(
        reply,
        ShardReply::Value {
            shard,
            value: "new".into()
        }
    );
    c.check_linearizable();
}

/// A batch that writes to several shards, sent to a group that serves only some of them,
/// is applied up to its first command of a shard the group does not serve, and no further:
/// the answer is that prefix and a `WrongGroup`, the command after the hole is not applied
/// (so the client, which sends the rest again in order, cannot see it applied out of order
/// or twice), and a retry of the same request gets the same answer without applying
/// anything again.
#[test]
fn a_write_batch_stops_at_its_first_shard_the_group_does_not_serve() {
    let mut c = Cluster::new(seed_from_env(23), false);
    c.join(GIDS[0]);
    c.join(GIDS[1]);
    let moved = 3;
    c.ctl(CtlOp::Move {
        shard: moved,
        gid: GIDS[1],
    });
    let keys = shard_keys();
    let (before, after) = (0, 1);
    for shard in [before, after] {
        c.ctl(CtlOp::Move {
            shard,
            gid: GIDS[0],
        });
    }
    c.sim.require(
        Duration::from_secs(5),
        "group 100 serves shards 0 and 1, not 3",
        |s| {
            s.node::<GroupServer>(server_id(GIDS[0], 0))
                .is_some_and(|g| {
                    let shards = &g.state().shards;
                    shards.contains_key(&before)
                        && shards.contains_key(&after)
                        && !shards.contains_key(&moved)
                })
        },
    );
    let probe = NodeId(NodeId::FIRST_CLIENT + 501);
    c.sim.add_node(probe, || Probe {
        client: 7_001,
        replies: Vec::new(),
    });
    let append = |shard: usize| KvOp::Append {
        key: keys[shard].clone().into(),
        value: "x".into(),
    };
    let batch = Commands::Many(vec![append(before), append(moved), append(after)]);
    let to = server_id(GIDS[0], 0);
    let expected = ShardReply::Batch(vec![
        ShardReply::Written {
            shard: before,
            len: 1,
        },
        ShardReply::WrongGroup { shard: moved },
    ]);
    assert_eq!(ask(&mut c, probe, to, 1, batch.clone()), expected);
    assert_eq!(
        ask(&mut c, probe, to, 1, batch),
        expected,
        "a retry is answered from the session table"
    );
    let ck = c.clerk();
    assert_eq!(c.get(ck, &keys[before]), "x", "applied once");
    assert_eq!(c.get(ck, &keys[moved]), "", "not the group's");
    assert_eq!(c.get(ck, &keys[after]), "", "after the hole: not applied");
}

/// A batch's replies stay within the reply budget (`synod_rsm::MAX_BATCH_REPLY_BYTES`, 1 MiB)
/// when they are Redis replies too: a read batch of GETs of 400 kB values is answered up to
/// the GET that would pass it (the client sends the rest again), and a logged batch whose
/// GETDEL passes it stops *after* the GETDEL, whose reply it keeps: the value was taken,
/// and a client that never saw it would send the GETDEL again and get nothing.
#[test]
fn a_batch_of_big_redis_replies_stops_at_the_budget_and_keeps_a_writes_reply() {
    let mut c = Cluster::new(seed_from_env(24), false);
    c.join(GIDS[0]);
    // Once a clerk's write is done, the group's log serves the shard.
    let ck = c.clerk();
    c.put(ck, "{t}", "served");
    let probe = NodeId(NodeId::FIRST_CLIENT + 502);
    c.sim.add_node(probe, || Probe {
        client: 7_002,
        replies: Vec::new(),
    });
    let to = server_id(GIDS[0], 0);
    let key = |i: usize| format!("{{t}}{i}").into_bytes();
    let value = vec![b'v'; 400_000];
    for i in 0..4 {
        let put = KvOp::Put {
            key: key(i),
            value: value.clone(),
        };
        let reply = ask(&mut c, probe, to, i as u64 + 1, Commands::One(put));
        assert!(matches!(reply, ShardReply::Written { .. }), "{reply:?}");
    }
    let redis = |command| KvOp::Redis(command);
    let get = |i: usize| redis(Command::Get { key: key(i) });
    let replies = |reply: ShardReply| match reply {
        ShardReply::Batch(replies) => replies
            .into_iter()
            .map(|r| match r {
                ShardReply::Redis { reply, .. } => reply,
                other => panic!("not a Redis reply: {other:?}"),
            })
            .collect::<Vec<_>>(),
        other => panic!("not a batch reply: {other:?}"),
    };
    let reads = Commands::Many((0..4).map(get).collect());
    let answered = replies(ask(&mut c, probe, to, 5, reads));
    assert_eq!(
        answered,
        vec![Reply::Bulk(Some(value.clone())); 2],
        "a third value would pass the budget: the reads stop before it"
    );
    let take = redis(Command::GetDel { key: key(2) });
    let logged = Commands::Many(vec![get(0), get(1), take]);
    let answered = replies(ask(&mut c, probe, to, 6, logged));
    assert_eq!(
        answered,
        vec![Reply::Bulk(Some(value.clone())); 3],
        "the GETDEL was applied, so its reply is kept"
    );
    assert_eq!(c.get(ck, "{t}2"), "", "taken once");
    assert_eq!(c.get(ck, "{t}3").len(), value.len());
}

/// A Get from a session the shard's table knows is answered after a read barrier, without a
/// log entry: while a client reads every shard many times, no group replica's log grows, and
/// neither do the controllers' logs while the groups poll them.
#[test]
fn reads_take_no_log_entry() {
    let mut c = Cluster::new(seed_from_env(22), false);
    c.join(GIDS[0]);
    c.join(GIDS[1]);
    let ck = c.clerk();
    let keys = shard_keys();
    for key in &keys {
        c.put(ck, key, key);
    }
    // Let every replica learn and apply everything, and the groups poll a few times.
    c.sim.run_for(Duration::from_secs(1));
    let log_ends = |c: &Cluster| -> Vec<Option<u64>> {
        let groups = GIDS[..2].iter().flat_map(|&gid| {
            (0..REPLICAS).map(move |i| c.server(gid, i).and_then(|g| g.rsm().paxos().max()))
        });
        let controllers = ctl_ids().into_iter().map(|id| {
            c.sim
                .node::<synod_shardkv::CtlNode>(id)
                .and_then(|n| n.controller().paxos().max())
        });
        groups.chain(controllers).collect()
    };
    let before = log_ends(&c);
    let started = c.sim.now();
    for round in 0..5 {
        for key in &keys {
            assert_eq!(c.get(ck, key), *key, "round {round}");
        }
    }
    c.sim.run_for(Duration::from_secs(1));
    assert!(
        c.sim.now() - started >= Duration::from_secs(1),
        "the groups polled the controllers meanwhile"
    );
    assert_eq!(log_ends(&c), before, "a read or a poll took a log instance");
    c.check_linearizable();
}
