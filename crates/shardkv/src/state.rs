//! A group's replicated state: the configuration it has reached, the shards it serves (each
//! with its own session table, so duplicate detection moves with the data), the shards it
//! is waiting for, and the shards it lost and has not yet handed over.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use synod_keyspace::Keyspace;
use synod_kvpaxos::KvOp;
use synod_node::limits::{self, TooLarge};
use synod_rsm::{Sessions, StateMachine};
use synod_shardctl::{Config, Gid};

use crate::{key2shard, key_of, ShardReply};

/// One shard's data and the session table guarding it. The data is the Paxos KV's store
/// ([`Keyspace`], a persistent map): a background snapshot clones the state on the apply
/// path, and that clone must cost O(1), not a copy of every key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub data: Keyspace,
    pub sessions: Sessions<ShardReply>,
}

/// A shard lost in configuration `num`, frozen until its new owner confirms it has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub shard: Shard,
    pub to: Gid,
    pub servers: Vec<String>,
}

/// What a group's replicas propose on their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupOp {
    /// Move to this configuration (applied only from `num - 1` with nothing awaited).
    Reconfigure(Config),
    /// Shard `shard` of configuration `num` arrived from its previous owner.
    Install { num: u64, shard: usize, data: Shard },
    /// The new owner of shard `shard` (lost in configuration `num`) has it: forget our copy.
    Delete { num: u64, shard: usize },
}

/// The replicated state of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub gid: Gid,
    /// The configuration this group has reached.
    pub config: Config,
    /// Shards served: owned in `config` and present.
    pub shards: BTreeMap<usize, Shard>,
    /// Shards owned in `config` whose data has not arrived yet.
    pub awaited: BTreeSet<usize>,
    /// Shards lost, by (configuration that moved them, shard).
    pub outgoing: BTreeMap<(u64, usize), Outgoing>,
}

impl Default for GroupState {
    fn default() -> Self {
        GroupState::new(0, synod_shardctl::DEFAULT_SHARDS)
    }
}

impl GroupState {
    pub fn new(gid: Gid, shards: usize) -> Self {
        GroupState {
            gid,
            config: Config::initial(shards),
            shards: BTreeMap::new(),
            awaited: BTreeSet::new(),
            outgoing: BTreeMap::new(),
        }
    }

    /// The shard `op`'s key belongs to, in the configuration this state has reached.
    pub fn shard_of(&self, op: &KvOp) -> usize {
        key2shard(key_of(op), self.config.shards.len())
    }

    /// Bytes of keys and values held, served and outgoing, for memory tests.
    pub fn data_bytes(&self) -> usize {
        let size = |s: &Shard| s.data.bytes() as usize;
        self.shards.values().map(size).sum::<usize>()
            + self
                .outgoing
                .values()
                .map(|o| size(&o.shard))
                .sum::<usize>()
    }

    fn reconfigure(&mut self, next: &Config) {
        if next.num != self.config.num + 1 || !self.awaited.is_empty() {
            return;
        }
        let me = self.gid;
        for (shard, (&old, &new)) in self.config.shards.iter().zip(&next.shards).enumerate() {
            if old == me && new != me {
                let data = self.shards.remove(&shard).unwrap_or_default();
                let servers = next.groups.get(&new).cloned().unwrap_or_default();
                let out = Outgoing {
                    shard: data,
                    to: new,
                    servers,
                };
                self.outgoing.insert((next.num, shard), out);
            } else if old != me && new == me {
                if old == 0 {
                    self.shards.insert(shard, Shard::default());
                } else {
                    self.awaited.insert(shard);
                }
            }
        }
        self.config = next.clone();
    }
}

impl StateMachine for GroupState {
    type Command = KvOp;
    type Internal = GroupOp;
    type Reply = ShardReply;

    fn apply(&mut self, _at: u64, op: &KvOp) -> ShardReply {
        let shard = self.shard_of(op);
        let Some(s) = self.shards.get_mut(&shard) else {
            return ShardReply::WrongGroup { shard };
        };
        match op {
            KvOp::Get { key } => ShardReply::Value {
                shard,
                value: s.data.get(key).cloned().unwrap_or_default(),
            },
            KvOp::Put { key, value } => {
                s.data.put(key.clone(), value.clone());
                ShardReply::Written {
                    shard,
                    len: value.len() as u64,
                }
            }
            KvOp::Append { key, value } => match s.data.append(key, value) {
                Some(len) => ShardReply::Written { shard, len },
                None => {
                    // The ceiling, not a server's configured limit: every replica must
                    // decide alike, whatever its flags.
                    let refused = TooLarge::Value {
                        size: (s.data.get(key).map_or(0, Vec::len) + value.len()) as u64,
                        limit: limits::MAX_VALUE_CEILING as u64,
                    };
                    ShardReply::TooLarge { shard, refused }
                }
            },
            KvOp::Redis(command) => ShardReply::Redis {
                shard,
                reply: s.data.apply(command),
            },
        }
    }

