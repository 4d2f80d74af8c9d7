//! Read barriers: how far the log must be applied before a read may be answered without
//! being logged itself.
//!
//! A peer that starts a barrier asks every other peer for the highest instance it knows of
//! and takes the largest answer of a majority (its own included) as the barrier's *index*.
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

#[derive(Debug, Clone, Hash)]
pub(crate) struct Barrier {
    answers: BTreeSet<NodeId>,
    index: Option<u64>,
    asked_at: Duration,
}

/// The barriers of one peer, by id. Ids start at a random number every life, so answers
/// meant for an earlier life are not taken for this one's.
#[derive(Debug, Clone, Default, Hash)]
pub(crate) struct Barriers {
    next_id: u64,
    open: BTreeMap<u64, Barrier>,
}

impl Barriers {
    pub(crate) fn starting_at(id: u64) -> Self {
        Barriers {
            next_id: id,
            open: BTreeMap::new(),
        }
    }
}

impl<V: Value> Paxos<V> {
    /// Starts a read barrier; poll it with [`barrier`](Self::barrier).
    pub fn read_barrier(&mut self, io: &mut dyn PaxosIo<V>) -> u64 {
        let id = self.barriers.next_id;
        self.barriers.next_id = id.wrapping_add(1);
        let barrier = Barrier {
            answers: BTreeSet::from([self.me]),
            index: self.max,
            asked_at: io.now(),
        };
        self.barriers.open.insert(id, barrier);
        self.ask_barrier(io, id);
        id
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

    fn ask_barrier(&mut self, io: &mut dyn PaxosIo<V>, id: u64) {
        for to in self.others() {
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
        b.answers.insert(peer);
        b.index = b.index.max(max);
    }

    /// Asks again for barriers still waiting after [`BARRIER_RETRY`].
    pub(crate) fn barrier_tick(&mut self, io: &mut dyn PaxosIo<V>) {
        let now = io.now();
        let schedule = &self.schedule;
        let late: Vec<u64> = self
            .barriers
            .open
            .iter_mut()
            .filter(|(_, b)| {
                !schedule.quorum_of_each(&b.answers) && now >= b.asked_at + BARRIER_RETRY
            })
            .map(|(&id, b)| {
                b.asked_at = now;
                id
            })
            .collect();
        for id in late {
            self.ask_barrier(io, id);
        }
    }
}
