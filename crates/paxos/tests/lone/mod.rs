//! One Paxos peer driven by hand, for tests of a single peer's decisions: its world records
//! what it sends, delivers nothing, and keeps a clock the test moves.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use synod_node::{NodeId, Storage};
use synod_paxos::{Paxos, PaxosConfig, PaxosIo, PaxosMsg};
use synod_storage::MemStorage;

pub struct World {
    pub now: Duration,
    pub sent: Vec<(NodeId, PaxosMsg<u64>)>,
    rng: StdRng,
    storage: MemStorage,
}

impl PaxosIo<u64> for World {
    fn now(&self) -> Duration {
        self.now
    }
    fn send(&mut self, to: NodeId, msg: PaxosMsg<u64>) {
        self.sent.push((to, msg));
    }
    fn rng(&mut self) -> &mut dyn RngCore {
        &mut self.rng
    }
    fn storage(&mut self) -> &mut dyn Storage {
        &mut self.storage
    }
}

/// Peer 0 of a group of `size`, started, at one second on its clock.
pub fn peer(size: u64) -> (Paxos<u64>, World) {
    let peers = (0..size).map(NodeId).collect();
    let mut world = World {
        now: Duration::from_secs(1),
        sent: Vec::new(),
        rng: StdRng::seed_from_u64(7),
        storage: MemStorage::new(),
    };
    let mut paxos = Paxos::new(peers, 0, PaxosConfig::default());
    paxos.recover(&mut world, None, &[]).unwrap();
    (paxos, world)
}
