//! The node task: where a protocol core lives when it runs over TCP.
//!
//! A [`Node`] is a sequential state machine, so it lives in exactly one task and is never
//! shared: no `Mutex` around it, no locking in protocol code. Everything else talks to it by
//! message. The task loops over a `tokio::select!` of
//!
//! - the *inbox*, an mpsc channel fed by the connection tasks (a message from a peer or a
//!   client, a client connecting or going away);
//! - the earliest pending *timer*, kept in a binary heap of deadlines and awaited with
//!   `sleep_until`, so a thousand timers cost one sleep;
//! - messages the node sent *to itself*, delivered without touching the network;
//! - *shutdown*.
//!
//! The [`Driver`] is also the node's [`Context`]. Because the driver owns the routing tables
//! (which client id is which connection, which peer has which link), they need no lock
//! either: client connections announce themselves through the same inbox that carries their
//! messages, which also guarantees a client is known before its first request is handled.
//! (Had some table needed sharing, a `std::sync::Mutex` held for a lookup and never across an
//! `.await` would have been the right tool, as in mini-redis; a `tokio::sync::Mutex` is only
//! worth its cost when the lock must be held across an `.await`. Ownership by one task needs
//! neither.)
//! Sending never blocks the node: frames are encoded here and `try_send` to bounded
//! per-destination queues, dropping on overflow (the protocols tolerate loss; a node stuck
//! behind one slow receiver would not be tolerated by anyone).
//!
//! Group commit: after one input the loop also handles whatever else is already in the
//! inbox (up to [`BURST`] events), holding every outgoing frame; then it makes the storage
//! durable with one sync and only then releases the frames (see [`crate::commit`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use synod_node::{Context, Node, NodeId, Storage, StorageError, TimerToken};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use crate::codec::{encode_frame, CLIENT_MAX_FRAME};
use crate::commit::GroupCommit;
use crate::config::NetOptions;
use crate::link::{run_link, LinkTarget};

/// What connection tasks tell the node task.
pub(crate) enum Event<M> {
    Message {
        from: NodeId,
        msg: M,
    },
    /// A client finished its handshake; frames for it go into `outbox`.
    ClientUp {
        id: NodeId,
        outbox: mpsc::Sender<Bytes>,
    },
    ClientDown {
        id: NodeId,
    },
}

/// Most inbox events handled before the storage is synced and held frames are released:
/// bounds how long a busy inbox can delay every answer.
const BURST: usize = 256;

pub(crate) struct Driver<M> {
    id: NodeId,
    start: Instant,
    /// Min-heap of (deadline, sequence, token); the sequence keeps timers with equal
    /// deadlines in the order they were set.
    timers: BinaryHeap<Reverse<(Instant, u64, TimerToken)>>,
    timer_seq: u64,
    to_self: VecDeque<M>,
    rng: StdRng,
    storage: GroupCommit,
    /// Frames sent during the current burst, released once the storage is synced.
    held: Vec<(NodeId, Bytes)>,
    peers: BTreeMap<NodeId, SocketAddr>,
    links: BTreeMap<NodeId, mpsc::Sender<Bytes>>,
    link_tasks: JoinSet<()>,
    clients: HashMap<NodeId, mpsc::Sender<Bytes>>,
    opts: Arc<NetOptions>,
    cancel: CancellationToken,
}

