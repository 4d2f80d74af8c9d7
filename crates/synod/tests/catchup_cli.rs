//! Catch-up from a big state with real processes: three `synod kv serve` replicas are loaded
//! with `SYNOD_CATCHUP_BYTES` bytes of values (default 20 MB, in keys of about 1 KiB) through
//! their Redis-protocol ports; one is killed with SIGKILL, loses its directory, and is
//! restarted with `--rejoin`. The test measures how long it takes until `synod status` shows
//! it level with the others (same `applied`, not behind), and the rate in bytes of state per
//! second. The big run is documented in docs/bench.md:
//! `SYNOD_CATCHUP_BYTES=1000000000 cargo test --release -p synod --test catchup_cli -- --nocapture`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::resp::{Reply, Resp};
use support::{
    applied, free_ports, kv_replica_args, loopback_list, start_kv_replica, stderr, stdout, Server,
};

const VALUE_BYTES: usize = 1000;
/// Concurrent loading connections. A RESP connection answers one command before reading the
/// next, and a write is answered after an fsync, so the load rate is about (connections x
/// value size) per fsync: the replicas batch concurrent writes into one instance. 16
/// connections loaded 1.5 MB/s; 128 keep an instance near its 1 MiB batch.
const LOADERS: usize = 128;
/// SETs written before their replies are read, per connection.
const PIPELINE: usize = 64;

fn state_bytes() -> usize {
    std::env::var("SYNOD_CATCHUP_BYTES")
        .ok()
        .map(|v| v.parse().expect("SYNOD_CATCHUP_BYTES is a number of bytes"))
        .unwrap_or(20_000_000)
}

fn key(n: usize) -> String {
    format!("key{n:010}")
}

/// The value stored under key `n`: its number, padded to the value size.
fn value(n: usize) -> String {
    format!("{n:0>width$}", width = VALUE_BYTES)
}

/// SETs keys `range` through `front`, `PIPELINE` at a time; every one must be acknowledged.
/// A SET answered `-ERR timed out` (the front's client gave up on a cluster too busy to
/// answer within its timeout; its outcome is unknown) is sent again, as a real client
/// retries an idempotent write: on a machine whose cores are shared with other work, 128
/// connections of pipelined megabytes can wait that long.
fn load(front: &str, range: std::ops::Range<usize>) {
    /// Times one SET may be answered "timed out" before the test gives up on it.
    const TRIES: usize = 10;
    let conn = TcpStream::connect(front).expect("connecting to a RESP front");
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut replies = BufReader::new(conn.try_clone().expect("cloning the connection"));
    let mut conn = conn;
    let ids: Vec<usize> = range.collect();
    for batch in ids.chunks(PIPELINE) {
        let mut pending = batch.to_vec();
        for _ in 0..TRIES {
            let mut out = Vec::with_capacity(pending.len() * (VALUE_BYTES + 64));
            for &n in &pending {
                let (k, v) = (key(n), value(n));
                write!(
                    out,
                    "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                    k.len(),
                    v.len()
                )
                .unwrap();
            }
            conn.write_all(&out).expect("sending SETs");
            let mut timed_out = Vec::new();
            for &n in &pending {
                let mut reply = String::new();
                replies.read_line(&mut reply).expect("reading a reply");
                match reply.as_str() {
                    "+OK\r\n" => {}
                    r if r.starts_with("-ERR timed out") => timed_out.push(n),
                    r => panic!("SET {} was refused: {r:?}", key(n)),
                }
            }
            pending = timed_out;
            if pending.is_empty() {
                break;
            }
        }
        assert!(
            pending.is_empty(),
            "{} SETs timed out {TRIES} times",
            pending.len()
        );
    }
}

#[test]
fn a_replica_that_lost_its_disk_catches_up_from_a_big_state() {
    let bytes = state_bytes();
    let keys = bytes / VALUE_BYTES;
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let fronts: Vec<String> = ports[3..]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let mut replicas: Vec<Server> = (0..3)
        .map(|i| start_kv_replica(i, &peers, dir.path(), ports[3 + i], Some("--bootstrap")))
        .collect();

    let started = Instant::now();
    std::thread::scope(|s| {
        for l in 0..LOADERS {
            let front = fronts[l % fronts.len()].as_str();
            let range = keys * l / LOADERS..keys * (l + 1) / LOADERS;
            s.spawn(move || load(front, range));
        }
    });
    let loading = started.elapsed();
    eprintln!(
        "loaded {keys} keys ({bytes} bytes of values) in {loading:?}: {:.1} MB/s",
        bytes as f64 / loading.as_secs_f64() / 1e6
    );

    // Replica 2 loses its disk and rejoins.
    replicas.remove(2).kill9();
    std::fs::remove_dir_all(dir.path().join("r2")).expect("removing replica 2's data");
    let args = kv_replica_args(2, &peers, dir.path(), ports[5], Some("--rejoin"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restarted = Instant::now();
    let _rejoined = Server::start(&args, "kv replica 2 listening on ");
    let mut saw_snapshot = false;
    let caught_up = loop {
        let status = support::run(&["status", "--servers", &peers]);
        let text = stdout(&status);
        saw_snapshot |= text.contains("catching up: snapshot");
        let applied: Vec<Option<u64>> = support::replica_lines(&text)
            .into_iter()
            .map(applied)
            .collect();
        let level = applied.len() == 3
            && applied[0].is_some()
            && applied.iter().all(|a| *a == applied[0])
            && !text.contains("behind")
            && !text.contains("catching up");
        if level {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(300),
            "replica 2 did not catch up: {text}{}",
            stderr(&status)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "replica 2 caught up in {caught_up:?} ({}): {:.1} MB/s of state",
        if saw_snapshot {
            "through a streamed snapshot"
        } else {
            "no snapshot transfer seen"
        },
        bytes as f64 / caught_up.as_secs_f64() / 1e6
    );

    // Its front serves what was loaded.
    let mut front = Resp::connect(&fronts[2]).expect("replica 2's front");
    for n in [0, keys / 2, keys - 1] {
        assert_eq!(
            front.call(&["GET", &key(n)]).expect("GET"),
            Reply::Bulk(Some(value(n)))
        );
    }
}
