//! The replicated state machine: the key/value map and the session table that makes client
//! operations at-most-once. Every replica applies the same log to it, so it is deterministic
//! (ordered maps only).
//!
//! The map is a persistent B-tree ([`imbl::OrdMap`]): cloning it is O(1) and shares every
//! node, and a write after the clone copies only the nodes on its path. That is what lets a
//! snapshot be taken from a clone in the background while the replica goes on applying
//! (ARCHITECTURE.md, "Decisions").

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use synod_node::limits::{self, TooLarge};
use synod_rsm::{Sessions, StateMachine};

use crate::{KvOp, KvReply};

/// The KV map and the session table (bounded by [`synod_rsm::MAX_SESSIONS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KvState {
    pub data: OrdMap<String, String>,
    pub sessions: Sessions<KvReply>,
    /// Bytes of keys and values in `data`, kept as it changes (so `--max-memory` and the
    /// status report never walk the map) and recomputed by `reindex` after a load.
    #[serde(skip)]
    data_bytes: u64,
}

impl KvState {
    /// A Get's answer ("" for a missing key, as in the course).
    fn value(&self, key: &str) -> KvReply {
        KvReply::Value(self.data.get(key).cloned().unwrap_or_default())
    }

    /// Bytes of keys and values held: a deterministic function of the applied log, the same
    /// on every replica that applied as far.
    pub fn data_bytes(&self) -> u64 {
        debug_assert_eq!(self.data_bytes, Self::count_bytes(&self.data));
        self.data_bytes
    }

    fn count_bytes(data: &OrdMap<String, String>) -> u64 {
        data.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }
}

impl StateMachine for KvState {
    type Command = KvOp;
    type Internal = ();
    type Reply = KvReply;

    fn apply(&mut self, _at: u64, op: &KvOp) -> KvReply {
        match op {
            KvOp::Get { key } => self.value(key),
            KvOp::Put { key, value } => {
                let old = self.data.insert(key.clone(), value.clone());
                let freed = old.map_or(0, |old| key.len() + old.len());
                self.data_bytes = self.data_bytes + (key.len() + value.len()) as u64 - freed as u64;
                KvReply::Written {
                    len: value.len() as u64,
                }
            }
            KvOp::Append { key, value } => {
                // The ceiling, not a replica's configured limit: every replica must decide
                // alike, whatever its flags.
                let old = self.data.get(key).map_or(0, String::len);
                let len = old + value.len();
                if len > limits::MAX_VALUE_CEILING {
                    return KvReply::TooLarge(TooLarge::Value {
                        size: len as u64,
                        limit: limits::MAX_VALUE_CEILING as u64,
                    });
                }
                let added = if self.data.contains_key(key) {
                    0
                } else {
                    key.len()
                };
                self.data_bytes += (added + value.len()) as u64;
                let entry = self.data.entry(key.clone()).or_default();
                entry.push_str(value);
                KvReply::Written { len: len as u64 }
            }
        }
    }

    fn apply_internal(&mut self, _at: u64, _op: &()) {}

    fn sessions(&self, _op: &KvOp) -> Option<&Sessions<KvReply>> {
        Some(&self.sessions)
    }

    fn sessions_mut(&mut self, _op: &KvOp) -> Option<&mut Sessions<KvReply>> {
        Some(&mut self.sessions)
    }

    fn expired() -> KvReply {
        KvReply::SessionExpired
    }

    fn reindex(&mut self) {
        self.sessions.reindex();
        self.data_bytes = Self::count_bytes(&self.data);
    }

    fn state_bytes(&self) -> u64 {
        self.data_bytes()
    }

    const BATCHES: bool = true;

    fn batch_reply(replies: Vec<KvReply>) -> KvReply {
        KvReply::Batch(replies)
    }

    fn reply_bytes(reply: &KvReply) -> usize {
        match reply {
            KvReply::Value(value) => value.len(),
            _ => 0,
        }
    }

    fn read(&self, op: &KvOp) -> Option<KvReply> {
        match op {
            KvOp::Get { key } => Some(self.value(key)),
            KvOp::Put { .. } | KvOp::Append { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_past_the_ceiling_is_refused_and_changes_nothing() {
        let mut state = KvState::default();
        let almost = "a".repeat(limits::MAX_VALUE_CEILING - 10);
        let put = KvOp::Put {
            key: "k".into(),
            value: almost.clone(),
        };
        assert!(matches!(state.apply(0, &put), KvReply::Written { .. }));
        let append = |value: &str| KvOp::Append {
            key: "k".into(),
            value: value.into(),
        };
        assert_eq!(
            state.apply(1, &append("12345678901")),
            KvReply::TooLarge(TooLarge::Value {
                size: limits::MAX_VALUE_CEILING as u64 + 1,
                limit: limits::MAX_VALUE_CEILING as u64,
            })
        );
        assert_eq!(state.data["k"], almost);
        assert_eq!(
            state.apply(2, &append("1234567890")),
            KvReply::Written {
                len: limits::MAX_VALUE_CEILING as u64
            }
        );
    }
}
