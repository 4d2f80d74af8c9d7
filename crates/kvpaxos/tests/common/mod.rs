// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

//! Harness for the kvpaxos simulator tests: replicas, retrying clerks that record every
//! operation for the linearizability checker, the course's helpers, and an invariant checked
//! after every step that no log instance ever has two decided values.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use synod_check::kv::{KvInput, KvModel};
use synod_check::{check_operations, CheckResult, Operation};
use synod_kvpaxos::{KvMsg, KvOp, KvReplica, KvReply, Op};
use synod_paxos::PaxosConfig;
use synod_sim::{Context, Node, NodeId, OpId, Recorder, Simulator, TimerToken};

pub type Sim = Simulator<KvMsg>;
pub type History = Recorder<KvInput, String>;

/// A clerk gives up on a server after this long and tries the next one.
pub const RETRY: Duration = Duration::from_millis(100);

pub fn server(i: usize) -> NodeId {
    NodeId(i as u64)
}

/// A simulated cluster of replicas plus the clients the test adds.
pub struct Cluster {
    pub sim: Sim,
    pub n: usize,
    pub history: History,
    clients: u64,
}

impl Cluster {
    /// `n` replicas. A replica that restarts with an empty disk rejoins (see docs/paxos.md).
    pub fn new(seed: u64, n: usize) -> Self {
        Self::new_with(seed, n, |replica| replica)
    }

    /// `n` replicas, each passed through `configure` whenever it starts.
    pub fn new_with(
        seed: u64,
        n: usize,
        configure: impl Fn(KvReplica) -> KvReplica + Clone + 'static,
    ) -> Self {
        let mut sim = Sim::new(seed);
        let history = History::new(sim.clock());
        let peers: Vec<NodeId> = (0..n).map(server).collect();
        for i in 0..n {
            let peers = peers.clone();
            let configure = configure.clone();
            let mut lives = 0;
            sim.add_node(server(i), move || {
                lives += 1;
                let config = PaxosConfig {
                    rejoin: lives > 1,
                    ..PaxosConfig::default()
                };
                configure(KvReplica::new(peers.clone(), i, config))
            });
        }
        add_log_invariant(&mut sim, n);
        Cluster {
            sim,
            n,
            history,
            clients: 0,
        }
    }

    /// A clerk that talks to `servers`, in that order, moving on after each timeout.
    pub fn clerk(&mut self, servers: &[usize]) -> NodeId {
        self.add_clerk(servers, None)
    }

    /// A clerk over every server, in a random order (the course's `randclerk`).
    pub fn randclerk(&mut self) -> NodeId {
        let mut servers: Vec<usize> = (0..self.n).collect();
        servers.shuffle(self.sim.rng());
        self.clerk(&servers)
    }

    /// A clerk that keeps issuing random operations on `keys` until stopped, sending each
    /// to a random one of `servers`.
    pub fn busy_clerk(&mut self, servers: &[usize], keys: Vec<String>, appends: bool) -> NodeId {
        self.add_clerk(
            servers,
            Some(Auto {
                keys,
                appends,
                stopped: false,
            }),
        )
    }

    fn add_clerk(&mut self, servers: &[usize], auto: Option<Auto>) -> NodeId {
        let id = self.clients;
        self.clients += 1;
        let node = NodeId(NodeId::FIRST_CLIENT + id);
        let servers: Vec<NodeId> = servers.iter().map(|&i| server(i)).collect();
        let history = self.history.clone();
        let mut auto = auto;
        self.sim.add_node(node, move || Clerk {
            // Client ids start at 1000 so they are easy to tell from server indices in traces.
            id: 1000 + id,
            servers: servers.clone(),
            current: 0,
            seq: 0,
            queue: VecDeque::new(),
            pending: None,
            results: Vec::new(),
            history: history.clone(),
            auto: auto.take(),
        });
        node
    }

    pub fn clerk_ref(&self, id: NodeId) -> &Clerk {
        self.sim.node::<Clerk>(id).expect("clerk is running")
    }

    /// Queues `op` on clerk `id`.
    pub fn submit(&mut self, id: NodeId, op: KvOp) {
        self.sim.call(id, |c: &mut Clerk, ctx| c.submit(ctx, op));
    }

    /// Runs `op` on clerk `id` and waits (up to `limit`) for its reply.
    pub fn run(&mut self, id: NodeId, op: KvOp, limit: Duration) -> KvReply {
        self.submit(id, op.clone());
        self.sim.require(limit, &format!("{op:?} completes"), |s| {
            s.node::<Clerk>(id).is_some_and(Clerk::idle)
        });
        self.clerk_ref(id)
            .results
            .last()
            .expect("a reply")
            .1
            .clone()
    }

