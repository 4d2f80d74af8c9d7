//! The controller's replicated state: every configuration so far, and the session table.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use synod_rsm::{Sessions, StateMachine};

use crate::balance::rebalance;
use crate::{Config, CtlOp, CtlReply, DEFAULT_SHARDS};

/// All configurations, oldest first (`configs[i].num == i`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtlState {
    pub configs: Vec<Config>,
    pub sessions: Sessions<CtlReply>,
}

impl Default for CtlState {
    fn default() -> Self {
        CtlState::new(DEFAULT_SHARDS)
    }
}

impl CtlState {
    pub fn new(shards: usize) -> Self {
        CtlState {
            configs: vec![Config::initial(shards)],
            sessions: Sessions::default(),
        }
    }

    pub fn latest(&self) -> &Config {
        // `new` creates configuration 0 and nothing ever removes one.
        &self.configs[self.configs.len() - 1]
    }

    /// Configuration `num`, or the latest if `num` is negative or too large.
    pub fn query(&self, num: i64) -> &Config {
        usize::try_from(num)
            .ok()
            .and_then(|n| self.configs.get(n))
            .unwrap_or_else(|| self.latest())
    }

    /// Appends `next` as a new configuration, if it differs from the latest.
    fn push(&mut self, mut next: Config) -> CtlReply {
        if next.shards != self.latest().shards || next.groups != self.latest().groups {
            next.num = self.configs.len() as u64;
            self.configs.push(next);
        }
        CtlReply::Config(self.latest().clone())
    }

    fn change(&mut self, op: &CtlOp) -> Result<CtlReply, String> {
        let mut next = self.latest().clone();
        match op {
            CtlOp::Query { num } => return Ok(CtlReply::Config(self.query(*num).clone())),
            CtlOp::Join { gid, servers } => {
                if *gid == 0 {
                    return Err("gid 0 means \"no group\" and cannot join".into());
                }
                if servers.is_empty() {
                    return Err(format!("group {gid} has no servers"));
                }
                next.groups.insert(*gid, servers.clone());
                let gids: BTreeSet<u64> = next.groups.keys().copied().collect();
                rebalance(&mut next.shards, &gids);
            }
            CtlOp::Leave { gid } => {
                next.groups.remove(gid);
                let gids: BTreeSet<u64> = next.groups.keys().copied().collect();
                rebalance(&mut next.shards, &gids);
            }
            CtlOp::Move { shard, gid } => {
                if *shard >= next.shards.len() {
                    return Err(format!(
                        "shard {shard} does not exist (there are {})",
                        next.shards.len()
                    ));
                }
                if !next.groups.contains_key(gid) {
                    return Err(format!("group {gid} has not joined"));
                }
                next.shards[*shard] = *gid;
            }
            CtlOp::Servers { gid, servers } => {
                let Some(listed) = next.groups.get_mut(gid) else {
                    return Err(format!("group {gid} has not joined"));
                };
                if servers.iter().all(String::is_empty) {
                    return Err(format!("group {gid} would have no servers"));
                }
                *listed = servers.clone();
            }
        }
        Ok(self.push(next))
    }
}

impl StateMachine for CtlState {
    type Command = CtlOp;
    type Internal = ();
    type Reply = CtlReply;

    fn apply(&mut self, _at: u64, op: &CtlOp) -> CtlReply {
        self.change(op).unwrap_or_else(CtlReply::Invalid)
    }

    fn apply_internal(&mut self, _at: u64, _op: &()) {}

    fn sessions(&self, _op: &CtlOp) -> Option<&Sessions<CtlReply>> {
        Some(&self.sessions)
    }

    fn sessions_mut(&mut self, _op: &CtlOp) -> Option<&mut Sessions<CtlReply>> {
        Some(&mut self.sessions)
    }

    fn expired() -> CtlReply {
        CtlReply::SessionExpired
    }

    fn reindex(&mut self) {
        self.sessions.reindex();
    }

    /// A Query changes nothing: answered after a read barrier, without a log entry, so the
    /// groups' polls (every replica, every `POLL`) and clients' refreshes write nothing.
    fn read(&self, op: &CtlOp) -> Option<CtlReply> {
        match op {
            CtlOp::Query { num } => Some(CtlReply::Config(self.query(*num).clone())),
            CtlOp::Join { .. }
            | CtlOp::Leave { .. }
            | CtlOp::Move { .. }
            | CtlOp::Servers { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(reply: CtlReply) -> Config {
        match reply {
            CtlReply::Config(config) => config,
            other => panic!("expected a configuration, got {other:?}"),
        }
    }

    #[test]
    fn servers_replaces_a_groups_list_without_moving_shards() {
        let mut state = CtlState::new(4);
        let join = |gid, servers: &[&str]| CtlOp::Join {
            gid,
            servers: servers.iter().map(|s| s.to_string()).collect(),
        };
        state.apply(1, &join(100, &["a0", "a1", "a2"]));
        let before = config(state.apply(2, &join(101, &["b0"])));
        assert_eq!(before.num, 2);
        // Replica 1 left, replica 3 joined.
        let servers: Vec<String> = ["a0", "", "a2", "a3"].map(String::from).into();
        let op = CtlOp::Servers {
            gid: 100,
            servers: servers.clone(),
        };
        let after = config(state.apply(3, &op));
        assert_eq!(after.num, 3, "a new configuration");
        assert_eq!(after.shards, before.shards, "no shard moves");
        assert_eq!(after.groups[&100], servers);
        assert_eq!(after.groups[&101], before.groups[&101]);
        let listed: Vec<(usize, &str)> = after
            .servers_of(100)
            .map(|(i, a)| (i, a.as_str()))
            .collect();
        assert_eq!(listed, [(0, "a0"), (2, "a2"), (3, "a3")]);
        assert_eq!(state.query(2), &before, "history unchanged");
        // The same list again changes nothing.
        assert_eq!(config(state.apply(4, &op)).num, 3);
        assert_eq!(state.read(&op), None, "a change goes through the log");

        let unknown = CtlOp::Servers {
            gid: 7,
            servers: vec!["x".into()],
        };
        assert_eq!(
            state.apply(5, &unknown),
            CtlReply::Invalid("group 7 has not joined".into())
        );
        let empty = CtlOp::Servers {
            gid: 100,
            servers: vec![String::new(), String::new()],
        };
        assert_eq!(
            state.apply(6, &empty),
            CtlReply::Invalid("group 100 would have no servers".into())
        );
        assert_eq!(state.latest().num, 3, "refusals change nothing");
    }
}
