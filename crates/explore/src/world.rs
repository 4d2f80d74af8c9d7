//! The world the model checker explores: real protocol cores with their storage and timers,
//! the messages in flight between them, and what is left of the fault budget.
//!
//! A [`World`] is a value: the checker clones it to branch and hashes it to recognise a
//! state it has seen. Every node is an [`Actor`], which is any [`Node`] that is also `Clone +
//! Hash`; the world runs it through the same [`Context`] calls as the simulator and the TCP
//! driver, so what is explored is the code that ships.

use std::any::Any;
use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use rand::RngCore;
use synod_node::{Context, Node, NodeId, Storage, TimerToken};
use synod_storage::MemStorage;

/// A node the world can run, clone and fingerprint.
pub trait Actor<M>: Debug {
    fn node(&mut self) -> &mut dyn Node<Msg = M>;
    fn clone_actor(&self) -> Box<dyn Actor<M>>;
    fn fingerprint(&self, hasher: &mut dyn Hasher);
    fn as_any(&self) -> &dyn Any;
}

impl<N, M> Actor<M> for N
where
    N: Node<Msg = M> + Clone + Hash + Debug,
{
    fn node(&mut self) -> &mut dyn Node<Msg = M> {
        self
    }
    fn clone_actor(&self) -> Box<dyn Actor<M>> {
        Box::new(self.clone())
    }
    fn fingerprint(&self, mut hasher: &mut dyn Hasher) {
        self.hash(&mut hasher);
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<M> Clone for Box<dyn Actor<M>> {
    fn clone(&self) -> Self {
        self.clone_actor()
    }
}

/// Which life of a node is starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// The first start, on empty storage: a new node.
    First,
    /// A restart on the storage the node had synced.
    Restart,
    /// A restart on storage that was wiped: the disk was lost (and the operator says so).
    Wiped,
}

/// A message in flight. `epoch` is how many disks had been wiped when it was sent, so a
/// model can tell the messages of a lost life from the ones that came after.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Envelope<M> {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: M,
    pub epoch: u32,
    /// A hash of everything above: equal messages have equal keys, and the checker names a
    /// message by its key, so that two copies of one message are one choice, not two.
    pub key: u64,
}

/// The faults still allowed on a path, and how many timer firings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Budget {
    pub drops: u32,
    pub duplicates: u32,
    pub crashes: u32,
    pub wipes: u32,
    pub timers: u32,
}

/// One node's place in the world.
#[derive(Debug, Clone)]
pub struct Slot<M> {
    pub id: NodeId,
    /// `None` while crashed.
    pub node: Option<Box<dyn Actor<M>>>,
    pub storage: MemStorage,
    /// Pending timers, as (deadline, token), in the order they were set.
    pub timers: Vec<(Duration, TimerToken)>,
    /// Starts so far; a wipe starts a new life too.
    pub lives: u32,
    /// The state of this node's random number generator (split-mix, so it is hashable).
    rng: u64,
}

/// Everything that changes as the world runs. `G` is the model's ghost state: what its
/// invariants remember across steps (every decision ever seen, every promise ever given).
#[derive(Debug, Clone)]
pub struct World<M, G> {
    pub now: Duration,
    pub slots: Vec<Slot<M>>,
    /// Messages in flight, kept sorted by a hash of their content so that two worlds with
    /// the same messages in flight look the same whatever order they were sent in.
    pub net: Vec<Envelope<M>>,
    pub budget: Budget,
    pub wipes: u32,
    /// Which of the model's inputs have happened (bit `k` for input `k`).
    pub inputs_done: u64,
    pub ghost: G,
}