impl<M: Serialize> Driver<M> {
    pub(crate) fn new(
        id: NodeId,
        peers: BTreeMap<NodeId, SocketAddr>,
        storage: Box<dyn Storage + Send>,
        opts: Arc<NetOptions>,
        cancel: CancellationToken,
    ) -> Self {
        Driver {
            id,
            start: Instant::now(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            to_self: VecDeque::new(),
            rng: StdRng::from_entropy(),
            storage: GroupCommit::new(storage),
            held: Vec::new(),
            peers,
            links: BTreeMap::new(),
            link_tasks: JoinSet::new(),
            clients: HashMap::new(),
            opts,
            cancel,
        }
    }

    /// Runs `node` until `shutdown` resolves. Consumes the inbox so that, once the loop ends,
    /// connection tasks trying to deliver get an error at once instead of waiting on a full
    /// channel nobody reads.
    pub(crate) async fn run<N: Node<Msg = M>>(
        &mut self,
        node: &mut N,
        mut inbox: mpsc::Receiver<Event<M>>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        node.on_start(self);
        self.release().await;
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)),
                    if next_timer.is_some() =>
                {
                    if let Some(Reverse((_, _, token))) = self.timers.pop() {
                        node.on_timer(self, token);
                    }
                }
                () = std::future::ready(()), if !self.to_self.is_empty() => {
                    if let Some(msg) = self.to_self.pop_front() {
                        let me = self.id;
                        node.on_message(self, me, msg);
                    }
                }
                event = inbox.recv() => {
                    // Every sender is gone: only possible once the server is shutting down.
                    let Some(event) = event else {
                        self.release().await;
                        return;
                    };
                    self.handle(node, event);
                    let mut handled = 1;
                    while handled < BURST {
                        match inbox.try_recv() {
                            Ok(event) => self.handle(node, event),
                            Err(_) => break,
                        }
                        handled += 1;
                    }
                    synod_metrics::global().driver_burst.observe(handled as f64);
                }
            }
            self.release().await;
        }
    }

    fn handle<N: Node<Msg = M>>(&mut self, node: &mut N, event: Event<M>) {
        match event {
            Event::Message { from, msg } => node.on_message(self, from, msg),
            Event::ClientUp { id, outbox } => {
                self.clients.insert(id, outbox);
            }
            Event::ClientDown { id } => {
                self.clients.remove(&id);
            }
        }
    }

    /// End of a burst: one sync for everything the node asked to make durable, then the
    /// frames it sent meanwhile. If the sync fails they are dropped: they may promise what
    /// the disk does not hold (and the node's next storage call fails, so it stops).
    async fn release(&mut self) {
        let held = std::mem::take(&mut self.held);
        match self.storage.commit().await {
            Ok(()) => {
                for (to, frame) in held {
                    self.route(to, frame);
                }
            }
            Err(e) => warn!(reason = %e, dropped = held.len(), "storage sync failed"),
        }
    }

    /// Closes every outbound queue, gives links `flush_timeout` to write what they hold, and
    /// makes storage durable. Client connections drain their own queues once theirs close.
    pub(crate) async fn close(mut self) -> Result<(), StorageError> {
        self.cancel.cancel();
        self.links.clear();
        self.clients.clear();
        let drain = async { while self.link_tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.opts.flush_timeout, drain)
            .await
            .is_err()
        {
            warn!("peer links did not flush in time; dropping what they hold");
        }
        self.link_tasks.shutdown().await;
        self.storage.persist_before_send()?;
        self.storage.commit().await
    }

    /// The queue to peer `to`, starting its link on first use.
    fn link(&mut self, to: NodeId) -> Option<&mpsc::Sender<Bytes>> {
        if !self.links.contains_key(&to) {
            let addr = *self.peers.get(&to)?;
            let (tx, rx) = mpsc::channel(self.opts.send_queue);
            let target = LinkTarget {
                me: self.id,
                to,
                addr,
            };
            let task = run_link(target, rx, self.opts.clone(), self.cancel.clone());
            self.link_tasks
                .spawn(task.instrument(tracing::info_span!("link", to = %to)));
            self.links.insert(to, tx);
        }
        self.links.get(&to)
    }

    /// Puts a frame on the queue to `to` (a client connection or a peer link).
    fn route(&mut self, to: NodeId, frame: Bytes) {
        let queue = if to.is_client() {
            self.clients.get(&to)
        } else {
            let link = self.link(to);
            if link.is_none() {
                warn!(%to, "dropping message to a peer with no configured address");
            }
            link
        };
        let bytes = frame.len();
        match queue.map(|q| q.try_send(frame)) {
            None => {}
            Some(Ok(())) => {
                let peer = (!to.is_client()).then_some(to);
                synod_metrics::global().record_link(true, peer, bytes);
            }
            Some(Err(TrySendError::Full(_))) => debug!(%to, "send queue full; dropping message"),
            Some(Err(TrySendError::Closed(_))) => {
                debug!(%to, "destination gone; dropping message");
                // A client whose goodbye did not reach the inbox: forgotten now.
                self.clients.remove(&to);
            }
        }
    }
}

impl<M: Serialize> Context<M> for Driver<M> {
    fn id(&self) -> NodeId {
        self.id
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn send(&mut self, to: NodeId, msg: M) {
        if to == self.id {
            self.to_self.push_back(msg);
            return;
        }
        // What a client may receive is bounded by what the service stored (a value grown by
        // appends past this server's inbound limit, up to the ceiling), not by what this
        // server accepts from others.
        let limit = if to.is_client() {
            CLIENT_MAX_FRAME
        } else {
            self.opts.max_frame
        };
        match encode_frame(&msg, limit) {
            Ok(frame) => self.held.push((to, frame)),
            Err(e) => warn!(%to, reason = %e, "dropping outbound message"),
        }
    }

    fn set_timer(&mut self, after: Duration, token: TimerToken) {
        // A huge `after` ("never") must not overflow the clock.
        let now = Instant::now();
        let at = now
            .checked_add(after)
            .unwrap_or(now + Duration::from_secs(86400 * 365));
        self.timer_seq += 1;
        self.timers.push(Reverse((at, self.timer_seq, token)));
    }

    fn add_peer(&mut self, id: NodeId, addr: &str) {
        // Cores that learn a whole membership list (a shard configuration) include
        // themselves; that is routine, not worth a warning.
        if id == self.id {
            return;
        }
        if id.is_client() {
            warn!(%id, "ignoring an address for a client id");
            return;
        }
        let addr: SocketAddr = match addr.parse() {
            Ok(addr) => addr,
            Err(e) => {
                warn!(%id, addr, reason = %e, "ignoring an unparsable peer address");
                return;
            }
        };
        if self.peers.insert(id, addr) != Some(addr) {
            // Dropping the queue ends the old link task; the next send starts one to `addr`.
            self.links.remove(&id);
        }
    }

    fn rng(&mut self) -> &mut dyn rand::RngCore {
        &mut self.rng
    }

    fn storage(&mut self) -> &mut dyn Storage {
        &mut self.storage
    }
}
