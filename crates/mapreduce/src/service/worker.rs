//! A worker process: the [`WorkerNode`] core driven over TCP.
//!
//! The worker is a synod-net *client* of the coordinator (the coordinator knows it by the id
//! of its connection). Its map output is served by a small synod-net server, [`FetchServer`],
//! sharing the executor's output index; reducers connect to it as clients, at the address
//! the worker advertised when it registered. The core itself runs on a loop here that routes
//! its messages: to the coordinator's connection, or to a connection per peer worker, whose
//! address the core announces with `Context::add_peer` when a reduce assignment names it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use synod_net::tls::PeerTls;
use synod_net::{Client, NetError, NodeConfig};
use synod_node::{Context, Node, NodeId, TimerToken};
use tokio::sync::mpsc;

use crate::apps::Registry;
use crate::error::{MrError, Result};
use crate::executor::{lookup, read_run, LocalExecutor, OutputIndex};
use crate::msg::MrMsg;
use crate::worker::{WorkerConfig, WorkerEnd, WorkerNode, WAKE};

use super::COORDINATOR_ID;

/// Serves `Fetch` requests for the map outputs in an index.
pub struct FetchServer {
    index: OutputIndex,
    chunk: usize,
}

impl Node for FetchServer {
    type Msg = MrMsg;
    fn on_start(&mut self, _: &mut dyn Context<MrMsg>) {}
    fn on_timer(&mut self, _: &mut dyn Context<MrMsg>, _: TimerToken) {}
    fn on_message(&mut self, ctx: &mut dyn Context<MrMsg>, from: NodeId, msg: MrMsg) {
        let MrMsg::Fetch {
            map,
            map_attempt,
            partition,
            offset,
        } = msg
        else {
            return;
        };
        let found = lookup(&self.index, map, map_attempt, partition).and_then(|run| {
            let data = read_run(&run, offset, self.chunk).ok()?;
            Some((run.len(), data))
        });
        let reply = MrMsg::fetch_reply(map, map_attempt, partition, offset, found);
        ctx.send(from, reply);
    }
}

/// Where the worker listens for fetches and keeps its files.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub coordinator: String,
    /// Fetch server address; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Local directory for map output and scratch files.
    pub work_dir: PathBuf,
    pub cfg: WorkerConfig,
    /// How long to keep trying to reach the coordinator at start.
    pub connect_timeout: Duration,
    /// The worker's certificate from the job's CA: its fetch server admits only other
    /// workers with one (see [`super::serve_job_node`]). Its clients present it when TLS for
    /// this process's clients is installed with it (`PeerTls::as_client`).
    pub tls: Option<PeerTls>,
}

enum Event {
    FromCoordinator(MrMsg),
    CoordinatorGone(String),
    FromPeer(NodeId, MrMsg),
    Timer(TimerToken),
}

/// Peer workers by the coordinator's id for them: fetch address and open link, if any.
type Peers = BTreeMap<NodeId, (String, Option<mpsc::UnboundedSender<MrMsg>>)>;

struct DriverCtx<'a> {
    start: tokio::time::Instant,
    peers: &'a mut Peers,
    out: &'a mut Vec<(NodeId, MrMsg)>,
    timers: &'a mut Vec<(Duration, TimerToken)>,
    rng: &'a mut rand::rngs::ThreadRng,
    storage: &'a mut synod_storage::MemStorage,
}

impl Context<MrMsg> for DriverCtx<'_> {
    fn id(&self) -> NodeId {
        // The coordinator knows us by our connection's id, which we never learn; local reads
        // are recognised by address instead.
        NodeId(u64::MAX)
    }
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn send(&mut self, to: NodeId, msg: MrMsg) {
        self.out.push((to, msg));
    }
    fn set_timer(&mut self, after: Duration, token: TimerToken) {
        self.timers.push((after, token));
    }
    fn add_peer(&mut self, id: NodeId, addr: &str) {
        let entry = self
            .peers
            .entry(id)
            .or_insert_with(|| (addr.to_string(), None));
        if entry.0 != addr {
            *entry = (addr.to_string(), None);
        }
    }
    fn rng(&mut self) -> &mut dyn rand::RngCore {
        self.rng
    }
    fn storage(&mut self) -> &mut dyn synod_node::Storage {
        self.storage
    }
}

