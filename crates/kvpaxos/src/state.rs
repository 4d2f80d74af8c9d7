//! The replicated state machine: the key/value store ([`Keyspace`], shared with the other KV
//! services) and the session table that makes client operations at-most-once. Every replica
//! applies the same log to it, so it is deterministic (ordered maps only).
//!
//! The store is a persistent B-tree ([`imbl::OrdMap`]): cloning it is O(1) and shares every
//! node, and a write after the clone copies only the nodes on its path. That is what lets a
//! snapshot be taken from a clone in the background while the replica goes on applying
//! (ARCHITECTURE.md, "Decisions").
//!
//! Encoding: keys and values were `String`s before they were bytes; postcard writes both as
//! a length and the bytes, so snapshots and logs written before read as they were.

use serde::{Deserialize, Serialize};
use synod_keyspace::Keyspace;
use synod_node::limits::{self, TooLarge};
use synod_rsm::{Sessions, StateMachine};

use crate::{KvOp, KvReply};

/// The KV store and the session table (bounded by [`synod_rsm::MAX_SESSIONS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KvState {
    pub data: Keyspace,
    pub sessions: Sessions<KvReply>,
}

impl KvState {
    /// A Get's answer ("" for a missing key, as in the course).
    fn value(&self, key: &[u8]) -> KvReply {
        KvReply::Value(self.data.get(key).cloned().unwrap_or_default())
    }

    /// Bytes of keys and values held: a deterministic function of the applied log, the same
    /// on every replica that applied as far.
    pub fn data_bytes(&self) -> u64 {
        self.data.bytes()
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
                self.data.put(key.clone(), value.clone());
                KvReply::Written {
                    len: value.len() as u64,
                }
            }
            KvOp::Append { key, value } => match self.data.append(key, value) {
                Some(len) => KvReply::Written { len },
                None => KvReply::TooLarge(TooLarge::Value {
                    size: (self.data.get(key).map_or(0, Vec::len) + value.len()) as u64,
                    limit: limits::MAX_VALUE_CEILING as u64,
                }),
            },
            KvOp::Redis(command) => KvReply::Redis(self.data.apply(command)),
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
            KvReply::Redis(reply) => reply.payload_bytes(),
            _ => 0,
        }
    }

    fn reads_only(op: &KvOp) -> bool {
        !op.writes()
    }

    fn read(&self, op: &KvOp) -> Option<KvReply> {
        match op {
            KvOp::Get { key } => Some(self.value(key)),
            KvOp::Redis(command) => self.data.read(command).map(KvReply::Redis),
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
        let almost = vec![b'a'; limits::MAX_VALUE_CEILING - 10];
        let put = KvOp::Put {
            key: "k".into(),
            value: almost.clone(),
        };
        assert!(matches!(state.apply(0, &put), KvReply::Written { .. }));
        let append = |value: &[u8]| KvOp::Append {
            key: "k".into(),
            value: value.into(),
        };
        assert_eq!(
            state.apply(1, &append(b"12345678901")),
            KvReply::TooLarge(TooLarge::Value {
                size: limits::MAX_VALUE_CEILING as u64 + 1,
                limit: limits::MAX_VALUE_CEILING as u64,
            })
        );
        assert_eq!(state.data.get(b"k"), Some(&almost));
        assert_eq!(
            state.apply(2, &append(b"1234567890")),
            KvReply::Written {
                len: limits::MAX_VALUE_CEILING as u64
            }
        );
    }

    /// A state written when keys and values were `String`s.
    #[derive(Serialize)]
    struct StringState {
        data: imbl::OrdMap<String, String>,
        sessions: Sessions<KvReply>,
    }

    #[test]
    fn a_snapshot_written_with_string_keys_reads_as_bytes() {
        let old = StringState {
            data: [
                ("k".to_string(), "v".to_string()),
                ("e".into(), String::new()),
            ]
            .into_iter()
            .collect(),
            sessions: Sessions::default(),
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let state: KvState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(state.data.get(b"k"), Some(&b"v".to_vec()));
        assert_eq!(state.data.get(b"e"), Some(&Vec::new()));
        assert_eq!(state.data_bytes(), 3);
    }
}
