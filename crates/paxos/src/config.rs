//! Group configurations and the α rule: which peers' votes count in which instance.
//!
//! A [`Config`] is an epoch, the voters and the learners of a group. The application decides
//! configurations through the log (a `Reconfigure` entry of `synod_rsm`) and hands each one to
//! [`crate::Paxos::reconfigure`] when it applies the instance `i` that decided it; the
//! configuration then governs the instances from `i + α` on ([`Schedule`]). Because
//! `config(j)` depends only on the entries decided at instances `<= j - α`, every peer that
//! has applied that far agrees on it, and a peer acts in instance `j` (proposes, counts
//! votes) only once it has: *know before acting*. `docs/paxos.md`, "Membership changes",
//! has the safety argument.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use synod_node::NodeId;

/// The peers of a group for a range of instances: only the voters' answers are counted;
/// learners receive decisions and catch up, and vote nowhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Config {
    /// 0 for the group's first configuration, one more for each change.
    pub epoch: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// The network addresses of members that joined through a change (`host:port`), so
    /// that every replica's driver can reach them (`Context::add_peer`) once it applies the
    /// change, and a replica restarted or installing a snapshot knows them too. The
    /// group's first members are reached at the addresses each replica was started with
    /// and need no entry. Only members may have one.
    pub addrs: BTreeMap<NodeId, String>,
}

/// Why a configuration change was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error, Serialize, Deserialize)]
pub enum ConfigError {
    #[error("a configuration needs at least one voter")]
    NoVoters,
    #[error("{0} is listed twice")]
    Duplicate(NodeId),
    #[error(
        "epoch {proposed} does not follow the latest epoch {latest}: another change came first"
    )]
    StaleEpoch { latest: u64, proposed: u64 },
    #[error("the change to epoch {latest} is not in effect yet (from instance {from}); one change at a time")]
    ChangeInProgress { latest: u64, from: u64 },
    #[error("{0} has an address but is no member")]
    AddressOfStranger(NodeId),
    #[error("this replica does not know the group's configuration yet")]
    Unknown,
    #[error("this group's membership is fixed")]
    Static,
    /// The replica's client guard refused the operator's request (its user may not change
    /// the membership); the reason is the guard's.
    #[error("refused: {0}")]
    Refused(String),
}

impl Config {
    /// The first configuration of a group whose voters are `voters`.
    pub fn initial(voters: Vec<NodeId>) -> Self {
        Config {
            epoch: 0,
            voters,
            learners: Vec::new(),
            addrs: BTreeMap::new(),
        }
    }

    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Voters, then learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(&self.learners).copied()
    }

    /// Whether the peers in `answered` include a majority of the voters.
    pub fn quorum(&self, answered: &BTreeSet<NodeId>) -> bool {
        self.voters.iter().filter(|v| answered.contains(v)).count() >= self.majority()
    }

    /// Checks the shape of a configuration: some voters, nobody twice, addresses for
    /// members only.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.voters.is_empty() {
            return Err(ConfigError::NoVoters);
        }
        let mut seen = BTreeSet::new();
        if let Some(twice) = self.members().find(|&m| !seen.insert(m)) {
            return Err(ConfigError::Duplicate(twice));
        }
        match self.addrs.keys().find(|id| !seen.contains(id)) {
            Some(&stranger) => Err(ConfigError::AddressOfStranger(stranger)),
            None => Ok(()),
        }
    }
}

/// The configurations that govern the instances a peer may still act in: `(from, config)`
/// pairs in increasing order of `from`, each governing the instances from its `from` up to
/// the next one's. Empty for a peer that joined and has not yet received the group's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Schedule {
    entries: Vec<(u64, Config)>,
}