async fn connect_coordinator(addr: &str, limit: Duration) -> Result<Client<MrMsg>> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match Client::connect(addr, Duration::from_secs(2)).await {
            Ok(c) => return Ok(c),
            // Refused for who we are: trying again changes nothing.
            Err(e @ (NetError::TlsHandshake(_) | NetError::AuthRefused(_))) => {
                return Err(MrError::Net(format!(
                    "the coordinator at {addr} refused this worker: {e}"
                )));
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(MrError::Net(format!(
                    "cannot reach the coordinator at {addr}: {e}"
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Shuttles messages between one connection and the event loop.
fn spawn_link(
    mut client: Client<MrMsg>,
    events: mpsc::UnboundedSender<Event>,
    tag: Option<NodeId>,
) -> mpsc::UnboundedSender<MrMsg> {
    let (tx, mut rx) = mpsc::unbounded_channel::<MrMsg>();
    tokio::spawn(async move {
        let why = loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(m) => if let Err(e) = client.send(&m).await { break e.to_string() },
                    None => return,
                },
                got = client.recv(Duration::from_secs(3600)) => match got {
                    Ok(m) => {
                        let ev = match tag { Some(p) => Event::FromPeer(p, m), None => Event::FromCoordinator(m) };
                        if events.send(ev).is_err() { return }
                    }
                    Err(synod_net::NetError::Timeout { .. }) => {}
                    Err(e) => break e.to_string(),
                },
            }
        };
        if tag.is_none() {
            let _ = events.send(Event::CoordinatorGone(why));
        }
    });
    tx
}

/// The address other workers can reach `listen` at: the local address of the route to the
/// coordinator when `listen` is a wildcard.
fn advertised(listen: SocketAddr, coordinator: &str) -> String {
    if !listen.ip().is_unspecified() {
        return listen.to_string();
    }
    let ip = std::net::ToSocketAddrs::to_socket_addrs(coordinator)
        .ok()
        .and_then(|mut a| a.next())
        .and_then(|c| {
            let s = std::net::UdpSocket::bind((listen.ip(), 0)).ok()?;
            s.connect(c).ok()?;
            Some(s.local_addr().ok()?.ip())
        })
        .unwrap_or(listen.ip());
    SocketAddr::new(ip, listen.port()).to_string()
}

/// Runs a worker until the job is over. `Ok` carries how it ended; a rejection or a lost
/// coordinator is an error.
pub async fn run(opts: WorkerOptions, registry: Registry) -> Result<Option<String>> {
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(MrError::io("cannot create work directory", &opts.work_dir))?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| MrError::Net(format!("cannot listen on {}: {e}", opts.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| MrError::Net(e.to_string()))?;
    let addr = advertised(local, &opts.coordinator);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let waker = ev_tx.clone();
    let wake = Box::new(move || {
        let _ = waker.send(Event::Timer(WAKE));
    });
    let exec = LocalExecutor::threaded(opts.work_dir.clone(), registry, wake);
    let fetch = FetchServer {
        index: exec.index(),
        chunk: opts.cfg.chunk,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::serve_job_node(
        fetch,
        NodeConfig::new(NodeId(1), listener),
        async move {
            let _ = stop_rx.await;
        },
        opts.tls.clone(),
    ));

    let client = connect_coordinator(&opts.coordinator, opts.connect_timeout).await?;
    let to_coord = spawn_link(client, ev_tx.clone(), None);
    let mut node = WorkerNode::new(COORDINATOR_ID, addr, opts.cfg.clone(), exec);
    let mut peers = Peers::new();
    let (mut out, mut timers) = (Vec::new(), Vec::new());
    let mut rng = rand::thread_rng();
    let mut storage = synod_storage::MemStorage::default();
    let start = tokio::time::Instant::now();
    let mut event = None;
    let result = loop {
        {
            let mut ctx = DriverCtx {
                start,
                peers: &mut peers,
                out: &mut out,
                timers: &mut timers,
                rng: &mut rng,
                storage: &mut storage,
            };
            match event.take() {
                None => node.on_start(&mut ctx),
                Some(Event::FromCoordinator(m)) => node.on_message(&mut ctx, COORDINATOR_ID, m),
                Some(Event::FromPeer(p, m)) => node.on_message(&mut ctx, p, m),
                Some(Event::Timer(t)) => node.on_timer(&mut ctx, t),
                Some(Event::CoordinatorGone(why)) => {
                    break Err(MrError::Net(format!(
                        "lost the connection to the coordinator before the job ended: {why}"
                    )));
                }
            }
        }
        for (after, token) in timers.drain(..) {
            let tx = ev_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(Event::Timer(token));
            });
        }
        for (to, msg) in out.drain(..) {
            if to == COORDINATOR_ID {
                let _ = to_coord.send(msg);
                continue;
            }
            let Some((paddr, link)) = peers.get_mut(&to) else {
                continue;
            };
            if link.as_ref().is_none_or(|l| l.is_closed()) {
                // Connect in the background; a failed connect just loses this request,
                // which the core retries and eventually reports.
                let (tx, mut rx) = mpsc::unbounded_channel::<MrMsg>();
                let (paddr, events) = (paddr.clone(), ev_tx.clone());
                tokio::spawn(async move {
                    let Ok(client) = Client::connect(paddr.as_str(), Duration::from_secs(2)).await
                    else {
                        return;
                    };
                    let link = spawn_link(client, events, Some(to));
                    while let Some(m) = rx.recv().await {
                        if link.send(m).is_err() {
                            return;
                        }
                    }
                });
                *link = Some(tx);
            }
            if let Some(l) = link {
                let _ = l.send(msg);
            }
        }
        match node.end() {
            Some(WorkerEnd::JobOver { error }) => break Ok(error.clone()),
            Some(WorkerEnd::Rejected(reason)) => {
                break Err(MrError::Net(format!(
                    "the coordinator rejected this worker: {reason}"
                )))
            }
            None => {}
        }
        event = ev_rx.recv().await;
        if event.is_none() {
            break Err(MrError::Net("worker event loop ended".into()));
        }
    };
    let _ = stop_tx.send(());
    let _ = server.await;
    result
}