impl<M: Clone + Hash + Eq + Debug + 'static, G: Hash> World<M, G> {
    pub fn new(ids: &[NodeId], budget: Budget, ghost: G) -> Self {
        let slots = ids
            .iter()
            .map(|&id| Slot {
                id,
                node: None,
                storage: MemStorage::new(),
                timers: Vec::new(),
                lives: 0,
                rng: id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03,
            })
            .collect();
        World {
            now: Duration::ZERO,
            slots,
            net: Vec::new(),
            budget,
            wipes: 0,
            inputs_done: 0,
            ghost,
        }
    }

    /// The slot of node `id`, if it is one of the world's nodes (clients may not be).
    pub fn slot_of(&self, id: NodeId) -> Option<usize> {
        self.slots.iter().position(|s| s.id == id)
    }

    /// The running node in slot `slot` as its concrete type.
    pub fn node<N: 'static>(&self, slot: usize) -> Option<&N> {
        self.slots[slot].node.as_ref()?.as_any().downcast_ref()
    }

    pub fn is_up(&self, slot: usize) -> bool {
        self.slots[slot].node.is_some()
    }

    /// A fingerprint of the whole world: equal worlds have equal fingerprints.
    pub fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.now.hash(&mut h);
        for slot in &self.slots {
            slot.id.hash(&mut h);
            match &slot.node {
                Some(node) => {
                    1u8.hash(&mut h);
                    node.fingerprint(&mut h);
                }
                None => 0u8.hash(&mut h),
            }
            slot.storage.hash(&mut h);
            slot.timers.hash(&mut h);
            slot.lives.hash(&mut h);
            slot.rng.hash(&mut h);
        }
        self.net.hash(&mut h);
        self.budget.hash(&mut h);
        self.wipes.hash(&mut h);
        self.inputs_done.hash(&mut h);
        self.ghost.hash(&mut h);
        h.finish()
    }

    /// Starts the node in `slot` (a new life) and runs its `on_start`.
    pub fn start(&mut self, slot: usize, node: Box<dyn Actor<M>>) {
        let s = &mut self.slots[slot];
        s.lives += 1;
        s.timers.clear();
        s.node = Some(node);
        self.run(slot, |node, ctx| node.on_start(ctx));
    }

    /// Crashes the node in `slot`: memory and unsynced writes are gone, timers never fire.
    pub fn crash(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.node = None;
        s.timers.clear();
        s.storage.crash();
    }

    /// Crashes the node in `slot` and throws its disk away.
    pub fn wipe(&mut self, slot: usize) {
        self.crash(slot);
        self.slots[slot].storage.wipe();
        self.wipes += 1;
    }

    /// Calls `f` on the running node in `slot` as its concrete type, with a context, as a
    /// driver's application code would (to propose, to campaign). No-op if it is down.
    pub fn call<N: Node<Msg = M> + 'static>(
        &mut self,
        slot: usize,
        f: impl FnOnce(&mut N, &mut dyn Context<M>),
    ) {
        self.run(slot, |node, ctx| {
            let node: &mut dyn Any = node;
            let node = node.downcast_mut::<N>().unwrap_or_else(|| {
                panic!("slot {slot} does not hold a {}", std::any::type_name::<N>())
            });
            f(node, ctx)
        });
    }

    /// Puts a message from outside (a client) into flight.
    pub fn inject(&mut self, from: NodeId, to: NodeId, msg: M) {
        self.enqueue(from, to, msg);
    }

    /// Delivers message `index` of [`World::net`] to its node (dropped if that node is down);
    /// returns it if it is addressed to no node of the world (a client's reply).
    pub fn deliver(&mut self, index: usize) -> Option<Envelope<M>> {
        let env = self.net.remove(index);
        let Some(slot) = self.slot_of(env.to) else {
            return Some(env);
        };
        if self.is_up(slot) {
            let (from, msg) = (env.from, env.msg);
            self.run(slot, |node, ctx| node.on_message(ctx, from, msg));
        }
        None
    }

    /// Fires the earliest timer of `slot`, with the clock at least `step` past now.
    pub fn fire_timer(&mut self, slot: usize, step: Duration) {
        let s = &mut self.slots[slot];
        let Some(first) = (0..s.timers.len()).min_by_key(|&i| s.timers[i].0) else {
            return;
        };
        let (deadline, token) = s.timers.remove(first);
        self.now = (self.now + step).max(deadline);
        self.run(slot, |node, ctx| node.on_timer(ctx, token));
    }

    /// Loses every message still in flight that was sent before the latest disk loss: the
    /// quiet period of a rejoin assumes they are delivered or gone by the time it ends.
    pub fn lose_messages_of_lost_lives(&mut self) {
        let epoch = self.wipes;
        self.net.retain(|e| e.epoch == epoch);
    }

    /// Delivers every message in flight, in key order, and everything they cause, until
    /// none is left: a deterministic setup step. Messages to no node are dropped.
    pub fn settle(&mut self) {
        while !self.net.is_empty() {
            self.deliver(0);
        }
    }

    /// Duplicates message `index` of the network.
    pub fn duplicate(&mut self, index: usize) {
        let env = self.net[index].clone();
        self.insert(env);
    }

    fn run(&mut self, slot: usize, f: impl FnOnce(&mut dyn Node<Msg = M>, &mut dyn Context<M>)) {
        let Some(mut actor) = self.slots[slot].node.take() else {
            return;
        };
        let mut ctx = self.context(slot);
        f(actor.node(), &mut ctx);
        let effects = ctx.finish();
        self.slots[slot].node = Some(actor);
        self.apply(slot, effects);
    }

    fn context(&mut self, slot: usize) -> Ctx<M> {
        let s = &mut self.slots[slot];
        Ctx {
            id: s.id,
            now: self.now,
            storage: std::mem::take(&mut s.storage),
            rng: SplitMix(s.rng),
            sent: Vec::new(),
            timers: Vec::new(),
        }
    }

    fn apply(&mut self, slot: usize, effects: Effects<M>) {
        let s = &mut self.slots[slot];
        s.storage = effects.storage;
        s.rng = effects.rng;
        let now = self.now;
        s.timers.extend(
            effects
                .timers
                .into_iter()
                .map(|(after, t)| (now + after, t)),
        );
        let from = s.id;
        for (to, msg) in effects.sent {
            self.enqueue(from, to, msg);
        }
    }

    fn enqueue(&mut self, from: NodeId, to: NodeId, msg: M) {
        let mut h = DefaultHasher::new();
        (from, to, &msg, self.wipes).hash(&mut h);
        let env = Envelope {
            from,
            to,
            msg,
            epoch: self.wipes,
            key: h.finish(),
        };
        self.insert(env);
    }

    fn insert(&mut self, env: Envelope<M>) {
        let at = self.net.partition_point(|e| e.key <= env.key);
        self.net.insert(at, env);
    }

    /// The position in [`World::net`] of a message with content key `key`.
    pub fn find(&self, key: u64) -> Option<usize> {
        let at = self.net.partition_point(|e| e.key < key);
        (self.net.get(at)?.key == key).then_some(at)
    }
}

