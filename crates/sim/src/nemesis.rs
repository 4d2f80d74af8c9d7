//! A targeted nemesis: fault moves aimed at the schedules that break consensus and that
//! independent random faults almost never build.
//!
//! - **Dueling leaders**: one peer cut off from the rest, so the rest elect a leader while
//!   the lone peer may still believe it leads.
//! - **A bridge**: the others split into two sides that cannot reach each other, and one
//!   peer sees both, so it serves two leaders at once.
//! - **One-way links**: a single direction of a link cut.
//! - **A wipe in the middle**: a peer loses its disk while the above is going on.
//! - Crashes (the victim is restarted at the next move) and heals.
//!
//! A suite calls [`Nemesis::step`] every few hundred milliseconds of virtual time; each move
//! is drawn from the simulator's RNG, so a seed replays the same schedule.

use std::fmt::Debug;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use synod_node::NodeId;

use crate::simulator::Simulator;

/// One move of the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    DuelingLeaders,
    Bridge,
    OneWay,
    Wipe,
    Crash,
    Heal,
}

/// The nemesis of one run over the peers of one replicated group.
#[derive(Debug)]
pub struct Nemesis {
    peers: Vec<NodeId>,
    wipes_left: u32,
    down: Option<NodeId>,
    moves: Vec<Move>,
}

impl Nemesis {
    /// A nemesis for `peers` that may wipe at most `wipes` disks (one is what a group of 3
    /// or 5 survives with certainty while other faults go on; 0 for services without disks).
    ///
    /// # Panics
    /// With fewer than 3 peers: a bridge needs two sides and a peer between them.
    pub fn new(peers: Vec<NodeId>, wipes: u32) -> Self {
        assert!(peers.len() >= 3, "a nemesis needs at least 3 peers");
        Nemesis {
            peers,
            wipes_left: wipes,
            down: None,
            moves: Vec::new(),
        }
    }

    /// Makes one move and returns it.
    pub fn step<M>(&mut self, sim: &mut Simulator<M>) -> Move
    where
        M: Clone + Debug + Serialize + 'static,
    {
        // A crashed peer comes back at the next move, so faults do not pile up into a group
        // that is simply dead for the rest of the run.
        if let Some(id) = self.down.take() {
            sim.restart(id);
        }
        let mut peers = self.peers.clone();
        peers.shuffle(sim.rng());
        let chosen = match sim.rng().gen_range(0..100) {
            0..=19 => Move::DuelingLeaders,
            20..=39 => Move::Bridge,
            40..=54 => Move::OneWay,
            55..=64 if self.wipes_left > 0 => Move::Wipe,
            55..=79 => Move::Crash,
            _ => Move::Heal,
        };
        match chosen {
            Move::DuelingLeaders => sim.partition(&[&peers[..1], &peers[1..]]),
            Move::Bridge => {
                // peers[0] is the bridge; the rest split into two non-empty sides.
                let cut = sim.rng().gen_range(2..peers.len());
                let (left, right) = peers[1..].split_at(cut - 1);
                sim.heal();
                for &a in left {
                    for &b in right {
                        sim.block_link(a, b);
                        sim.block_link(b, a);
                    }
                }
            }
            Move::OneWay => sim.block_link(peers[0], peers[1]),
            Move::Wipe => {
                self.wipes_left -= 1;
                sim.restart_wiped(peers[0]);
            }
            Move::Crash => {
                sim.crash(peers[0]);
                self.down = Some(peers[0]);
            }
            Move::Heal => sim.heal(),
        }
        self.moves.push(chosen);
        chosen
    }

    /// Every move made so far, in order.
    pub fn moves(&self) -> &[Move] {
        &self.moves
    }
}