    pub fn get(&mut self, id: NodeId, key: &str) -> String {
        match self.run(id, get(key), Duration::from_secs(30)) {
            KvReply::Value(v) => v,
            other => panic!("get {key} answered {other:?}"),
        }
    }

    pub fn put(&mut self, id: NodeId, key: &str, value: &str) {
        self.run(id, put(key, value), Duration::from_secs(30));
    }

    pub fn append(&mut self, id: NodeId, key: &str, value: &str) {
        self.run(id, append(key, value), Duration::from_secs(30));
    }

    /// The course's `check`: a Get through clerk `id` returns `value`.
    pub fn check(&mut self, id: NodeId, key: &str, value: &str) {
        let got = self.get(id, key);
        assert_eq!(got, value, "get({key}) via {id}");
    }

    /// Waits until every listed clerk has nothing outstanding.
    pub fn wait_idle(&mut self, clerks: &[NodeId], limit: Duration, what: &str) {
        self.sim.require(limit, what, |s| {
            clerks
                .iter()
                .all(|&c| s.node::<Clerk>(c).is_some_and(Clerk::idle))
        });
    }

    /// Stops the listed busy clerks after their current operation.
    pub fn stop(&mut self, clerks: &[NodeId]) {
        for &c in clerks {
            self.sim.call(c, |c: &mut Clerk, _| {
                if let Some(auto) = &mut c.auto {
                    auto.stopped = true;
                }
            });
        }
    }

    pub fn set_unreliable(&mut self, on: bool) {
        for i in 0..self.n {
            self.sim.set_unreliable(server(i), on);
        }
    }

    /// Splits the servers into groups; clients keep reaching every server, as in the course.
    pub fn part(&mut self, groups: &[&[usize]]) {
        let groups: Vec<Vec<NodeId>> = groups
            .iter()
            .map(|g| g.iter().map(|&i| server(i)).collect())
            .collect();
        let refs: Vec<&[NodeId]> = groups.iter().map(Vec::as_slice).collect();
        self.sim.partition(&refs);
    }

    pub fn replica(&self, i: usize) -> &KvReplica {
        self.sim
            .node::<KvReplica>(server(i))
            .expect("replica is running")
    }

    /// Checks the whole recorded history for linearizability.
    pub fn check_linearizable(&self) {
        check_history(&self.history, |_| true);
    }
}

/// Asserts that `history` is linearizable; operations without a reply may or may not have
/// taken effect.
pub fn check_history(history: &History, keep: impl Fn(&KvInput) -> bool) {
    let ops: Vec<Operation<KvInput, String>> = history
        .operations()
        .into_iter()
        .filter(|op| keep(&op.input))
        .map(|op| match (op.output, op.ret) {
            (Some(out), Some(ret)) => Operation::new(op.client, op.input, op.call, out, ret),
            _ => Operation::unknown(op.client, op.input, op.call),
        })
        .collect();
    let result = check_operations(&KvModel, &ops, Some(Duration::from_secs(60)))
        .expect("well-formed history");
    assert!(
        matches!(result, CheckResult::Ok),
        "history of {} operations is not linearizable: {result:?}",
        ops.len()
    );
}

fn add_log_invariant(sim: &mut Sim, n: usize) {
    let seen: Rc<RefCell<BTreeMap<u64, Op>>> = Rc::default();
    // Per replica, (lives, decisions learned) at the last look: unchanged means nothing new.
    let looked: Rc<RefCell<Vec<(u64, u64)>>> = Rc::new(RefCell::new(vec![(0, 0); n]));
    sim.add_invariant("one value decided per instance", move |sim| {
        let mut seen = seen.borrow_mut();
        let mut looked = looked.borrow_mut();
        for i in 0..n {
            let Some(replica) = sim.node::<KvReplica>(server(i)) else {
                continue;
            };
            let now = (
                sim.stats(server(i)).starts,
                replica.paxos().decisions_learned(),
            );
            if std::mem::replace(&mut looked[i], now) == now {
                continue;
            }
            for (seq, op) in replica.paxos().decided() {
                match seen.get(&seq) {
                    Some(first) if first != op => {
                        return Err(format!(
                            "instance {seq}: replica {i} decided {op:?}, earlier {first:?}"
                        ))
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(seq, op.clone());
                    }
                }
            }
        }
        Ok(())
    });
}

pub fn get(key: &str) -> KvOp {
    KvOp::Get { key: key.into() }
}

pub fn put(key: &str, value: &str) -> KvOp {
    KvOp::Put {
        key: key.into(),
        value: value.into(),
    }
}

pub fn append(key: &str, value: &str) -> KvOp {
    KvOp::Append {
        key: key.into(),
        value: value.into(),
    }
}

