//! The fault injector's own tests: every fault, switched on, measurably happens — and switched
//! off, does not. A fault that silently does nothing would make every test built on the
//! simulator worthless.

mod probe;

use std::time::Duration;

use probe::{blast, probe, three, Msg, Probe, Sim, A, B, C};
use synod_sim::{DropReason, NetConfig, NodeFaults, NodeId};

const N: u64 = 10_000;

#[test]
fn reliable_network_delivers_everything_once_in_bounds() {
    let mut sim = three(1);
    blast(&mut sim, A, B, N);
    let got = probe(&sim, B).data();
    assert_eq!(got.len() as u64, N);
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len() as u64, N, "no duplicates");
    assert_eq!(sim.stats(A).sent, N);
    assert_eq!(sim.stats(B).received, N);
    assert_eq!(sim.sim_stats().dropped_total(), 0);
    assert!(sim.stats(A).bytes_sent >= N, "bytes are counted");
    assert_eq!(sim.stats(A).bytes_sent, sim.stats(B).bytes_received);
    // Every message was sent at time 0 and took 1–5 ms.
    for (_, _, at) in &probe(&sim, B).received {
        assert!(
            *at >= Duration::from_millis(1) && *at <= Duration::from_millis(5),
            "{at:?}"
        );
    }
}

#[test]
fn network_drop_loses_about_p() {
    let mut sim = three(2);
    sim.set_network(NetConfig {
        drop: 0.3,
        ..NetConfig::reliable()
    });
    blast(&mut sim, A, B, N);
    let got = probe(&sim, B).data().len() as f64 / N as f64;
    assert!((0.66..0.74).contains(&got), "delivered fraction {got}");
    let dropped = sim.stats(B).dropped_in[&DropReason::Network];
    assert_eq!(dropped + probe(&sim, B).data().len() as u64, N);
}

#[test]
fn link_drop_affects_only_that_direction() {
    let mut sim = three(3);
    sim.set_link_drop(A, B, 1.0);
    blast(&mut sim, A, B, 100);
    blast(&mut sim, B, A, 100);
    blast(&mut sim, A, C, 100);
    assert_eq!(probe(&sim, B).data().len(), 0);
    assert_eq!(probe(&sim, A).data().len(), 100);
    assert_eq!(probe(&sim, C).data().len(), 100);
}

#[test]
fn dropped_request_is_never_executed() {
    let mut sim = three(4);
    sim.set_node_faults(
        B,
        NodeFaults {
            drop_incoming: 0.5,
            ..Default::default()
        },
    );
    for n in 0..N {
        sim.call::<Probe, _>(A, |_, ctx| ctx.send(B, Msg::Ping(n)));
    }
    sim.run_for(Duration::from_secs(1));
    let executed = probe(&sim, B).count(|m| matches!(m, Msg::Ping(_)));
    let replies = probe(&sim, A).count(|m| matches!(m, Msg::Pong(_)));
    assert!((4_500..5_500).contains(&executed), "executed {executed}");
    assert_eq!(replies, executed, "every executed request was answered");
    assert_eq!(
        sim.stats(B).dropped_in[&DropReason::Incoming],
        N - executed as u64
    );
}

#[test]
fn lost_reply_means_executed_but_unanswered() {
    let mut sim = three(5);
    sim.set_node_faults(
        B,
        NodeFaults {
            drop_outgoing: 0.5,
            ..Default::default()
        },
    );
    for n in 0..N {
        sim.call::<Probe, _>(A, |_, ctx| ctx.send(B, Msg::Ping(n)));
    }
    sim.run_for(Duration::from_secs(1));
    let executed = probe(&sim, B).count(|m| matches!(m, Msg::Ping(_)));
    let replies = probe(&sim, A).count(|m| matches!(m, Msg::Pong(_)));
    assert_eq!(executed as u64, N, "every request ran");
    assert!((4_500..5_500).contains(&replies), "replies {replies}");
}

#[test]
fn unreliable_mode_matches_the_course_mix() {
    let mut sim = three(6);
    sim.set_unreliable(B, true);
    for n in 0..N {
        sim.call::<Probe, _>(A, |_, ctx| ctx.send(B, Msg::Ping(n)));
    }
    sim.run_for(Duration::from_secs(1));
    let executed = probe(&sim, B).count(|m| matches!(m, Msg::Ping(_))) as f64 / N as f64;
    let replies = probe(&sim, A).count(|m| matches!(m, Msg::Pong(_))) as f64 / N as f64;
    assert!((0.87..0.93).contains(&executed), "executed {executed}");
    assert!((0.69..0.75).contains(&replies), "answered {replies}");
    sim.set_unreliable(B, false);
    assert_eq!(*sim.node_faults(B), NodeFaults::default());
}

