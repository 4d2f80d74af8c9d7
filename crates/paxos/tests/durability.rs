//! Beyond the course: peers crash and restart from their durable state, lose their disk, or
//! die in the middle of a proposal; and randomized runs mix every fault.

mod common;

use std::time::Duration;

use rand::Rng;
use synod_paxos::Membership;
use synod_sim::{Move, Nemesis, NetConfig, NodeId};

use common::*;

/// A proposer that crashes after its accepts reached a majority but before it heard back
/// (so before it sent any decision): the value may be chosen, so whoever proposes next must
/// find and keep it, and the restarted proposer must agree.
#[test]
fn proposer_crash_between_accept_and_decide() {
    let n = 3;
    let mut sim = cluster(synod_sim::seed_from_env(21), n, &[0, 1, 2]);
    start(&mut sim, 0, 0, "first");
    sim.require(Duration::from_secs(1), "peer 1 accepts", |s| {
        node(s, 1).paxos().accepted(0).is_some()
    });
    sim.crash(NodeId(0));
    assert_eq!(
        ndecided(&sim, 0, n),
        0,
        "decided before the accept replies arrived"
    );

    start(&mut sim, 1, 0, "second");
    waitn(&mut sim, 0, n, 2);
    assert_eq!(decided_value(&sim, 1, 0).as_deref(), Some("first"));

    sim.restart(NodeId(0));
    start(&mut sim, 0, 0, "third");
    waitn(&mut sim, 0, n, n);
    assert_eq!(decided_value(&sim, 0, 0).as_deref(), Some("first"));
}

/// Every peer crashes and restarts repeatedly while all of them propose different values;
/// promises and accepts survive, so nobody contradicts an earlier answer (checked after
/// every step), and once the crashes stop every instance decides everywhere.
#[test]
fn crash_restart_keeps_promises() {
    let n = 3;
    let mut sim = cluster(synod_sim::seed_from_env(22), n, &[0, 1, 2]);
    let instances = 30;
    for seq in 0..instances {
        for i in 0..n {
            if sim.is_up(NodeId(i as u64)) {
                start(&mut sim, i, seq, format!("{seq}-{i}"));
            }
        }
        let victim = NodeId(sim.rng().gen_range(0..n as u64));
        pause(&mut sim, 0, 8);
        sim.crash(victim);
        pause(&mut sim, 0, 30);
        sim.restart(victim);
    }
    let restarts: u64 = (0..n as u64).map(|i| sim.stats(NodeId(i)).starts - 1).sum();
    assert_eq!(restarts, instances);
    for seq in 0..instances {
        for i in 0..n {
            start(&mut sim, i, seq, "late".to_string());
        }
        waitn(&mut sim, seq, n, n);
    }
}

/// The scenario that breaks Paxos without the rejoin rule: peer 1 votes for a value that
/// gets chosen by {0, 1}, then loses its disk. If it answered as a blank acceptor, {1, 2}
/// could choose something else while 0 is down. Rejoining, it needs answers from both other
/// peers, so nothing is decided until 0 is back, and then the first value wins.
#[test]
fn wiped_disk_rejoins_without_contradicting_itself() {
    let n = 3;
    let mut sim = cluster(synod_sim::seed_from_env(23), n, &[]);
    add_rejoining_peers(&mut sim, n);
    part(&mut sim, &[&[0, 1], &[2]]);
    start(&mut sim, 0, 0, "chosen");
    waitn(&mut sim, 0, n, 2);

    sim.crash(NodeId(0));
    sim.restart_wiped(NodeId(1));
    part(&mut sim, &[&[1, 2], &[0]]);
    start(&mut sim, 2, 0, "other");
    sim.run_for(Duration::from_secs(10));
    assert_eq!(node(&sim, 1).paxos().membership(), Membership::Rejoining);
    assert_eq!(ndecided(&sim, 0, n), 0, "decided without a safe majority");

    sim.heal();
    sim.restart(NodeId(0));
    waitn(&mut sim, 0, n, n);
    assert_eq!(decided_value(&sim, 2, 0).as_deref(), Some("chosen"));
    assert_eq!(
        node(&sim, 1).paxos().membership(),
        Membership::Voting { horizon: Some(0) }
    );

    // Above its horizon the rejoined peer votes again: with 0 down, {1, 2} decide.
    sim.crash(NodeId(0));
    start(&mut sim, 2, 1, "after");
    waitn(&mut sim, 1, n, 2);
    sim.crash(NodeId(1));
    sim.restart(NodeId(1));
    assert_eq!(
        node(&sim, 1).paxos().membership(),
        Membership::Voting { horizon: Some(0) },
        "a restart with its disk intact does not rejoin again"
    );
}

