//! Randomized runs: three servers and three clients doing Gets, Puts and Appends on a few
//! keys, while a seeded schedule crashes and restarts servers, cuts servers off from the view
//! service or from each other, makes them unreliable and the network hostile. Every history
//! is checked for linearizability, and each run ends by healing everything and requiring
//! progress.
//!
//! One outcome is allowed instead of progress, because the design cannot avoid it: the view
//! service is stuck when the primary of an unacknowledged view lost its state (it crashed
//! before acknowledging). Such runs are still checked for safety, counted, and must stay a
//! minority. `SYNOD_SEEDS=500 cargo test -p synod-pbservice --release --test random` runs more.

mod support;

use std::time::Duration;

use rand::Rng;
use support::*;
use synod_sim::{Nemesis, NetConfig, NodeId};
use synod_viewservice::ViewServer;

const SERVERS: u64 = 3;
const KEYS: [&str; 3] = ["a", "b", "c"];

/// The documented dead ends: the primary of the current view lost the data (it crashed), and
/// either the view is unacknowledged or no backup still holds the data, so nobody who has it
/// can ever take over.
fn stuck_by_design(c: &Cluster) -> bool {
    let vs = c
        .sim
        .node::<ViewServer<synod_pbservice::PbMsg>>(VS)
        .unwrap();
    let view = vs.view();
    view.primary.is_some_and(|p| {
        let backup_has_data = view
            .backup
            .is_some_and(|b| c.server(b).installed_in() == view.num);
        !c.server(p).is_primary(p) && (!vs.acked() || !backup_has_data)
    })
}

/// Runs one seed with faults switched every 300 ms by `faults`; returns whether the
/// service made progress after healing.
fn run(seed: u64, mut faults: impl FnMut(&mut Cluster, &[NodeId])) -> bool {
    let mut c = Cluster::new(seed);
    for n in 1..=SERVERS {
        c.start_server(n);
    }
    c.sim.run_for(Duration::from_secs(1));
    let clients: Vec<NodeId> = (0..3)
        .map(|i| {
            c.add_client(
                Box::new(move |n, rng| {
                    let key = KEYS[rng.gen_range(0..KEYS.len())];
                    Some(match rng.gen_range(0..3) {
                        0 => get(key),
                        1 => put(key, &format!("{i}.{n};")),
                        _ => append(key, &format!("{i}.{n};")),
                    })
                }),
                Duration::from_millis(5),
            )
        })
        .collect();
    let servers: Vec<NodeId> = (1..=SERVERS).map(NodeId).collect();
    for _ in 0..25 {
        faults(&mut c, &servers);
        c.sim.run_for(Duration::from_millis(300));
    }
    c.sim.heal_all();
    // Let pending views settle, then require every client to finish two more operations.
    c.sim.run_for(Duration::from_secs(2));
    let progressed = if stuck_by_design(&c) {
        false
    } else {
        let before: Vec<u64> = clients.iter().map(|&id| c.client(id).completed()).collect();
        let targets = clients.clone();
        c.sim.require(
            Duration::from_secs(20),
            "clients progress after healing",
            |sim| {
                targets
                    .iter()
                    .zip(&before)
                    .all(|(&id, &b)| sim.node::<ClientNode>(id).unwrap().completed() >= b + 2)
            },
        );
        true
    };
    if progressed {
        c.stop_clients(Duration::from_secs(20));
    }
    // Operations still waiting in a stuck run have unknown outcomes, which the checker allows.
    c.check_linearizable();
    progressed
}

/// The schedule of the course's killer and more: crashes (one server down at a time),
/// servers cut off from the view service or from each other, unreliable servers, a hostile
/// network.
fn random_faults(c: &mut Cluster, servers: &[NodeId]) {
    let server = servers[c.sim.rng().gen_range(0..servers.len())];
    match c.sim.rng().gen_range(0..8) {
        // As in the course's killer, at most one server is down at a time.
        0 if servers.iter().all(|&s| c.sim.is_up(s)) => c.kill(server),
        0 | 1 => {
            for &s in servers {
                c.start_server(s.0);
            }
        }
        2 => {
            c.sim.block_link(server, VS);
            c.sim.block_link(VS, server);
        }
        3 => {
            let other = servers[c.sim.rng().gen_range(0..servers.len())];
            c.sim.partition(&[&[server], &[other]]);
        }
        4 => c.sim.set_unreliable(server, true),
        5 => c.sim.set_network(NetConfig::hostile()),
        _ => {
            c.sim.heal();
            c.sim.set_network(NetConfig::reliable());
            for &s in servers {
                c.sim.set_unreliable(s, false);
            }
        }
    }
}

#[test]
fn random_faults_keep_histories_linearizable() {
    let seeds = synod_sim::seeds(30);
    let stuck: Vec<u64> = seeds
        .iter()
        .copied()
        .filter(|&seed| !run(seed, random_faults))
        .collect();
    eprintln!("{} seeds, stuck by design: {stuck:?}", seeds.len());
    // A single replayed seed may be a stuck one; the bound is about the sweep.
    assert!(
        seeds.len() < 4 || stuck.len() * 4 <= seeds.len(),
        "the view service got stuck in too many runs: seeds {stuck:?}"
    );
}

/// The targeted nemesis among the servers (a server cut off from the others while the view
/// service still hears it, a bridge server, one-way links, crashes): no wipes, since the
/// servers keep their state in memory and a restart already loses it. Every history must be
/// linearizable, and every run that is not stuck by design must make progress after healing.
#[test]
fn targeted_nemesis_keeps_histories_linearizable() {
    let seeds = synod_sim::seeds(12);
    let mut stuck = Vec::new();
    for &seed in &seeds {
        let mut nemesis = None;
        let progressed = run(seed, |c, servers| {
            let nemesis = nemesis.get_or_insert_with(|| Nemesis::new(servers.to_vec(), 0));
            nemesis.step(&mut c.sim);
        });
        if !progressed {
            stuck.push(seed);
        }
    }
    // Crashes during partitions often hit the primary of a view that could not be
    // acknowledged yet: the documented dead end, more often than under random faults. Those
    // runs are still checked for linearizability; every other run must make progress.
    eprintln!("targeted nemesis: seeds {seeds:?}, stuck by design: {stuck:?}");
}
