//! Three real `synod kv serve` processes loaded through the Redis protocol while one is
//! killed with SIGKILL and restarted from its data directory and another is paused with
//! SIGSTOP: no acknowledged write may be lost, and the whole history (with final reads) must
//! be linearizable.

mod support;

use std::time::{Duration, Instant};

use support::{applied, free_ports, load, loopback_list, path, Server};

/// `synod kv serve` arguments for replica `id`, its data in `dir/r{id}`.
fn replica_args(id: usize, peers: &str, dir: &std::path::Path, resp: u16) -> Vec<String> {
    let data = dir.join(format!("r{id}"));
    [
        "kv",
        "serve",
        "--id",
        &id.to_string(),
        "--peers",
        peers,
        "--data",
        path(&data),
        "--resp",
        &format!("127.0.0.1:{resp}"),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn start_replica(id: usize, peers: &str, dir: &std::path::Path, resp: u16) -> Server {
    let args = replica_args(id, peers, dir, resp);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args, &format!("kv replica {id} listening on "))
}

#[test]
fn kill_restart_and_pause_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let fronts = ports[3..].to_vec();
    let mut replicas: Vec<Option<Server>> = (0..3)
        .map(|i| Some(start_replica(i, &peers, dir.path(), fronts[i])))
        .collect();

    let start = Instant::now();
    let mut history = load::run_while(4, &fronts, start, || {
        std::thread::sleep(Duration::from_secs(1));
        replicas[1].take().expect("running").kill9();
        std::thread::sleep(Duration::from_secs(1));
        replicas[1] = Some(start_replica(1, &peers, dir.path(), fronts[1]));
        std::thread::sleep(Duration::from_secs(1));
        let paused = replicas[2].as_ref().expect("running");
        paused.signal("STOP");
        std::thread::sleep(Duration::from_secs(3));
        paused.signal("CONT");
        std::thread::sleep(Duration::from_secs(1));
    });
    load::final_reads(&mut history, &fronts, 4, start);
    load::assert_linearizable(&history, 50);
}

#[test]
fn a_blank_replica_of_a_cluster_with_a_log_rejoins_by_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let mut replicas: Vec<Server> = (0..3)
        .map(|i| start_replica(i, &peers, dir.path(), ports[3 + i]))
        .collect();
    let put = support::run(&["kv", "put", "--servers", &peers, "k", "v"]);
    assert!(put.status.success(), "{}", support::stderr(&put));

    // Replica 1 loses its disk and is started again by someone who forgot `--rejoin`.
    replicas.remove(1).kill9();
    std::fs::remove_dir_all(dir.path().join("r1")).expect("removing replica 1's data");
    let args = replica_args(1, &peers, dir.path(), ports[4]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let again =
        Server::start_logged_env(&args, &[("RUST_LOG", "info")], "kv replica 1 listening on ");
    // It notices by itself; after its quiet period it learns how far the log got, then votes
    // and catches up.
    let start = Instant::now();
    loop {
        let status = support::run(&["status", "--servers", &peers]);
        let text = support::stdout(&status);
        let applied: Vec<Option<u64>> = text.lines().map(applied).collect();
        let level =
            applied.len() == 3 && applied[0].is_some() && applied.iter().all(|a| *a == applied[0]);
        let logs = again.logs();
        let noticed = logs.contains("this replica lost its disk, so it rejoins");
        let rejoined = noticed && logs.contains("rejoined after disk loss");
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
