//! A sharded key/value store: keys are split into shards, each served by one Paxos-replicated
//! group, and shards move between groups as the shard controller ([`synod_shardctl`])
//! reconfigures the cluster.
//!
//! - [`key2shard`] maps a key to its shard with a stable hash (FNV-1a, 64 bit, of the key's
//!   bytes, modulo the number of shards): the same on every machine and in every version.
//! - A group ([`GroupServer`]) is a [`synod_rsm::Rsm`] over [`GroupState`]. It serves a key
//!   only if, in the configuration it has reached, its shard belongs to the group and the
//!   shard's data has arrived; otherwise it answers [`ShardReply::WrongGroup`] and the client
//!   asks the controller again.
//! - Groups poll the controller and move to configuration `n + 1` only from `n`, once every
//!   shard they gain in `n` has arrived, through their own log ([`GroupOp::Reconfigure`]).
//! - A shard a group loses is frozen and pushed, with its session table (so at-most-once
//!   holds across moves), to the new owner, which installs it through its log
//!   ([`GroupOp::Install`]) and acknowledges; only then does the old owner delete its copy
//!   ([`GroupOp::Delete`]). Shards that do not move keep serving throughout.
//!
//! See `docs/shardkv.md` for the protocol and its limits.

pub mod clerk;
mod numbering;
mod server;
mod state;

pub use clerk::{Preference, ShardKvClerk, ShardServer};
pub use numbering::{key_of, Numbering};
pub use server::{controller_node, server_id, CtlNode, GroupServer, POLL};
pub use state::{GroupOp, GroupState, Shard};

use serde::{Deserialize, Serialize};
use synod_kvpaxos::KvOp;
use synod_rsm::{RsmMsg, StatusReport};
use synod_shardctl::CtlMsg;

/// The shard of `key` among `shards` shards: FNV-1a (64-bit) of its UTF-8 bytes, modulo
/// `shards`. Stable across machines, builds and versions; documented in docs/shardkv.md.
pub fn key2shard(key: &str, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

/// The answer to a client's [`KvOp`]. Answers name the key's shard: a client numbers its
/// requests per shard (each shard's session table travels with it), so (shard, sequence
/// number) is what tells a late answer to an earlier request from the answer it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardReply {
    /// A Get's value ("" for a missing key).
    Value { shard: usize, value: String },
    /// A Put or Append took effect; `len` is the value's length afterwards.
    Written { shard: usize, len: u64 },
    /// This group does not serve the key's shard in the configuration it has reached; ask
    /// the controller for the latest configuration and try the owner.
    WrongGroup { shard: usize },
    /// The client's session for this shard was evicted; nothing was applied.
    SessionExpired,
    /// A key or value above the server's `--max-value-bytes`, or an Append that would grow a
    /// value past [`synod_node::limits::MAX_VALUE_CEILING`]; nothing was applied.
    TooLarge {
        shard: usize,
        refused: synod_node::limits::TooLarge,
    },
}

/// Messages within one group, and between a group and its clients.
pub type GroupMsg = RsmMsg<KvOp, GroupOp, ShardReply>;

/// Every message of a sharded cluster: controllers, groups, clients. The first two variants
/// are the status query's (see [`synod_rsm::StatusMsg`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardMsg {
    StatusQuery,
    Status(StatusReport),
    /// To and from the shard controller.
    Ctl(CtlMsg),
    /// Within a group, and a group's clients.
    Group(GroupMsg),
    /// A shard's frozen data, from a server of its owner in configuration `num - 1` to a
    /// server of its owner in `num`. `from` lists the sending group's servers (id and
    /// address) so the receiver can answer even after that group left.
    Push {
        num: u64,
        shard: usize,
        data: Shard,
        from: Vec<(synod_node::NodeId, String)>,
    },
    /// The new owner has installed shard `shard` of configuration `num`.
    PushAck {
        num: u64,
        shard: usize,
    },
}
