//! Three real `synod kv serve` processes loaded through the Redis protocol while one is
//! killed with SIGKILL and restarted from its data directory and another is paused with
//! SIGSTOP: no acknowledged write may be lost, and the whole history (with final reads) must
//! be linearizable.

mod support;

use std::time::{Duration, Instant};

use support::{free_ports, load, path, Server};

fn start_replica(id: usize, peers: &str, dir: &std::path::Path, resp: u16) -> Server {
    let resp = format!("127.0.0.1:{resp}");
    let data = dir.join(format!("r{id}"));
    let id_text = id.to_string();
    let args = [
        "kv",
        "serve",
        "--id",
        id_text.as_str(),
        "--peers",
        peers,
        "--data",
        path(&data),
        "--resp",
        resp.as_str(),
    ];
    Server::start(&args, &format!("kv replica {id} listening on "))
}

#[test]
fn kill_restart_and_pause_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = ports[..3]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
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
