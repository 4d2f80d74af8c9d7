//! Paxos: three peers, two of them campaigning to lead and proposing, under drops,
//! duplicates, crashes and one lost disk. The peers are the real [`PaxosNode`]s.
//!
//! Invariants, after every step:
//! - **one value per instance**, over every decision any peer ever held;
//! - **promises hold**: an acceptor never accepts below a ballot it promised earlier in the
//!   same life, and never below a ballot that it promised in *any* life (before a disk
//!   loss included) when a majority promised that ballot, so that a proposer may have
//!   counted the promise. (A promise nobody could have counted binds nothing: the
//!   rejoin rule in `docs/paxos.md` says why.)
//!
//! The timing assumption of a rejoin is encoded, not ignored: when a peer that lost its disk
//! asks the others (its timer fires), every message sent before the loss that is still in
//! flight is lost, as `rejoin_quiet` assumes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use synod_node::NodeId;
use synod_paxos::{Ballot, Membership, PaxosMsg, PaxosNode};

use crate::model::Model;
use crate::models::{agree, paxos_config, quiet_before_rejoin};
use crate::world::{Actor, Budget, Life, World};

/// A proposal an input makes: (peer, instance, value).
type Proposal = (usize, u64, &'static str);

/// The Paxos model. [`PaxosModel::issue_bound`] is the configuration of the safety issue.
#[derive(Debug, Clone)]
pub struct PaxosModel {
    pub peers: usize,
    /// Peers that campaign (each once, from instance 0).
    pub leaders: Vec<usize>,
    pub proposals: Vec<Proposal>,
    /// Whether a peer proposes only while it leads (the fast path alone), rather than also
    /// through phase 1 of its own (classic Paxos): a smaller space.
    pub propose_when_leading: bool,
    /// The peers that may lose their disk.
    pub wipeable: Vec<usize>,
    /// Whether timers fire only to let a rejoining peer ask (no retries, no heartbeats).
    pub timers_only_to_rejoin: bool,
    pub budget: Budget,
}

impl PaxosModel {
    /// The depth to which CI explores [`Self::ci_bound`] completely.
    pub const CI_DEPTH: usize = 14;

    /// The safety issue's bound: 3 peers, peers 0 and 1 campaign, each proposes in
    /// instances 0 and 1 (with or without leading), one lost disk, one drop, two timer
    /// firings.
    pub fn issue_bound() -> Self {
        PaxosModel {
            peers: 3,
            leaders: vec![0, 1],
            proposals: vec![(0, 0, "a0"), (1, 0, "b0"), (0, 1, "a1"), (1, 1, "b1")],
            propose_when_leading: false,
            wipeable: vec![0, 1, 2],
            timers_only_to_rejoin: false,
            budget: Budget {
                drops: 1,
                duplicates: 0,
                crashes: 0,
                wipes: 1,
                timers: 2,
            },
        }
    }

    /// The bound CI covers, aimed at the issue's schedule: two leaders that each propose
    /// once in instance 0 while they lead, and the third peer losing its disk and rejoining
    /// at any point; no other faults or timers.
    pub fn ci_bound() -> Self {
        PaxosModel {
            proposals: vec![(0, 0, "a0"), (1, 0, "b0")],
            propose_when_leading: true,
            wipeable: vec![2],
            timers_only_to_rejoin: true,
            budget: Budget {
                drops: 0,
                timers: 1,
                ..Self::issue_bound().budget
            },
            ..Self::issue_bound()
        }
    }
}

impl PaxosModel {
    /// The depth to which CI explores [`Self::two_wipes_bound`] completely.
    pub const TWO_WIPES_CI_DEPTH: usize = 12;

    /// Two lost disks around one leader: peers 1 and 2 may each lose theirs (at once, or
    /// one while the other rejoins), and each rejoin needs a timer; peer 0 leads and proposes
    /// in instance 0. Beyond what 3 peers tolerate, so progress may stop: the
    /// invariants say it never contradicts itself.
    pub fn two_wipes_bound() -> Self {
        PaxosModel {
            leaders: vec![0],
            proposals: vec![(0, 0, "a0")],
            propose_when_leading: true,
            wipeable: vec![1, 2],
            timers_only_to_rejoin: true,
            budget: Budget {
                drops: 0,
                duplicates: 0,
                crashes: 0,
                wipes: 2,
                timers: 2,
            },
            ..Self::issue_bound()
        }
    }
}

/// What the invariants remember.
#[derive(Debug, Clone, Default, Hash)]
pub struct PaxosGhost {
    /// Every decision seen, by instance.
    decided: BTreeMap<u64, String>,
    /// Every promise seen: (ballot, peer, instance or `None` for all instances).
    promises: BTreeSet<(Ballot, usize, Option<u64>)>,
    /// Per (peer, life, instance or `None`): the highest promise seen in that life.
    promised: BTreeMap<(usize, u32, Option<u64>), Ballot>,
    /// Every accept seen, (peer, life, instance, ballot), with the higher promises the same
    /// peer had given for that instance by then, in any life.
    accepts: BTreeMap<(usize, u32, u64, Ballot), BTreeSet<Ballot>>,
}

type Node = PaxosNode<String>;

impl Model for PaxosModel {
    type Msg = PaxosMsg<String>;
    type Ghost = PaxosGhost;

    fn name(&self) -> String {
        format!(
            "paxos ({} peers, leaders {:?}, proposals {:?}{}, wipeable {:?}{}, {:?})",
            self.peers,
            self.leaders,
            self.proposals,
            if self.propose_when_leading {
                " while leading"
            } else {
                ""
            },
            self.wipeable,
            if self.timers_only_to_rejoin {
                ", timers only to rejoin"
            } else {
                ""
            },
            self.budget
        )
    }

    fn nodes(&self) -> Vec<NodeId> {
        (0..self.peers as u64).map(NodeId).collect()
    }

    fn make(&self, slot: usize, life: Life) -> Box<dyn Actor<Self::Msg>> {
        Box::new(Node::new(self.nodes(), slot, paxos_config(life)))
    }

    fn budget(&self) -> Budget {
        self.budget
    }

    fn ghost(&self) -> PaxosGhost {
        PaxosGhost::default()
    }

    fn time_step(&self) -> Duration {
        // Past every retry and heartbeat interval.
        Duration::from_secs(1)
    }

    fn inputs(&self) -> usize {
        self.leaders.len() + self.proposals.len()
    }

    fn input_enabled(&self, world: &World<Self::Msg, PaxosGhost>, input: usize) -> bool {
        match input.checked_sub(self.leaders.len()) {
            Some(k) if self.propose_when_leading => world
                .node::<Node>(self.proposals[k].0)
                .is_some_and(|n| n.paxos().leading()),
            _ => true,
        }
    }

    fn input(&self, world: &mut World<Self::Msg, PaxosGhost>, input: usize) {
        match input.checked_sub(self.leaders.len()) {
            None => {
                let peer = self.leaders[input];
                world.call(peer, |n: &mut Node, ctx| n.campaign(ctx, 0));
            }
            Some(k) => {
                let (peer, seq, value) = self.proposals[k];
                world.call(peer, |n: &mut Node, ctx| n.start(ctx, seq, value.into()));
            }
        }
    }

    fn input_slot(&self, input: usize) -> Option<usize> {
        Some(match input.checked_sub(self.leaders.len()) {
            None => self.leaders[input],
            Some(k) => self.proposals[k].0,
        })
    }

    fn describe_input(&self, input: usize) -> String {
        match input.checked_sub(self.leaders.len()) {
            None => format!("n{} campaigns from instance 0", self.leaders[input]),
            Some(k) => {
                let (peer, seq, value) = self.proposals[k];
                format!("n{peer} proposes {value:?} in instance {seq}")
            }
        }
    }

    fn timer_enabled(&self, world: &World<Self::Msg, PaxosGhost>, slot: usize) -> bool {
        !self.timers_only_to_rejoin || rejoining(world, slot)
    }

    fn wipeable(&self, slot: usize) -> bool {
        self.wipeable.contains(&slot)
    }

    fn before_timer(&self, world: &mut World<Self::Msg, PaxosGhost>, slot: usize) {
        let membership = world.node::<Node>(slot).map(|n| n.paxos().membership());
        quiet_before_rejoin(world, membership);
    }

    fn check(&self, world: &mut World<Self::Msg, PaxosGhost>) -> Result<(), String> {
        let mut ghost = std::mem::take(&mut world.ghost);
        let checked = self.check_peers(world, &mut ghost);
        world.ghost = ghost;
        checked
    }
}

impl PaxosModel {
    fn check_peers(
        &self,
        world: &World<PaxosMsg<String>, PaxosGhost>,
        ghost: &mut PaxosGhost,
    ) -> Result<(), String> {
        let majority = self.peers / 2 + 1;
        for slot in 0..world.slots.len() {
            let life = world.slots[slot].lives;
            let Some(node) = world.node::<Node>(slot) else {
                continue;
            };
            let paxos = node.paxos();
            agree(&mut ghost.decided, slot, paxos.decided())?;
            for (seq, acceptor) in paxos.acceptors() {
                let Some((ballot, _)) = &acceptor.accepted else {
                    continue;
                };
                if ghost.accepts.contains_key(&(slot, life, seq, *ballot)) {
                    continue;
                }
                let before = [Some(seq), None]
                    .iter()
                    .filter_map(|scope| ghost.promised.get(&(slot, life, *scope)))
                    .max();
                if let Some(promise) = before.filter(|p| *p > ballot) {
                    return Err(format!(
                        "promises hold: n{slot} accepted {ballot:?} in instance {seq} after \
                         promising {promise:?} in the same life"
                    ));
                }
                // The promises of this peer, in any life, that the accept went below.
                let broken: BTreeSet<Ballot> = ghost
                    .promises
                    .iter()
                    .filter(|&&(b, peer, scope)| {
                        peer == slot && b > *ballot && scope.is_none_or(|s| s == seq)
                    })
                    .map(|&(b, _, _)| b)
                    .collect();
                ghost.accepts.insert((slot, life, seq, *ballot), broken);
            }
            let mut seen = vec![(None, paxos.promised_all())];
            seen.extend(paxos.acceptors().map(|(seq, a)| (Some(seq), a.promised)));
            for (scope, ballot) in seen {
                if ballot == Ballot::default() {
                    continue;
                }
                ghost.promises.insert((ballot, slot, scope));
                let high = ghost.promised.entry((slot, life, scope)).or_default();
                *high = (*high).max(ballot);
            }
        }
        // Checked over everything seen so far, so the order in which other peers' promises
        // were observed does not matter.
        for (&(slot, _, seq, ballot), broken) in &ghost.accepts {
            if let Some(b) = broken
                .iter()
                .find(|&&b| promisers(&ghost.promises, b, seq) >= majority)
            {
                return Err(format!(
                    "promises hold: n{slot} accepted {ballot:?} in instance {seq}, below {b:?}, \
                     which it had promised (in this life or before a disk loss) and a \
                     majority promised"
                ));
            }
        }
        Ok(())
    }
}

fn rejoining(world: &World<PaxosMsg<String>, PaxosGhost>, slot: usize) -> bool {
    world
        .node::<Node>(slot)
        .is_some_and(|n| n.paxos().membership() == Membership::Rejoining)
}

/// How many peers promised `ballot` for instance `seq` (for it alone or for all).
fn promisers(promises: &BTreeSet<(Ballot, usize, Option<u64>)>, ballot: Ballot, seq: u64) -> usize {
    promises
        .iter()
        .filter(|&&(b, _, scope)| b == ballot && scope.is_none_or(|s| s == seq))
        .map(|&(_, peer, _)| peer)
        .collect::<BTreeSet<_>>()
        .len()
}
