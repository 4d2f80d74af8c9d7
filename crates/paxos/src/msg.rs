//! The messages Paxos peers exchange, and proposal numbers.
//!
//! Every message carries the sender's `done_below` (one more than the highest instance its
//! application called `done` on), which is how [`crate::Paxos::min`] learns about the other
//! peers without messages of its own.

use serde::{Deserialize, Serialize};
use synod_node::NodeId;

/// A proposal number. Ordered by round, then by the proposing peer's node id, then by
/// `nonce`, a random number the peer draws at every start. The id keeps peers apart; the nonce
/// keeps two lives of one peer apart, so a peer that lost its disk (and with it the rounds it
/// used) can never reuse a number for a different value. Round 0 is "no proposal yet".
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    pub round: u64,
    pub peer: u64,
    pub nonce: u64,
}

/// One Paxos message. `seq` names the instance; `done` is the sender's `done_below`.
///
/// Requests (the course's RPCs) are `Prepare`, `Accept`, `Decided` and `JoinQuery`; the rest
/// are replies to them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaxosMsg<V> {
    /// Phase 1a: please promise to ignore proposals numbered below `ballot`.
    Prepare { seq: u64, ballot: Ballot, done: u64 },
    /// Phase 1b: promised; here is the highest-numbered proposal this acceptor accepted.
    Promise {
        seq: u64,
        ballot: Ballot,
        accepted: Option<(Ballot, V)>,
        done: u64,
    },
    /// Phase 2a: please accept `value` under `ballot`.
    Accept {
        seq: u64,
        ballot: Ballot,
        value: V,
        done: u64,
    },
    /// Phase 2b: accepted.
    Accepted { seq: u64, ballot: Ballot, done: u64 },
    /// Refusal of a prepare or accept: the acceptor has promised `promised`, which is higher.
    Reject {
        seq: u64,
        promised: Ballot,
        done: u64,
    },
    /// `value` was chosen for `seq`. Sent to every peer by a proposer that learned it.
    Decided { seq: u64, value: V, done: u64 },
    /// Reply to a prepare or accept for an instance the sender knows is decided.
    AlreadyDecided { seq: u64, value: V, done: u64 },
    /// The sender no longer has instance `seq`: every peer was done with it. A peer that still
    /// needs it must get the application state from elsewhere (a snapshot).
    Forgotten { seq: u64, done: u64 },
    /// A peer rejoining after losing its disk asks for the highest instance others know of.
    JoinQuery { done: u64 },
    /// Answer to `JoinQuery`: the highest instance the sender knows of (`None`: none yet) and
    /// its *ballot floor*, the highest ballot it has durably promised anywhere.
    JoinInfo {
        max: Option<u64>,
        floor: Ballot,
        done: u64,
    },
    /// Multi-Paxos phase 1a, from a peer that wants to lead: please promise `ballot` for
    /// every instance, and report your votes in instances `from` and above.
    PrepareAll {
        ballot: Ballot,
        from: u64,
        done: u64,
    },
    /// Promised `ballot` for every instance; `votes` are the sender's votes and decisions in
    /// the instances from `from` on, `max` the highest instance it knows of. The votes come
    /// in `parts` messages (numbered by `part`) that each fit a frame; the promise counts
    /// once every part arrived.
    PromiseAll {
        ballot: Ballot,
        votes: Vec<(u64, Vote<V>)>,
        max: Option<u64>,
        done: u64,
        part: u32,
        parts: u32,
    },
    /// Refusal of a `PrepareAll` for `ballot`: the sender promised `promised`, which is higher.
    RejectAll {
        ballot: Ballot,
        promised: Ballot,
        done: u64,
    },
    /// From the leader with `ballot`, periodically: it is alive (for elections only, never
    /// for safety). `done_all` is the `done_below` the leader heard from each peer, `max`
    /// the highest instance it knows of (a follower that missed the last decisions learns
    /// that there is something to catch up on).
    Heartbeat {
        ballot: Ballot,
        done: u64,
        done_all: Vec<(NodeId, u64)>,
        max: Option<u64>,
    },
    /// From a peer that is behind: please send the decisions you hold from instance `from`
    /// on (answered with `Decided` messages, or `Forgotten` if `from` is below your `min`).
    Learn { from: u64, done: u64 },
    /// For read barrier `id`: what is the highest instance you know of?
    ReadQuery { id: u64, done: u64 },
    /// Answer to `ReadQuery`.
    ReadMax {
        id: u64,
        max: Option<u64>,
        done: u64,
    },
}

