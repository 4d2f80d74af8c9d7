//! Multi-instance Paxos, as a sans-I/O core that a service embeds.
//!
//! A group of peers agrees on a sequence of values, one Paxos instance per sequence number.
//! The API is the course's:
//!
//! | call | meaning |
//! | --- | --- |
//! | [`Paxos::start`]`(seq, v)` | propose `v` for instance `seq`; returns at once |
//! | [`Paxos::status`]`(seq)` | local only: [`Fate::Decided`] with the value, [`Fate::Pending`] or [`Fate::Forgotten`] |
//! | [`Paxos::done`]`(seq)` | this peer's application no longer needs instances `<= seq` |
//! | [`Paxos::min`] | one more than the smallest `done` over all peers; everything below is forgotten and freed |
//! | [`Paxos::max`] | the highest instance this peer knows of |
//!
//! Beyond the course, a stable leader (multi-Paxos): [`Paxos::campaign`] runs phase 1 once
//! for every instance from a given one on; while [`Paxos::leading`], `start` skips straight
//! to the accept phase. The embedder decides when to campaign (typically when
//! [`Paxos::leader`] has not been heard from for a while); leadership only serves liveness,
//! safety never depends on it.
//!
//! Read barriers ([`Paxos::read_barrier`], [`Paxos::barrier`]) tell an application how far
//! to apply the log before answering a read that is not logged itself.
//!
//! # Guarantees
//!
//! - **Safety** under any mix of message loss, duplication, delay, reordering, partitions and
//!   crash/restart: no two peers ever see different values decided for one instance. An
//!   acceptor's promise or accept is appended to storage and synced *before* it answers, so a
//!   restarted peer never contradicts itself. Proposal numbers ([`Ballot`]) are unique per
//!   peer and per life of a peer.
//! - **Liveness** whenever a majority of peers can talk to each other long enough: a
//!   proposer retries with randomized, growing intervals until its instance is decided.
//! - **Disk loss.** A peer whose storage is empty but that may have voted before (the
//!   embedder says so with [`PaxosConfig::rejoin`]) waits [`PaxosConfig::rejoin_quiet`], asks
//!   the others for the highest instance they know of, and after `ceil(n/2)` answers votes
//!   only in instances above the highest answer. See `docs/paxos.md` for why that is enough
//!   and what it assumes.
//!
//! # Embedding
//!
//! The embedding [`synod_node::Node`] owns the storage, the timers and the message type: it
//! routes [`PaxosMsg`]s to [`Paxos::handle`], calls [`Paxos::tick`] periodically, gives the
//! peer its state back at start with [`Paxos::recover`] and puts [`Paxos::checkpoint`] in its
//! snapshots. Every log record of such a node is a Paxos record; the node's own state lives
//! in its snapshot next to the Paxos state. [`PaxosNode`] is the simplest embedding: a node
//! that is nothing but a Paxos peer.

mod barrier;
mod config;
mod durable;
mod guard;
mod instance;
mod io;
mod lead;
mod msg;
mod node;
mod peer;

use std::fmt::Debug;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use config::{Config, ConfigError, Schedule};
pub use durable::{AcceptorState, Membership, PaxosState};
pub use io::{Embed, PaxosIo};
pub use msg::{Ballot, PaxosMsg, Vote};
pub use node::PaxosNode;
pub use peer::Paxos;

/// What Paxos can agree on: anything clonable, comparable and serializable.
pub trait Value: Clone + Eq + Debug + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Eq + Debug + Serialize + DeserializeOwned + 'static> Value for T {}

/// What a peer knows about one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate<'a, V> {
    Decided(&'a V),
    Pending,
    /// Below [`Paxos::min`]: decided once, and every peer said it no longer needs it.
    Forgotten,
}

/// Timings and the rejoin switch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaxosConfig {
    /// First retry interval of an undecided proposal (randomized up to twice this).
    pub retry: Duration,
    /// Cap of the doubling retry interval.
    pub max_retry: Duration,
    /// Whether an empty storage means "this peer lost its disk" (rejoin before voting)
    /// rather than "this is a new peer".
    pub rejoin: bool,
    /// How long a rejoining peer waits before asking: longer than any message of its earlier
    /// life can take to arrive.
    pub rejoin_quiet: Duration,
    /// α of the membership rule (see [`Config`]): a configuration decided at instance `i`
    /// governs the instances from `i + α`, and a peer acts in instance `j` only once its
    /// application applied every instance `<= j - α`. `None`: the group never changes, and
    /// a peer may act in any instance.
    pub alpha: Option<u64>,
}

impl Default for PaxosConfig {
    fn default() -> Self {
        PaxosConfig {
            retry: Duration::from_millis(40),
            max_retry: Duration::from_millis(640),
            rejoin: false,
            rejoin_quiet: Duration::from_secs(5),
            alpha: None,
        }
    }
}

/// Why a peer could not start.
#[derive(Debug, thiserror::Error)]
pub enum PaxosError {
    #[error(transparent)]
    Storage(#[from] synod_node::StorageError),
    #[error("cannot decode Paxos state: {0}")]
    Decode(String),
    #[error("Paxos configuration does not match the stored state: {0}")]
    Config(String),
}
