//! The counter on the simulator, under every fault the simulator has, over many seeds.
//!
//! Clients add positive amounts, one at a time, retrying until acknowledged. Because every
//! amount is positive, the acknowledged values fix the only possible linearization (in order
//! of value), so checking it is exact and cheap: consecutive values differ by exactly the
//! amount of the later add (no add lost, none applied twice), and an add acknowledged before
//! another began has the smaller value (real-time order).

use std::time::Duration;

use rand::Rng;
use synod_counter::{CounterMsg, CounterServer, SNAPSHOT_EVERY};
use synod_sim::{
    Context, NetConfig, Node, NodeId, OpId, RecordedOp, Recorder, Simulator, TimerToken,
};

const SERVER: NodeId = NodeId(0);
const RETRY: Duration = Duration::from_millis(50);

type History = Recorder<i64, i64>;

/// A simulated client: adds each amount of its plan in turn, retrying the same sequence number
/// until it hears the answer.
struct Client {
    id: u64,
    plan: Vec<i64>,
    next: usize,
    history: History,
    pending: Option<OpId>,
}

impl Client {
    fn seq(&self) -> u64 {
        self.next as u64 + 1
    }

    fn send_current(&mut self, ctx: &mut dyn Context<CounterMsg>) {
        let Some(&amount) = self.plan.get(self.next) else {
            return;
        };
        if self.pending.is_none() {
            self.pending = Some(self.history.invoke(self.id, amount));
        }
        let (client, seq) = (self.id, self.seq());
        ctx.send(
            SERVER,
            CounterMsg::Add {
                client,
                seq,
                amount,
            },
        );
        ctx.set_timer(RETRY, seq);
    }

    fn done(&self) -> bool {
        self.next == self.plan.len()
    }
}

