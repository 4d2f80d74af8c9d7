//! The course's Paxos tests (6.824 2015 / CS188 2019, `paxos/test_test.go`), one test per
//! scenario with the same numbers, on the simulator. Waiting is in virtual time; every step
//! checks that no instance has two decided values.
//!
//! Fault mapping: a deaf peer is `set_deaf` (the course deleted its socket), "unreliable" is
//! `set_unreliable` (10% of requests lost, 20% of the rest executed with the reply lost), and
//! the course's per-pair socket links are `partition`.

mod common;

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use synod_paxos::{Fate, PaxosNode};

use common::*;

#[test]
fn basic_single_and_many_proposers_and_out_of_order() {
    let n = 3;
    let mut sim = cluster(seed(1), n, &[0, 1, 2]);

    // Single proposer.
    start(&mut sim, 0, 0, "hello");
    waitn(&mut sim, 0, n, n);

    // Many proposers, same value.
    for i in 0..n {
        start(&mut sim, i, 1, "77");
    }
    waitn(&mut sim, 1, n, n);

    // Many proposers, different values.
    for (i, v) in ["100", "101", "102"].into_iter().enumerate() {
        start(&mut sim, i, 2, v);
    }
    waitn(&mut sim, 2, n, n);

    // Out-of-order instances.
    start(&mut sim, 0, 7, "700");
    start(&mut sim, 0, 6, "600");
    start(&mut sim, 1, 5, "500");
    waitn(&mut sim, 7, n, n);
    start(&mut sim, 0, 4, "400");
    start(&mut sim, 1, 3, "300");
    for seq in [6, 5, 4, 3] {
        waitn(&mut sim, seq, n, n);
    }
    assert_eq!(node(&sim, 0).paxos().max(), Some(7));
}

/// First fully deaf (the simulator's `deaf`: a deaf peer must not hear a decision), then
/// deaf to requests only, which is what the course's removed socket amounted to.
#[test]
fn deaf_proposer() {
    let n = 5;
    let mut sim = cluster(seed(2), n, &[0, 1, 2, 3, 4]);
    start(&mut sim, 0, 0, "hello");
    waitn(&mut sim, 0, n, n);

    sim.set_deaf(ids(&[0])[0], true);
    sim.set_deaf(ids(&[4])[0], true);

    start(&mut sim, 1, 1, "goodbye");
    waitmajority(&mut sim, 1, n);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(ndecided(&sim, 1, n), n - 2, "a deaf peer heard a decision");

    // From here on, the course's deaf peers: requests to them are lost, but the answers to
    // their own requests reach them.
    for i in [0, 4] {
        sim.set_deaf(ids(&[i])[0], false);
        sim.call(ids(&[i])[0], |p: &mut PaxosNode<String>, _| {
            p.set_deaf_to_requests(true)
        });
    }
    start(&mut sim, 0, 1, "xxx");
    waitn(&mut sim, 1, n, n - 1);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(ndecided(&sim, 1, n), n - 1, "a deaf peer heard a decision");

    start(&mut sim, 4, 1, "yyy");
    waitn(&mut sim, 1, n, n);
    assert_eq!(decided_value(&sim, 4, 1).as_deref(), Some("goodbye"));
}

#[test]
fn forgetting() {
    let n = 6;
    let mut sim = cluster(seed(3), n, &[0, 1, 2, 3, 4, 5]);
    for i in 0..n {
        assert_eq!(node(&sim, i).paxos().min(), 0, "wrong initial min");
    }
    start(&mut sim, 0, 0, "00");
    start(&mut sim, 1, 1, "11");
    start(&mut sim, 2, 2, "22");
    start(&mut sim, 0, 6, "66");
    start(&mut sim, 1, 7, "77");

    waitn(&mut sim, 0, n, n);
    for i in 0..n {
        assert_eq!(node(&sim, i).paxos().min(), 0, "wrong min");
    }
    waitn(&mut sim, 1, n, n);
    for i in 0..n {
        assert_eq!(node(&sim, i).paxos().min(), 0, "wrong min");
    }

    // Everyone is done with 0; all but peer 0 with 1.
    for i in 0..n {
        done(&mut sim, i, 0);
    }
    for i in 1..n {
        done(&mut sim, i, 1);
    }
    for i in 0..n {
        start(&mut sim, i, 8 + i as u64, "xx");
    }
    let mut settled = false;
    for _ in 0..12 {
        if (0..n).all(|i| node(&sim, i).paxos().min() == 1) {
            settled = true;
            break;
        }
        sim.run_for(Duration::from_secs(1));
    }
    for i in 0..n {
        assert_eq!(
            node(&sim, i).paxos().min(),
            1,
            "peer {i}: min did not advance to exactly 1 (settled: {settled})"
        );
    }
}