/// An acceptor's knowledge of one instance, reported to a peer that wants to lead.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Vote<V> {
    Accepted(Ballot, V),
    Decided(V),
}

impl<V> PaxosMsg<V> {
    /// The sender's `done_below`, carried by every message.
    pub fn done(&self) -> u64 {
        match self {
            PaxosMsg::Prepare { done, .. }
            | PaxosMsg::Promise { done, .. }
            | PaxosMsg::Accept { done, .. }
            | PaxosMsg::Accepted { done, .. }
            | PaxosMsg::Reject { done, .. }
            | PaxosMsg::Decided { done, .. }
            | PaxosMsg::AlreadyDecided { done, .. }
            | PaxosMsg::Forgotten { done, .. }
            | PaxosMsg::JoinQuery { done }
            | PaxosMsg::JoinInfo { done, .. }
            | PaxosMsg::PrepareAll { done, .. }
            | PaxosMsg::PromiseAll { done, .. }
            | PaxosMsg::RejectAll { done, .. }
            | PaxosMsg::Heartbeat { done, .. }
            | PaxosMsg::ReadQuery { done, .. }
            | PaxosMsg::ReadMax { done, .. }
            | PaxosMsg::Learn { done, .. } => *done,
        }
    }

    /// The message's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PaxosMsg::Prepare { .. } => "Prepare",
            PaxosMsg::Promise { .. } => "Promise",
            PaxosMsg::Accept { .. } => "Accept",
            PaxosMsg::Accepted { .. } => "Accepted",
            PaxosMsg::Reject { .. } => "Reject",
            PaxosMsg::Decided { .. } => "Decided",
            PaxosMsg::AlreadyDecided { .. } => "AlreadyDecided",
            PaxosMsg::Forgotten { .. } => "Forgotten",
            PaxosMsg::JoinQuery { .. } => "JoinQuery",
            PaxosMsg::JoinInfo { .. } => "JoinInfo",
            PaxosMsg::PrepareAll { .. } => "PrepareAll",
            PaxosMsg::PromiseAll { .. } => "PromiseAll",
            PaxosMsg::RejectAll { .. } => "RejectAll",
            PaxosMsg::Heartbeat { .. } => "Heartbeat",
            PaxosMsg::ReadQuery { .. } => "ReadQuery",
            PaxosMsg::ReadMax { .. } => "ReadMax",
            PaxosMsg::Learn { .. } => "Learn",
        }
    }

    /// The instance the message is about, if it is about one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            PaxosMsg::Prepare { seq, .. }
            | PaxosMsg::Promise { seq, .. }
            | PaxosMsg::Accept { seq, .. }
            | PaxosMsg::Accepted { seq, .. }
            | PaxosMsg::Reject { seq, .. }
            | PaxosMsg::Decided { seq, .. }
            | PaxosMsg::AlreadyDecided { seq, .. }
            | PaxosMsg::Forgotten { seq, .. } => Some(*seq),
            PaxosMsg::JoinQuery { .. }
            | PaxosMsg::JoinInfo { .. }
            | PaxosMsg::PrepareAll { .. }
            | PaxosMsg::PromiseAll { .. }
            | PaxosMsg::RejectAll { .. }
            | PaxosMsg::Heartbeat { .. }
            | PaxosMsg::ReadQuery { .. }
            | PaxosMsg::ReadMax { .. }
            | PaxosMsg::Learn { .. } => None,
        }
    }

    /// Whether this is a request (what the course's `rpcCount` counts) rather than a reply.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            PaxosMsg::Prepare { .. }
                | PaxosMsg::Accept { .. }
                | PaxosMsg::Decided { .. }
                | PaxosMsg::JoinQuery { .. }
                | PaxosMsg::PrepareAll { .. }
                | PaxosMsg::Heartbeat { .. }
                | PaxosMsg::ReadQuery { .. }
                | PaxosMsg::Learn { .. }
        )
    }
}
