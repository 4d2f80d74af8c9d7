//! The course's sharded KV tests (6.824 lab 4B) on the simulator, with the same numbers:
//! three controllers, groups 100, 101, 102 of three replicas each, ten shards. Every history
//! is checked for linearizability, and after every step no shard is served by two groups in
//! the same configuration.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use synod_kvpaxos::KvOp;
use synod_shardctl::CtlOp;
use synod_shardkv::server_id;
use synod_sim::seed_from_env;

use common::*;

/// Reads every key (must hold its last value) and overwrites it.
fn check_and_overwrite(c: &mut Cluster, ck: synod_node::NodeId, kv: &mut BTreeMap<String, String>) {
    let keys: Vec<String> = kv.keys().cloned().collect();
    for key in keys {
        assert_eq!(c.get(ck, &key), kv[&key], "key {key}");
        let value = random_value(&mut c.sim);
        c.put(ck, &key, &value);
        kv.insert(key, value);
    }
}

/// `TestBasic`: join/leave with reads after each change.
#[test]
fn basic_join_leave() {
    let mut c = Cluster::new(seed_from_env(1), false);
    let ck = c.clerk();
    c.join(GIDS[0]);
    c.put(ck, "a", "x");
    c.append(ck, "a", "b");
    assert_eq!(c.get(ck, "a"), "xb");
    let mut kv = BTreeMap::new();
    for i in 0..10 {
        let value = random_value(&mut c.sim);
        let key = format!("k{i}");
        c.put(ck, &key, &value);
        kv.insert(key, value);
    }
    for &gid in &GIDS[1..] {
        c.join(gid);
        c.sim.run_for(Duration::from_secs(1));
        check_and_overwrite(&mut c, ck, &mut kv);
    }
    for &gid in &GIDS[..2] {
        c.leave(gid);
        c.sim.run_for(Duration::from_secs(1));
        check_and_overwrite(&mut c, ck, &mut kv);
    }
    c.check_linearizable();
}

/// `TestMove`: after group 100's servers vanish, the shards that moved to 101 (with their
/// data) still answer, the others do not: 4 or 5 of 10 single-key reads succeed.
#[test]
fn shards_really_move() {
    let mut c = Cluster::new(seed_from_env(2), false);
    let ck = c.clerk();
    c.join(GIDS[0]);
    let keys = shard_keys();
    for key in &keys {
        c.put(ck, key, key);
    }
    c.join(GIDS[1]);
    c.sim.run_for(Duration::from_secs(5));
    for key in &keys {
        assert_eq!(c.get(ck, key), *key);
    }
    for i in 0..REPLICAS {
        c.sim.set_deaf(server_id(GIDS[0], i), true);
    }
    let clerks: Vec<_> = keys
        .iter()
        .map(|key| {
            let k = c.clerk();
            c.submit(
                k,
                vec![Op::Kv(KvOp::Get {
                    key: key.clone().into(),
                })],
            );
            k
        })
        .collect();
    c.sim.run_for(Duration::from_secs(10));
    let mut ok = 0;
    for (k, key) in clerks.iter().zip(&keys) {
        if let Some(v) = c.sim.node::<Clerk>(*k).unwrap().results.last() {
            assert_eq!(v, key, "wrong value");
            ok += 1;
        }
    }
    assert!(
        ok > 3 && ok < 6,
        "{ok} of 10 reads succeeded, wanted 4 or 5"
    );
    c.check_linearizable();
}

/// `TestLimp`: one dead replica per group during reconfigurations, and a group that leaves
/// is killed entirely 2 seconds later: its shards must have moved by then.
#[test]
fn reconfiguration_with_dead_replicas() {
    let mut c = Cluster::new(seed_from_env(3), false);
    let ck = c.clerk();
    c.join(GIDS[0]);
    c.put(ck, "a", "b");
    assert_eq!(c.get(ck, "a"), "b");
    for gid in GIDS {
        let victim = c.sim.rng().gen_range(0..REPLICAS);
        c.sim.crash(server_id(gid, victim));
    }
    let mut kv = BTreeMap::new();
    for i in 0..10 {
        let value = random_value(&mut c.sim);
        let key = format!("k{i}");
        c.put(ck, &key, &value);
        kv.insert(key, value);
    }
    for &gid in &GIDS[1..] {
        c.join(gid);
        c.sim.run_for(Duration::from_secs(1));
        check_and_overwrite(&mut c, ck, &mut kv);
    }
    for &gid in &GIDS[..2] {
        c.leave(gid);
        c.sim.run_for(Duration::from_secs(2));
        c.kill_group(gid);
        check_and_overwrite(&mut c, ck, &mut kv);
    }
    c.check_linearizable();
}

/// `TestConcurrent` / `TestConcurrentUnreliable`: 11 clients append to and read their own
/// key while moving random shards between the three groups.
fn concurrent(seed: u64, unreliable: bool) {
    let mut c = Cluster::new(seed, unreliable);
    for gid in GIDS {
        c.join(gid);
    }
    let clerks: Vec<_> = (0..11).map(|_| c.clerk()).collect();
    for round in 0..3 {
        for (i, &k) in clerks.iter().enumerate() {
            let shard = c.sim.rng().gen_range(0..SHARDS);
            let gid = GIDS[c.sim.rng().gen_range(0..GIDS.len())];
            let value = format!("{i}.{round} ");
            c.submit(
                k,
                vec![
                    Op::Kv(KvOp::Append {
                        key: i.to_string().into(),
                        value: value.into(),
                    }),
                    Op::Kv(KvOp::Get {
                        key: i.to_string().into(),
                    }),
                    Op::Ctl(CtlOp::Move { shard, gid }),
                ],
            );
        }
        c.wait(
            &clerks,
            Duration::from_secs(60),
            "a round of appends, gets and moves",
        );
    }
    for (i, &k) in clerks.iter().enumerate() {
        let expected: String = (0..3).map(|r| format!("{i}.{r} ")).collect();
        assert_eq!(c.get(k, &i.to_string()), expected);
    }
    c.check_linearizable();
}

#[test]
fn concurrent_put_get_move() {
    concurrent(seed_from_env(4), false);
}

#[test]
fn concurrent_put_get_move_unreliable() {
    concurrent(seed_from_env(5), true);
}
