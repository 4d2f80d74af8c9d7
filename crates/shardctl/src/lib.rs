//! The shard controller: a replicated service that decides which replica group serves which
//! shard, as a sequence of numbered [`Config`]urations.
//!
//! Operations ([`CtlOp`]): `Join(gid, servers)` adds a group, `Leave(gid)` removes one,
//! `Move(shard, gid)` assigns one shard, `Query(num)` returns configuration `num` (the latest
//! if `num` is negative or too large), `Servers(gid, servers)` records a joined group's
//! servers after its membership changed (docs/shardkv.md, "Group membership"). Every change creates a new configuration; configuration
//! 0 has no groups and every shard assigned to gid 0 (nobody). Join and Leave rebalance so
//! that shard counts differ by at most one between groups while moving as few shards as
//! possible ([`rebalance`]). Repeating a Join or a Leave changes nothing.
//!
//! The controller is a [`synod_rsm::Rsm`] over [`CtlState`]: every change goes through the
//! Paxos log, and a Query (from a client with a session) is answered after a majority read
//! barrier, without a log entry; so a Query reflects every change that completed before it
//! was sent, even when asked of a replica cut off from its peers (it then answers nothing
//! rather than something stale). Every replica computes the same configurations
//! because the state machine is deterministic (ordered maps, ties broken by gid).

mod balance;
pub mod guard;
mod state;

pub use balance::rebalance;
pub use state::CtlState;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synod_auth::Denied;
use synod_node::clerk::ClerkOp;
use synod_node::NodeId;
use synod_paxos::PaxosConfig;
use synod_rsm::clerk::RsmClerk;
use synod_rsm::{Rsm, RsmMsg};

/// The default number of shards of a cluster (the course's `NShards`).
pub const DEFAULT_SHARDS: usize = 10;

/// A replica group id. 0 means "no group".
pub type Gid = u64;

/// One numbered configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub num: u64,
    /// Shard → the group serving it (0: none).
    pub shards: Vec<Gid>,
    /// Group → its servers' addresses: replica `i`'s at position `i`, as given at Join, and
    /// as a membership change of the group left them ([`CtlOp::Servers`]): a replica that
    /// joined later at its index, an empty string for one that left. Read them with
    /// [`Config::servers_of`].
    pub groups: BTreeMap<Gid, Vec<String>>,
}

impl Config {
    /// Configuration 0: `shards` shards, no groups.
    pub fn initial(shards: usize) -> Self {
        Config {
            num: 0,
            shards: vec![0; shards],
            groups: BTreeMap::new(),
        }
    }

    /// Group `gid`'s servers: each replica's index in the group and its address, skipping
    /// the positions of replicas that left (empty strings).
    pub fn servers_of(&self, gid: Gid) -> impl Iterator<Item = (usize, &String)> {
        self.groups
            .get(&gid)
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, addr)| !addr.is_empty())
    }

    /// Shards served by `gid`, in order.
    pub fn shards_of(&self, gid: Gid) -> Vec<usize> {
        (0..self.shards.len())
            .filter(|&s| self.shards[s] == gid)
            .collect()
    }
}

/// A request to the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtlOp {
    Join {
        gid: Gid,
        servers: Vec<String>,
    },
    Leave {
        gid: Gid,
    },
    Move {
        shard: usize,
        gid: Gid,
    },
    Query {
        num: i64,
    },
    /// Replaces joined group `gid`'s server list after its membership changed: position
    /// `i` is replica `i`'s address, and an empty string a position whose replica left the
    /// group ([`Config::servers_of`]). No shard moves; a new configuration if the list
    /// differs. (Variants are encoded by position: new ones go last.)
    Servers {
        gid: Gid,
        servers: Vec<String>,
    },
}

/// The controller's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtlReply {
    /// The configuration asked for (Query) or the latest one after the change.
    Config(Config),
    /// The request cannot be applied (gid 0, a shard out of range, a move to an unknown
    /// group); nothing changed.
    Invalid(String),
    /// The client's session was evicted; nothing was applied.
    SessionExpired,
    /// The client's user may not make this request (a change needs a user allowed
    /// everything; see [`guard`]); nothing was applied.
    Denied(Denied),
}

/// Every message of a controller cluster.
pub type CtlMsg = RsmMsg<CtlOp, (), CtlReply>;

/// Controller requests are small: the plain hedge step.
impl ClerkOp for CtlOp {
    fn hedge_step(&self) -> std::time::Duration {
        synod_node::clerk::STEP
    }
}

/// A client session of the controller (the replicated state machine's clerk), run by the
/// simulator's tests and by `synod-client`'s `CtlClient`.
pub type CtlClerk = RsmClerk<CtlOp, (), CtlReply>;

/// One controller replica.
pub type Controller = Rsm<CtlState>;

/// Replica `me` of a controller cluster with `shards` shards (the same on every replica).
pub fn controller(peers: Vec<NodeId>, me: usize, config: PaxosConfig, shards: usize) -> Controller {
    Rsm::with_machine(peers, me, config, CtlState::new(shards))
}
