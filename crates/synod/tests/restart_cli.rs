//! Real `synod kv serve` processes on a state large enough to be snapshotted many times
//! over (kept small enough for CI): every replica stops on SIGTERM within its grace
//! period, restarts on its directory, serves every value it acknowledged, and never leaves
//! an unfinished background snapshot behind. And `--max-memory`: a write past it is
//! refused with Redis's `-OOM` error while reads are still served.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::resp::{Reply, Resp};
use support::{free_ports, loopback_list, start_kv_replica, start_kv_replica_with, Server};

/// Keys written, and bytes per value: 12 MB of state, a dozen times the log's compaction
/// threshold, so restarts load from a snapshot.
const KEYS: usize = 1200;
const VALUE_BYTES: usize = 10_000;

fn value(i: usize) -> String {
    format!("{i:06}").repeat(VALUE_BYTES / 6)
}

fn connect(port: u16) -> Resp {
    Resp::connect(&format!("127.0.0.1:{port}")).expect("connect to the RESP front")
}

fn set(conn: &mut Resp, key: &str, value: &str) -> Reply {
    conn.call(&["SET", key, value]).expect("SET answered")
}

/// Retries GET until it is answered (a restarted cluster elects a leader first).
fn get_eventually(port: u16, key: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Reply::Bulk(value)) =
            Resp::connect(&format!("127.0.0.1:{port}")).and_then(|mut c| c.call(&["GET", key]))
        {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("GET {key} not answered within {limit:?}");
}

fn stop_within_grace(mut replica: Server) {
    replica.signal("TERM");
    assert_eq!(
        replica.wait_exit(Duration::from_secs(5)),
        Some(0),
        "a replica with a large state stops cleanly within its 5 s grace period"
    );
}

/// Three new replicas with their data under `dir`, started with `extra` arguments; returns
/// them and their RESP ports.
fn new_cluster(dir: &Path, extra: &[&str]) -> (Vec<Server>, String, Vec<u16>) {
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let fronts = ports[3..].to_vec();
    let replicas = (0..3)
        .map(|i| start_kv_replica_with(i, &peers, dir, fronts[i], Some("--bootstrap"), extra))
        .collect();
    (replicas, peers, fronts)
}

fn has_snapshot(dir: &Path, id: usize) -> bool {
    dir.join(format!("r{id}")).join("snapshot").exists()
}

#[test]
fn replicas_restart_on_a_large_state_and_serve_every_acknowledged_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (replicas, peers, fronts) = new_cluster(dir.path(), &[]);
    let mut conn = connect(fronts[0]);
    for i in 0..KEYS {
        assert_eq!(
            set(&mut conn, &format!("key{i}"), &value(i)),
            Reply::Simple("OK".into())
        );
    }
    for replica in replicas {
        stop_within_grace(replica);
    }
    for id in 0..3 {
        assert!(
            has_snapshot(dir.path(), id),
            "replica {id} never snapshotted"
        );
        let leftovers =
            ["snapshot.next", "log.next"].map(|f| dir.path().join(format!("r{id}")).join(f));
        assert!(
            leftovers.iter().all(|f| !f.exists()),
            "an unfinished snapshot was left behind"
        );
    }

    let restarted: Vec<Server> = (0..3)
        .map(|i| start_kv_replica(i, &peers, dir.path(), fronts[i], None))
        .collect();
    let last = format!("key{}", KEYS - 1);
    assert_eq!(
        get_eventually(fronts[1], &last, Duration::from_secs(60)),
        Some(value(KEYS - 1))
    );
    let mut conn = connect(fronts[2]);
    for i in (0..KEYS).step_by(97) {
        let key = format!("key{i}");
        assert_eq!(
            conn.call(&["GET", &key]).expect("GET answered"),
            Reply::Bulk(Some(value(i))),
            "{key} after the restart"
        );
    }
    for replica in restarted {
        stop_within_grace(replica);
    }
}

#[test]
fn a_write_past_max_memory_is_refused_with_oom_and_reads_still_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let fronts = ports[3..].to_vec();
    let _replicas: Vec<Server> = (0..3)
        .map(|i| {
            let extra = ["--max-memory", "1000"];
            start_kv_replica_with(
                i,
                &peers,
                dir.path(),
                fronts[i],
                Some("--bootstrap"),
                &extra,
            )
        })
        .collect();
    let mut conn = connect(fronts[0]);
    let fits = "v".repeat(990);
    assert_eq!(set(&mut conn, "k", &fits), Reply::Simple("OK".into()));
    assert_eq!(
        set(&mut conn, "k2", "0123456789"),
        Reply::Error("OOM command not allowed when used memory > 'maxmemory'.".into())
    );
    assert_eq!(
        conn.call(&["GET", "k"]).expect("GET answered"),
        Reply::Bulk(Some(fits))
    );
    assert_eq!(
        conn.call(&["GET", "k2"]).expect("GET answered"),
        Reply::Bulk(None),
        "the refused write left nothing"
    );
}