#[test]
fn duplication_delivers_twice() {
    let mut sim = three(7);
    sim.set_network(NetConfig {
        duplicate: 0.25,
        ..NetConfig::reliable()
    });
    blast(&mut sim, A, B, N);
    let got = probe(&sim, B).data();
    let extra = got.len() as u64 - N;
    assert!((2_200..2_800).contains(&extra), "duplicates {extra}");
    assert_eq!(extra, sim.sim_stats().duplicated);
    let mut distinct = got.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len() as u64, N, "nothing lost, nothing invented");
}

#[test]
fn per_node_duplication() {
    let mut sim = three(8);
    sim.set_node_faults(
        B,
        NodeFaults {
            duplicate: 1.0,
            ..Default::default()
        },
    );
    blast(&mut sim, A, B, 100);
    blast(&mut sim, A, C, 100);
    assert_eq!(probe(&sim, B).data().len(), 200);
    assert_eq!(probe(&sim, C).data().len(), 100);
}

#[test]
fn long_delays_reorder() {
    let mut sim = three(9);
    sim.set_network(NetConfig {
        long_delay_prob: 0.2,
        ..NetConfig::reliable()
    });
    for n in 0..1000 {
        sim.call::<Probe, _>(A, |_, ctx| ctx.send(B, Msg::Data(n)));
        sim.run_for(Duration::from_millis(10));
    }
    sim.run_for(Duration::from_secs(5));
    let got = probe(&sim, B).data();
    assert_eq!(got.len(), 1000);
    let inversions = got.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(inversions > 50, "only {inversions} reorderings");
    // Without long delays, messages 10 ms apart with 1–5 ms latency never overtake.
    let mut calm = three(9);
    for n in 0..1000 {
        calm.call::<Probe, _>(A, |_, ctx| ctx.send(B, Msg::Data(n)));
        calm.run_for(Duration::from_millis(10));
    }
    let got = probe(&calm, B).data();
    assert!(got.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn two_way_partition_blocks_exactly_cross_group_links() {
    let mut sim = three(10);
    sim.partition(&[&[A, B], &[C]]);
    for (from, to) in [(A, B), (B, A), (A, C), (C, A), (B, C), (C, B)] {
        sim.call::<Probe, _>(from, |_, ctx| ctx.send(to, Msg::Data(from.0 * 10 + to.0)));
    }
    sim.run_for(Duration::from_secs(1));
    assert_eq!(probe(&sim, A).data(), vec![10]);
    assert_eq!(probe(&sim, B).data(), vec![1]);
    assert_eq!(probe(&sim, C).data(), Vec::<u64>::new());
    assert_eq!(sim.sim_stats().dropped[&DropReason::Partition], 4);

    sim.heal();
    blast(&mut sim, A, C, 5);
    blast(&mut sim, C, B, 5);
    assert_eq!(probe(&sim, C).data().len(), 5);
    assert_eq!(probe(&sim, B).data().len(), 1 + 5);
}

#[test]
fn one_way_partition() {
    let mut sim = three(11);
    sim.block_link(A, B);
    blast(&mut sim, A, B, 10);
    blast(&mut sim, B, A, 10);
    assert_eq!(probe(&sim, B).data().len(), 0);
    assert_eq!(probe(&sim, A).data().len(), 10);
    sim.unblock_link(A, B);
    blast(&mut sim, A, B, 10);
    assert_eq!(probe(&sim, B).data().len(), 10);
}

#[test]
fn partition_cuts_messages_already_in_flight() {
    let mut sim = three(12);
    sim.call::<Probe, _>(A, |_, ctx| ctx.send(B, Msg::Data(1)));
    sim.partition(&[&[A], &[B]]);
    sim.run_for(Duration::from_secs(1));
    assert!(probe(&sim, B).data().is_empty());
}

#[test]
fn isolate_cuts_a_node_off_both_ways() {
    let mut sim = three(13);
    sim.isolate(C);
    blast(&mut sim, A, C, 3);
    blast(&mut sim, C, B, 3);
    blast(&mut sim, A, B, 3);
    assert!(probe(&sim, C).data().is_empty());
    assert_eq!(probe(&sim, B).data().len(), 3);
}

#[test]
fn deaf_node_sends_but_never_receives() {
    let mut sim = three(14);
    sim.set_deaf(B, true);
    blast(&mut sim, A, B, 10);
    blast(&mut sim, B, A, 10);
    assert!(probe(&sim, B).data().is_empty());
    assert_eq!(probe(&sim, A).data().len(), 10);
    assert_eq!(sim.stats(B).dropped_in[&DropReason::Deaf], 10);
    sim.set_deaf(B, false);
    blast(&mut sim, A, B, 10);
    assert_eq!(probe(&sim, B).data().len(), 10);
}

#[test]
fn clock_drift_changes_timer_rate() {
    let mut sim = Sim::new(15);
    sim.add_node(A, || Probe::ticking(Duration::from_millis(100)));
    sim.add_node(B, || Probe::ticking(Duration::from_millis(100)));
    sim.add_node(C, || Probe::ticking(Duration::from_millis(100)));
    sim.set_clock_rate(B, 2.0);
    sim.set_clock_rate(C, 0.5);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(probe(&sim, A).ticks, 100);
    assert!(
        (199..=200).contains(&probe(&sim, B).ticks),
        "{}",
        probe(&sim, B).ticks
    );
    assert!(
        (49..=50).contains(&probe(&sim, C).ticks),
        "{}",
        probe(&sim, C).ticks
    );
}

#[test]
fn drifting_clock_is_seen_by_the_node() {
    let mut sim = three(16);
    sim.set_clock_rate(B, 3.0);
    sim.run_for(Duration::from_secs(1));
    blast(&mut sim, A, B, 1);
    let (_, _, local) = probe(&sim, B).received[0];
    // Sent at global 1 s; arrived 1–5 ms later; B's clock runs 3× since global 0.
    assert!(
        local >= Duration::from_millis(3003) && local <= Duration::from_millis(3015),
        "{local:?}"
    );
}

#[test]
fn crash_loses_unsynced_writes_and_restart_recovers_synced_ones() {
    let mut sim = three(17);
    sim.call::<Probe, _>(A, |_, ctx| {
        ctx.storage().append(b"one").unwrap();
        ctx.storage().persist_before_send().unwrap();
        ctx.storage().append(b"two").unwrap();
    });
    sim.crash(A);
    assert!(!sim.is_up(A));
    assert!(sim.node::<Probe>(A).is_none());
    sim.restart(A);
    assert_eq!(probe(&sim, A).recovered, vec![b"one".to_vec()]);
    assert_eq!(sim.stats(A).starts, 2);
}

#[test]
fn restart_with_wiped_disk_recovers_nothing() {
    let mut sim = three(18);
    sim.call::<Probe, _>(A, |_, ctx| {
        ctx.storage().append(b"one").unwrap();
        ctx.storage().persist_before_send().unwrap();
    });
    sim.restart_wiped(A);
    assert!(probe(&sim, A).recovered.is_empty());
}

#[test]
fn crashed_node_receives_nothing_and_its_old_timers_never_fire() {
    let mut sim = Sim::new(19);
    sim.add_node(A, || Probe::ticking(Duration::from_millis(100)));
    sim.add_node(B, Probe::default);
    sim.run_for(Duration::from_millis(250));
    assert_eq!(probe(&sim, A).ticks, 2);
    sim.crash(A);
    blast(&mut sim, B, A, 5);
    assert_eq!(sim.stats(A).dropped_in[&DropReason::Crashed], 5);
    let timers_before = sim.stats(A).timers;
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.stats(A).timers,
        timers_before,
        "a dead node's timers fired"
    );
    // Restart 50 ms off the old tick phase: only the new life's timers fire.
    sim.run_for(Duration::from_millis(50));
    sim.restart(A);
    sim.run_for(Duration::from_millis(1000));
    assert_eq!(probe(&sim, A).ticks, 10);
    assert!(
        probe(&sim, A).data().is_empty(),
        "messages to the dead node stayed dead"
    );
}

#[test]
fn heal_all_removes_every_fault_and_restarts_crashed_nodes() {
    let mut sim = three(20);
    sim.set_network(NetConfig::hostile());
    sim.partition(&[&[A], &[B, C]]);
    sim.set_unreliable(B, true);
    sim.set_deaf(C, true);
    sim.set_clock_rate(C, 4.0);
    sim.crash(A);
    sim.heal_all();
    assert!(sim.is_up(A));
    assert_eq!(*sim.network(), NetConfig::reliable());
    for (from, to) in [(A, B), (B, C), (C, A)] {
        blast(&mut sim, from, to, 100);
    }
    for id in [A, B, C] {
        assert_eq!(probe(&sim, id).data().len(), 100, "{id}");
    }
}

#[test]
fn unknown_destination_is_dropped_not_fatal() {
    let mut sim = three(21);
    blast(&mut sim, A, NodeId(99), 3);
    assert_eq!(sim.sim_stats().dropped[&DropReason::UnknownNode], 3);
}
