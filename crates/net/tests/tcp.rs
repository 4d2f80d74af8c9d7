//! The TCP driver end to end, over real sockets on 127.0.0.1 port 0: client round trips,
//! peers talking and reconnecting after a restart or once their connection falls silent, every kind of bad input closing only its
//! own connection, and graceful shutdown.
//!
//! Tests run on tokio's current-thread runtime so that a thread-local log capture sees every
//! task's events; waits are for events (a reply, an EOF, a log line) under a deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use synod_net::codec::{encode_frame, encode_hello, Hello, MAGIC};
use synod_net::{run_node, Client, NetError, NetOptions, NodeConfig, PROTOCOL_VERSION};
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_storage::MemStorage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

mod support;
use support::{Logs, WAIT};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    /// Client: add to the counter; answered with `Total`.
    Add(u64),
    Total(u64),
    /// Client: answered with `You(the id the server gave this connection)`.
    WhoAmI,
    You(NodeId),
    /// Client to A: A pings its partner B, B pongs back to A, A passes the `Pong` on.
    Relay(u64),
    Ping(u64),
    Pong(u64),
    /// Client: like `Relay`, but the node pings itself.
    Bounce(u64),
    /// Client: answered with `Fired(tag)` after `ms` milliseconds, via a timer.
    Delay {
        ms: u64,
        tag: u64,
    },
    Fired(u64),
    /// Client: the node learns that server `id` is at `addr` and makes it its partner;
    /// answered with `You(id)`.
    Meet {
        id: u64,
        addr: String,
    },
}

/// A counter that also relays pings to a partner server, to exercise every driver path.
#[derive(Default)]
struct Counter {
    total: u64,
    partner: Option<NodeId>,
    waiting: BTreeMap<u64, NodeId>,
    delays: BTreeMap<TimerToken, (NodeId, u64)>,
    next_token: TimerToken,
}

impl Node for Counter {
    type Msg = Msg;

    fn on_start(&mut self, _ctx: &mut dyn Context<Msg>) {}

    fn on_message(&mut self, ctx: &mut dyn Context<Msg>, from: NodeId, msg: Msg) {
        match msg {
            Msg::Add(n) => {
                self.total += n;
                ctx.send(from, Msg::Total(self.total));
            }
            Msg::WhoAmI => ctx.send(from, Msg::You(from)),
            Msg::Relay(k) => {
                self.waiting.insert(k, from);
                if let Some(partner) = self.partner {
                    ctx.send(partner, Msg::Ping(k));
                }
            }
            Msg::Bounce(k) => {
                self.waiting.insert(k, from);
                ctx.send(ctx.id(), Msg::Ping(k));
            }
            Msg::Ping(k) => ctx.send(from, Msg::Pong(k)),
            Msg::Pong(k) => {
                if let Some(client) = self.waiting.remove(&k) {
                    ctx.send(client, Msg::Pong(k));
                }
            }
            Msg::Delay { ms, tag } => {
                self.next_token += 1;
                self.delays.insert(self.next_token, (from, tag));
                ctx.set_timer(Duration::from_millis(ms), self.next_token);
            }
            Msg::Meet { id, addr } => {
                ctx.add_peer(NodeId(id), &addr);
                self.partner = Some(NodeId(id));
                ctx.send(from, Msg::You(NodeId(id)));
            }
            Msg::Total(_) | Msg::You(_) | Msg::Fired(_) => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<Msg>, token: TimerToken) {
        if let Some((client, tag)) = self.delays.remove(&token) {
            ctx.send(client, Msg::Fired(tag));
        }
    }
}

fn test_options() -> NetOptions {
    NetOptions {
        handshake_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(80),
        flush_timeout: Duration::from_millis(300),
        ..NetOptions::default()
    }
}

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), NetError>>,
}

impl Server {
    async fn start(id: u64, listener: TcpListener, peers: &[(u64, SocketAddr)]) -> Server {
        Self::start_with(id, listener, peers, test_options()).await
    }

