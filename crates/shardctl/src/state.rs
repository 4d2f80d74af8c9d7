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
            CtlOp::Join { .. } | CtlOp::Leave { .. } | CtlOp::Move { .. } => None,
        }
    }
}
