//! A sharded key/value store: keys are split into shards, each served by one Paxos-replicated
//! group, and shards move between groups as the shard controller ([`synod_shardctl`])
//! reconfigures the cluster.
//!
//! - [`key2shard`] maps a key to its shard with a stable hash (FNV-1a, 64 bit, of the key's
//!   bytes, or of its hash tag, modulo the number of shards): the same on every machine and
//!   in every version. A hash tag (`{user1}.a`: the bytes between the first `{` and the next
//!   `}`, if any) lets related keys share a shard, as in Redis Cluster, so that a
//!   multi-key command or a transaction over them is served by one group.
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

/// The shard of `key` among `shards` shards: FNV-1a (64-bit) of its [`hash_tag`], modulo
/// `shards`. Stable across machines, builds and versions; documented in docs/shardkv.md.
pub fn key2shard(key: impl AsRef<[u8]>, shards: usize) -> usize {
    (shard_hash(key.as_ref()) % shards.max(1) as u64) as usize
}

/// FNV-1a (64-bit) of `key`'s [`hash_tag`]: keys with the same hash are in the same shard
/// whatever the number of shards, which is what a command over several keys requires
/// (else it is refused with Redis Cluster's `CROSSSLOT`).
pub fn shard_hash(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in hash_tag(key) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The part of `key` its shard is computed from, as Redis Cluster's hash tags: the bytes
/// between the first `{` and the first `}` after it, when there are some; else the whole
/// key (`{user1}.a` and `{user1}.b` share a shard; `{}.a` and `a{` hash whole).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(len) = rest.iter().position(|&b| b == b'}') {
            if len > 0 {
                return &rest[..len];
            }
        }
    }
    key
}

/// The answer to a client's [`KvOp`]. Answers name the key's shard: a client numbers its
/// requests per shard (each shard's session table travels with it), so (shard, sequence
/// number) is what tells a late answer to an earlier request from the answer it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardReply {
    /// A Get's value ("" for a missing key).
    Value {
        shard: usize,
        #[serde(with = "synod_keyspace::bytes")]
        value: Vec<u8>,
    },
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
    /// A Redis command's reply. (Variants are encoded by position: new ones go last.)
    Redis {
        shard: usize,
        reply: synod_keyspace::Reply,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_the_same_hash_tag_share_a_shard() {
        assert_eq!(hash_tag(b"{user1}.a"), b"user1");
        assert_eq!(hash_tag(b"x{user1}{b}"), b"user1");
        assert_eq!(hash_tag(b"{}.a"), b"{}.a");
        assert_eq!(hash_tag(b"a{b"), b"a{b");
        assert_eq!(key2shard("{user1}.a", 10), key2shard("{user1}.b", 10));
        assert_eq!(key2shard("{user1}.a", 10), key2shard("user1", 10));
        // The hash of a key without a tag is unchanged: FNV-1a of all its bytes.
        assert_eq!(
            key2shard("a", 10),
            (0xaf63_dc4c_8601_ec8c_u64 % 10) as usize
        );
    }
}
