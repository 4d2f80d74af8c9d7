//! The recording hook: an observer sees every event the counters count, each copy of a
//! message from its send to its one end, and setting one changes nothing about the run.

mod probe;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use probe::{three, Msg, Probe, Sim, A, B, C};
use rand::Rng;
use synod_sim::{NetConfig, NodeId, Observed};

/// What the observer saw, by kind.
#[derive(Debug, Default)]
struct Seen {
    sends: u64,
    delivers: u64,
    drops: u64,
    timers: u64,
    crashes: u64,
    starts: BTreeMap<NodeId, (u64, u64)>,
    links: Vec<Vec<(NodeId, NodeId)>>,
    deaf: Vec<(NodeId, bool)>,
    /// Copies sent and not yet delivered or dropped: id → (from, to).
    in_flight: BTreeMap<u64, (NodeId, NodeId)>,
    /// Copies that ended (delivered or dropped).
    ended: u64,
}

/// A busy run with every fault, optionally observed. Returns the simulator (for its
/// counters and digest).
fn busy_run(seed: u64, seen: Option<Rc<RefCell<Seen>>>) -> Sim {
    let mut sim = three(seed);
    if let Some(seen) = seen {
        sim.set_observer(move |event| record(&mut seen.borrow_mut(), event));
    }
    sim.set_network(NetConfig::hostile());
    sim.set_unreliable(B, true);
    let nodes = [A, B, C];
    for round in 0..600u64 {
        let from = nodes[sim.rng().gen_range(0..3)];
        let to = nodes[sim.rng().gen_range(0..3)];
        if sim.is_up(from) {
            sim.call::<Probe, _>(from, |_, ctx| ctx.send(to, Msg::Ping(round)));
        }
        match round % 150 {
            10 => sim.partition(&[&[A], &[B, C]]),
            40 => sim.set_deaf(C, true),
            60 => {
                let victim = nodes[sim.rng().gen_range(0..3)];
                sim.crash(victim);
            }
            90 => {
                sim.heal();
                sim.block_link(B, A);
            }
            120 => sim.heal_all(),
            _ => {}
        }
        sim.run_for(Duration::from_millis(3));
    }
    sim.run_for(Duration::from_secs(5));
    sim
}

fn record(seen: &mut Seen, event: Observed<'_, Msg>) {
    match event {
        Observed::Start { node, restart } => {
            let (starts, restarts) = seen.starts.entry(node).or_default();
            *starts += 1;
            *restarts += u64::from(restart);
        }
        Observed::Crash { .. } => seen.crashes += 1,
        Observed::Send {
            msg_id, from, to, ..
        } => {
            seen.sends += 1;
            assert!(
                seen.in_flight.insert(msg_id, (from, to)).is_none(),
                "copy {msg_id} sent twice"
            );
        }
        Observed::Deliver {
            msg_id, from, to, ..
        } => {
            seen.delivers += 1;
            end(seen, msg_id, from, to);
        }
        Observed::Drop {
            msg_id, from, to, ..
        } => {
            seen.drops += 1;
            end(seen, msg_id, from, to);
        }
        Observed::Timer { .. } => seen.timers += 1,
        Observed::Links { blocked } => seen.links.push(blocked.iter().copied().collect()),
        Observed::Faults { node, faults } => seen.deaf.push((node, faults.deaf)),
    }
}

fn end(seen: &mut Seen, msg_id: u64, from: NodeId, to: NodeId) {
    let sent = seen.in_flight.remove(&msg_id);
    assert_eq!(
        sent,
        Some((from, to)),
        "copy {msg_id} ended without its send"
    );
    seen.ended += 1;
}

#[test]
fn the_observer_sees_what_the_counters_count() {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let sim = busy_run(11, Some(Rc::clone(&seen)));
    let seen = seen.borrow();
    let stats = sim.sim_stats();
    let node_sum = |f: fn(&synod_sim::NodeStats) -> u64| {
        [A, B, C].map(|n| f(sim.stats(n))).iter().sum::<u64>()
    };
    assert_eq!(seen.sends, node_sum(|s| s.sent) + stats.duplicated);
    assert_eq!(seen.delivers, stats.delivered);
    assert_eq!(seen.drops, stats.dropped_total());
    assert!(
        seen.drops > 0 && stats.duplicated > 0,
        "the run had losses and copies"
    );
    assert_eq!(seen.timers, node_sum(|s| s.timers));
    assert_eq!(seen.ended + seen.in_flight.len() as u64, seen.sends);
    // The nodes' first starts came before the observer was set: it saw only restarts.
    for n in [A, B, C] {
        let restarts = sim.stats(n).starts - 1;
        let seen_starts = seen.starts.get(&n).copied().unwrap_or_default();
        assert_eq!(seen_starts, (restarts, restarts), "starts of {n}");
    }
    assert!(seen.crashes >= 4, "crashes seen: {}", seen.crashes);
    // The partition {A} {B, C}, then healed and B→A cut alone.
    let a_cut: Vec<(NodeId, NodeId)> = vec![(A, B), (A, C), (B, A), (C, A)];
    assert_eq!(seen.links[0], a_cut);
    assert!(seen.links.contains(&vec![(B, A)]));
    assert!(seen.links.contains(&Vec::new()));
    assert!(seen.deaf.contains(&(C, true)) && seen.deaf.contains(&(C, false)));
}

#[test]
fn observing_changes_nothing_about_the_run() {
    for seed in [1, 2, 3] {
        let plain = busy_run(seed, None);
        let observed = busy_run(seed, Some(Rc::default()));
        assert_eq!(plain.digest(), observed.digest(), "seed {seed}");
        assert_eq!(plain.sim_stats(), observed.sim_stats(), "seed {seed}");
    }
}
