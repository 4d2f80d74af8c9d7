//! Determinism, seeds, invariants and the liveness ending.

mod probe;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use probe::{probe, three, Msg, Probe, Sim, A, B, C};
use rand::Rng;
use synod_sim::{NetConfig, Recorder};

/// A busy randomized run: every fault at once, random pings between random nodes, random
/// crashes. Returns the trace digest.
fn chaotic_run(seed: u64) -> u64 {
    let mut sim = three(seed);
    sim.set_network(NetConfig::hostile());
    sim.set_unreliable(B, true);
    sim.set_clock_rate(C, 1.5);
    let nodes = [A, B, C];
    for round in 0..2000u64 {
        let from = nodes[sim.rng().gen_range(0..3)];
        let to = nodes[sim.rng().gen_range(0..3)];
        if sim.is_up(from) {
            sim.call::<Probe, _>(from, |_, ctx| ctx.send(to, Msg::Ping(round)));
        }
        if round % 300 == 0 {
            let victim = nodes[sim.rng().gen_range(0..3)];
            sim.crash(victim);
        }
        if round % 300 == 150 {
            sim.heal_all();
            sim.set_network(NetConfig::hostile());
        }
        sim.run_for(Duration::from_millis(3));
    }
    sim.run_for(Duration::from_secs(5));
    assert!(sim.sim_stats().delivered > 1000);
    sim.digest()
}

#[test]
fn same_seed_same_run_and_different_seeds_differ() {
    assert_eq!(chaotic_run(42), chaotic_run(42));
    assert_ne!(chaotic_run(42), chaotic_run(43));
}

#[test]
fn invariant_violation_panics_with_the_seed() {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut sim = three(77);
        sim.add_invariant("B receives at most 3 messages", |sim: &Sim| {
            let n = probe(sim, B).received.len();
            if n <= 3 {
                Ok(())
            } else {
                Err(format!("B received {n}"))
            }
        });
        for n in 0..10 {
            sim.call::<Probe, _>(A, |_, ctx| ctx.send(B, Msg::Data(n)));
        }
        sim.run_for(Duration::from_secs(1));
    }));
    let panic = result.expect_err("the invariant must fire");
    let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("B receives at most 3 messages"), "{text}");
    assert!(
        text.contains("B received 4"),
        "checked after every step: {text}"
    );
    assert!(text.contains("seed 77"), "{text}");
}

#[test]
fn require_fails_when_there_is_no_progress() {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut sim = three(5);
        sim.isolate(B);
        sim.call::<Probe, _>(A, |_, ctx| ctx.send(B, Msg::Data(1)));
        sim.require(Duration::from_secs(3), "B hears from A", |sim| {
            !probe(sim, B).data().is_empty()
        });
    }));
    let panic = result.expect_err("no progress must fail");
    let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        text.contains("B hears from A") && text.contains("seed 5"),
        "{text}"
    );
}

#[test]
fn require_passes_after_healing() {
    let mut sim = three(5);
    sim.isolate(B);
    sim.run_for(Duration::from_secs(1));
    sim.heal_all();
    sim.call::<Probe, _>(A, |_, ctx| ctx.send(B, Msg::Data(1)));
    sim.require(Duration::from_secs(3), "B hears from A", |sim| {
        !probe(sim, B).data().is_empty()
    });
    assert!(sim.now() < Duration::from_millis(1010));
}

#[test]
fn recorder_uses_global_virtual_time_and_marks_unfinished_operations() {
    let mut sim = three(1);
    let history: Recorder<&str, u64> = Recorder::new(sim.clock());
    let first = history.invoke(7, "put");
    sim.run_for(Duration::from_millis(5));
    history.complete(first, 1);
    sim.run_for(Duration::from_millis(5));
    history.invoke(8, "get");
    let ops = history.operations();
    assert_eq!(
        (ops[0].call, ops[0].ret, ops[0].output),
        (0, Some(5_000_000), Some(1))
    );
    assert_eq!(
        (ops[1].client, ops[1].call, ops[1].ret),
        (8, 10_000_000, None)
    );
    assert_eq!(history.completed(), 1);
}

#[test]
fn seeds_default_to_a_range() {
    // Only meaningful when the environment does not override it.
    if std::env::var_os("SYNOD_SEED").is_none() && std::env::var_os("SYNOD_SEEDS").is_none() {
        assert_eq!(synod_sim::seeds(3), vec![0, 1, 2]);
    }
}