#[test]
fn lots_of_forgetting_unreliable() {
    let n = 3;
    let maxseq = 20;
    let mut sim = cluster(seed(4), n, &[0, 1, 2]);
    set_unreliable(&mut sim, n, true);

    let mut order: Vec<u64> = (0..maxseq).collect();
    order.shuffle(sim.rng());
    let mut next = 0;
    // 5 seconds of a starter and a forgetter, interleaved every few milliseconds.
    let end = sim.now() + Duration::from_secs(5);
    while sim.now() < end {
        if next < order.len() {
            let (peer, value) = (sim.rng().gen_range(0..n), sim.rng().gen::<u32>());
            start(&mut sim, peer, order[next], value.to_string());
            next += 1;
        }
        let (seq, peer) = (sim.rng().gen_range(0..maxseq), sim.rng().gen_range(0..n));
        let paxos = node(&sim, peer).paxos();
        if seq >= paxos.min() && matches!(paxos.status(seq), Fate::Decided(_)) {
            done(&mut sim, peer, seq);
        }
        let pause = sim.rng().gen_range(1..20);
        sim.run_for(Duration::from_millis(pause));
    }
    set_unreliable(&mut sim, n, false);
    sim.run_for(Duration::from_secs(2));
    for seq in 0..maxseq {
        for i in 0..n {
            let paxos = node(&sim, i).paxos();
            if seq >= paxos.min() {
                let _ = paxos.status(seq);
            }
        }
    }
}

fn random_string(sim: &mut Sim, len: usize) -> String {
    (0..len)
        .map(|_| char::from(sim.rng().gen_range(b'a'..=b'z')))
        .collect()
}

#[test]
fn forgotten_instances_free_their_memory() {
    let n = 3;
    let mut sim = cluster(seed(5), n, &[0, 1, 2]);
    start(&mut sim, 0, 0, "x");
    waitn(&mut sim, 0, n, n);
    let held = |sim: &Sim| -> usize { (0..n).map(|i| node(sim, i).paxos().held_bytes()).sum() };

    for seq in 1..=10 {
        let big = random_string(&mut sim, 1_000_000);
        start(&mut sim, 0, seq, big);
        waitn(&mut sim, seq, n, n);
    }
    let m1 = held(&sim);
    assert!(m1 >= 3 * 10 * 1_000_000, "accounting missed values: {m1}");

    for i in 0..n {
        done(&mut sim, i, 10);
    }
    for i in 0..n {
        start(&mut sim, i, 11 + i as u64, "z");
    }
    sim.run_for(Duration::from_secs(3));
    for i in 0..n {
        assert_eq!(
            node(&sim, i).paxos().min(),
            11,
            "peer {i}: min did not reach 11"
        );
    }
    let m2 = held(&sim);
    assert!(
        m2 <= m1 / 2,
        "memory not freed: {m2} bytes held, {m1} before"
    );

    for seq in 0..=2 {
        for i in 0..n {
            assert_eq!(node(&sim, i).paxos().status(seq), Fate::Forgotten);
        }
        for i in 0..n {
            let fresh = random_string(&mut sim, 10);
            start(&mut sim, i, seq, fresh);
        }
    }
    sim.run_for(Duration::from_secs(1));
    for seq in 0..=2 {
        for i in 0..n {
            assert_eq!(
                node(&sim, i).paxos().status(seq),
                Fate::Forgotten,
                "a forgotten instance came back"
            );
        }
    }
}

