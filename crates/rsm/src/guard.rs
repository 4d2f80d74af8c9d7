//! The one place where a replica drops an input on purpose, with the reason logged at trace
//! level (`RUST_LOG=synod_rsm=trace`), so a quiet replica can always say why it was quiet.

use synod_node::NodeId;

/// Why a replica ignored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ignored {
    /// Storage failed or could not be read: the replica serves nothing but its status.
    Broken,
    /// A retry of a request that is being applied right now: the reply follows.
    InProgress,
    /// A snapshot request or snapshot from a node that is not a replica of this group.
    NotAPeer,
    /// A snapshot request from a replica that is not behind this one.
    NotBehind,
    /// A snapshot that is not ahead of what this replica applied already.
    StaleSnapshot,
    /// A snapshot whose bytes do not decode as this state machine.
    Undecodable,
    /// A snapshot chunk that is not the one this replica expects next (a duplicate, a late
    /// answer, the middle of a snapshot it is not receiving).
    UnexpectedChunk,
    /// A message meant for clients or operators, not replicas.
    NotForReplicas,
    /// A batch of commands for a state machine that does not take batches.
    NoBatches,
    /// A client request at a replica that is not in the group (removed, or joining and
    /// without the group's state yet): the client tries another.
    NotServing,
    /// A batch of no commands, or of more than [`crate::MAX_BATCH_COMMANDS`].
    BatchSize,
}

/// Drops message `what` from `from` at replica `node` for reason `why`, and says so.
pub(crate) fn ignore(node: NodeId, why: Ignored, from: NodeId, what: &'static str) {
    tracing::trace!(%node, %from, what, ?why, "ignored");
}
