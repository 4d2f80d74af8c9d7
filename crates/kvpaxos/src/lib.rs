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
use synod_keyspace::{Command, Reply};
use synod_node::limits::{self, Limits, TooLarge};
use synod_rsm::clerk::{step_for, ClerkOp, RsmClerk};
use synod_rsm::{Entry, RsmMsg};

/// A client's request. The variants' order is part of the log's and snapshots' encoding:
/// new ones go last.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOp {
    Get {
        #[serde(with = "synod_keyspace::bytes")]
        key: Vec<u8>,
    },
    Put {
        #[serde(with = "synod_keyspace::bytes")]
        key: Vec<u8>,
        #[serde(with = "synod_keyspace::bytes")]
        value: Vec<u8>,
    },
    Append {
        #[serde(with = "synod_keyspace::bytes")]
        key: Vec<u8>,
        #[serde(with = "synod_keyspace::bytes")]
        value: Vec<u8>,
    },
    /// A Redis command (a transaction included), answered [`KvReply::Redis`].
    Redis(Command),
}

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
    /// Never nested. Fewer replies than operations: the batch stopped before a Get whose
    /// value would take the replies past [`synod_rsm::MAX_BATCH_REPLY_BYTES`], and the
    /// operations from there on were not applied; send them again.
    Batch(Vec<KvReply>),
    /// A Redis command's reply.
    Redis(Reply),
    /// The request was refused to the client's user (see the `guard` module); nothing was
    /// applied. Never logged: a replica answers it before the request reaches the log.
    Denied(Denied),
}

impl KvOp {
    /// Bytes a write may add to the store (a Put's or Append's key and value); 0 for a read.
    pub fn added_bytes(&self) -> u64 {
        match self {
            KvOp::Get { .. } => 0,
            KvOp::Put { key, value } | KvOp::Append { key, value } => {
                (key.len() + value.len()) as u64
            }
            KvOp::Redis(command) => command.added_bytes(),
        }
    }

    /// Refuses an operation whose key or value is above `limits` (a Get's key is checked
    /// too: it travels and is logged like any other).
    pub fn check_size(&self, limits: &Limits) -> Result<(), TooLarge> {
        match self {
            KvOp::Get { key } => limits.check(key.len(), 0),
            KvOp::Put { key, value } | KvOp::Append { key, value } => {
                limits.check(key.len(), value.len())
            }
            KvOp::Redis(command) => command.check_size(limits),
        }
    }
    /// Refuses a batch (the operations of one `Batch` request) that holds an operation
    /// above `limits`, or whose keys and values together are above [`limits::BATCH_BYTES`]:
    /// a batch is one log entry, and a big value travels alone.
    pub fn check_batch(ops: &[KvOp], limits: &Limits) -> Result<(), TooLarge> {
        let mut bytes = 0;
        for op in ops {
            op.check_size(limits)?;
            bytes += op.payload_bytes();
        }
        if ops.len() > 1 && bytes > limits::BATCH_BYTES {
            return Err(TooLarge::Command {
                size: bytes as u64,
                limit: limits::BATCH_BYTES as u64,
            });
        }
        Ok(())
    }

    /// The keys the operation reads or writes.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            KvOp::Get { key } | KvOp::Put { key, .. } | KvOp::Append { key, .. } => vec![key],
            KvOp::Redis(command) => command.keys(),
        }
    }

    /// Whether the operation may change the store.
    pub fn writes(&self) -> bool {
        match self {
            KvOp::Get { .. } => false,
            KvOp::Put { .. } | KvOp::Append { .. } => true,
            KvOp::Redis(command) => command.writes(),
        }
    }

    /// Bytes of key and value the operation carries.
    pub fn payload_bytes(&self) -> usize {
        match self {
            KvOp::Get { key } => key.len(),
            KvOp::Put { key, value } | KvOp::Append { key, value } => key.len() + value.len(),
            KvOp::Redis(command) => command.payload_bytes(),
        }
    }
}

impl ClerkOp for KvOp {
    /// Grows with the key and value: see [`step_for`].
    fn hedge_step(&self) -> std::time::Duration {
        step_for(self.payload_bytes())
    }
}

/// A client session of a Paxos KV cluster: the replicated state machine's clerk.
pub type KvClerk = RsmClerk<KvOp, (), KvReply>;

/// One entry of the replicated log.
pub type Op = Entry<KvOp, ()>;

/// Every message of a kvpaxos cluster (see [`RsmMsg`]).
pub type KvMsg = RsmMsg<KvOp, (), KvReply>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_hedge_step_grows_with_the_value() {
        let get = KvOp::Get { key: "k".into() };
        assert!(get.hedge_step() < synod_rsm::clerk::STEP + Duration::from_millis(1));
        let big = KvOp::Put {
            key: Vec::new(),
            value: vec![b'x'; 8 << 20],
        };
        assert_eq!(big.hedge_step(), Duration::from_millis(2300));
    }
}
