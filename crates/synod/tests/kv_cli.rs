//! Three real `synod kv serve` processes loaded through the Redis protocol while one is
//! killed with SIGKILL and restarted from its data directory and another is paused with
//! SIGSTOP: no acknowledged write may be lost, and the whole history (with final reads) must
//! be linearizable.

mod support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::resp::{Reply, Resp};
use support::{path, Server};
use synod_check::kv::{KvInput, KvModel};
use synod_check::{check_operations, CheckResult, Operation};

/// Distinct free ports, found by binding port 0 (and releasing it just before use).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

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

type History = Arc<Mutex<Vec<Operation<KvInput, String>>>>;

/// A client thread: random SET/GET/APPEND on a few keys through one front after another,
/// recording every operation; an operation whose answer never came has an unknown outcome.
fn client(me: u64, fronts: Vec<u16>, start: Instant, stop: Arc<AtomicBool>, history: History) {
    let now = || start.elapsed().as_nanos() as u64;
    let mut front = me as usize % fronts.len();
    let mut conn: Option<Resp> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        // SET and GET on shared keys; APPEND on a key of this client's own, so the checker
        // never has to order concurrent appends (whose every order is a candidate).
        let shared = format!("s{}", n % 2);
        let own = format!("a{me}");
        let value = format!("{me}.{n};");
        let (input, args): (KvInput, Vec<&str>) = match n % 4 {
            0 => (KvInput::get(shared.as_str()), vec!["GET", shared.as_str()]),
            1 => (
                KvInput::put(shared.as_str(), value.as_str()),
                vec!["SET", shared.as_str(), value.as_str()],
            ),
            2 => (
                KvInput::append(own.as_str(), value.as_str()),
                vec!["APPEND", own.as_str(), value.as_str()],
            ),
            _ => (KvInput::get(own.as_str()), vec!["GET", own.as_str()]),
        };
        if conn.is_none() {
            conn = Resp::connect(&format!("127.0.0.1:{}", fronts[front])).ok();
        }
        let call = now();
        let answer = conn.as_mut().map(|c| c.call(&args));
        let output = match answer {
            Some(Ok(Reply::Bulk(v))) => Some(v.unwrap_or_default()),
            Some(Ok(Reply::Simple(_) | Reply::Integer(_))) => Some(String::new()),
            // An error answer or a broken connection: the outcome is unknown.
            _ => None,
        };
        let op = match output {
            Some(out) => Operation::new(me, input, call, out, now()),
            None => {
                conn = None;
                front = (front + 1) % fronts.len();
                Operation::unknown(me, input, call)
            }
        };
        history.lock().unwrap().push(op);
    }
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
    let stop = Arc::new(AtomicBool::new(false));
    let history: History = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|me| {
            let (fronts, stop, history) = (fronts.clone(), stop.clone(), history.clone());
            std::thread::spawn(move || client(me, fronts, start, stop, history))
        })
        .collect();

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
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }

    // Final reads through every front: every acknowledged write must be reflected.
    let mut history = std::mem::take(&mut *history.lock().unwrap());
    for (i, &port) in fronts.iter().enumerate() {
        let mut conn =
            Resp::connect(&format!("127.0.0.1:{port}")).expect("connecting for the final reads");
        let keys = ["s0", "s1", "a0", "a1", "a2", "a3"];
        for key in keys {
            let call = start.elapsed().as_nanos() as u64;
            let Reply::Bulk(v) = conn.call(&["GET", key]).expect("final read") else {
                panic!("final GET through front {i} failed");
            };
            let value = v.unwrap_or_default();
            let ret = start.elapsed().as_nanos() as u64;
            history.push(Operation::new(100, KvInput::get(key), call, value, ret));
        }
    }
    let acknowledged = history.iter().filter(|op| op.ret.is_some()).count();
    assert!(
        acknowledged > 50,
        "only {acknowledged} operations acknowledged"
    );
    let result = check_operations(&KvModel, &history, Some(Duration::from_secs(60)))
        .expect("well-formed history");
    assert!(
        matches!(result, CheckResult::Ok),
        "not linearizable ({} operations): {result:?}",
        history.len()
    );
}
