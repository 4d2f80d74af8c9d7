//! The contract between a protocol core and the driver that runs it.
//!
//! Every service in synod (the echo counter, MapReduce's coordinator, the view service, Paxos,
//! the KV replicas) is written as a [`Node`]: a plain state machine that reacts to three kinds
//! of input and does no I/O of its own.
//!
//! ```text
//!              on_start / on_message / on_timer
//!   driver  ───────────────────────────────────────▶  Node (protocol core)
//!  (sim or  ◀───────────────────────────────────────
//!    TCP)      ctx.send / ctx.set_timer / ctx.storage / ctx.rng / ctx.now
//! ```
//!
//! The driver hands the node a [`Context`] for the duration of each call. Everything the node
//! would otherwise take from the outside world — the clock, randomness, the network, the disk
//! — goes through it. That is what lets one core run unchanged under two drivers:
//!
//! - `synod-sim` delivers messages in virtual time, injects faults from a seeded RNG, and keeps
//!   storage in memory so a simulated crash loses exactly the unpersisted writes;
//! - `synod-net` runs the node as a real server on tokio, with TCP links and files on disk.
//!
//! Clients are nodes too: a client request is a message, its answer is a message back to the
//! sender. A client's logic is a [`clerk::Clerk`], a core of its own that a driver runs.
//! Over TCP, a connecting client is given a fresh [`NodeId`] for its connection.

pub mod clerk;

use std::any::Any;
use std::fmt;
use std::time::Duration;

pub use synod_storage::{limits, Recovered, SnapshotJob, SnapshotProgress, Storage, StorageError};

/// Identifies a node within one cluster (simulated or real). Server ids are small integers
/// chosen by the operator; the TCP driver gives each client connection an id from
/// [`NodeId::FIRST_CLIENT`] upwards so they never collide with servers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct NodeId(pub u64);

impl NodeId {
    /// Ids at or above this value belong to clients, not servers.
    pub const FIRST_CLIENT: u64 = 1 << 32;

    pub fn is_client(self) -> bool {
        self.0 >= Self::FIRST_CLIENT
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_client() {
            write!(f, "c{}", self.0 - Self::FIRST_CLIENT)
        } else {
            write!(f, "n{}", self.0)
        }
    }
}

/// A timer a node asked for, handed back to it in [`Node::on_timer`]. The meaning of the
/// number is the node's own (often an enum discriminant or a request number). Timers cannot
/// be cancelled: a node that no longer cares simply ignores a stale one, which is both simpler
/// and what a real timer wheel races into anyway.
pub type TimerToken = u64;

/// Everything a node may do to the world, provided by the driver during a call.
pub trait Context<M> {
    /// This node's id.
    fn id(&self) -> NodeId;
    /// Time on this node's own clock, since an arbitrary origin. Monotonic. Under the
    /// simulator it is virtual and may run fast or slow (clock drift).
    fn now(&self) -> Duration;
    /// Sends `msg` to `to`. Best effort: the message may be lost, delayed, duplicated or
    /// reordered; the node learns nothing about its fate.
    fn send(&mut self, to: NodeId, msg: M);
    /// Asks for [`Node::on_timer`] with `token` after `after` has passed on this node's clock.
    fn set_timer(&mut self, after: Duration, token: TimerToken);
    /// Tells the driver that server `id` can be reached at `addr` (`HOST:PORT`), for protocols
    /// that learn their peers while running: a primary learns its backup from the view
    /// service, a shard group learns another group's servers from a configuration. Drivers
    /// that need no addresses (the simulator) ignore it; the TCP driver routes later sends to
    /// `id` there. An address that does not parse is logged and ignored.
    fn add_peer(&mut self, id: NodeId, addr: &str);
    /// Randomness. Seeded by the simulator, so a run is reproducible.
    fn rng(&mut self) -> &mut dyn rand::RngCore;
    /// This node's durable state. What a restart recovers is the records appended before the
    /// last [`Storage::persist_before_send`] that reached the disk. That call is a barrier,
    /// not an fsync: the records appended before it are durable before any message this node
    /// sends after it leaves the process, but the driver chooses when the disk write happens
    /// (the TCP driver defers it to the end of a burst of inputs and holds the outgoing
    /// messages until then). So a core orders *persist, then send*, and never assumes its
    /// records are on disk when the call returns.
    fn storage(&mut self) -> &mut dyn Storage;
}

/// A protocol core: a deterministic state machine driven by a [`Context`].
///
/// Given the same sequence of calls and the same context behaviour, a node must do the same
/// thing. So: no `std::time`, no `thread_rng`, no iteration over `HashMap`s whose order leaks
/// into messages, no threads. A node that hits an unrecoverable storage error should stop
/// making progress (for example by ignoring further input) rather than act without durability.
pub trait Node: Any {
    /// The one message type of the cluster this node is part of (usually an enum).
    type Msg;

    /// Called once when the node starts and again after every restart, before any other
    /// input. A restarted node recovers its durable state here via `ctx.storage().recover()`.
    fn on_start(&mut self, ctx: &mut dyn Context<Self::Msg>);

    /// A message arrived from `from`.
    fn on_message(&mut self, ctx: &mut dyn Context<Self::Msg>, from: NodeId, msg: Self::Msg);

    /// A timer set with [`Context::set_timer`] fired.
    fn on_timer(&mut self, ctx: &mut dyn Context<Self::Msg>, token: TimerToken);
}
