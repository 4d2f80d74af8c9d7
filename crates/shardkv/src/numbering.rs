//! How a client numbers its requests: per shard, because each shard's session table travels
//! with the shard when it moves, so the table at the new owner must see the same client's
//! numbers for that shard continue where they left off. Shared by every shardkv clerk (the
//! simulator's and the TCP one in `synod-client`) so they cannot disagree.

use std::collections::BTreeMap;

use synod_kvpaxos::KvOp;

use crate::{key2shard, ShardReply};

/// The key an operation is about: a Redis command's first key (a client sends a command
/// whose keys are of one shard only, and none without a key).
pub fn key_of(op: &KvOp) -> &[u8] {
    match op {
        KvOp::Get { key } | KvOp::Put { key, .. } | KvOp::Append { key, .. } => key,
        KvOp::Redis(command) => command.keys().first().copied().unwrap_or_default(),
    }
}

/// One client session's sequence numbers, one counter per shard (starting at 1).
#[derive(Debug, Clone, Default)]
pub struct Numbering {
    last: BTreeMap<usize, u64>,
}

impl Numbering {
    /// Numbers a new request for `op` in a cluster of `shards` shards: the key's shard and
    /// the request's sequence number there. A request is retried under the same number, and
    /// a session has one request outstanding: a request given up on (outcome unknown) ends
    /// the session, since the next number could otherwise look like a retry or an eviction.
    pub fn next(&mut self, op: &KvOp, shards: usize) -> (usize, u64) {
        let shard = key2shard(key_of(op), shards);
        let seq = self.last.entry(shard).or_default();
        *seq += 1;
        (shard, *seq)
    }
}

impl ShardReply {
    /// The shard the reply is about (`None` for an expired session or a refusal, which name
    /// none; a
    /// batch's is its first command's, the shard that numbers the batch). With the sequence
    /// number it tells the reply to the request a clerk waits for from a late reply to an
    /// earlier request on another shard.
    pub fn shard(&self) -> Option<usize> {
        match self {
            ShardReply::Value { shard, .. }
            | ShardReply::Written { shard, .. }
            | ShardReply::WrongGroup { shard }
            | ShardReply::TooLarge { shard, .. }
            | ShardReply::Redis { shard, .. } => Some(*shard),
            ShardReply::Batch(replies) => replies.first().and_then(ShardReply::shard),
            ShardReply::SessionExpired | ShardReply::Denied(_) => None,
        }
    }
}
