//! The bounded session table that makes client commands at-most-once.
//!
//! It is part of the replicated state (every replica applies the same log to it), so it is
//! deterministic: ordered maps only, eviction decided by log position. A state machine may
//! keep one table (kvpaxos, the shard controller) or several that travel with its data (one
//! per shard in shardkv).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Clients remembered at once by one table. When a new client would exceed it, the one whose
/// last command is oldest in the log is evicted; its further commands are answered with the
/// state machine's "session expired" reply instead of being applied.
pub const MAX_SESSIONS: usize = 10_000;

/// What the table remembers about one client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Session<R> {
    /// The last sequence number applied for this client, and the reply it got.
    pub seq: u64,
    pub reply: R,
    /// The log instance where the client was last seen (for eviction).
    pub last_used: u64,
}

/// What the table says about a client command before it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<R> {
    /// Not seen before: apply it.
    New,
    /// Applied already (proposed again after a retry, or by a second replica): answer this.
    Duplicate(R),
    /// The client's session was evicted, so a retry cannot be told from a new command.
    Expired,
}

/// Client id → last applied command, bounded by [`MAX_SESSIONS`]. Equality and hashing
/// look at the sessions only: the index is derived from them, and a table that travelled
/// (in a log entry or a snapshot) has it rebuilt only once it is used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sessions<R> {
    sessions: BTreeMap<u64, Session<R>>,
    /// Sessions by (last_used, client), to find the least recently used one. Derived from
    /// `sessions`, so not serialized; rebuilt by [`reindex`](Self::reindex).
    #[serde(skip)]
    lru: BTreeSet<(u64, u64)>,
}

impl<R: PartialEq> PartialEq for Sessions<R> {
    fn eq(&self, other: &Self) -> bool {
        self.sessions == other.sessions
    }
}

impl<R: Eq> Eq for Sessions<R> {}

impl<R: std::hash::Hash> std::hash::Hash for Sessions<R> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.sessions.hash(state);
    }
}

impl<R> Default for Sessions<R> {
    fn default() -> Self {
        Sessions {
            sessions: BTreeMap::new(),
            lru: BTreeSet::new(),
        }
    }
}

impl<R: Clone> Sessions<R> {
    /// Rebuilds the derived index after deserializing.
    pub fn reindex(&mut self) {
        self.lru = self
            .sessions
            .iter()
            .map(|(&client, s)| (s.last_used, client))
            .collect();
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn contains(&self, client: u64) -> bool {
        self.sessions.contains_key(&client)
    }

    /// The reply already given for (client, seq), if that command was applied.
    pub fn replied(&self, client: u64, seq: u64) -> Option<&R> {
        self.sessions
            .get(&client)
            .filter(|s| s.seq == seq)
            .map(|s| &s.reply)
    }

    /// Whether (client, seq) was applied already (or is older than the client's last applied
    /// command, which a client with one command outstanding cannot still want).
    pub fn seen(&self, client: u64, seq: u64) -> bool {
        self.sessions.get(&client).is_some_and(|s| s.seq >= seq)
    }

    /// Decides what to do with (client, seq) about to be applied. Sequence numbers start at
    /// 1, so an unknown client past its first command must have been evicted.
    pub fn check(&self, client: u64, seq: u64) -> Verdict<R> {
        match self.sessions.get(&client) {
            Some(s) if s.seq >= seq => Verdict::Duplicate(s.reply.clone()),
            None if seq > 1 => Verdict::Expired,
            _ => Verdict::New,
        }
    }

    /// Remembers that (client, seq) was applied at log instance `at` with `reply`, evicting
    /// the least recently used client if the table is full.
    pub fn record(&mut self, client: u64, seq: u64, reply: R, at: u64) {
        let entry = Session {
            seq,
            reply,
            last_used: at,
        };
        if let Some(old) = self.sessions.insert(client, entry) {
            self.lru.remove(&(old.last_used, client));
        }
        self.lru.insert((at, client));
        while self.sessions.len() > MAX_SESSIONS {
            let Some((_, evicted)) = self.lru.pop_first() else {
                break;
            };
            self.sessions.remove(&evicted);
        }
    }

    /// Takes in another table's sessions (a shard arriving from another group), keeping for
    /// each client the later of the two.
    pub fn merge(&mut self, other: &Sessions<R>, at: u64) {
        for (&client, s) in &other.sessions {
            if !self.seen(client, s.seq) {
                self.record(client, s.seq, s.reply.clone(), at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_recognized_and_evicted_clients_expire() {
        let mut t: Sessions<u32> = Sessions::default();
        assert_eq!(t.check(1, 1), Verdict::New);
        t.record(1, 1, 7, 0);
        assert_eq!(t.check(1, 1), Verdict::Duplicate(7));
        assert_eq!(t.check(1, 2), Verdict::New);
        for client in 2..=MAX_SESSIONS as u64 + 1 {
            t.record(client, 1, 0, client);
        }
        assert_eq!(t.len(), MAX_SESSIONS);
        assert!(!t.contains(1), "the least recently used client is evicted");
        assert_eq!(t.check(1, 2), Verdict::Expired);
    }

    #[test]
    fn merge_keeps_the_later_session() {
        let mut a: Sessions<u32> = Sessions::default();
        let mut b: Sessions<u32> = Sessions::default();
        a.record(1, 3, 30, 0);
        b.record(1, 2, 20, 0);
        b.record(2, 5, 50, 0);
        a.merge(&b, 9);
        assert_eq!(a.replied(1, 3), Some(&30));
        assert_eq!(a.replied(2, 5), Some(&50));
    }
}