    fn apply_internal(&mut self, _at: u64, op: &GroupOp) {
        match op {
            GroupOp::Reconfigure(next) => self.reconfigure(next),
            GroupOp::Install { num, shard, data } => {
                if *num == self.config.num && self.awaited.remove(shard) {
                    let mut data = data.clone();
                    data.sessions.reindex();
                    self.shards.insert(*shard, data);
                }
            }
            GroupOp::Delete { num, shard } => {
                self.outgoing.remove(&(*num, *shard));
            }
        }
    }

    fn sessions(&self, op: &KvOp) -> Option<&Sessions<ShardReply>> {
        self.shards.get(&self.shard_of(op)).map(|s| &s.sessions)
    }

    fn sessions_mut(&mut self, op: &KvOp) -> Option<&mut Sessions<ShardReply>> {
        let shard = self.shard_of(op);
        self.shards.get_mut(&shard).map(|s| &mut s.sessions)
    }

    fn expired() -> ShardReply {
        ShardReply::SessionExpired
    }

    fn reindex(&mut self) {
        for s in self.shards.values_mut() {
            s.sessions.reindex();
        }
        for o in self.outgoing.values_mut() {
            o.shard.sessions.reindex();
        }
    }

    const BATCHES: bool = true;

    fn batch_reply(replies: Vec<ShardReply>) -> ShardReply {
        ShardReply::Batch(replies)
    }

    /// A batch stops at its first command of a shard this group does not serve: the commands
    /// before it took effect, the rest did not, and the client sends them again, in order, to
    /// their owners (docs/shardkv.md, "Batches").
    fn ends_batch(reply: &ShardReply) -> bool {
        matches!(reply, ShardReply::WrongGroup { .. })
    }

    fn reply_bytes(reply: &ShardReply) -> usize {
        match reply {
            ShardReply::Value { value, .. } => value.len(),
            ShardReply::Redis { reply, .. } => reply.payload_bytes(),
            _ => 0,
        }
    }

    fn reads_only(op: &KvOp) -> bool {
        crate::reads_only(op)
    }

    /// A Get, answered without a log entry once a read barrier says this state is recent
    /// enough. The replica calls this again *after* the barrier to make the answer, so the
    /// ownership check is made against the state applied up to the barrier's index: a group
    /// whose log has moved the shard away (or has not installed it yet) answers
    /// `WrongGroup`, never a value (docs/shardkv.md, "Reads without a log entry").
    fn read(&self, op: &KvOp) -> Option<ShardReply> {
        let shard = self.shard_of(op);
        match op {
            KvOp::Get { key } => Some(match self.shards.get(&shard) {
                Some(s) => ShardReply::Value {
                    shard,
                    value: s.data.get(key).cloned().unwrap_or_default(),
                },
                None => ShardReply::WrongGroup { shard },
            }),
            KvOp::Redis(command) if !command.writes() => Some(match self.shards.get(&shard) {
                Some(s) => ShardReply::Redis {
                    shard,
                    reply: s.data.read(command)?,
                },
                None => ShardReply::WrongGroup { shard },
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_after_the_shard_moved_away_is_wrong_group() {
        let mut state = GroupState::new(100, 10);
        let get = KvOp::Get { key: "k".into() };
        let shard = state.shard_of(&get);
        let mut owned = Config::initial(10);
        owned.num = 1;
        owned.shards = vec![100; 10];
        owned.groups.insert(100, vec!["a".into()]);
        state.apply_internal(1, &GroupOp::Reconfigure(owned.clone()));
        let put = KvOp::Put {
            key: "k".into(),
            value: "v".into(),
        };
        state.apply(2, &put);
        let value = ShardReply::Value {
            shard,
            value: "v".into(),
        };
        assert_eq!(state.read(&get), Some(value));
        assert_eq!(state.read(&put), None, "a Put is not a read");
        let mut moved = owned;
        moved.num = 2;
        moved.shards[shard] = 101;
        moved.groups.insert(101, vec!["b".into()]);
        state.apply_internal(3, &GroupOp::Reconfigure(moved));
        assert_eq!(state.read(&get), Some(ShardReply::WrongGroup { shard }));
    }

    #[test]
    fn an_append_past_the_ceiling_is_refused_and_changes_nothing() {
        let mut state = GroupState::new(100, 10);
        let append = |value: &str| KvOp::Append {
            key: "k".into(),
            value: value.into(),
        };
        let shard = state.shard_of(&append(""));
        state.shards.insert(shard, Shard::default());
        let almost = "a".repeat(limits::MAX_VALUE_CEILING - 1);
        let almost = almost.as_str();
        state.apply(1, &append(almost));
        let refused = TooLarge::Value {
            size: limits::MAX_VALUE_CEILING as u64 + 1,
            limit: limits::MAX_VALUE_CEILING as u64,
        };
        assert_eq!(
            state.apply(2, &append("bc")),
            ShardReply::TooLarge { shard, refused }
        );
        assert_eq!(
            state.apply(3, &append("b")),
            ShardReply::Written {
                shard,
                len: limits::MAX_VALUE_CEILING as u64
            }
        );
    }
}
