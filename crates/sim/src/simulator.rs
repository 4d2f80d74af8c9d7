//! The event loop: nodes, a priority queue of events in virtual time, and fault injection.

use std::any::Any;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt::Debug;
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use synod_node::{Context, Node, NodeId, Storage, TimerToken};
use synod_storage::MemStorage;

use crate::faults::{NetConfig, NodeFaults};
use crate::history::SimClock;
use crate::observe::{Observed, Observer};
use crate::stats::{DropReason, NodeStats, SimStats};

type BoxedNode<M> = Box<dyn Node<Msg = M>>;
type Factory<M> = Box<dyn FnMut() -> BoxedNode<M>>;
type Invariant<M> = Box<dyn Fn(&Simulator<M>) -> Result<(), String>>;

/// A simulated cluster of nodes exchanging messages of type `M`.
///
/// All nodes of one simulation share one message type (usually an enum covering every service
/// in the test). Messages must be serializable so the simulator can count bytes and fold them
/// into the run's [`digest`](Simulator::digest).
pub struct Simulator<M> {
    seed: u64,
    rng: ChaCha8Rng,
    /// Global virtual time in nanoseconds, shared with [`SimClock`] handles.
    clock: SimClock,
    queue: BinaryHeap<Event<M>>,
    /// Tie-breaker so events at the same instant run in the order they were scheduled.
    next_seq: u64,
    nodes: BTreeMap<NodeId, Slot<M>>,
    net: NetConfig,
    /// Directed links that are cut: (from, to).
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Extra loss probability on individual directed links.
    link_drop: BTreeMap<(NodeId, NodeId), f64>,
    invariants: Vec<(String, Invariant<M>)>,
    stats: SimStats,
    digest: u64,
    /// Reused serialization buffer, so counting bytes does not allocate per message.
    scratch: Vec<u8>,
    trace: bool,
    /// The recording hook, if a tool asked for every event ([`Simulator::set_observer`]).
    observer: Option<Observer<M>>,
}

/// Everything the simulator keeps about one node, across its crashes.
struct Slot<M> {
    factory: Factory<M>,
    /// `None` while crashed.
    node: Option<BoxedNode<M>>,
    /// Bumped at every crash, so timers set by an earlier life never fire in a later one.
    incarnation: u64,
    storage: MemStorage,
    faults: NodeFaults,
    clock: NodeClock,
    stats: NodeStats,
}

/// A node's local clock: runs at `rate` times global time (clock drift), continuous across
/// rate changes.
#[derive(Debug, Clone, Copy)]
struct NodeClock {
    rate: f64,
    local_anchor: u64,
    global_anchor: u64,
}

impl NodeClock {
    fn local(&self, global: u64) -> u64 {
        self.local_anchor + ((global - self.global_anchor) as f64 * self.rate) as u64
    }

    /// Global nanoseconds until `local_delay` has passed on this clock.
    fn global_delay(&self, local_delay: u64) -> u64 {
        (local_delay as f64 / self.rate).ceil() as u64
    }
}

struct Event<M> {
    at: u64,
    seq: u64,
    kind: EventKind<M>,
}

enum EventKind<M> {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: M,
    },
    Timer {
        node: NodeId,
        incarnation: u64,
        token: TimerToken,
    },
}

// BinaryHeap is a max-heap: order events so the earliest (then first scheduled) is greatest.
impl<M> Ord for Event<M> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
impl<M> PartialOrd for Event<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> PartialEq for Event<M> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<M> Eq for Event<M> {}

/// The [`Context`] a node sees during one call. Sends and timers are collected and scheduled by
/// the simulator after the call returns, so fault decisions happen in one place.
struct SimContext<'a, M> {
    id: NodeId,
    local_now: u64,
    rng: &'a mut ChaCha8Rng,
    storage: &'a mut MemStorage,
    outbox: Vec<(NodeId, M)>,
    timers: Vec<(Duration, TimerToken)>,
}