impl Node for Client {
    type Msg = CounterMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<CounterMsg>) {
        self.send_current(ctx);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<CounterMsg>, _from: NodeId, msg: CounterMsg) {
        if let CounterMsg::Value { seq, value } = msg {
            if seq == self.seq() {
                if let Some(op) = self.pending.take() {
                    self.history.complete(op, value);
                }
                self.next += 1;
                self.send_current(ctx);
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<CounterMsg>, token: TimerToken) {
        if token == self.seq() && !self.done() {
            self.send_current(ctx);
        }
    }
}

/// Checks the history as described at the top of this file; returns the final value.
fn check_history(ops: &[RecordedOp<i64, i64>]) -> i64 {
    let mut acked: Vec<(i64, i64, u64, u64)> = ops
        .iter()
        .map(|op| {
            let value = op.output.expect("every add was acknowledged");
            (value, op.input, op.call, op.ret.expect("completed"))
        })
        .collect();
    acked.sort_unstable();
    let mut previous = 0;
    for &(value, amount, _, _) in &acked {
        assert_eq!(
            value - previous,
            amount,
            "add of {amount} answered {value} after {previous}: lost or duplicated increment"
        );
        previous = value;
    }
    for a in &acked {
        for b in &acked {
            if a.3 < b.2 {
                assert!(
                    a.0 < b.0,
                    "{a:?} finished before {b:?} began but has a larger value"
                );
            }
        }
    }
    previous
}

const CLIENTS: u64 = 4;
const ADDS: usize = 25;

fn cluster(seed: u64) -> (Simulator<CounterMsg>, History) {
    let mut sim = Simulator::new(seed);
    let history = History::new(sim.clock());
    sim.add_node(SERVER, CounterServer::new);
    for c in 0..CLIENTS {
        let plan: Vec<i64> = (0..ADDS).map(|_| sim.rng().gen_range(1..100)).collect();
        let history = history.clone();
        sim.add_node(NodeId(NodeId::FIRST_CLIENT + c), move || Client {
            id: c,
            plan: plan.clone(),
            next: 0,
            history: history.clone(),
            pending: None,
        });
    }
    (sim, history)
}

fn clients_done(sim: &Simulator<CounterMsg>) -> bool {
    (0..CLIENTS).all(|c| {
        sim.node::<Client>(NodeId(NodeId::FIRST_CLIENT + c))
            .is_some_and(Client::done)
    })
}

#[test]
fn counts_exactly_on_a_reliable_network() {
    let (mut sim, history) = cluster(0);
    sim.require(
        Duration::from_secs(10),
        "all adds acknowledged",
        clients_done,
    );
    let total = check_history(&history.operations());
    assert_eq!(sim.node::<CounterServer>(SERVER).unwrap().value(), total);
    assert_eq!(history.completed(), (CLIENTS as usize) * ADDS);
}

/// Every fault at once, switched at random every 100 ms: hostile network (loss, duplicates,
/// long reordering), the server unreliable (requests and replies lost), partitions between the
/// server and some clients, a deaf server, client clock drift, server crashes with restarts.
/// Then heal everything and require that all clients finish, with an exact count.
#[test]
fn counts_exactly_under_every_fault() {
    for seed in synod_sim::seeds(40) {
        let (mut sim, history) = cluster(seed);
        sim.set_network(NetConfig::hostile());
        let clients: Vec<NodeId> = (0..CLIENTS)
            .map(|c| NodeId(NodeId::FIRST_CLIENT + c))
            .collect();
        for _ in 0..30 {
            let roll = sim.rng().gen_range(0..7);
            match roll {
                0 => sim.crash(SERVER),
                1 => sim.restart(SERVER),
                2 => sim.set_unreliable(SERVER, true),
                3 => {
                    let cut = clients[sim.rng().gen_range(0..clients.len())];
                    sim.partition(&[&[SERVER], &[cut]]);
                }
                4 => sim.set_deaf(SERVER, true),
                5 => {
                    let c = clients[sim.rng().gen_range(0..clients.len())];
                    let rate = sim.rng().gen_range(0.5..2.0);
                    sim.set_clock_rate(c, rate);
                }
                _ => {
                    sim.heal();
                    sim.set_unreliable(SERVER, false);
                    sim.set_deaf(SERVER, false);
                }
            }
            sim.run_for(Duration::from_millis(100));
        }
        let dropped = sim.sim_stats().dropped_total();
        assert!(
            dropped > 0,
            "seed {seed}: faults were on but nothing was dropped"
        );
        sim.heal_all();
        sim.require(
            Duration::from_secs(30),
            "all adds acknowledged after healing",
            clients_done,
        );
        let total = check_history(&history.operations());
        assert_eq!(
            sim.node::<CounterServer>(SERVER).unwrap().value(),
            total,
            "seed {seed}"
        );
    }
}

#[test]
fn acknowledged_adds_survive_a_crash_and_a_wiped_disk_loses_them() {
    let (mut sim, history) = cluster(3);
    sim.run_for(Duration::from_millis(30));
    sim.crash(SERVER);
    sim.restart(SERVER);
    sim.require(
        Duration::from_secs(10),
        "all adds acknowledged",
        clients_done,
    );
    let total = check_history(&history.operations());
    sim.crash(SERVER);
    sim.restart(SERVER);
    assert_eq!(sim.node::<CounterServer>(SERVER).unwrap().value(), total);
    sim.restart_wiped(SERVER);
    assert_eq!(sim.node::<CounterServer>(SERVER).unwrap().value(), 0);
}

#[test]
fn snapshots_keep_the_log_short_and_recovery_exact() {
    let mut sim = Simulator::new(9);
    let history = History::new(sim.clock());
    sim.add_node(SERVER, CounterServer::new);
    let plan: Vec<i64> = (1..=2 * SNAPSHOT_EVERY as i64 + 7).collect();
    let expected: i64 = plan.iter().sum();
    let client = NodeId(NodeId::FIRST_CLIENT);
    sim.add_node(client, move || Client {
        id: 0,
        plan: plan.clone(),
        next: 0,
        history: history.clone(),
        pending: None,
    });
    sim.require(Duration::from_secs(100), "all adds acknowledged", |sim| {
        sim.node::<Client>(client).is_some_and(Client::done)
    });
    assert_eq!(
        sim.storage(SERVER).synced_len(),
        7,
        "log holds only the increments since the last snapshot"
    );
    sim.crash(SERVER);
    sim.restart(SERVER);
    assert_eq!(sim.node::<CounterServer>(SERVER).unwrap().value(), expected);
}
