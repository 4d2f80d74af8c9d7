//! A test node that records everything that happens to it, for checking the simulator itself.

// Shared by several test binaries, each using a different part.
#![allow(dead_code)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use synod_sim::{Context, Node, NodeId, TimerToken};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// Answered with `Pong` of the same number.
    Ping(u64),
    Pong(u64),
    /// Just recorded.
    Data(u64),
}

/// Records received messages (with local receive time), fired timers and recovered records.
#[derive(Debug, Default)]
pub struct Probe {
    /// If set, a timer fires every this often on the node's own clock.
    pub tick_every: Option<Duration>,
    pub received: Vec<(NodeId, Msg, Duration)>,
    pub ticks: u64,
    pub recovered: Vec<Vec<u8>>,
}

impl Probe {
    pub fn ticking(every: Duration) -> Self {
        Probe {
            tick_every: Some(every),
            ..Default::default()
        }
    }

    /// Numbers of the `Data` messages received, in arrival order.
    pub fn data(&self) -> Vec<u64> {
        self.received
            .iter()
            .filter_map(|(_, m, _)| match m {
                Msg::Data(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, pred: impl Fn(&Msg) -> bool) -> usize {
        self.received.iter().filter(|(_, m, _)| pred(m)).count()
    }
}

impl Node for Probe {
    type Msg = Msg;

    fn on_start(&mut self, ctx: &mut dyn Context<Msg>) {
        self.recovered = ctx.storage().recover().expect("memory storage").records;
        if let Some(every) = self.tick_every {
            ctx.set_timer(every, 0);
        }
    }

    fn on_message(&mut self, ctx: &mut dyn Context<Msg>, from: NodeId, msg: Msg) {
        if let Msg::Ping(n) = msg {
            ctx.send(from, Msg::Pong(n));
        }
        self.received.push((from, msg, ctx.now()));
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<Msg>, _token: TimerToken) {
        self.ticks += 1;
        if let Some(every) = self.tick_every {
            ctx.set_timer(every, 0);
        }
    }
}

pub type Sim = synod_sim::Simulator<Msg>;

pub const A: NodeId = NodeId(0);
pub const B: NodeId = NodeId(1);
pub const C: NodeId = NodeId(2);

/// A simulator with probes A, B and C.
pub fn three(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    for id in [A, B, C] {
        sim.add_node(id, Probe::default);
    }
    sim
}

/// Sends `count` numbered `Data` messages from `from` to `to`, then runs until the network is
/// quiet.
pub fn blast(sim: &mut Sim, from: NodeId, to: NodeId, count: u64) {
    for n in 0..count {
        sim.call::<Probe, _>(from, |_, ctx| ctx.send(to, Msg::Data(n)));
    }
    sim.run_for(Duration::from_secs(10));
}

pub fn probe(sim: &Sim, id: NodeId) -> &Probe {
    sim.node::<Probe>(id).expect("probe is running")
}