/// What a node did during one call, applied to the world afterwards.
struct Effects<M> {
    storage: MemStorage,
    rng: u64,
    sent: Vec<(NodeId, M)>,
    timers: Vec<(Duration, TimerToken)>,
}

struct Ctx<M> {
    id: NodeId,
    now: Duration,
    storage: MemStorage,
    rng: SplitMix,
    sent: Vec<(NodeId, M)>,
    timers: Vec<(Duration, TimerToken)>,
}

impl<M> Ctx<M> {
    fn finish(self) -> Effects<M> {
        Effects {
            storage: self.storage,
            rng: self.rng.0,
            sent: self.sent,
            timers: self.timers,
        }
    }
}

impl<M> Context<M> for Ctx<M> {
    fn id(&self) -> NodeId {
        self.id
    }
    fn now(&self) -> Duration {
        self.now
    }
    fn send(&mut self, to: NodeId, msg: M) {
        self.sent.push((to, msg));
    }
    fn set_timer(&mut self, after: Duration, token: TimerToken) {
        self.timers.push((after, token));
    }
    fn add_peer(&mut self, _id: NodeId, _addr: &str) {}
    fn rng(&mut self) -> &mut dyn RngCore {
        &mut self.rng
    }
    fn storage(&mut self) -> &mut dyn Storage {
        &mut self.storage
    }
}

/// A tiny deterministic generator whose whole state is one `u64`, so a world that holds it
/// can be hashed (split-mix 64).
struct SplitMix(u64);

impl RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
