//! Background snapshots under the simulator: a replica begins a snapshot and keeps applying,
//! and a crash before the snapshot is durable (every replica at once, in the middle of it)
//! loses nothing acknowledged, because the log is cut only once the snapshot is durable.
//! Also `--max-memory`: writes past it are refused whole, reads still served.

mod common;

use std::time::Duration;

use synod_kvpaxos::{KvReplica, KvReply};
use synod_sim::seed_from_env;

use common::*;

#[test]
fn a_crash_in_the_middle_of_a_snapshot_loses_nothing_acknowledged() {
    let n = 3;
    let mut c = Cluster::new(seed_from_env(71), n);
    let keys: Vec<String> = (0..3).map(|k| format!("k{k}")).collect();
    let clients: Vec<_> = (0..4)
        .map(|_| c.busy_clerk(&[0, 1, 2], keys.clone(), true))
        .collect();
    for _ in 0..3 {
        c.sim.require(
            Duration::from_secs(60),
            "replica 0 begins a background snapshot",
            |s| s.storage(server(0)).snapshot_writing(),
        );
        let status = c
            .sim
            .node::<KvReplica>(server(0))
            .unwrap()
            .status(server(0));
        assert!(
            status.snapshots.writing_for_ms.is_some(),
            "the status report says a snapshot is being written: {status:?}"
        );
        let log = c.sim.storage(server(0)).synced_len() + c.sim.storage(server(0)).pending_len();
        assert!(
            log > 0,
            "the log still holds the records the unfinished snapshot covers"
        );
        let synced = c.sim.storage(server(0)).synced_len();
        for i in 0..n {
            c.sim.crash(server(i));
        }
        let disk = c.sim.storage(server(0));
        assert!(
            !disk.snapshot_writing(),
            "an unfinished snapshot is lost in a crash"
        );
        assert_eq!(
            disk.synced_len(),
            synced,
            "the crash keeps every synced record"
        );
        for i in 0..n {
            c.sim.restart(server(i));
        }
    }
    let before = c.history.completed();
    c.sim.require(
        Duration::from_secs(30),
        "progress after the restarts",
        |_| c.history.completed() >= before + 50,
    );
    c.stop(&clients);
    c.wait_idle(
        &clients,
        Duration::from_secs(60),
        "clients finish after crashes in the middle of snapshots",
    );
    let ck = c.clerk(&[0, 1, 2]);
    for key in &keys {
        c.get(ck, key);
    }
    assert!(c.history.completed() > 100, "too little progress");
    let taken: Vec<_> = (0..n)
        .filter_map(|i| {
            let replica = c.sim.node::<KvReplica>(server(i))?;
            replica.status(server(i)).snapshots.last
        })
        .collect();
    assert!(
        taken.iter().any(|t| t.bytes > 0),
        "some replica reports the snapshot it wrote since the restarts: {taken:?}"
    );
    c.check_linearizable();
}

#[test]
fn writes_past_max_memory_are_refused_whole_and_reads_still_served() {
    let limit = 1000;
    let mut c = Cluster::new_with(seed_from_env(72), 3, move |r| {
        r.with_max_memory(Some(limit))
    });
    let ck = c.clerk(&[0, 1, 2]);
    let value = "v".repeat(98);
    // Ten keys of 100 bytes (2 + 98) fit exactly; an eleventh, or one more byte, does not.
    for i in 0..10 {
        c.put(ck, &format!("k{i}"), &value);
    }
    // The decision is each replica's, from what it has applied: wait until all applied all.
    c.sim.require(
        Duration::from_secs(5),
        "every replica applies the puts",
        |s| {
            (0..3).all(|i| {
                s.node::<synod_kvpaxos::KvReplica>(server(i))
                    .is_some_and(|r| r.kv().data_bytes() == 1000)
            })
        },
    );
    let refused = c.run(ck, put("k10", &value), Duration::from_secs(5));
    assert_eq!(refused, KvReply::OutOfMemory { used: 1000, limit });
    let refused = c.run(ck, append("k0", "x"), Duration::from_secs(5));
    assert_eq!(refused, KvReply::OutOfMemory { used: 1000, limit });
    let ck = c.clerk(&[0, 1, 2]);
    c.check(ck, "k0", &value);
    for i in 0..c.n {
        assert_eq!(c.replica(i).kv().data_bytes(), 1000);
        assert!(c.replica(i).kv().data.get("k10").is_none());
    }
}
