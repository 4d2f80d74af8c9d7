//! The one place where a Paxos peer drops an input on purpose.
//!
//! A message that a handler decides not to act on goes through [`Paxos::ignore`] with the
//! reason, so a trace of a run (`RUST_LOG=synod_paxos=trace`, or `SYNOD_TRACE=1` under the
//! simulator) says why nothing happened, instead of a handler returning in silence.

use synod_node::NodeId;

use crate::peer::Paxos;

/// Why a peer ignored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ignored {
    /// The sender is in none of the configurations this peer knows.
    NotAPeer,
    /// Storage failed earlier; the peer no longer acts at all.
    Failed,
    /// This peer lost its disk and does not know yet what its earlier life promised.
    Rejoining,
    /// A rejoin answer, but this peer is not rejoining (anymore).
    NotRejoining,
    /// A rejoin answer that arrived before this life asked: meant for an earlier life.
    NotAskedYet,
    /// The instance is at or below this peer's rejoin horizon: its earlier life may have
    /// voted there, so it must not vote again.
    BelowHorizon,
    /// A reply about an instance this peer is not (or no longer) proposing in.
    NotProposing,
    /// A reply for a ballot or phase this peer has moved past.
    StaleRound,
    /// A promise for a campaign that is over (won, abandoned or superseded).
    StaleCampaign,
    /// An answer to a read barrier that has completed or was never this life's.
    UnknownBarrier,
    /// The instance is below `min`: decided, and forgotten by every peer.
    Forgotten,
    /// A `Learn` from an instance this peer has not seen decided either.
    NothingToTeach,
    /// A prepare or accept in an instance whose configuration does not count this peer's
    /// vote (it was removed, or is a learner).
    NotAVoter,
    /// A message that contradicts itself (a part number not below its count of parts).
    Malformed,
}

impl<V> Paxos<V> {
    /// Drops message `what` from `from` for reason `why`, and says so at trace level.
    pub(crate) fn ignore(&self, why: Ignored, from: NodeId, what: &'static str) {
        tracing::trace!(peer = %self.me, %from, what, ?why, "ignored");
    }
}
