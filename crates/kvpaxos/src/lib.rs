//! A key/value store replicated with Paxos: Get, Put and Append, linearizable, at most once.
//!
//! Every replica ([`KvReplica`]) embeds a [`synod_paxos::Paxos`] peer. A client request —
//! Gets included — becomes an [`Op`] that the replica proposes for the next free Paxos
//! instance; every replica applies the decided instances in order, so all of them go through
//! the same sequence of states, and a replica answers a client only once the client's
//! operation has been applied. A replica in a minority partition cannot get anything decided,
//! so it answers nothing, and in particular never a stale read.
//!
//! - **At most once.** Operations carry (client id, sequence number); the replicated session
//!   table ([`state`]) remembers each client's last applied number and its reply, so a retry
//!   is answered from the table instead of being applied again. The table is bounded (least
//!   recently used clients are evicted) and is part of every snapshot.
//! - **Catching up.** A replica that finds a hole in its log proposes a no-op there, which
//!   either learns the decided operation or fills the hole; one whose peers have already
//!   forgotten the instances it needs fetches a snapshot of their state.
//! - **Compaction.** After applying an instance the replica calls `done` on it, so Paxos
//!   forgets instances every replica has applied; the durable log is compacted by writing
//!   snapshots of the KV state (with the Paxos state) as it grows.

mod replica;
pub mod state;

pub use replica::{KvReplica, TICK};

use serde::{Deserialize, Serialize};
use synod_paxos::PaxosMsg;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    Get { key: String },
    Put { key: String, value: String },
    Append { key: String, value: String },
}

/// The answer to a [`KvOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvReply {
    /// A Get's value ("" for a missing key, as in the course).
    Value(String),
    /// A Put or Append took effect; `len` is the value's length afterwards (what Redis's
    /// APPEND returns).
    Written { len: u64 },
    /// The client's session was evicted from the bounded session table, so the server can no
    /// longer tell a retry from a new request; nothing was applied. The client must start a
    /// new session (a new client id) and treat this operation's outcome as unknown.
    SessionExpired,
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Fills a hole in the log; changes nothing.
    Noop,
    Client {
        client: u64,
        seq: u64,
        op: KvOp,
    },
}

/// Every message of a kvpaxos cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvMsg {
    /// Between replicas: their Paxos peers' messages.
    Paxos(PaxosMsg<Op>),
    /// From a client. Sequence numbers start at 1 and a client has one request outstanding.
    Request { client: u64, seq: u64, op: KvOp },
    /// To a client.
    Reply { seq: u64, reply: KvReply },
    /// From a replica that needs the state after instance `next - 1` (its peers forgot the
    /// instances in between).
    SnapshotRequest { next: u64 },
    /// The KV state (a serialized [`state::KvState`]) of a replica that applied every
    /// instance below `next`.
    Snapshot { next: u64, state: Vec<u8> },
}
