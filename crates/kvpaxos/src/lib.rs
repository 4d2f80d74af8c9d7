//! A key/value store replicated with Paxos: Get, Put and Append, linearizable, at most once,
//! and Redis's string and keyspace commands ([`synod_keyspace::Command`]), each one log
//! entry. Keys and values are byte strings.
//!
//! Every replica ([`KvReplica`]) is a [`synod_rsm::Rsm`] over the state machine [`KvState`]:
//! a client request — Gets included — becomes a log entry (batched with others when many
//! arrive together, and proposed by the current leader when there is one); every replica
//! applies the decided instances in order, so all of
//! them go through the same sequence of states, and a replica answers a client only once the
//! client's operation has been applied. A replica in a minority partition cannot get anything
//! decided, so it answers nothing, and in particular never a stale read.
//!
//! The replicated-state-machine layer supplies the rest (see its documentation): at-most-once
//! through a bounded, replicated session table that is part of every snapshot; no-ops to fill
//! holes in the log; `done` after applying, so Paxos forgets what every replica applied;
//! snapshots to compact the durable log and to bring a replica up to date whose peers forgot
//! the instances it needs; and a status query.
//!
//! The client's logic is a sans-I/O core too, [`KvClerk`] (`synod_rsm::clerk`'s, with the
//! step of [`KvOp`]): the simulator's tests and `synod-client` run the same one.

pub mod guard;
mod replica;
pub mod state;

pub use replica::KvReplica;
pub use state::KvState;
pub use synod_rsm::TICK;

use serde::{Deserialize, Serialize};
use synod_auth::Denied;
pub use synod_keyspace::KvOp;
use synod_keyspace::Reply;
use synod_node::limits::TooLarge;
use synod_rsm::clerk::RsmClerk;
use synod_rsm::{Entry, RsmMsg};

/// The answer to a [`KvOp`]. The variants' order is part of the snapshots' encoding (the
/// session table keeps replies): new ones go last.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvReply {
    /// A Get's value ("" for a missing key, as in the course).
    Value(#[serde(with = "synod_keyspace::bytes")] Vec<u8>),
    /// A Put or Append took effect; `len` is the value's length afterwards (what Redis's
    /// APPEND returns).
    Written { len: u64 },
    /// The client's session was evicted from the bounded session table, so the server can no
    /// longer tell a retry from a new request; nothing was applied. The client must start a
    /// new session (a new client id) and treat this operation's outcome as unknown.
    SessionExpired,
    /// A Put or Append refused for its size (a value above the replica's
    /// `--max-value-bytes`, a key above [`synod_node::limits::MAX_KEY_BYTES`], or an Append that would
    /// grow a value past [`synod_node::limits::MAX_VALUE_CEILING`]); nothing was applied.
    TooLarge(TooLarge),
    /// A Put or Append refused because the store holds `used` bytes of keys and values and the
    /// write would take it past the replica's `--max-memory` (`limit`); nothing was applied.
    /// Gets are still served. Redis's `maxmemory` with the `noeviction` policy.
    OutOfMemory { used: u64, limit: u64 },
    /// The replies to a batch of operations ([`KvMsg`]'s `Batch` request), in order: one
    /// log entry, applied with nothing in between (what a pipelined RESP connection sends).
    /// Never nested. Fewer replies than operations: the batch stopped before a read whose
    /// value would take the replies past [`synod_rsm::MAX_BATCH_REPLY_BYTES`] (or just after
    /// a write whose reply did), and the operations from there on were not applied; send
    /// them again.
    Batch(Vec<KvReply>),
    /// A Redis command's reply.
    Redis(Reply),
    /// The request was refused to the client's user (see the `guard` module); nothing was
    /// applied. Never logged: a replica answers it before the request reaches the log.
    Denied(Denied),
}

/// A client session of a Paxos KV cluster: the replicated state machine's clerk.
pub type KvClerk = RsmClerk<KvOp, (), KvReply>;

/// One entry of the replicated log.
pub type Op = Entry<KvOp, ()>;

/// Every message of a kvpaxos cluster (see [`RsmMsg`]).
pub type KvMsg = RsmMsg<KvOp, (), KvReply>;
