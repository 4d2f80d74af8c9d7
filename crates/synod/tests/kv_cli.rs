//! Three real `synod kv serve` processes loaded through the Redis protocol while one is
//! killed with SIGKILL and restarted from its data directory and another is paused with
//! SIGSTOP: no acknowledged write may be lost, and the whole history (with final reads) must
//! be linearizable. And a replica whose disk was lost starts only once that is declared
//! (`--rejoin`), then rejoins and catches up. The killed cluster's replicas run on runtimes
//! of 1, 2 and 4 threads (`--threads`), so every runtime a server may run on meets the faults.

mod support;

use std::time::{Duration, Instant};

use support::{
    applied, free_ports, kv_replica_args, load, loopback_list, start_kv_replica as start_replica,
    start_kv_replica_with, Server,
};

/// How every replica of a new cluster starts.
const BOOTSTRAP: Option<&str> = Some("--bootstrap");

#[test]
fn kill_restart_and_pause_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let fronts = ports[3..].to_vec();
    let threads = |i: usize| ["--threads", ["1", "2", "4"][i]];
    let mut replicas: Vec<Option<Server>> = (0..3)
        .map(|i| {
            let replica =
                start_kv_replica_with(i, &peers, dir.path(), fronts[i], BOOTSTRAP, &threads(i));
            Some(replica)
        })
        .collect();

    let start = Instant::now();
    let mut history = load::run_while(4, &fronts, None, start, || {
        std::thread::sleep(Duration::from_secs(1));
        replicas[1].take().expect("running").kill9();
        std::thread::sleep(Duration::from_secs(1));
        // A restart on its own directory: no flag needed.
        replicas[1] = Some(start_kv_replica_with(
            1,
            &peers,
            dir.path(),
            fronts[1],
            None,
            &threads(1),
        ));
        std::thread::sleep(Duration::from_secs(1));
        let paused = replicas[2].as_ref().expect("running");
        paused.signal("STOP");
        std::thread::sleep(Duration::from_secs(3));
        paused.signal("CONT");
        std::thread::sleep(Duration::from_secs(1));
    });
    load::final_reads(&mut history, &fronts, None, 4, start);
    load::assert_linearizable(&history, 50);
}

#[test]
fn a_replica_that_lost_its_disk_starts_only_when_told_and_then_rejoins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let mut replicas: Vec<Server> = (0..3)
        .map(|i| start_replica(i, &peers, dir.path(), ports[3 + i], BOOTSTRAP))
        .collect();
    let put = support::run(&["kv", "put", "--servers", &peers, "k", "v"]);
    assert!(put.status.success(), "{}", support::stderr(&put));

    // Replica 1 loses its disk. Started again without a word, it cannot know whether it is
    // new or lost its disk (its peers cannot tell either), so it refuses.
    replicas.remove(1).kill9();
    let data = dir.path().join("r1");
    std::fs::remove_dir_all(&data).expect("removing replica 1's data");
    let args = kv_replica_args(1, &peers, dir.path(), ports[4], None);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = support::run(&args);
    assert!(!refused.status.success());
    let want = format!(
        "error: data directory {} holds no state: start it with --bootstrap if this replica \
         is new and the cluster is being formed, or with --rejoin if it lost its disk \
         (docs/running.md, \"Bootstrap and disk loss\")",
        data.display()
    );
    assert!(
        support::stderr(&refused).contains(&want),
        "{}",
        support::stderr(&refused)
    );

    // Told, it waits out its quiet period, learns how far the log got, then votes and
    // catches up.
    let args = kv_replica_args(1, &peers, dir.path(), ports[4], Some("--rejoin"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let again =
        Server::start_logged_env(&args, &[("RUST_LOG", "info")], "kv replica 1 listening on ");
    let start = Instant::now();
    loop {
        let status = support::run(&["status", "--servers", &peers]);
        let text = support::stdout(&status);
        let applied: Vec<Option<u64>> = support::replica_lines(&text)
            .into_iter()
            .map(applied)
            .collect();
        let level =
            applied.len() == 3 && applied[0].is_some() && applied.iter().all(|a| *a == applied[0]);
        let logs = again.logs();
        let told = logs.contains("this replica lost its disk: it rejoins before it votes");
        let rejoined = told && logs.contains("rejoined after disk loss");
        if rejoined && level && text.contains("replica=1/3 voting") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "replica 1 did not rejoin: {text}\n{}",
            again.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let get = support::run(&["kv", "get", "--servers", &loopback_list(&ports[1..2]), "k"]);
    assert_eq!(
        support::stdout(&get).trim(),
        "v",
        "{}",
        support::stderr(&get)
    );
}