impl Schedule {
    /// A group governed by `config` from instance 0.
    pub fn starting_with(config: Config) -> Self {
        Schedule {
            entries: vec![(0, config)],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The configuration that governs instance `seq`, if this schedule reaches back that far.
    pub fn at(&self, seq: u64) -> Option<&Config> {
        self.entries
            .iter()
            .rev()
            .find(|(from, _)| *from <= seq)
            .map(|(_, c)| c)
    }

    /// The newest configuration and the instance it governs from.
    pub fn latest(&self) -> Option<(u64, &Config)> {
        self.entries.last().map(|(from, c)| (*from, c))
    }

    /// Every configuration with the instance it governs from, oldest first.
    pub fn entries(&self) -> &[(u64, Config)] {
        &self.entries
    }

    /// Adds `config`, decided at instance `at`, to govern from `from` (`at + α`): refused
    /// unless it is well formed, its epoch is the next one, and the previous change is in
    /// effect at `at` (one change at a time).
    pub fn add(&mut self, at: u64, from: u64, config: Config) -> Result<(), ConfigError> {
        config.validate()?;
        let Some((latest_from, latest)) = self.latest() else {
            return Err(ConfigError::Unknown);
        };
        if config.epoch != latest.epoch + 1 {
            return Err(ConfigError::StaleEpoch {
                latest: latest.epoch,
                proposed: config.epoch,
            });
        }
        if latest_from > at {
            return Err(ConfigError::ChangeInProgress {
                latest: latest.epoch,
                from: latest_from,
            });
        }
        assert!(from > at, "a configuration governs only later instances");
        self.entries.push((from, config));
        Ok(())
    }

    /// Drops the configurations that govern only instances below `seq`.
    pub fn prune_below(&mut self, seq: u64) {
        let keep_from = self
            .entries
            .iter()
            .rposition(|(from, _)| *from <= seq)
            .unwrap_or(0);
        self.entries.drain(..keep_from);
    }

    /// Every peer of any configuration in the schedule, each once.
    pub fn members(&self) -> BTreeSet<NodeId> {
        self.entries.iter().flat_map(|(_, c)| c.members()).collect()
    }

    /// Whether `answered` holds a majority of the voters of every configuration here.
    pub fn quorum_of_each(&self, answered: &BTreeSet<NodeId>) -> bool {
        !self.entries.is_empty() && self.entries.iter().all(|(_, c)| c.quorum(answered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[u64]) -> Vec<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    fn config(epoch: u64, voters: &[u64], learners: &[u64]) -> Config {
        Config {
            epoch,
            voters: ids(voters),
            learners: ids(learners),
            addrs: BTreeMap::new(),
        }
    }

    #[test]
    fn a_change_governs_from_its_instance_on_and_one_change_at_a_time() {
        let mut s = Schedule::starting_with(config(0, &[0, 1, 2], &[]));
        s.add(10, 18, config(1, &[0, 1, 2], &[3])).unwrap();
        assert_eq!(s.at(17).unwrap().epoch, 0);
        assert_eq!(s.at(18).unwrap().epoch, 1);
        // Decided before the first change is in effect: refused, whatever its epoch.
        assert_eq!(
            s.add(12, 20, config(2, &[0, 1, 2, 3], &[])),
            Err(ConfigError::ChangeInProgress {
                latest: 1,
                from: 18
            })
        );
        assert_eq!(
            s.add(18, 26, config(1, &[0], &[])),
            Err(ConfigError::StaleEpoch {
                latest: 1,
                proposed: 1
            })
        );
        s.add(18, 26, config(2, &[0, 1, 2, 3], &[])).unwrap();
        s.prune_below(20);
        assert_eq!(s.entries().len(), 2, "epoch 1 still governs 20..26");
        assert_eq!(s.members(), ids(&[0, 1, 2, 3]).into_iter().collect());
        let answered: BTreeSet<NodeId> = ids(&[0, 1]).into_iter().collect();
        assert!(s.at(20).unwrap().quorum(&answered));
        assert!(!s.quorum_of_each(&answered), "2 of 4 voters is no majority");
    }

    #[test]
    fn malformed_configurations_are_refused() {
        let mut s = Schedule::starting_with(config(0, &[0], &[]));
        assert_eq!(
            s.add(0, 8, config(1, &[], &[1])),
            Err(ConfigError::NoVoters)
        );
        assert_eq!(
            s.add(0, 8, config(1, &[0, 1], &[1])),
            Err(ConfigError::Duplicate(NodeId(1)))
        );
        let mut stranger = config(1, &[0], &[]);
        stranger.addrs.insert(NodeId(5), "127.0.0.1:7005".into());
        assert_eq!(
            s.add(0, 8, stranger),
            Err(ConfigError::AddressOfStranger(NodeId(5)))
        );
        assert_eq!(
            Schedule::default().add(0, 8, config(1, &[0], &[])),
            Err(ConfigError::Unknown)
        );
    }
}