#[test]
fn max_unchanged_by_forgetting() {
    let n = 3;
    let mut sim = cluster(seed(6), n, &[0, 1, 2]);
    start(&mut sim, 0, 0, "x");
    waitn(&mut sim, 0, n, n);
    for seq in 1..=10 {
        start(&mut sim, 0, seq, "y");
        waitn(&mut sim, seq, n, n);
    }
    for i in 0..n {
        done(&mut sim, i, 10);
    }
    for i in 0..n {
        start(&mut sim, i, 10, "z");
    }
    sim.run_for(Duration::from_secs(2));
    for i in 0..n {
        assert_eq!(
            node(&sim, i).paxos().max(),
            Some(10),
            "peer {i}: max changed"
        );
    }
}

/// The course counts RPCs received by each peer (prepare, accept, decided; replies ride on
/// the same connection). Our messages are one-way, so the same count is the number of
/// request messages received, `requests_received`; every request has at most one reply, so
/// the one-way messages sent (`sim.stats(id).sent`) are at most twice that, and the test
/// checks both.
#[test]
fn rpc_counts_are_not_too_high() {
    let n = 3;
    let mut sim = cluster(seed(7), n, &[0, 1, 2]);
    let requests = |sim: &Sim| -> u64 {
        (0..n)
            .map(|i| node(sim, i).paxos().requests_received())
            .sum()
    };
    let sent = |sim: &Sim| -> u64 { ids(&[0, 1, 2]).iter().map(|&id| sim.stats(id).sent).sum() };

    let ninst1 = 5;
    for seq in 0..ninst1 {
        start(&mut sim, 0, seq, "x");
        waitn(&mut sim, seq, n, n);
    }
    sim.run_for(Duration::from_secs(2));
    let (r1, s1) = (requests(&sim), sent(&sim));
    let expected1 = ninst1 * n as u64 * n as u64;
    assert!(
        r1 <= expected1,
        "too many RPCs for serial Start()s: {r1} > {expected1}"
    );
    assert!(
        s1 <= 2 * expected1,
        "too many messages: {s1} > {}",
        2 * expected1
    );

    let ninst2 = 5;
    for seq in 0..ninst2 {
        for i in 0..n {
            start(
                &mut sim,
                i,
                seq + ninst1,
                format!("{}", seq * 10 + i as u64 + 1),
            );
        }
        waitn(&mut sim, seq + ninst1, n, n);
    }
    sim.run_for(Duration::from_secs(2));
    let (r2, s2) = (requests(&sim) - r1, sent(&sim) - s1);
    let expected2 = ninst2 * n as u64 * 15;
    assert!(
        r2 <= expected2,
        "too many RPCs for concurrent Start()s: {r2} > {expected2}"
    );
    assert!(
        s2 <= 2 * expected2,
        "too many messages: {s2} > {}",
        2 * expected2
    );
}

/// Drives the course's `TestMany`/`TestManyUnreliable`: every peer starts every instance
/// 1..=49, with at most `window` instances not yet decided everywhere.
fn run_many(sim: &mut Sim, n: usize, window: u64) {
    for i in 0..n {
        start(sim, i, 0, "0");
    }
    let ninst = 50;
    let mut seq = 1;
    let mut lowest = 0;
    while seq < ninst {
        while lowest < seq && ndecided(sim, lowest, n) == n {
            lowest += 1;
        }
        if seq - lowest < window {
            for i in 0..n {
                start(sim, i, seq, format!("{}", seq * 10 + i as u64));
            }
            seq += 1;
        } else {
            let target = lowest;
            sim.require(WAIT, "the oldest instance in flight decides", |s| {
                ndecided(s, target, n) == n
            });
        }
    }
    for seq in 0..ninst {
        waitn(sim, seq, n, n);
    }
}

#[test]
fn many_instances() {
    let mut sim = cluster(seed(8), 3, &[0, 1, 2]);
    run_many(&mut sim, 3, 5);
}

#[test]
fn old_minority_proposal_ignored() {
    let n = 5;
    let mut sim = cluster(seed(9), n, &[1, 2, 3]);
    start(&mut sim, 1, 1, "111");
    waitmajority(&mut sim, 1, n);

    add_peer(&mut sim, n, 0, Default::default());
    start(&mut sim, 0, 1, "222");
    waitn(&mut sim, 1, n, 4);
    assert_eq!(decided_value(&sim, 0, 1).as_deref(), Some("111"));
}

