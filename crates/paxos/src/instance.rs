//! The in-memory state of one Paxos instance on one peer: acceptor, learner and (when this
//! peer is proposing) proposer, with the bytes of values it holds.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use synod_node::NodeId;

use crate::durable::AcceptorState;
use crate::msg::Ballot;

/// Where this peer's proposal for an instance is.
#[derive(Debug, Clone, Hash)]
pub(crate) enum Phase<V> {
    /// Waiting for the retry timer before a (new) round.
    Idle,
    /// Prepare sent under `ballot`; `best` is the highest accepted proposal reported so far.
    Preparing {
        ballot: Ballot,
        promises: BTreeSet<NodeId>,
        best: Option<(Ballot, V)>,
    },
    /// Accept of `value` sent under `ballot`.
    Accepting {
        ballot: Ballot,
        value: V,
        accepts: BTreeSet<NodeId>,
    },
}

#[derive(Debug, Clone, Hash)]
pub(crate) struct Proposer<V> {
    /// What this peer's application asked to propose.
    pub value: V,
    pub phase: Phase<V>,
    /// Highest round seen in any reply, so the next ballot beats it.
    pub highest_round: u64,
    /// When to start another round if this one has not decided.
    pub retry_at: Duration,
    /// Current retry interval; doubles per failed round up to a cap.
    pub backoff: Duration,
}

#[derive(Debug, Clone, Hash)]
pub(crate) struct Instance<V> {
    pub acceptor: AcceptorState<V>,
    pub proposer: Option<Proposer<V>>,
    /// Serialized size of every value this instance holds, as last weighed.
    pub bytes: usize,
}

impl<V> Default for Instance<V> {
    fn default() -> Self {
        Instance {
            acceptor: AcceptorState::default(),
            proposer: None,
            bytes: 0,
        }
    }
}

fn size<V: Serialize>(value: &V) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(0)
}

impl<V: Serialize> Instance<V> {
    /// Bytes of values held now: the measure behind [`crate::Paxos::held_bytes`].
    pub fn weigh(&self) -> usize {
        let a = &self.acceptor;
        let mut total = a.accepted.as_ref().map_or(0, |(_, v)| size(v));
        total += a.decided.as_ref().map_or(0, size);
        if let Some(p) = &self.proposer {
            total += size(&p.value);
            total += match &p.phase {
                Phase::Idle => 0,
                Phase::Preparing { best, .. } => best.as_ref().map_or(0, |(_, v)| size(v)),
                Phase::Accepting { value, .. } => size(value),
            };
        }
        total
    }
}