/// The schedule from the safety issue: dueling leaders around a wiped acceptor. A leads under
/// ballot `a`; a partition lets B win `b > a` with P's promise; P loses its disk and rejoins
/// through a bridge position (it reaches A and B, they cannot reach each other); then A and B
/// both propose in instance 5. P's promise of `b` died with its disk, so unless its rejoin
/// restores a ballot floor it accepts A's `a`, helps A decide, then accepts B's `b` and helps B
/// decide something else. The per-step invariant catches two values in one instance.
#[test]
fn dueling_leaders_around_a_wiped_acceptor_decide_one_value() {
    let n = 3;
    let (a, b, p) = (0, 1, 2);
    let mut sim = cluster(synod_sim::seed_from_env(24), n, &[]);
    add_rejoining_peers(&mut sim, n);

    // 1. A leads under ballot `a`; instance 0 is decided everywhere.
    campaign(&mut sim, a, 0);
    sim.require(Duration::from_secs(1), "A leads", |s| {
        node(s, a).paxos().leading()
    });
    start(&mut sim, a, 0, "zero");
    waitn(&mut sim, 0, n, n);

    // 2. {A} | {B, P}: B campaigns from instance 1 under `b > a`; B and P promise it.
    part(&mut sim, &[&[a], &[b, p]]);
    campaign(&mut sim, b, 1);
    sim.require(Duration::from_secs(1), "B leads", |s| {
        node(s, b).paxos().leading()
    });
    assert!(node(&sim, a).paxos().leading(), "A never heard of b");

    // 3. P loses its disk and rejoins as a bridge: it reaches both, A and B not each other.
    sim.restart_wiped(NodeId(p as u64));
    sim.heal();
    sim.block_link(NodeId(a as u64), NodeId(b as u64));
    sim.block_link(NodeId(b as u64), NodeId(a as u64));
    sim.require(Duration::from_secs(30), "P rejoins", |s| {
        node(s, p).paxos().membership() != Membership::Rejoining
    });

    // 4. A proposes in instance 5; its Decided to P is lost once P has voted.
    start(&mut sim, a, 5, "from-A");
    sim.run_until(Duration::from_secs(1), |s| {
        node(s, p).paxos().accepted(5).is_some()
    });
    sim.block_link(NodeId(a as u64), NodeId(p as u64));
    sim.run_for(Duration::from_millis(200));

    // 5. B proposes in instance 5 straight to phase 2.
    start(&mut sim, b, 5, "from-B");
    sim.run_for(Duration::from_secs(2));

    // Whatever got decided, it is one value (the invariant checked every step); and B, whose
    // ballot is the higher, gets its value through once the network heals.
    sim.heal();
    waitn(&mut sim, 5, n, n);
    assert_eq!(decided_value(&sim, a, 5), decided_value(&sim, b, 5));
}

/// Random crashes (some with wiped disks), partitions, loss, duplication and reordering
/// while every peer proposes; then heal and require every instance to decide everywhere.
#[test]
fn random_faults() {
    for seed in synod_sim::seeds(20) {
        let n = 5;
        let mut sim = cluster(seed, n, &[]);
        add_rejoining_peers(&mut sim, n);
        sim.set_network(NetConfig::hostile());
        let instances = 12;
        let mut wiped = false;
        for seq in 0..instances {
            for i in 0..n {
                if sim.is_up(NodeId(i as u64)) {
                    let v = format!("{seq}-{i}-{}", sim.rng().gen::<u16>());
                    start(&mut sim, i, seq, v);
                }
            }
            let target = NodeId(sim.rng().gen_range(0..n as u64));
            match sim.rng().gen_range(0..6) {
                0 => sim.crash(target),
                1 => sim.restart(target),
                // At most one disk lost per run: two would exceed what Paxos survives.
                2 if !wiped => {
                    wiped = true;
                    sim.restart_wiped(target);
                }
                3 => {
                    let mut groups = [Vec::new(), Vec::new()];
                    for i in 0..n {
                        groups[sim.rng().gen_range(0..2)].push(i);
                    }
                    let refs: Vec<&[usize]> = groups.iter().map(Vec::as_slice).collect();
                    part(&mut sim, &refs);
                }
                _ => sim.heal(),
            }
            pause(&mut sim, 50, 400);
        }
        heal_and_decide_everywhere(&mut sim, n, instances);
    }
}

/// The targeted nemesis (dueling leaders, a bridge peer, one-way links, a wipe in the
/// middle) while two peers campaign over and over and everyone proposes; then heal and
/// require every instance to decide everywhere. The per-step invariant checks agreement.
#[test]
fn targeted_nemesis() {
    let seeds = synod_sim::seeds(16);
    let mut moves = Vec::new();
    for &seed in &seeds {
        let n = 5;
        let mut sim = cluster(seed, n, &[]);
        add_rejoining_peers(&mut sim, n);
        let mut nemesis = Nemesis::new(peer_ids(n), 1);
        let instances = 10;
        for seq in 0..instances {
            let up = |sim: &Sim, i: usize| sim.is_up(NodeId(i as u64));
            for leader in [seq as usize % n, (seq as usize + 1) % n] {
                if up(&sim, leader) {
                    campaign(&mut sim, leader, seq);
                }
            }
            for i in 0..n {
                if !up(&sim, i) {
                    continue;
                }
                let v = format!("{seq}-{i}-{}", sim.rng().gen::<u16>());
                start(&mut sim, i, seq, v);
            }
            nemesis.step(&mut sim);
            pause(&mut sim, 50, 400);
        }
        heal_and_decide_everywhere(&mut sim, n, instances);
        moves.extend_from_slice(nemesis.moves());
    }
    for kind in [Move::DuelingLeaders, Move::Bridge, Move::OneWay, Move::Wipe] {
        assert!(
            moves.contains(&kind),
            "the nemesis never made a {kind:?} move"
        );
    }
    println!("targeted nemesis: seeds {seeds:?} passed");
}