#[test]
fn many_instances_unreliable() {
    let mut sim = cluster(seed(10), 3, &[0, 1, 2]);
    set_unreliable(&mut sim, 3, true);
    run_many(&mut sim, 3, 3);
}

#[test]
fn partitions() {
    let n = 5;
    let mut sim = cluster(seed(11), n, &[0, 1, 2, 3, 4]);
    let mut seq = 0;

    // No decision if partitioned.
    part(&mut sim, &[&[0, 2], &[1, 3], &[4]]);
    start(&mut sim, 1, seq, "111");
    checkmax(&mut sim, seq, n, 0);

    // Decision in majority partition.
    part(&mut sim, &[&[0], &[1, 2, 3], &[4]]);
    sim.run_for(Duration::from_secs(2));
    waitmajority(&mut sim, seq, n);

    // All agree after full heal.
    start(&mut sim, 0, seq, "1000");
    start(&mut sim, 4, seq, "1004");
    part(&mut sim, &[&[0, 1, 2, 3, 4]]);
    waitn(&mut sim, seq, n, n);

    // One peer switches partitions.
    for _ in 0..20 {
        seq += 1;
        part(&mut sim, &[&[0, 1, 2], &[3, 4]]);
        start(&mut sim, 0, seq, format!("{}", seq * 10));
        start(&mut sim, 3, seq, format!("{}", seq * 10 + 1));
        waitmajority(&mut sim, seq, n);
        assert!(ndecided(&sim, seq, n) <= 3, "too many decided");
        part(&mut sim, &[&[0, 1], &[2, 3, 4]]);
        waitn(&mut sim, seq, n, n);
    }

    // One peer switches partitions, unreliable.
    for _ in 0..20 {
        seq += 1;
        set_unreliable(&mut sim, n, true);
        part(&mut sim, &[&[0, 1, 2], &[3, 4]]);
        for i in 0..n {
            start(&mut sim, i, seq, format!("{}", seq * 10 + i as u64));
        }
        waitn(&mut sim, seq, n, 3);
        assert!(ndecided(&sim, seq, n) <= 3, "too many decided");
        part(&mut sim, &[&[0, 1], &[2, 3, 4]]);
        set_unreliable(&mut sim, n, false);
        waitn(&mut sim, seq, n, n);
    }
}

#[test]
fn many_requests_changing_partitions() {
    let n = 5;
    let mut sim = cluster(seed(12), n, &[0, 1, 2, 3, 4]);
    set_unreliable(&mut sim, n, true);
    let all: Vec<usize> = (0..n).collect();

    let end = sim.now() + Duration::from_secs(20);
    let mut next_partition = sim.now();
    let mut next_start = sim.now();
    let mut started = 0u64;
    let mut lowest_undecided = 0u64;
    while sim.now() < end {
        if sim.now() >= next_partition {
            let mut groups: Vec<Vec<usize>> = vec![Vec::new(); 3];
            for &i in &all {
                let g = sim.rng().gen_range(0..3);
                groups[g].push(i);
            }
            let refs: Vec<&[usize]> = groups.iter().map(Vec::as_slice).collect();
            part(&mut sim, &refs);
            next_partition = sim.now() + Duration::from_millis(sim.rng().gen_range(0..200));
        }
        if sim.now() >= next_start {
            while lowest_undecided < started && ndecided(&sim, lowest_undecided, n) == n {
                lowest_undecided += 1;
            }
            if started - lowest_undecided < 10 {
                for i in 0..n {
                    let v = sim.rng().gen_range(0..10).to_string();
                    start(&mut sim, i, started, v);
                }
                started += 1;
            }
            next_start = sim.now() + Duration::from_millis(sim.rng().gen_range(0..300));
        }
        let until = next_partition
            .min(next_start)
            .max(sim.now() + Duration::from_millis(1));
        sim.run_for(until - sim.now());
    }
    assert!(started > 10, "only {started} instances started");

    set_unreliable(&mut sim, n, false);
    sim.heal();
    sim.run_for(Duration::from_secs(5));
    for seq in 0..started {
        waitmajority(&mut sim, seq, n);
    }
}

/// `SYNOD_SEED` replays a failure; otherwise each test has its own fixed seed.
fn seed(default: u64) -> u64 {
    synod_sim::seed_from_env(default)
}
