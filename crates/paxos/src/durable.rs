//! What a Paxos peer writes to storage, and the state it snapshots.
//!
//! The acceptor's promises and accepts are *records* appended to the node's log and synced
//! before the peer answers, so a restarted peer never contradicts what it told a proposer.
//! Decisions are appended too (without a sync of their own: a decision can always be learned
//! again from the acceptors). [`PaxosState`] is the whole durable state in one value; the
//! embedding node puts it in its snapshot, which empties the log.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use synod_node::NodeId;

use crate::config::Schedule;
use crate::msg::Ballot;

/// One log record. Only [`crate::Paxos`] writes records to the log of a node that embeds it,
/// so the node hands every recovered record back to [`crate::Paxos::recover`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Record<V> {
    Promise {
        seq: u64,
        ballot: Ballot,
    },
    Accept {
        seq: u64,
        ballot: Ballot,
        value: V,
    },
    Decided {
        seq: u64,
        value: V,
    },
    /// This peer may vote, in the instances `membership` allows.
    Joined {
        horizon: Option<u64>,
    },
    /// Promised `ballot` in every instance (to a peer that wants to lead).
    PromiseAll {
        ballot: Ballot,
    },
}

/// The acceptor and learner state of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AcceptorState<V> {
    pub promised: Ballot,
    pub accepted: Option<(Ballot, V)>,
    pub decided: Option<V>,
}

impl<V> Default for AcceptorState<V> {
    fn default() -> Self {
        AcceptorState {
            promised: Ballot::default(),
            accepted: None,
            decided: None,
        }
    }
}

/// Everything a Paxos peer must remember across a crash, for the embedding node's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaxosState<V> {
    /// Instances at or above `min`, in order.
    pub instances: Vec<(u64, AcceptorState<V>)>,
    /// Per peer, the highest `done_below` heard from it.
    pub done_below: BTreeMap<NodeId, u64>,
    pub max: Option<u64>,
    pub membership: Membership,
    /// The ballot promised for every instance (multi-Paxos phase 1).
    pub promised_all: Ballot,
    /// The configurations of the instances from the application's next one on.
    pub schedule: Schedule,
}

/// Whether a peer takes part in instances as an acceptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Membership {
    /// The peer lost its disk and is finding out which instances it may have voted in
    /// before; it votes in none until it knows.
    Rejoining,
    /// The peer votes in every instance above `horizon` (every instance if `None`). Instances
    /// at or below the horizon may hold votes of an earlier life whose disk was lost.
    Voting { horizon: Option<u64> },
}
