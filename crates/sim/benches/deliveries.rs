//! How many simulated message deliveries per second the simulator sustains on one core.
//!
//! Two nodes bounce a message back and forth (each delivery is one event: pop, deliver, call
//! the node, schedule the reply). The baseline in the same run is a bare `BinaryHeap` push/pop
//! loop, the floor any event-driven simulator pays, so the ratio says how much the simulator
//! adds on top of its priority queue. A third run sets a recording hook that counts what it
//! sees (what `synod sim` does, minus formatting), so the ratio of the two simulator runs is
//! the hook's cost when on; off, it is one `None` check per event.

use std::collections::BinaryHeap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use synod_sim::{Context, Node, NodeId, Simulator, TimerToken};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ball(u64);

struct Player;

impl Node for Player {
    type Msg = Ball;
    fn on_start(&mut self, _ctx: &mut dyn Context<Ball>) {}
    fn on_message(&mut self, ctx: &mut dyn Context<Ball>, from: NodeId, msg: Ball) {
        ctx.send(from, Ball(msg.0 + 1));
    }
    fn on_timer(&mut self, _ctx: &mut dyn Context<Ball>, _token: TimerToken) {}
}

const DELIVERIES: u64 = 2_000_000;
/// Balls in play at once, so the queue holds more than one event.
const BALLS: u64 = 64;

fn simulator_run(observed: bool) -> f64 {
    let mut sim: Simulator<Ball> = Simulator::new(1);
    if observed {
        let mut seen = 0u64;
        sim.set_observer(move |event| {
            seen += 1;
            std::hint::black_box((&event, seen));
        });
    }
    sim.add_node(NodeId(0), || Player);
    sim.add_node(NodeId(1), || Player);
    for n in 0..BALLS {
        sim.call::<Player, _>(NodeId(0), |_, ctx| ctx.send(NodeId(1), Ball(n)));
    }
    let start = Instant::now();
    while sim.sim_stats().delivered < DELIVERIES {
        sim.step();
    }
    DELIVERIES as f64 / start.elapsed().as_secs_f64()
}

fn heap_run() -> f64 {
    let mut heap = BinaryHeap::new();
    for n in 0..BALLS {
        heap.push(std::cmp::Reverse((n, n)));
    }
    let start = Instant::now();
    for i in 0..DELIVERIES {
        let std::cmp::Reverse((at, seq)) = heap.pop().expect("never empty");
        heap.push(std::cmp::Reverse((at + 3_000_000, seq ^ i)));
    }
    std::hint::black_box(&heap);
    DELIVERIES as f64 / start.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let runs = 7;
    // Plain and observed runs alternate, so a change in the machine's load hits both.
    let (mut plain, mut observed) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        plain.push(simulator_run(false));
        observed.push(simulator_run(true));
    }
    let (sim, observed) = (median(plain), median(observed));
    let heap = median((0..runs).map(|_| heap_run()).collect());
    println!(
        "simulated deliveries: median {:.2} M/s over {runs} runs of {DELIVERIES}",
        sim / 1e6
    );
    println!(
        "bare heap push+pop:   median {:.2} M/s (baseline)",
        heap / 1e6
    );
    println!("simulator / baseline: {:.3}", sim / heap);
    println!(
        "with a recording hook: median {:.2} M/s, {:.3} of the plain simulator",
        observed / 1e6,
        observed / sim
    );
}
