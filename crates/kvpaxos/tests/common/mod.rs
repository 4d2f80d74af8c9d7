// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

//! Harness for the kvpaxos simulator tests: replicas, retrying clerks that record every
//! operation for the linearizability checker, the course's helpers, and an invariant checked
//! after every step that no log instance ever has two decided values.

use std::collections::VecDeque;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use synod_check::kv::KvInput;
use synod_kvpaxos::{KvClerk, KvMsg, KvOp, KvReplica, KvReply};
use synod_node::clerk::Clerk as _;
use synod_paxos::PaxosConfig;
use synod_rsm::clerk::RsmOutput;
use synod_sim::{Context, Node, NodeId, OpId, Recorder, Simulator, TimerToken};
use synod_testkit::kv_input;

pub type Sim = Simulator<KvMsg>;
pub type History = Recorder<KvInput, String>;

/// Which of replicas `0..n` of `sim` currently lead.
pub fn leaders(sim: &Simulator<KvMsg>, n: usize) -> Vec<usize> {
    (0..n)
        .filter(|&i| {
            sim.node::<KvReplica>(server(i))
                .is_some_and(|r| r.paxos().leading())
        })
        .collect()
}

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
        Self::growing(seed, n, 0, configure)
    }

    /// `n` replicas of a group, and `joiners` more (`n..n + joiners`) started as new
    /// replicas joining it (`KvReplica::joining`), which serve once a membership change
    /// adds them. The agreement invariant covers all of them.
    pub fn growing(
        seed: u64,
        n: usize,
        joiners: usize,
        configure: impl Fn(KvReplica) -> KvReplica + Clone + 'static,
    ) -> Self {
        eprintln!("seed {seed}");
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
        for i in n..n + joiners {
            let contacts = peers.clone();
            let configure = configure.clone();
            sim.add_node(server(i), move || {
                configure(KvReplica::joining(
                    contacts.clone(),
                    server(i),
                    PaxosConfig::default(),
                ))
            });
        }
        let everyone = (0..n + joiners).map(server).collect();
        synod_testkit::add_agreement_invariant(&mut sim, everyone, |sim, id| {
            sim.node::<KvReplica>(id).map(KvReplica::paxos)
        });
        Cluster {
            sim,
            n: n + joiners,
            history,
            clients: 0,
        }
    }

    /// A clerk that talks to `servers`, in that order, hedging as the production client does.
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
            core: KvClerk::new(1000 + id, servers.len()),
            servers: servers.clone(),
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
            KvReply::Value(v) => String::from_utf8(v).expect("the tests store text"),
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

    /// The replicas that currently lead (normally one; briefly two when an old leader has not
    /// yet heard of its successor).
    pub fn leaders(&self) -> Vec<usize> {
        leaders(&self.sim, self.n)
    }

    /// Checks the whole recorded history for linearizability.
    pub fn check_linearizable(&self) {
        check_history(&self.history, |_| true);
    }
}

/// Asserts that `history` is linearizable; operations without a reply may or may not have
/// taken effect.
pub fn check_history(history: &History, keep: impl Fn(&KvInput) -> bool) {
    synod_testkit::assert_linearizable(history, keep);
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
}

/// A simulated client: the production [`KvClerk`] run as a simulator node, one operation at
/// a time; every operation is recorded for the checker.
pub struct Clerk {
    id: u64,
    servers: Vec<NodeId>,
    core: KvClerk,
    queue: VecDeque<KvOp>,
    pending: Option<Pending>,
    pub results: Vec<(KvOp, KvReply)>,
    history: History,
    auto: Option<Auto>,
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
                    let value = format!("{}.{} ", self.id, self.core.seq() + 1);
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
            let preferred = ctx.rng().gen_range(0..self.servers.len());
            self.core.prefer(Some(preferred));
        }
        let record = self.history.invoke(self.id, kv_input(&op));
        self.pending = Some(Pending {
            op: op.clone(),
            record,
        });
        let out = self.core.start(op);
        self.carry_out(ctx, out);
    }

    /// Does what the core asked: sends, timers, and a completed operation's bookkeeping.
    fn carry_out(
        &mut self,
        ctx: &mut dyn Context<KvMsg>,
        outputs: Vec<RsmOutput<KvOp, (), KvReply>>,
    ) {
        let servers = &self.servers;
        for reply in synod_testkit::carry_out(ctx, outputs, |&to| servers[to], |t| t) {
            self.complete(ctx, reply);
        }
    }

    fn complete(&mut self, ctx: &mut dyn Context<KvMsg>, reply: KvReply) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let output = match &reply {
            KvReply::Value(v) => Some(String::from_utf8_lossy(v).into_owned()),
            KvReply::Written { .. } => Some(String::new()),
            KvReply::SessionExpired => panic!("client {} session expired", self.id),
            KvReply::TooLarge(refused) => panic!("client {}: {refused}", self.id),
            // Refused whole: left open in the history, which the checker allows either way.
            KvReply::OutOfMemory { .. } => None,
            KvReply::Batch(_) => panic!("client {}: a batch reply to a single request", self.id),
            KvReply::Redis(_) => panic!("client {}: a Redis reply to a course operation", self.id),
            KvReply::Denied(denied) => {
                panic!("client {}: {denied} (no replica has users)", self.id)
            }
        };
        if let Some(output) = output {
            self.history.complete(p.record, output);
        }
        self.results.push((p.op, reply));
        self.next(ctx);
    }
}

impl Node for Clerk {
    type Msg = KvMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<KvMsg>) {
        self.next(ctx);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<KvMsg>, from: NodeId, msg: KvMsg) {
        let Some(server) = self.servers.iter().position(|&s| s == from) else {
            return;
        };
        let out = self.core.on_message(&server, msg);
        self.carry_out(ctx, out);
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<KvMsg>, token: TimerToken) {
        let out = self.core.on_timeout(token);
        self.carry_out(ctx, out);
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
