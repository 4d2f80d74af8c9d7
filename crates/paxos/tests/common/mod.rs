// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

//! Harness shared by the Paxos simulator tests: a cluster of [`PaxosNode`]s with the course's
//! helpers (`ndecided`, `waitn`, `waitmajority`, `checkmax`) and an invariant, checked after
//! every step, that no instance ever has two decided values — not even across forgetting and
//! restarts, because the harness remembers every decision it has seen.

use std::time::Duration;

use rand::Rng;
use synod_paxos::{Fate, PaxosConfig, PaxosMsg, PaxosNode};
use synod_sim::{NodeId, Simulator};

pub type Sim = Simulator<PaxosMsg<String>>;

/// The course's `waitn` gives up after about 30 seconds.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn peer_ids(n: usize) -> Vec<NodeId> {
    (0..n as u64).map(NodeId).collect()
}

/// A simulation with `n` peer slots; `create` of them are started now.
pub fn cluster(seed: u64, n: usize, create: &[usize]) -> Sim {
    let mut sim = Sim::new(seed);
    synod_testkit::add_agreement_invariant(&mut sim, peer_ids(n), |sim, id| {
        sim.node::<PaxosNode<String>>(id).map(PaxosNode::paxos)
    });
    for &i in create {
        add_peer(&mut sim, n, i, PaxosConfig::default());
    }
    sim
}

pub fn add_peer(sim: &mut Sim, n: usize, i: usize, config: PaxosConfig) {
    let peers = peer_ids(n);
    sim.add_node(NodeId(i as u64), move || {
        PaxosNode::<String>::new(peers.clone(), i, config.clone())
    });
}

/// Starts every peer of an `n`-peer group the way a real deployment treats disks: a peer's
/// first life is new, and any later life that finds its storage empty lost its disk and
/// rejoins (`PaxosConfig::rejoin`).
pub fn add_rejoining_peers(sim: &mut Sim, n: usize) {
    for i in 0..n {
        let peers = peer_ids(n);
        let mut lives = 0;
        sim.add_node(NodeId(i as u64), move || {
            lives += 1;
            let config = PaxosConfig {
                rejoin: lives > 1,
                ..PaxosConfig::default()
            };
            PaxosNode::<String>::new(peers.clone(), i, config)
        });
    }
}

pub fn node(sim: &Sim, i: usize) -> &PaxosNode<String> {
    sim.node::<PaxosNode<String>>(NodeId(i as u64))
        .unwrap_or_else(|| panic!("peer {i} is not running"))
}

pub fn start(sim: &mut Sim, i: usize, seq: u64, value: impl Into<String>) {
    let value = value.into();
    sim.call(NodeId(i as u64), |n: &mut PaxosNode<String>, ctx| {
        n.start(ctx, seq, value)
    });
}

/// Peer `i` campaigns to lead from instance `from` on ([`synod_paxos::Paxos::campaign`]).
pub fn campaign(sim: &mut Sim, i: usize, from: u64) {
    sim.call(NodeId(i as u64), |n: &mut PaxosNode<String>, ctx| {
        n.campaign(ctx, from)
    });
}

pub fn done(sim: &mut Sim, i: usize, seq: u64) {
    sim.call(NodeId(i as u64), |n: &mut PaxosNode<String>, _| n.done(seq));
}

/// How many running peers report `seq` decided (the invariant already ensures they agree).
pub fn ndecided(sim: &Sim, seq: u64, n: usize) -> usize {
    (0..n)
        .filter_map(|i| sim.node::<PaxosNode<String>>(NodeId(i as u64)))
        .filter(|node| matches!(node.paxos().status(seq), Fate::Decided(_)))
        .count()
}

pub fn decided_value(sim: &Sim, i: usize, seq: u64) -> Option<String> {
    match node(sim, i).paxos().status(seq) {
        Fate::Decided(v) => Some(v.clone()),
        _ => None,
    }
}

pub fn waitn(sim: &mut Sim, seq: u64, n: usize, wanted: usize) {
    sim.require(
        WAIT,
        &format!("{wanted} peers decide instance {seq}"),
        |s| ndecided(s, seq, n) >= wanted,
    );
}

pub fn waitmajority(sim: &mut Sim, seq: u64, n: usize) {
    waitn(sim, seq, n, n / 2 + 1);
}

/// The ending of a randomized run: heal every fault, then every peer proposes in every
/// instance below `instances` and each instance must decide on all `n` peers.
pub fn heal_and_decide_everywhere(sim: &mut Sim, n: usize, instances: u64) {
    sim.heal_all();
    for seq in 0..instances {
        for i in 0..n {
            start(sim, i, seq, "final");
        }
        waitn(sim, seq, n, n);
    }
}

/// The course's `checkmax`: after 3 seconds, at most `max` peers decided `seq`.
pub fn checkmax(sim: &mut Sim, seq: u64, n: usize, max: usize) {
    sim.run_for(Duration::from_secs(3));
    let got = ndecided(sim, seq, n);
    assert!(
        got <= max,
        "instance {seq}: {got} peers decided, at most {max} may"
    );
}

pub fn set_unreliable(sim: &mut Sim, n: usize, on: bool) {
    for id in peer_ids(n) {
        sim.set_unreliable(id, on);
    }
}

pub fn ids(peers: &[usize]) -> Vec<NodeId> {
    peers.iter().map(|&i| NodeId(i as u64)).collect()
}

/// Splits the peers into the given groups (the course's `part`).
pub fn part(sim: &mut Sim, groups: &[&[usize]]) {
    let groups: Vec<Vec<NodeId>> = groups.iter().map(|g| ids(g)).collect();
    let refs: Vec<&[NodeId]> = groups.iter().map(Vec::as_slice).collect();
    sim.partition(&refs);
}

/// Runs for a random time in `[lo_ms, hi_ms)` milliseconds, drawn from the run's RNG.
pub fn pause(sim: &mut Sim, lo_ms: u64, hi_ms: u64) {
    let ms = sim.rng().gen_range(lo_ms..hi_ms);
    sim.run_for(Duration::from_millis(ms));
}
