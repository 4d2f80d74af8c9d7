//! The status query: what one replica knows about itself, answered without consulting
//! anyone, for operators (`synod status`) and tests.

use serde::{Deserialize, Serialize};
use synod_node::NodeId;
use synod_paxos::{Config, Membership};

/// One replica's view of itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatusReport {
    /// This replica's id and its index in `peers` (`peers.len()` when it is no voter).
    pub id: NodeId,
    pub index: usize,
    /// The voters of the configuration of its next instance (empty while it knows none).
    pub peers: Vec<NodeId>,
    /// Its role in the group's configuration.
    pub role: Role,
    /// The configurations from its next instance on, each with the instance it governs
    /// from: the first is in effect, any later one is decided and not yet in effect.
    pub configs: Vec<(u64, Config)>,
    /// Whether it votes (or is rejoining after losing its disk).
    pub membership: Membership,
    /// Whether it is the stable leader (a majority promised its ballot for every instance).
    pub leader: bool,
    /// The highest Paxos instance it knows of (the log's end).
    pub max: Option<u64>,
    /// The last instance applied to the state machine.
    pub applied: Option<u64>,
    /// Paxos `min()`: instances below it are forgotten by every replica.
    pub min: u64,
    /// Bytes of durable state: the last snapshot plus the log written since.
    pub durable_bytes: u64,
    /// Serialized size of the state machine.
    pub state_bytes: u64,
    /// Whether the replica stopped serving because its storage failed.
    pub broken: bool,
    /// Whether it is behind its peers and fetching their state, and how far it got; `None`
    /// when it can follow the log.
    pub catch_up: Option<CatchUp>,
    /// Its own background snapshots: one being written, and the last one written.
    pub snapshots: SnapshotStatus,
}

/// A replica's place in its group's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// A voter now and in the newest configuration.
    Voter,
    /// A voter now, but not in the newest configuration: its removal is decided and takes
    /// effect at a later instance.
    Leaving,
    /// Receives decisions and catches up, votes nowhere (yet).
    Learner,
    /// In no configuration from its next instance on: it stopped voting and serving.
    Removed,
    /// New to the group and still without its state (and so its configuration).
    Joining,
}

impl Role {
    /// The role of `me` given the configurations from its next instance on.
    pub fn of(me: NodeId, configs: &[(u64, Config)]) -> Role {
        let (Some((_, now)), Some((_, newest))) = (configs.first(), configs.last()) else {
            return Role::Joining;
        };
        match (now.is_voter(me), newest.is_voter(me)) {
            (true, true) => Role::Voter,
            (true, false) => Role::Leaving,
            (false, _) if configs.iter().any(|(_, c)| c.is_member(me)) => Role::Learner,
            (false, _) => Role::Removed,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Voter => "voter",
            Role::Leaving => "leaving",
            Role::Learner => "learner",
            Role::Removed => "removed",
            Role::Joining => "joining",
        }
    }
}

/// A replica's own snapshots (those it writes to compact its log, not those it receives).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotStatus {
    /// Milliseconds since the snapshot being written in the background was begun; `None`
    /// when none is.
    pub writing_for_ms: Option<u64>,
    /// The last snapshot that became durable: its size and how long it took, from being
    /// begun on the apply path to being durable with the log cut.
    pub last: Option<SnapshotTaken>,
}

/// A snapshot that was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotTaken {
    pub bytes: u64,
    pub millis: u64,
}

/// A replica that cannot follow the log because its peers forgot instances it needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CatchUp {
    /// It asked for a snapshot `for_ms` milliseconds ago and has received none of it yet.
    Waiting { for_ms: u64 },
    /// A snapshot is arriving from `from`: `received` of `total` bytes.
    Receiving {
        from: NodeId,
        received: u64,
        total: u64,
    },
    /// The last snapshot received could not be installed, for `reason`; it asks again.
    Failed { reason: String },
}

/// Just the status messages. Every replicated service's message enum starts with these two
/// variants, in this order, so a status client can speak to all of them with this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// One message per status query, moved once: boxing the report would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum StatusMsg {
    Query,
    Report(StatusReport),
}

/// An instance that cannot be decided because too few replicas may vote in it: the frontier
/// of the log (the first instance no answering replica has applied) lies at or below the
/// rejoin horizon of so many replicas that lost their disks (or they are still rejoining)
/// that no majority is left. It means more disks were lost than the cluster tolerates before
/// the first rejoined replica caught up; docs/paxos.md says what an operator can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterShortage {
    pub instance: u64,
    /// Replicas that may vote there (those that did not answer count: they might).
    pub voters: usize,
    pub needed: usize,
    /// The answering replicas that may not vote there, with their membership.
    pub excluded: Vec<(NodeId, Membership)>,
}

/// Looks at the reports of the answering replicas of a group of `group_size` and says whether
/// the log's frontier lacks a majority of possible voters.
pub fn voter_shortage(reports: &[StatusReport], group_size: usize) -> Option<VoterShortage> {
    let instance = reports
        .iter()
        .filter_map(|r| r.applied)
        .max()
        .map_or(0, |a| a + 1);
    let votes = |m: &Membership| match m {
        Membership::Rejoining => false,
        Membership::Voting { horizon } => horizon.is_none_or(|h| instance > h),
    };
    let excluded: Vec<(NodeId, Membership)> = reports
        .iter()
        .filter(|r| !votes(&r.membership))
        .map(|r| (r.id, r.membership))
        .collect();
    let voters = group_size - excluded.len();
    let needed = group_size / 2 + 1;
    (voters < needed).then_some(VoterShortage {
        instance,
        voters,
        needed,
        excluded,
    })
}
