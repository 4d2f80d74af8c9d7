//! Request/reply cost of the TCP driver on loopback, against a baseline measured in the same
//! run: a bare tokio echo server moving the same frames with no handshake, codec, node task
//! or queues. Prints medians over several runs and the driver/baseline ratios.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use synod_net::codec::encode_frame;
use synod_net::{run_node, Client, NodeConfig};
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_storage::MemStorage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RUNS: usize = 5;
const CALLS: usize = 2_000;
const PIPELINED: usize = 20_000;
const LIMIT: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
struct Echo(u64, String);

struct EchoNode;

impl Node for EchoNode {
    type Msg = Echo;
    fn on_start(&mut self, _: &mut dyn Context<Echo>) {}
    fn on_message(&mut self, ctx: &mut dyn Context<Echo>, from: NodeId, msg: Echo) {
        ctx.send(from, msg);
    }
    fn on_timer(&mut self, _: &mut dyn Context<Echo>, _: TimerToken) {}
}

fn request(i: u64) -> Echo {
    Echo(i, "key-0042=value".to_string())
}

/// Sequential calls, then a pipelined burst; returns (µs per call, messages per second).
async fn measure_driver(client: &mut Client<Echo>) -> (f64, f64) {
    let start = Instant::now();
    for i in 0..CALLS as u64 {
        client.call(&request(i), LIMIT).await.unwrap();
    }
    let per_call = start.elapsed().as_secs_f64() * 1e6 / CALLS as f64;
    let start = Instant::now();
    // Batches of 100 in flight: send them all, then read all the replies.
    for chunk in 0..(PIPELINED / 100) as u64 {
        for i in 0..100 {
            client.send(&request(chunk * 100 + i)).await.unwrap();
        }
        for _ in 0..100 {
            client.recv(LIMIT).await.unwrap();
        }
    }
    let rate = PIPELINED as f64 / start.elapsed().as_secs_f64();
    (per_call, rate)
}

/// The same traffic shape against a bare echo of raw frame bytes.
async fn measure_baseline(addr: std::net::SocketAddr) -> (f64, f64) {
    let frame = encode_frame(&request(0), 1 << 20).unwrap();
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.set_nodelay(true).unwrap();
    let mut reply = vec![0u8; frame.len()];
    let start = Instant::now();
    for _ in 0..CALLS {
        socket.write_all(&frame).await.unwrap();
        socket.read_exact(&mut reply).await.unwrap();
    }
    let per_call = start.elapsed().as_secs_f64() * 1e6 / CALLS as f64;
    let start = Instant::now();
    for _ in 0..PIPELINED / 100 {
        for _ in 0..100 {
            socket.write_all(&frame).await.unwrap();
        }
        for _ in 0..100 {
            socket.read_exact(&mut reply).await.unwrap();
        }
    }
    let rate = PIPELINED as f64 / start.elapsed().as_secs_f64();
    (per_call, rate)
}

async fn echo_baseline(listener: TcpListener) {
    loop {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let (mut r, mut w) = socket.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = NodeConfig::new(NodeId(1), listener);
    tokio::spawn(run_node(
        EchoNode,
        config,
        Box::new(MemStorage::new()),
        std::future::pending(),
    ));
    let base_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_addr = base_listener.local_addr().unwrap();
    tokio::spawn(echo_baseline(base_listener));

    let mut client = Client::<Echo>::connect(addr, LIMIT).await.unwrap();
    let (mut d_lat, mut d_rate, mut b_lat, mut b_rate) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let (lat, rate) = measure_driver(&mut client).await;
        d_lat.push(lat);
        d_rate.push(rate);
        let (lat, rate) = measure_baseline(base_addr).await;
        b_lat.push(lat);
        b_rate.push(rate);
    }
    let (d_lat, d_rate, b_lat, b_rate) =
        (median(d_lat), median(d_rate), median(b_lat), median(b_rate));
    println!("median over {RUNS} runs, loopback, one connection");
    println!(
        "sequential call: driver {d_lat:.1} µs, bare echo {b_lat:.1} µs, driver slower by {:.2}x",
        d_lat / b_lat
    );
    println!(
        "pipelined (100 in flight): driver {d_rate:.0} msg/s, bare echo {b_rate:.0} msg/s, driver slower by {:.2}x",
        b_rate / d_rate
    );
}
