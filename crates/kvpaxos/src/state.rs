//! The replicated state machine: the key/value map and the bounded session table that makes
//! client operations at-most-once. Every replica applies the same log to it, so it must be
//! deterministic: ordered maps only, eviction decided by log position.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{KvOp, KvReply, Op};

/// Clients remembered at once. When a new client would exceed it, the one whose last
/// operation is oldest in the log is evicted; its further requests get
/// [`KvReply::SessionExpired`].
pub const MAX_SESSIONS: usize = 10_000;

/// What the table remembers about one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The last sequence number applied for this client, and the reply it got.
    pub seq: u64,
    pub reply: KvReply,
    /// The log instance where the client was last seen (for eviction).
    pub last_used: u64,
}

/// The KV map, the session table, and how far the log has been applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    pub data: BTreeMap<String, String>,
    pub sessions: BTreeMap<u64, Session>,
    /// The next log instance to apply; every instance below it is applied.
    pub next: u64,
    /// Sessions by (last_used, client), to find the least recently used one. Derived from
    /// `sessions`, so not serialized.
    #[serde(skip)]
    lru: BTreeSet<(u64, u64)>,
}

impl KvState {
    /// Rebuilds the derived index after deserializing.
    pub fn reindex(&mut self) {
        self.lru = self
            .sessions
            .iter()
            .map(|(&client, s)| (s.last_used, client))
            .collect();
    }

    /// The reply already given for (client, seq), if that operation was applied.
    pub fn replied(&self, client: u64, seq: u64) -> Option<&KvReply> {
        self.sessions
            .get(&client)
            .filter(|s| s.seq == seq)
            .map(|s| &s.reply)
    }

    /// Whether (client, seq) was applied already (or is older than the client's last
    /// applied operation, which a client with one request outstanding cannot still want).
    pub fn seen(&self, client: u64, seq: u64) -> bool {
        self.sessions.get(&client).is_some_and(|s| s.seq >= seq)
    }

    /// Applies log instance `self.next` holding `op`. Returns the client whose request it
    /// settled and the reply, if it was a client operation.
    pub fn apply(&mut self, op: &Op) -> Option<(u64, u64, KvReply)> {
        let at = self.next;
        self.next += 1;
        let Op::Client { client, seq, op } = op else {
            return None;
        };
        let (client, seq) = (*client, *seq);
        if let Some(session) = self.sessions.get(&client) {
            if session.seq >= seq {
                // A duplicate: proposed again after a retry, or by a second replica.
                return Some((client, seq, session.reply.clone()));
            }
        } else if seq > 1 {
            // A client we do not know that is past its first operation was evicted: we
            // cannot tell whether this request already took effect.
            return Some((client, seq, KvReply::SessionExpired));
        }
        let reply = self.execute(op);
        if let Some(old) = self.sessions.insert(
            client,
            Session {
                seq,
                reply: reply.clone(),
                last_used: at,
            },
        ) {
            self.lru.remove(&(old.last_used, client));
        }
        self.lru.insert((at, client));
        while self.sessions.len() > MAX_SESSIONS {
            let Some((_, evicted)) = self.lru.pop_first() else {
                break;
            };
            self.sessions.remove(&evicted);
        }
        Some((client, seq, reply))
    }

    fn execute(&mut self, op: &KvOp) -> KvReply {
        match op {
            KvOp::Get { key } => KvReply::Value(self.data.get(key).cloned().unwrap_or_default()),
            KvOp::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                KvReply::Written {
                    len: value.len() as u64,
                }
            }
            KvOp::Append { key, value } => {
                let entry = self.data.entry(key.clone()).or_default();
                entry.push_str(value);
                KvReply::Written {
                    len: entry.len() as u64,
                }
            }
        }
    }

    /// Bytes of keys and values held, for memory tests.
    pub fn data_bytes(&self) -> usize {
        self.data.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client: u64, seq: u64, value: &str) -> Op {
        Op::Client {
            client,
            seq,
            op: KvOp::Append {
                key: "k".into(),
                value: value.into(),
            },
        }
    }

    #[test]
    fn duplicates_are_answered_not_applied() {
        let mut s = KvState::default();
        assert_eq!(
            s.apply(&put(1, 1, "a")).unwrap().2,
            KvReply::Written { len: 1 }
        );
        assert_eq!(
            s.apply(&put(1, 1, "a")).unwrap().2,
            KvReply::Written { len: 1 }
        );
        assert_eq!(s.data["k"], "a");
        assert_eq!(s.next, 2);
    }

    #[test]
    fn evicted_sessions_expire_instead_of_applying_twice() {
        let mut s = KvState::default();
        for client in 0..=MAX_SESSIONS as u64 {
            s.apply(&put(client, 1, "x"));
        }
        assert_eq!(s.sessions.len(), MAX_SESSIONS);
        assert!(!s.sessions.contains_key(&0), "the oldest client is evicted");
        let before = s.data["k"].len();
        assert_eq!(s.apply(&put(0, 2, "y")).unwrap().2, KvReply::SessionExpired);
        assert_eq!(s.data["k"].len(), before);
    }
}