/// What a busy clerk does on its own.
#[derive(Debug)]
struct Auto {
    keys: Vec<String>,
    appends: bool,
    stopped: bool,
}

struct Pending {
    op: KvOp,
    record: OpId,
    attempt: u64,
}

/// A simulated client: one operation at a time, retried with the same sequence number
/// until some server answers; every operation is recorded for the checker.
pub struct Clerk {
    id: u64,
    servers: Vec<NodeId>,
    current: usize,
    seq: u64,
    queue: VecDeque<KvOp>,
    pending: Option<Pending>,
    pub results: Vec<(KvOp, KvReply)>,
    history: History,
    auto: Option<Auto>,
}

fn input(op: &KvOp) -> KvInput {
    match op {
        KvOp::Get { key } => KvInput::get(key.as_str()),
        KvOp::Put { key, value } => KvInput::put(key.as_str(), value.as_str()),
        KvOp::Append { key, value } => KvInput::append(key.as_str(), value.as_str()),
    }
}

impl Clerk {
    pub fn idle(&self) -> bool {
        self.pending.is_none() && self.queue.is_empty()
    }

    fn submit(&mut self, ctx: &mut dyn Context<KvMsg>, op: KvOp) {
        self.queue.push_back(op);
        self.next(ctx);
    }

    /// Starts the next queued (or, for a busy clerk, generated) operation if idle.
    fn next(&mut self, ctx: &mut dyn Context<KvMsg>) {
        if self.pending.is_some() {
            return;
        }
        let op = match self.queue.pop_front() {
            Some(op) => op,
            None => match &self.auto {
                Some(auto) if !auto.stopped => {
                    let key = auto.keys[ctx.rng().gen_range(0..auto.keys.len())].clone();
                    let value = format!("{}.{} ", self.id, self.seq + 1);
                    match ctx.rng().gen_range(0..3) {
                        0 => get(&key),
                        1 if auto.appends => append(&key, &value),
                        _ => put(&key, &value),
                    }
                }
                _ => return,
            },
        };
        if self.auto.is_some() {
            self.current = ctx.rng().gen_range(0..self.servers.len());
        }
        self.seq += 1;
        let record = self.history.invoke(self.id, input(&op));
        self.pending = Some(Pending {
            op,
            record,
            attempt: 0,
        });
        self.send(ctx);
    }

    fn send(&mut self, ctx: &mut dyn Context<KvMsg>) {
        let Some(p) = &mut self.pending else {
            return;
        };
        p.attempt += 1;
        let msg = KvMsg::Request {
            client: self.id,
            seq: self.seq,
            op: p.op.clone(),
        };
        ctx.send(self.servers[self.current], msg);
        ctx.set_timer(RETRY, p.attempt);
    }
}

impl Node for Clerk {
    type Msg = KvMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<KvMsg>) {
        self.next(ctx);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<KvMsg>, _from: NodeId, msg: KvMsg) {
        let KvMsg::Reply { seq, reply } = msg else {
            return;
        };
        if seq != self.seq {
            return;
        }
        let Some(p) = self.pending.take() else {
            return;
        };
        let output = match &reply {
            KvReply::Value(v) => Some(v.clone()),
            KvReply::Written { .. } => Some(String::new()),
            KvReply::SessionExpired => panic!("client {} session expired", self.id),
            KvReply::TooLarge(refused) => panic!("client {}: {refused}", self.id),
            // Refused whole: left open in the history, which the checker allows either way.
            KvReply::OutOfMemory { .. } => None,
            KvReply::Batch(_) => panic!("client {}: a batch reply to a single request", self.id),
        };
        if let Some(output) = output {
            self.history.complete(p.record, output);
        }
        self.results.push((p.op, reply));
        self.next(ctx);
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<KvMsg>, token: TimerToken) {
        if self.pending.as_ref().is_some_and(|p| p.attempt == token) {
            self.current = (self.current + 1) % self.servers.len();
            self.send(ctx);
        }
    }
}

/// The course's `checkAppends`: for every client `i` and `j < counts[i]`, `"x i j y"`
/// appears exactly once in `v`, in increasing order of `j`.
pub fn check_appends(v: &str, counts: &[usize]) {
    for (i, &count) in counts.iter().enumerate() {
        let mut last = None;
        for j in 0..count {
            let wanted = format!("x {i} {j} y");
            let Some(off) = v.find(&wanted) else {
                panic!("{i} missing element {wanted:?} in Append result {v:?}");
            };
            assert!(
                v.rfind(&wanted) == Some(off),
                "duplicate element {wanted:?} in Append result"
            );
            if let Some(prev) = last {
                assert!(off > prev, "wrong order for element {wanted:?}");
            }
            last = Some(off);
        }
    }
}
