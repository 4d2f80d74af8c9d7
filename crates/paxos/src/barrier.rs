//! Read barriers: how far the log must be applied before a read may be answered without
//! being logged itself.
//!
//! A peer that starts a barrier asks other peers for the highest instance they know of and
//! takes the largest answer of a majority (its own included) as the barrier's *index*. It
//! asks only as many as a majority needs, those that answered its barriers first lately,
//! and every other peer too once [`BARRIER_HEDGE`] passes without a majority: on three
//! replicas a barrier costs two messages instead of four, and a peer that is slow or gone
//! delays one barrier by the hedge, after which the next ones prefer the peers that answered.
//! Any value decided before the barrier started was accepted by a majority, which shares a
//! peer with the answering majority, and that peer's answer is at least the instance; so
//! once the application has applied every instance up to the index, its state includes
//! every write that completed before the read arrived. With membership changes "a majority"
//! is one of the voters of *every* configuration the peer knows at the moment it checks,
//! having applied up to the index (`docs/paxos.md`, "Membership changes", has why that
//! covers instances governed by configurations it did not know when it asked). A peer cut off from a majority never
//! completes a barrier, so it never answers a read. Nothing here depends on leadership.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use synod_node::NodeId;

use crate::durable::Membership;
use crate::guard::Ignored;
use crate::io::PaxosIo;
use crate::msg::PaxosMsg;
use crate::peer::Paxos;
use crate::Value;

/// How long a barrier waits for answers before asking again (messages may be lost).
const BARRIER_RETRY: Duration = Duration::from_millis(100);

/// How long a barrier waits for the peers it asked first before it asks every other peer
/// too. Checked at each tick of the embedding node, so the wait is up to one tick longer.
const BARRIER_HEDGE: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Hash)]
pub(crate) struct Barrier {
    answers: BTreeSet<NodeId>,
    index: Option<u64>,
    asked_at: Duration,
    /// Every other peer has been asked (not only the first few).
    everyone: bool,
}

/// The barriers of one peer, by id. Ids start at a random number every life, so answers
/// meant for an earlier life are not taken for this one's.
#[derive(Debug, Clone, Default, Hash)]
pub(crate) struct Barriers {
    next_id: u64,
    open: BTreeMap<u64, Barrier>,
    /// Peers that answered a barrier while it still waited, the latest first: whom a new
    /// barrier asks first.
    prompt: Vec<NodeId>,
}

impl Barriers {
    pub(crate) fn starting_at(id: u64) -> Self {
        Barriers {
            next_id: id,
            ..Barriers::default()
        }
    }
}

impl<V: Value> Paxos<V> {
    /// Starts a read barrier; poll it with [`barrier`](Self::barrier).
    pub fn read_barrier(&mut self, io: &mut dyn PaxosIo<V>) -> u64 {
        let id = self.barriers.next_id;
        self.barriers.next_id = id.wrapping_add(1);
        let others = self.others();
        let peers = others.len();
        let first = self.first_asked(others);
        let everyone = first.len() == peers;
        let barrier = Barrier {
            answers: BTreeSet::from([self.me]),
            index: self.max,
            asked_at: io.now(),
            everyone,
        };
        self.barriers.open.insert(id, barrier);
        self.ask_barrier(io, id, first);
        id
    }

    /// The fewest of `others` whose answers, with this peer's own, make a majority of the
    /// voters of every configuration it knows: the prompt ones first, then the rest by id.
    /// All of them when no such set exists (no configuration known).
    fn first_asked(&self, others: Vec<NodeId>) -> Vec<NodeId> {
        let mut order: Vec<NodeId> = self
            .barriers
            .prompt
            .iter()
            .copied()
            .filter(|p| others.contains(p))
            .collect();
        let rest: Vec<NodeId> = others.into_iter().filter(|p| !order.contains(p)).collect();
        order.extend(rest);
        let mut would_answer = BTreeSet::from([self.me]);
        let mut asked = Vec::new();
        for peer in order {
            if self.schedule.quorum_of_each(&would_answer) {
                break;
            }
            would_answer.insert(peer);
            asked.push(peer);
        }
        asked
    }

    /// `Some(index)` while a majority of the voters of every configuration this peer knows
    /// answered barrier `id` (`Some(None)`: no instance exists anywhere); `None` while it
    /// waits. Every instance up to the index must be applied, and this checked again then,
    /// before a read that waited for the barrier is answered.
    pub fn barrier(&self, id: u64) -> Option<Option<u64>> {
        let b = self.barriers.open.get(&id)?;
        self.schedule.quorum_of_each(&b.answers).then_some(b.index)
    }

    /// Forgets barrier `id`.
    pub fn end_barrier(&mut self, id: u64) {
        self.barriers.open.remove(&id);
    }

    fn ask_barrier(&mut self, io: &mut dyn PaxosIo<V>, id: u64, peers: Vec<NodeId>) {
        for to in peers {
            let done = self.my_done();
            io.send(to, PaxosMsg::ReadQuery { id, done });
        }
    }

    pub(crate) fn on_read_query(&mut self, io: &mut dyn PaxosIo<V>, peer: NodeId, id: u64) {
        // A peer still finding out what it voted for before losing its disk may not know
        // of instances it helped decide.
        if self.membership == Membership::Rejoining {
            return self.ignore(Ignored::Rejoining, peer, "ReadQuery");
        }
        let reply = PaxosMsg::ReadMax {
            id,
            max: self.max,
            done: self.my_done(),
        };
        io.send(peer, reply);
    }

    pub(crate) fn on_read_max(&mut self, peer: NodeId, id: u64, max: Option<u64>) {
        if let Some(m) = max {
            self.see(m);
        }
        let Some(b) = self.barriers.open.get_mut(&id) else {
            return self.ignore(Ignored::UnknownBarrier, peer, "ReadMax");
        };
        let waited = !self.schedule.quorum_of_each(&b.answers);
        b.answers.insert(peer);
        b.index = b.index.max(max);
        if waited {
            let prompt = &mut self.barriers.prompt;
            prompt.retain(|&p| p != peer);
            prompt.insert(0, peer);
        }
    }

    /// Asks every peer that has not answered, for barriers still waiting after
    /// [`BARRIER_HEDGE`] (if only the first few were asked) or [`BARRIER_RETRY`].
    pub(crate) fn barrier_tick(&mut self, io: &mut dyn PaxosIo<V>) {
        let now = io.now();
        let schedule = &self.schedule;
        let late: Vec<(u64, BTreeSet<NodeId>)> = self
            .barriers
            .open
            .iter_mut()
            .filter(|(_, b)| {
                let wait = if b.everyone {
                    BARRIER_RETRY
                } else {
                    BARRIER_HEDGE
                };
                !schedule.quorum_of_each(&b.answers) && now >= b.asked_at + wait
            })
            .map(|(&id, b)| {
                b.asked_at = now;
                b.everyone = true;
                (id, b.answers.clone())
            })
            .collect();
        for (id, answered) in late {
            let silent = self
                .others()
                .into_iter()
                .filter(|p| !answered.contains(p))
                .collect();
            self.ask_barrier(io, id, silent);
        }
    }
}
