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
//! - On a server whose clients authenticate, [`guard`] says what each client message needs
//!   of its user: a request its keys, a change of the controller's configuration a user
//!   allowed everything, the groups' own messages a member of the cluster.
//! - Clients may send several commands as one request, of any shards: the group applies
//!   them in order up to the first of a shard it does not serve ([`segment`] cuts a
//!   pipeline so that each request is one group's), and a follower sent a client's write
//!   names its leader ([`ShardMsg::Leader`]) so the client's next writes go there.
//!
//! See `docs/shardkv.md` for the protocol and its limits.

pub mod clerk;
pub mod guard;
mod numbering;
mod server;
mod state;

pub use clerk::{Preference, ShardKvClerk, ShardServer};
pub use numbering::{key_of, Numbering};
pub use server::{controller_node, joining_controller, server_id, CtlNode, GroupServer, POLL};
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
    /// The replies to a batch's commands ([`synod_rsm::RsmMsg::Batch`]), in order; maybe
    /// fewer than its commands (see [`synod_rsm::StateMachine::batch_reply`]), and the
    /// client sends the rest again.
    Batch(Vec<ShardReply>),
    /// A Redis command's reply. (Variants are encoded by position: new ones go last.)
    Redis {
        shard: usize,
        reply: synod_keyspace::Reply,
    },
    /// The client's user may not make this request ([`guard`]); nothing was applied. Sent
    /// by the server the client reached, which does not know the shard count: it names no
    /// shard, and the client drops its session with it (a later refusal could otherwise
    /// answer another shard's request of the same number).
    Denied(synod_auth::Denied),
}

/// Whether `op` only reads: a Get, or a Redis command that writes nothing. A batch of
/// reads only is answered after a read barrier, without a log entry, and reads go to any
/// server of the group.
pub fn reads_only(op: &KvOp) -> bool {
    !op.writes()
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
    /// To a client whose write came to a replica that is not its group's leader (and is
    /// forwarded there): the leader's address, so the client's next writes to the group go
    /// there directly. Sent before the write's reply, on the same connection.
    Leader(String),
}

/// How many of `ops` (at least one, if there are any) the next batch request carries when
/// they must take effect in order, as a pipeline's commands: the commands up to the first of
/// a shard another group owns in `config`. A group applies a batch as a prefix: it stops at
/// its first command of a shard it does not serve ([`StateMachine::ends_batch`]), and the
/// client sends the rest again (docs/shardkv.md, "Batches"). Before the client knows a
/// configuration it cannot tell groups apart: one command.
///
/// [`StateMachine::ends_batch`]: synod_rsm::StateMachine::ends_batch
pub fn segment(ops: &[KvOp], config: &synod_shardctl::Config) -> usize {
    let Some(first) = ops.first().filter(|_| config.num > 0) else {
        return ops.len().min(1);
    };
    let owner = |op: &KvOp| {
        config
            .shards
            .get(key2shard(key_of(op), config.shards.len()))
    };
    let group = owner(first);
    let of_group = ops.iter().take_while(|op| owner(op) == group).count();
    of_group.min(synod_rsm::MAX_BATCH_COMMANDS)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn keys_of_shards(shards: usize) -> Vec<String> {
        (0..shards)
            .map(|s| {
                (0..)
                    .map(|n| format!("k{n}"))
                    .find(|k| key2shard(k, shards) == s)
                    .expect("some key lands in every shard")
            })
            .collect()
    }

    #[test]
    fn a_pipeline_is_cut_at_its_first_command_of_another_group() {
        let keys = keys_of_shards(4);
        let get = |i: usize| KvOp::Get {
            key: keys[i].clone().into_bytes(),
        };
        let put = |i: usize| KvOp::Put {
            key: keys[i].clone().into_bytes(),
            value: b"v".to_vec(),
        };
        let config = synod_shardctl::Config {
            num: 1,
            shards: vec![100, 100, 101, 100],
            groups: BTreeMap::new(),
        };
        // Reads and writes of group 100's shards 0, 1 and 3, up to group 101's shard 2.
        assert_eq!(segment(&[get(0), put(1), get(3), put(2)], &config), 3);
        assert_eq!(segment(&[put(0), put(3), get(1), put(0)], &config), 4);
        assert_eq!(segment(&[put(2), put(0)], &config), 1);
        let unknown = synod_shardctl::Config::initial(4);
        assert_eq!(
            segment(&[get(0), get(1)], &unknown),
            1,
            "groups not known yet"
        );
        assert_eq!(segment(&[], &config), 0);
    }

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