    async fn start_with(
        id: u64,
        listener: TcpListener,
        peers: &[(u64, SocketAddr)],
        net: NetOptions,
    ) -> Server {
        let addr = listener.local_addr().unwrap();
        let mut config = NodeConfig::new(NodeId(id), listener);
        config.peers = peers.iter().map(|&(p, a)| (NodeId(p), a)).collect();
        config.net = net;
        let node = Counter {
            partner: peers.first().map(|&(p, _)| NodeId(p)),
            ..Counter::default()
        };
        let (stop, stopped) = oneshot::channel();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(run_node(
            node,
            config,
            Box::new(MemStorage::new()),
            shutdown,
        ));
        Server { addr, stop, task }
    }

    async fn stop(self) -> Result<(), NetError> {
        self.stop.send(()).unwrap();
        timeout(WAIT, self.task)
            .await
            .expect("shutdown hung")
            .unwrap()
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

async fn client(addr: SocketAddr) -> Client<Msg> {
    Client::connect(addr, WAIT).await.unwrap()
}

#[tokio::test]
async fn client_round_trips_timers_and_self_messages() {
    let server = Server::start(1, bind().await, &[]).await;
    let mut a = client(server.addr).await;
    let mut b = client(server.addr).await;
    assert_eq!(a.server_id(), NodeId(1));

    assert_eq!(a.call(&Msg::Add(2), WAIT).await.unwrap(), Msg::Total(2));
    assert_eq!(b.call(&Msg::Add(3), WAIT).await.unwrap(), Msg::Total(5));

    let Msg::You(id_a) = a.call(&Msg::WhoAmI, WAIT).await.unwrap() else {
        panic!("expected You")
    };
    let Msg::You(id_b) = b.call(&Msg::WhoAmI, WAIT).await.unwrap() else {
        panic!("expected You")
    };
    assert!(id_a.is_client() && id_b.is_client() && id_a != id_b);

    assert_eq!(a.call(&Msg::Bounce(7), WAIT).await.unwrap(), Msg::Pong(7));
    // Two timers set out of order fire in deadline order.
    a.send(&Msg::Delay { ms: 60, tag: 2 }).await.unwrap();
    a.send(&Msg::Delay { ms: 10, tag: 1 }).await.unwrap();
    assert_eq!(a.recv(WAIT).await.unwrap(), Msg::Fired(1));
    assert_eq!(a.recv(WAIT).await.unwrap(), Msg::Fired(2));

    // The node ignores `Total`: a request without an answer is a typed timeout.
    let err = a.call(&Msg::Total(0), Duration::from_millis(50)).await;
    assert!(matches!(err, Err(NetError::Timeout { .. })), "{err:?}");

    server.stop().await.unwrap();
}

/// Asks A, through `c`, to relay pings to its partner B until a pong comes back, with a new
/// ping every `patience` (one may be lost in a connection that broke): whether one came back
/// within `within`.
async fn relay_until_answered(c: &mut Client<Msg>, within: Duration, patience: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut k = 1;
    'retry: while Instant::now() < deadline {
        k += 1;
        c.send(&Msg::Relay(k)).await.unwrap();
        loop {
            match c.recv(patience).await {
                Ok(Msg::Pong(got)) if got == k => return true,
                Ok(Msg::Pong(older)) if older < k => continue,
                Err(NetError::Timeout { .. }) => continue 'retry,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    false
}

#[tokio::test]
async fn peers_talk_and_reconnect_after_a_restart() {
    let (la, lb) = (bind().await, bind().await);
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let a = Server::start(1, la, &[(2, b_addr)]).await;
    let b = Server::start(2, lb, &[(1, a_addr)]).await;

    let mut c = client(a_addr).await;
    assert_eq!(c.call(&Msg::Relay(1), WAIT).await.unwrap(), Msg::Pong(1));

    b.stop().await.unwrap();
    let b = Server::start(2, TcpListener::bind(b_addr).await.unwrap(), &[(1, a_addr)]).await;

    // A may write the first ping into the connection the old B just closed (lost, as the
    // protocols allow), so ask again until a pong comes back through the new link.
    let within = Duration::from_millis(1500);
    let answered = relay_until_answered(&mut c, within, Duration::from_millis(200)).await;
    assert!(answered, "A never reached the restarted B");

    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_link_stays_up_because_its_probes_are_echoed() {
    let (logs, _guard) = Logs::capture();
    let opts = || NetOptions {
        probe_every: Duration::from_millis(20),
        silence_limit: Duration::from_millis(100),
        ..test_options()
    };
    let (la, lb) = (bind().await, bind().await);
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let a = Server::start_with(1, la, &[(2, b_addr)], opts()).await;
    let b = Server::start_with(2, lb, &[(1, a_addr)], opts()).await;
    let mut c = client(a_addr).await;
    assert_eq!(c.call(&Msg::Relay(1), WAIT).await.unwrap(), Msg::Pong(1));
    // Ten silence limits with nothing to send but probes.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(c.call(&Msg::Relay(2), WAIT).await.unwrap(), Msg::Pong(2));
    assert!(!logs.text().contains("link down"), "{}", logs.text());

    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// A TCP forwarder between a link and its peer that can *swallow* the connections it has:
/// from then on they stay open but carry nothing either way, like a connection whose
/// segments a partition dropped until the kernel's retransmission backoff grew to many
/// seconds. Connections made after that are forwarded normally: the network has healed.
struct Swallower {
    addr: SocketAddr,
    /// How many connections were accepted; the first `swallowed` of them carry nothing.
    accepted: Arc<AtomicU64>,
    swallowed: Arc<AtomicU64>,
}

impl Swallower {
    async fn start(to: SocketAddr) -> Swallower {
        let listener = bind().await;
        let addr = listener.local_addr().unwrap();
        let (accepted, swallowed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (count, cut) = (accepted.clone(), swallowed.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let number = count.fetch_add(1, Ordering::SeqCst);
                let Ok(outbound) = TcpStream::connect(to).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                for (mut from, mut to) in [(ri, wo), (ro, wi)] {
                    let cut = cut.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buf).await {
                            let swallowed = number < cut.load(Ordering::SeqCst);
                            if !swallowed && to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Swallower {
            addr,
            accepted,
            swallowed,
        }
    }

    /// Swallows every connection accepted so far.
    fn swallow_existing(&self) {
        let so_far = self.accepted.load(Ordering::SeqCst);
        self.swallowed.store(so_far, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_link_whose_connection_falls_silent_reconnects() {
    let (logs, _guard) = Logs::capture();
    let (la, lb) = (bind().await, bind().await);
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let between = Swallower::start(b_addr).await;
    let opts = test_options();
    let bound = opts.silence_limit + opts.probe_every + opts.connect_timeout + opts.backoff_max;
    let a = Server::start(1, la, &[(2, between.addr)]).await;
    let b = Server::start(2, lb, &[(1, a_addr)]).await;
    let mut c = client(a_addr).await;
    assert_eq!(c.call(&Msg::Relay(1), WAIT).await.unwrap(), Msg::Pong(1));

    // A's link to B now writes into a connection that never delivers and never fails: the
    // kernel would keep it for many minutes. The link must give it up and connect afresh.
    between.swallow_existing();
    let answered = relay_until_answered(&mut c, 2 * bound, Duration::from_millis(100)).await;
    assert!(answered, "A never reached B again; logs:\n{}", logs.text());
    logs.wait_for(&["link down; reconnecting", "no echo of a probe"])
        .await;

    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_node_reaches_a_peer_whose_address_it_learned_while_running() {
    let (la, lb) = (bind().await, bind().await);
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let a = Server::start(1, la, &[]).await;
    let b = Server::start(2, lb, &[(1, a_addr)]).await;
    let mut c = client(a_addr).await;

    // An address that does not parse is ignored; the node keeps serving.
    let meet_nowhere = Msg::Meet {
        id: 2,
        addr: "not an address".into(),
    };
    assert_eq!(
        c.call(&meet_nowhere, WAIT).await.unwrap(),
        Msg::You(NodeId(2))
    );
    c.send(&Msg::Relay(1)).await.unwrap();
    let err = c.recv(Duration::from_millis(200)).await;
    assert!(matches!(err, Err(NetError::Timeout { .. })), "{err:?}");

    let meet_b = Msg::Meet {
        id: 2,
        addr: b_addr.to_string(),
    };
    assert_eq!(c.call(&meet_b, WAIT).await.unwrap(), Msg::You(NodeId(2)));
    assert_eq!(c.call(&Msg::Relay(2), WAIT).await.unwrap(), Msg::Pong(2));

    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Sends `bytes` on a raw connection (then half-closes it if `close`), asserts the server
/// closes it and logs `reason` with the connection's address, and that well-behaved clients,
/// one connected before and one after, are still served.
async fn assert_rejected(bytes: &[u8], close: bool, reason: &str) {
    let (logs, _guard) = Logs::capture();
    let server = Server::start(1, bind().await, &[]).await;
    let mut before = client(server.addr).await;

    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    let raw_addr = raw.local_addr().unwrap().to_string();
    raw.write_all(bytes).await.unwrap();
    if close {
        raw.shutdown().await.unwrap();
    }
    let mut sink = Vec::new();
    let read = timeout(WAIT, raw.read_to_end(&mut sink)).await;
    match read.expect("server left the bad connection open") {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    logs.wait_for(&["closing connection", reason, &raw_addr])
        .await;

    assert_eq!(
        before.call(&Msg::Add(1), WAIT).await.unwrap(),
        Msg::Total(1)
    );
    let mut after = client(server.addr).await;
    assert_eq!(after.call(&Msg::Add(1), WAIT).await.unwrap(), Msg::Total(2));
    server.stop().await.unwrap();
}

fn client_hello() -> Vec<u8> {
    encode_hello(Hello::Client).to_vec()
}

#[tokio::test]
async fn garbage_is_rejected() {
    assert_rejected(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, "bad magic").await;
}

#[tokio::test]
async fn wrong_magic_is_rejected() {
    let mut hello = client_hello();
    hello[..4].copy_from_slice(b"SYNX");
    assert_rejected(&hello, false, "bad magic").await;
}

#[tokio::test]
async fn wrong_version_is_rejected_naming_both_versions() {
    let mut hello = client_hello();
    let newer = PROTOCOL_VERSION + 1;
    hello[4..6].copy_from_slice(&newer.to_le_bytes());
    let reason =
        format!("unsupported protocol version {newer} (this build speaks {PROTOCOL_VERSION})");
    assert_rejected(&hello, false, &reason).await;
}

#[tokio::test]
async fn oversized_length_header_is_rejected() {
    let mut bytes = client_hello();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_rejected(&bytes, false, "frame of 4294967295 bytes exceeds the limit").await;
}

#[tokio::test]
async fn truncated_frame_then_close_is_rejected() {
    let mut bytes = client_hello();
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 10]);
    assert_rejected(&bytes, true, "closed in the middle of a frame").await;
}

#[tokio::test]
async fn truncated_handshake_then_close_is_rejected() {
    assert_rejected(&MAGIC, true, "closed in the middle of a frame").await;
}

#[tokio::test]
async fn undecodable_message_is_rejected() {
    let mut bytes = client_hello();
    // A well-formed frame whose payload names enum variant 200, which `Msg` does not have.
    bytes.extend_from_slice(&encode_frame(&200u32, 1 << 20).unwrap());
    assert_rejected(&bytes, false, "undecodable message").await;
}

#[tokio::test]
async fn silent_connection_is_closed_after_the_handshake_timeout() {
    assert_rejected(b"", false, "handshake timed out").await;
}

#[tokio::test]
async fn client_vanishing_mid_request_does_not_disturb_others() {
    let (logs, _guard) = Logs::capture();
    let server = Server::start(1, bind().await, &[]).await;
    let mut before = client(server.addr).await;

    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    let raw_addr = raw.local_addr().unwrap().to_string();
    // A complete handshake, then half a request, then the process "dies".
    let mut hello = [0u8; 15];
    raw.read_exact(&mut hello).await.unwrap();
    let frame = encode_frame(&Msg::Add(5), 1 << 20).unwrap();
    let mut bytes = client_hello();
    bytes.extend_from_slice(&frame[..frame.len() - 1]);
    raw.write_all(&bytes).await.unwrap();
    drop(raw);
    logs.wait_for(&["closed in the middle of a frame", &raw_addr])
        .await;

    // The half request was not applied, and others are still served.
    assert_eq!(
        before.call(&Msg::Add(1), WAIT).await.unwrap(),
        Msg::Total(1)
    );
    let mut after = client(server.addr).await;
    assert_eq!(after.call(&Msg::Add(1), WAIT).await.unwrap(), Msg::Total(2));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let net = NetOptions {
        max_connections: 1,
        ..test_options()
    };
    let server = Server::start_with(1, bind().await, &[], net).await;
    let mut first = client(server.addr).await;
    let second = Client::<Msg>::connect(server.addr, WAIT).await;
    assert!(
        matches!(second, Err(NetError::Closed) | Err(NetError::Io(_))),
        "{:?}",
        second.err()
    );
    assert_eq!(first.call(&Msg::Add(1), WAIT).await.unwrap(), Msg::Total(1));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_returns_ok_and_stops_accepting() {
    // A peer that is down, so a link is stuck reconnecting when shutdown comes.
    let dead = bind().await.local_addr().unwrap();
    // Flushing may take up to 800 ms, but a link with nowhere to flush to must not wait.
    let net = NetOptions {
        flush_timeout: Duration::from_millis(800),
        ..test_options()
    };
    let server = Server::start_with(1, bind().await, &[(2, dead)], net).await;
    let addr = server.addr;
    let mut c = client(addr).await;
    assert_eq!(c.call(&Msg::Add(4), WAIT).await.unwrap(), Msg::Total(4));
    c.send(&Msg::Relay(1)).await.unwrap();
    // Make sure the relay was handled (and the link started) before shutting down.
    assert_eq!(c.call(&Msg::Add(0), WAIT).await.unwrap(), Msg::Total(4));

    let started = Instant::now();
    server.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(400));

    let refused = TcpStream::connect(addr).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    assert!(matches!(c.recv(WAIT).await, Err(NetError::Closed)));
}

#[tokio::test]
async fn a_client_meeting_another_version_gets_a_clear_error() {
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut hello = encode_hello(Hello::Peer(NodeId(1)));
        hello[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        socket.write_all(&hello).await.unwrap();
        // Hold the socket open until the client has judged the handshake and hung up.
        let _ = socket.read_to_end(&mut Vec::new()).await;
    });
    let err = Client::<Msg>::connect(addr, WAIT).await.err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "unsupported protocol version {} (this build speaks {PROTOCOL_VERSION})",
            PROTOCOL_VERSION + 1
        )
    );
    fake.await.unwrap();
}

#[tokio::test]
async fn a_server_id_in_the_client_range_is_refused() {
    let config = NodeConfig::new(NodeId(NodeId::FIRST_CLIENT), bind().await);
    let result = run_node(
        Counter::default(),
        config,
        Box::new(MemStorage::new()),
        std::future::pending(),
    )
    .await;
    assert!(matches!(result, Err(NetError::ClientIdForServer(_))));
}

#[tokio::test]
async fn a_client_in_the_same_process_reaches_the_node_through_its_inbox() {
    let net = NetOptions {
        in_process: true,
        max_connections: 1,
        ..test_options()
    };
    let server = Server::start_with(1, bind().await, &[], net).await;
    // Within the TCP connection limit of 1, and more: in-process clients hold no socket.
    let mut tcp = client(server.addr).await;
    assert!(
        !tcp.is_local(),
        "a TCP client, here only to hold the one connection"
    );
    let mut a = client(server.addr).await;
    let mut b = client(server.addr).await;
    assert!(a.is_local() && b.is_local());
    assert_eq!(a.server_id(), NodeId(1));
    assert_eq!(a.call(&Msg::Add(2), WAIT).await.unwrap(), Msg::Total(2));
    assert_eq!(b.call(&Msg::Add(3), WAIT).await.unwrap(), Msg::Total(5));
    assert_eq!(tcp.call(&Msg::Add(4), WAIT).await.unwrap(), Msg::Total(9));
    // Client ids are unique across both kinds of connection.
    let mut ids = Vec::new();
    for c in [&mut a, &mut b, &mut tcp] {
        let Msg::You(id) = c.call(&Msg::WhoAmI, WAIT).await.unwrap() else {
            panic!("expected You")
        };
        assert!(id.is_client());
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
    // Timers and replies the node sends later reach an in-process client too.
    a.send(&Msg::Delay { ms: 10, tag: 1 }).await.unwrap();
    assert_eq!(a.recv(WAIT).await.unwrap(), Msg::Fired(1));

    let addr = server.addr;
    server.stop().await.unwrap();
    // Once the node stopped, its route is gone: the in-process client sees the end, and a
    // new client finds nobody listening.
    assert!(matches!(
        a.call(&Msg::Add(1), WAIT).await,
        Err(NetError::Closed)
    ));
    assert!(Client::<Msg>::connect(addr, WAIT).await.is_err());
}
