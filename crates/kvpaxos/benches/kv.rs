//! Throughput and latency of a 3-replica kvpaxos cluster on loopback, with fsync
//! on (file storage in temporary directories), at 1, 16 and 64 concurrent clients, puts and
//! gets measured separately. Each figure is the median of several runs; the ratio column
//! compares ops/s with the single-client run of the same kind, measured in the same run.
//!
//! `cargo bench -p synod-kvpaxos` (set `KV_BENCH_SECS` to change the length of a run).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use synod_kvpaxos::{KvMsg, KvOp, KvReplica, KvReply};
use synod_net::{run_node, Client, NodeConfig};
use synod_node::NodeId;
use synod_paxos::PaxosConfig;
use synod_storage::FileStorage;
use tokio::net::TcpListener;

const RUNS: usize = 3;

async fn cluster(dir: &std::path::Path) -> (Vec<SocketAddr>, tokio::sync::watch::Sender<bool>) {
    let listeners: Vec<TcpListener> = futures_bind(3).await;
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let ids: Vec<NodeId> = (0..3).map(NodeId).collect();
    let (stop, watch) = tokio::sync::watch::channel(false);
    for (i, listener) in listeners.into_iter().enumerate() {
        let mut config = NodeConfig::new(ids[i], listener);
        config.peers = (0..3)
            .filter(|&j| j != i)
            .map(|j| (ids[j], addrs[j]))
            .collect();
        let storage = FileStorage::open(dir.join(format!("r{i}"))).expect("storage");
        let replica = KvReplica::new(ids.clone(), i, PaxosConfig::default());
        let mut watch = watch.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = watch.wait_for(|stop| *stop).await;
            };
            run_node(replica, config, Box::new(storage), shutdown).await
        });
    }
    (addrs, stop)
}

async fn futures_bind(n: usize) -> Vec<TcpListener> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    out
}

/// One client: operations back to back on one replica until `end`; returns latencies.
async fn client(addr: SocketAddr, id: u64, gets: bool, end: Instant) -> Vec<Duration> {
    let mut conn: Client<KvMsg> = Client::connect(addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let mut latencies = Vec::new();
    let mut seq = 0;
    while Instant::now() < end {
        seq += 1;
        let key = format!("key{}", id % 16);
        let op = if gets {
            KvOp::Get { key: key.into() }
        } else {
            KvOp::Put {
                key: key.into(),
                value: format!("value-{id}-{seq}").into(),
            }
        };
        let msg = KvMsg::Request {
            client: id,
            seq,
            op,
        };
        let start = Instant::now();
        conn.send(&msg).await.expect("send");
        loop {
            match conn.recv(Duration::from_secs(10)).await.expect("reply") {
                KvMsg::Reply { seq: s, reply } if s == seq => {
                    assert!(!matches!(reply, KvReply::SessionExpired));
                    break;
                }
                _ => continue,
            }
        }
        latencies.push(start.elapsed());
    }
    latencies
}

struct Figures {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure(
    addrs: &[SocketAddr],
    clients: usize,
    gets: bool,
    secs: f64,
    base: u64,
) -> Figures {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addrs[c % addrs.len()];
            tokio::spawn(client(addr, base + c as u64, gets, end))
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all.sort_unstable();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        ops_per_sec: all.len() as f64 / secs,
        p50: pick(0.5),
        p99: pick(0.99),
    }
}

fn median<T: Copy>(mut v: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v[v.len() / 2]
}

fn main() {
    let secs: f64 = std::env::var("KV_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let (addrs, stop) = cluster(dir.path()).await;
        // Sessions: distinct client ids for every run, so no request looks like a retry.
        let mut base = 1u64;
        println!("kvpaxos, 3 replicas on loopback, fsync on, {secs} s per run, median of {RUNS}");
        println!(
            "{:<5} {:>8} {:>10} {:>10} {:>10} {:>8}",
            "op", "clients", "ops/s", "p50", "p99", "ratio"
        );
        for gets in [false, true] {
            let mut baseline = None;
            for clients in [1, 16, 64] {
                let mut runs = Vec::new();
                for _ in 0..RUNS {
                    runs.push(measure(&addrs, clients, gets, secs, base).await);
                    base += clients as u64;
                }
                let ops = median(runs.iter().map(|f| f.ops_per_sec).collect(), |x| *x);
                let p50 = median(runs.iter().map(|f| f.p50).collect(), |d| d.as_secs_f64());
                let p99 = median(runs.iter().map(|f| f.p99).collect(), |d| d.as_secs_f64());
                let base_ops = *baseline.get_or_insert(ops);
                println!(
                    "{:<5} {:>8} {:>10.0} {:>10.2?} {:>10.2?} {:>7.2}x",
                    if gets { "get" } else { "put" },
                    clients,
                    ops,
                    p50,
                    p99,
                    ops / base_ops
                );
            }
        }
        let _ = stop.send(true);
    });
}