impl<M> Context<M> for SimContext<'_, M> {
    fn id(&self) -> NodeId {
        self.id
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.local_now)
    }
    fn send(&mut self, to: NodeId, msg: M) {
        self.outbox.push((to, msg));
    }
    fn set_timer(&mut self, after: Duration, token: TimerToken) {
        self.timers.push((after, token));
    }
    fn add_peer(&mut self, _id: NodeId, _addr: &str) {
        // Simulated nodes reach each other by id alone.
    }
    fn rng(&mut self) -> &mut dyn RngCore {
        self.rng
    }
    fn storage(&mut self) -> &mut dyn Storage {
        self.storage
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// FNV-1a, folded over every event: a stable fingerprint of the run that does not depend on
/// the standard library's hasher keys or version.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl<M> Simulator<M>
where
    M: Clone + Debug + Serialize + 'static,
{
    /// A simulation with no nodes, a reliable network and the given seed. Set `SYNOD_TRACE=1`
    /// to print every event to stderr.
    pub fn new(seed: u64) -> Self {
        Simulator {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            clock: SimClock::default(),
            queue: BinaryHeap::new(),
            next_seq: 0,
            nodes: BTreeMap::new(),
            net: NetConfig::reliable(),
            blocked: BTreeSet::new(),
            link_drop: BTreeMap::new(),
            invariants: Vec::new(),
            stats: SimStats::default(),
            digest: fnv(0xcbf2_9ce4_8422_2325, &seed.to_le_bytes()),
            scratch: Vec::new(),
            trace: std::env::var_os("SYNOD_TRACE").is_some_and(|v| v != "0"),
            observer: None,
        }
    }

    /// Calls `observer` with every event from now on (see [`Observed`]): sends, deliveries,
    /// drops, timers, crashes, starts, link and fault changes. Without one, recording costs a
    /// `None` check per event.
    pub fn set_observer(&mut self, observer: impl FnMut(Observed<'_, M>) + 'static) {
        self.observer = Some(Box::new(observer));
    }

    #[inline]
    fn observe(&mut self, event: Observed<'_, M>) {
        if let Some(observer) = &mut self.observer {
            observer(event);
        }
    }

    /// Tells the observer, if any, the cut links after a change.
    fn observe_links(&mut self) {
        if let Some(observer) = &mut self.observer {
            observer(Observed::Links {
                blocked: &self.blocked,
            });
        }
    }

    /// Tells the observer, if any, node `id`'s fault settings after a change.
    fn observe_faults(&mut self, id: NodeId) {
        if let (Some(observer), Some(slot)) = (&mut self.observer, self.nodes.get(&id)) {
            observer(Observed::Faults {
                node: id,
                faults: &slot.faults,
            });
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Global virtual time since the simulation began.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// A handle to global virtual time, for clients that record histories.
    pub fn clock(&self) -> SimClock {
        self.clock.clone()
    }

    /// The simulator's RNG, for tests that make random choices (which node to crash, which
    /// partition next) that must be part of the reproducible run.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Adds a node and starts it. `factory` builds a fresh instance at start and at every
    /// restart; what survives a crash is only what the node synced to its storage.
    ///
    /// # Panics
    /// If `id` is already taken.
    pub fn add_node<N, F>(&mut self, id: NodeId, mut factory: F)
    where
        N: Node<Msg = M>,
        F: FnMut() -> N + 'static,
    {
        let slot = Slot {
            factory: Box::new(move || Box::new(factory()) as BoxedNode<M>),
            node: None,
            incarnation: 0,
            storage: MemStorage::default(),
            faults: NodeFaults::default(),
            clock: NodeClock {
                rate: 1.0,
                local_anchor: self.clock.nanos(),
                global_anchor: self.clock.nanos(),
            },
            stats: NodeStats::default(),
        };
        assert!(
            self.nodes.insert(id, slot).is_none(),
            "node {id} added twice"
        );
        self.start(id);
    }

    /// Ids of all nodes, crashed or not, in order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The node `id` as its concrete type, or `None` if it is crashed, unknown or of another
    /// type.
    pub fn node<N: Node<Msg = M>>(&self, id: NodeId) -> Option<&N> {
        let node: &dyn Any = self.nodes.get(&id)?.node.as_deref()?;
        node.downcast_ref()
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|s| s.node.is_some())
    }

    /// Calls `f` on node `id` with a live context, as if the node's own code ran now; whatever
    /// it sends or schedules goes through the simulated network. This is how a test invokes a
    /// core's API directly (`start(seq, value)` on a Paxos peer, say).
    ///
    /// # Panics
    /// If the node is crashed, unknown or not an `N`.
    pub fn call<N: Node<Msg = M>, R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut N, &mut dyn Context<M>) -> R,
    ) -> R {
        self.with_node(id, |node, ctx| {
            let node: &mut dyn Any = node;
            let node = node
                .downcast_mut::<N>()
                .unwrap_or_else(|| panic!("node {id} is not a {}", std::any::type_name::<N>()));
            f(node, ctx)
        })
        .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    // ---- faults -------------------------------------------------------------------------

    /// Replaces the network-wide fault settings.
    pub fn set_network(&mut self, net: NetConfig) {
        self.net = net;
    }

    pub fn network(&self) -> &NetConfig {
        &self.net
    }

    /// Replaces node `id`'s fault settings.
    pub fn set_node_faults(&mut self, id: NodeId, faults: NodeFaults) {
        self.slot(id).faults = faults;
        self.observe_faults(id);
    }

    pub fn node_faults(&self, id: NodeId) -> &NodeFaults {
        &self.nodes[&id].faults
    }

    /// The course's unreliable mode for one server (see [`NodeFaults::unreliable`]), or back to
    /// reliable.
    pub fn set_unreliable(&mut self, id: NodeId, unreliable: bool) {
        let faults = &mut self.slot(id).faults;
        if unreliable {
            let deaf = faults.deaf;
            *faults = NodeFaults {
                deaf,
                ..NodeFaults::unreliable()
            };
        } else {
            faults.drop_incoming = 0.0;
            faults.drop_outgoing = 0.0;
        }
        self.observe_faults(id);
    }

    /// Makes node `id` deaf (it still sends) or hearing again.
    pub fn set_deaf(&mut self, id: NodeId, deaf: bool) {
        self.slot(id).faults.deaf = deaf;
        self.observe_faults(id);
    }

    /// Extra loss probability on the directed link `from → to`.
    pub fn set_link_drop(&mut self, from: NodeId, to: NodeId, p: f64) {
        self.link_drop.insert((from, to), p);
    }

    /// Cuts the directed link `from → to` (a one-way partition).
    pub fn block_link(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
        self.observe_links();
    }

    /// Restores the directed link `from → to`.
    pub fn unblock_link(&mut self, from: NodeId, to: NodeId) {
        self.blocked.remove(&(from, to));
        self.observe_links();
    }

    /// Splits the listed nodes into groups that cannot talk to each other, in either
    /// direction; replaces any earlier partition or block. Links of nodes that appear in no
    /// group are left alone (so clients can stay connected to every server, as in the course).
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        self.blocked.clear();
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                for &x in *a {
                    for &y in *b {
                        self.blocked.insert((x, y));
                        self.blocked.insert((y, x));
                    }
                }
            }
        }
        self.observe_links();
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|&n| n != id).collect();
        for other in others {
            self.blocked.insert((id, other));
            self.blocked.insert((other, id));
        }
        self.observe_links();
    }

    /// Removes every partition, block and per-link loss.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.link_drop.clear();
        self.observe_links();
    }

    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Makes node `id`'s clock run at `rate` times real (virtual) time: 2.0 fires its timers
    /// twice as often, 0.5 half as often.
    ///
    /// # Panics
    /// If `rate` is not a positive finite number.
    pub fn set_clock_rate(&mut self, id: NodeId, rate: f64) {
        assert!(rate.is_finite() && rate > 0.0, "clock rate must be > 0");
        let global = self.clock.nanos();
        let clock = &mut self.slot(id).clock;
        *clock = NodeClock {
            rate,
            local_anchor: clock.local(global),
            global_anchor: global,
        };
    }

    /// Crashes node `id`: its in-memory state is gone, unsynced writes are lost, its pending
    /// timers will never fire, and messages to it are dropped until it restarts.
    pub fn crash(&mut self, id: NodeId) {
        let slot = self.slot(id);
        if slot.node.take().is_some() {
            slot.storage.crash();
            slot.incarnation += 1;
        }
        self.record(b"crash", id, id, &[]);
        self.observe(Observed::Crash { node: id });
    }

    /// Restarts a crashed node from its synced storage (no-op if it is running).
    pub fn restart(&mut self, id: NodeId) {
        if !self.is_up(id) {
            self.start(id);
        }
    }

    /// Crashes node `id` if needed and restarts it with an empty disk.
    pub fn restart_wiped(&mut self, id: NodeId) {
        self.crash(id);
        self.slot(id).storage.wipe();
        self.start(id);
    }

    /// The durable storage of node `id`, for tests that check what survived.
    pub fn storage(&self, id: NodeId) -> &MemStorage {
        &self.nodes[&id].storage
    }

    /// Heals every fault: reliable network, no partitions, no node faults, normal clocks, and
    /// every crashed node restarted. The standard first half of a randomized run's ending; the
    /// second half is [`require`](Self::require) that the system now makes progress.
    pub fn heal_all(&mut self) {
        self.net = NetConfig::reliable();
        self.heal();
        for id in self.node_ids() {
            self.slot(id).faults = NodeFaults::default();
            self.observe_faults(id);
            self.set_clock_rate(id, 1.0);
            self.restart(id);
        }
    }

    // ---- invariants and counters --------------------------------------------------------

    /// Registers a check run after every step. A violation panics with the invariant's name,
    /// the message, the virtual time and the seed.
    pub fn add_invariant(
        &mut self,
        name: &str,
        check: impl Fn(&Simulator<M>) -> Result<(), String> + 'static,
    ) {
        self.invariants.push((name.to_owned(), Box::new(check)));
    }

    /// Counters of node `id`.
    pub fn stats(&self, id: NodeId) -> &NodeStats {
        &self.nodes[&id].stats
    }

    /// Whole-run counters.
    pub fn sim_stats(&self) -> &SimStats {
        &self.stats
    }

    /// A fingerprint of every event so far. Two runs with the same seed and the same test code
    /// have equal digests.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    // ---- running ------------------------------------------------------------------------

    /// Processes the next event, if any. Returns `false` when nothing is left to do.
    pub fn step(&mut self) -> bool {
        let Some(event) = self.queue.pop() else {
            return false;
        };
        self.clock.0.set(event.at);
        self.stats.steps += 1;
        match event.kind {
            // A copy's id for an observer is the sequence number it was scheduled with.
            EventKind::Deliver { from, to, msg } => self.deliver(event.seq, from, to, msg),
            EventKind::Timer {
                node,
                incarnation,
                token,
            } => self.fire_timer(node, incarnation, token),
        }
        self.check_invariants();
        true
    }

    /// Runs until `duration` of virtual time has passed (or nothing is left to happen).
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.clock.nanos().saturating_add(nanos(duration));
        while self.queue.peek().is_some_and(|e| e.at <= end) {
            self.step();
        }
        self.clock.0.set(end);
    }

    /// Runs until `done` holds (checked before each step) or `limit` of virtual time passes.
    /// Returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.clock.nanos().saturating_add(nanos(limit));
        loop {
            if done(self) {
                return true;
            }
            if self.queue.peek().is_none_or(|e| e.at > end) {
                self.clock.0.set(end);
                return done(self);
            }
            self.step();
        }
    }

    /// Like [`run_until`](Self::run_until), but a timeout is a test failure that names `what`
    /// and the seed. Use it for the liveness half of a run: after [`heal_all`](Self::heal_all),
    /// the system must make progress.
    pub fn require(&mut self, limit: Duration, what: &str, done: impl FnMut(&Self) -> bool) {
        if !self.run_until(limit, done) {
            panic!(
                "no progress: {what} did not happen within {limit:?} (virtual time now {:?}, seed {})",
                self.now(),
                self.seed
            );
        }
    }

    // ---- internals ----------------------------------------------------------------------

    fn slot(&mut self, id: NodeId) -> &mut Slot<M> {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn start(&mut self, id: NodeId) {
        let slot = self.slot(id);
        slot.node = Some((slot.factory)());
        slot.stats.starts += 1;
        let restart = slot.stats.starts > 1;
        self.record(b"start", id, id, &[]);
        self.observe(Observed::Start { node: id, restart });
        self.with_node(id, |node, ctx| node.on_start(ctx));
    }

    /// Runs `f` on a live node with a fresh context, then schedules what it sent and set.
    /// Returns `None` if the node is not running.
    fn with_node<R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut dyn Node<Msg = M>, &mut dyn Context<M>) -> R,
    ) -> Option<R> {
        let global = self.clock.nanos();
        let slot = self.nodes.get_mut(&id)?;
        let mut node = slot.node.take()?;
        let mut ctx = SimContext {
            id,
            local_now: slot.clock.local(global),
            rng: &mut self.rng,
            storage: &mut slot.storage,
            outbox: Vec::new(),
            timers: Vec::new(),
        };
        let result = f(node.as_mut(), &mut ctx);
        let SimContext { outbox, timers, .. } = ctx;
        slot.node = Some(node);
        let incarnation = slot.incarnation;
        let clock = slot.clock;
        for (after, token) in timers {
            let at = global.saturating_add(clock.global_delay(nanos(after)));
            self.push(
                at,
                EventKind::Timer {
                    node: id,
                    incarnation,
                    token,
                },
            );
        }
        for (to, msg) in outbox {
            self.send(id, to, msg);
        }
        Some(result)
    }

    fn push(&mut self, at: u64, kind: EventKind<M>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Event { at, seq, kind });
    }

    /// Serializes `msg` into the scratch buffer and returns its length.
    fn encode(&mut self, msg: &M) -> usize {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        // A message type that cannot serialize is a bug in the test's own types, not input.
        self.scratch = postcard::to_extend(msg, buf).expect("simulated messages must serialize");
        self.scratch.len()
    }

    /// Folds an event into the run's digest.
    fn record(&mut self, what: &[u8], from: NodeId, to: NodeId, body: &[u8]) {
        let mut h = fnv(self.digest, what);
        h = fnv(h, &self.clock.nanos().to_le_bytes());
        h = fnv(h, &from.0.to_le_bytes());
        h = fnv(h, &to.0.to_le_bytes());
        self.digest = fnv(h, body);
    }

    fn drop_msg(&mut self, reason: DropReason, msg_id: u64, from: NodeId, to: NodeId) {
        self.observe(Observed::Drop {
            msg_id,
            from,
            to,
            reason,
        });
        *self.stats.dropped.entry(reason).or_default() += 1;
        if let Some(slot) = self.nodes.get_mut(&to) {
            *slot.stats.dropped_in.entry(reason).or_default() += 1;
        }
        if self.trace {
            eprintln!("[{:?}] drop to {to}: {reason:?}", self.now());
        }
    }

    /// A node handed `msg` to the network: decide its fate now (loss at the sender, on the
    /// link, duplication, delay); partitions and receiver faults are checked again on arrival.
    fn send(&mut self, from: NodeId, to: NodeId, msg: M) {
        let bytes = self.encode(&msg) as u64;
        if let Some(slot) = self.nodes.get_mut(&from) {
            slot.stats.sent += 1;
            slot.stats.bytes_sent += bytes;
        }
        let (drop_out, dup_in) = (
            self.nodes
                .get(&from)
                .map_or(0.0, |s| s.faults.drop_outgoing),
            self.nodes.get(&to).map_or(0.0, |s| s.faults.duplicate),
        );
        let link_drop = self.link_drop.get(&(from, to)).copied().unwrap_or(0.0);
        // A copy lost at sending takes the id the next event would have, and uses it up (ids
        // stay unique; skipping a sequence number changes no order, as they only break ties).
        let lost_id = self.next_seq;
        if self.blocked.contains(&(from, to)) {
            return self.drop_sent(DropReason::Partition, lost_id, from, to, &msg);
        }
        if self.chance(drop_out) {
            return self.drop_sent(DropReason::Outgoing, lost_id, from, to, &msg);
        }
        if self.chance(self.net.drop) || self.chance(link_drop) {
            return self.drop_sent(DropReason::Network, lost_id, from, to, &msg);
        }
        if self.chance(self.net.duplicate) || self.chance(dup_in) {
            self.stats.duplicated += 1;
            let at = self.clock.nanos().saturating_add(self.delay());
            let copy = msg.clone();
            self.push_delivery(at, from, to, copy);
        }
        let at = self.clock.nanos().saturating_add(self.delay());
        self.push_delivery(at, from, to, msg);
    }

    /// Schedules the delivery of one copy of a message at `at`; the sequence number it gets
    /// is the copy's id for an observer.
    fn push_delivery(&mut self, at: u64, from: NodeId, to: NodeId, msg: M) {
        self.observe(Observed::Send {
            msg_id: self.next_seq,
            from,
            to,
            msg: &msg,
        });
        self.push(at, EventKind::Deliver { from, to, msg });
    }

    /// A message lost as it was sent: the observer sees it sent and dropped.
    fn drop_sent(&mut self, reason: DropReason, msg_id: u64, from: NodeId, to: NodeId, msg: &M) {
        self.next_seq += 1;
        self.observe(Observed::Send {
            msg_id,
            from,
            to,
            msg,
        });
        self.drop_msg(reason, msg_id, from, to);
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.min(1.0))
    }

    fn delay(&mut self) -> u64 {
        let net = &self.net;
        let (lo, hi) =
            if net.long_delay_prob > 0.0 && self.rng.gen_bool(net.long_delay_prob.min(1.0)) {
                net.long_delay
            } else {
                (net.min_delay, net.max_delay)
            };
        let (lo, hi) = (nanos(lo), nanos(hi).max(nanos(lo)));
        self.rng.gen_range(lo..=hi)
    }

    fn deliver(&mut self, msg_id: u64, from: NodeId, to: NodeId, msg: M) {
        let Some(slot) = self.nodes.get(&to) else {
            return self.drop_msg(DropReason::UnknownNode, msg_id, from, to);
        };
        let (up, deaf, drop_in) = (
            slot.node.is_some(),
            slot.faults.deaf,
            slot.faults.drop_incoming,
        );
        if !up {
            return self.drop_msg(DropReason::Crashed, msg_id, from, to);
        }
        if self.blocked.contains(&(from, to)) {
            return self.drop_msg(DropReason::Partition, msg_id, from, to);
        }
        if deaf {
            return self.drop_msg(DropReason::Deaf, msg_id, from, to);
        }
        if self.chance(drop_in) {
            return self.drop_msg(DropReason::Incoming, msg_id, from, to);
        }
        let bytes = self.encode(&msg);
        let body = std::mem::take(&mut self.scratch);
        self.record(b"deliver", from, to, &body);
        self.scratch = body;
        if self.trace {
            eprintln!("[{:?}] {from} -> {to}: {msg:?}", self.now());
        }
        self.observe(Observed::Deliver {
            msg_id,
            from,
            to,
            msg: &msg,
        });
        let slot = self.slot(to);
        slot.stats.received += 1;
        slot.stats.bytes_received += bytes as u64;
        self.stats.delivered += 1;
        self.with_node(to, |node, ctx| node.on_message(ctx, from, msg));
    }

    fn fire_timer(&mut self, id: NodeId, incarnation: u64, token: TimerToken) {
        let Some(slot) = self.nodes.get_mut(&id) else {
            return;
        };
        if slot.node.is_none() || slot.incarnation != incarnation {
            return;
        }
        slot.stats.timers += 1;
        self.record(b"timer", id, id, &token.to_le_bytes());
        self.observe(Observed::Timer { node: id, token });
        if self.trace {
            eprintln!("[{:?}] timer {token} on {id}", self.now());
        }
        self.with_node(id, |node, ctx| node.on_timer(ctx, token));
    }

    fn check_invariants(&self) {
        for (name, check) in &self.invariants {
            if let Err(why) = check(self) {
                panic!(
                    "invariant {name:?} violated at virtual time {:?}: {why} (seed {})",
                    self.now(),
                    self.seed
                );
            }
        }
    }
}

impl<M> Drop for Simulator<M> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "simulation failed with seed {seed}; replay with SYNOD_SEED={seed} (add SYNOD_TRACE=1 for every event)",
                seed = self.seed
            );
        }
    }
}
