//! A simulated primary/backup cluster for the tests: the view service, KV servers that can be
//! killed and restarted (empty, as in the course), clients driven by the library's [`Clerk`]
//! that record every operation, and the checks the course applies to what they saw.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::RngCore;
use synod_check::kv::{KvInput, KvModel};
use synod_check::{check_operations, CheckResult, Model, Operation};
use synod_node::clerk::Clerk as _;
use synod_pbservice::{Clerk, Msg, Op, PbOutput, PbServer, Reply, Target, View};
use synod_sim::{Context, Node, NodeId, OpId, Recorder, Simulator, TimerToken};
use synod_viewservice::ViewServer;

pub const VS: NodeId = NodeId(0);
pub type History = Recorder<KvInput, String>;

/// Chooses a client's next operation from its number and randomness; `None` ends the plan.
pub type Plan = Box<dyn FnMut(u64, &mut dyn RngCore) -> Option<Op>>;

const THINK: TimerToken = u64::MAX;

/// A simulated client: runs its plan one operation at a time through a [`Clerk`], recording
/// each in the shared history, pausing `think` between operations.
pub struct ClientNode {
    clerk: Clerk,
    plan: Option<Plan>,
    think: Duration,
    history: History,
    pending: Option<OpId>,
    started: u64,
    stopped: bool,
    /// The plan has no more operations.
    finished: bool,
    last: Option<String>,
}

impl ClientNode {
    fn new(client: u64, plan: Option<Plan>, think: Duration, history: History) -> Self {
        ClientNode {
            clerk: Clerk::new(client),
            plan,
            // The checker treats a return and a call at the same instant as concurrent, so a
            // client that started its next operation at the very instant the previous one
            // returned would lose its own program order in the history.
            think: think.max(Duration::from_micros(1)),
            history,
            pending: None,
            started: 0,
            stopped: false,
            finished: false,
            last: None,
        }
    }

    /// Whether an operation is in progress.
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Operations completed.
    pub fn completed(&self) -> u64 {
        self.started - u64::from(self.busy())
    }

    /// Finish the current operation, start no more.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Starts `op` now (the client must be idle).
    pub fn begin(&mut self, ctx: &mut dyn Context<Msg>, op: Op) {
        assert!(!self.busy(), "one operation at a time");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let input = match &op {
            Op::Get { key } => KvInput::get(text(key)),
            Op::Put { key, value } => KvInput::put(text(key), text(value)),
            Op::Append { key, value } => KvInput::append(text(key), text(value)),
            Op::Redis(command) => panic!("no checker model for {command:?}"),
        };
        self.pending = Some(self.history.invoke(self.clerk.client_id(), input));
        self.started += 1;
        self.last = None;
        let out = self.clerk.start(op);
        self.carry_out(ctx, out);
    }

    /// Sends and sets timers as the clerk asks; records a completed operation.
    fn carry_out(&mut self, ctx: &mut dyn Context<Msg>, outputs: Vec<PbOutput>) {
        let node_of = |to: &Target| match to {
            Target::ViewService => VS,
            Target::Server { id, .. } => *id,
        };
        // The clerk numbers its timers from 1; THINK is the largest token.
        for reply in synod_testkit::carry_out(ctx, outputs, node_of, |t| t) {
            let reply = reply
                .unwrap_or_else(|refused| panic!("simulated clients stay small, yet: {refused}"));
            let value = course_output(&reply);
            if let Some(op) = self.pending.take() {
                self.history.complete(op, value.clone());
            }
            self.last = Some(value);
            ctx.set_timer(self.think, THINK);
        }
    }

    fn next(&mut self, ctx: &mut dyn Context<Msg>) {
        if self.stopped {
            return;
        }
        let n = self.started;
        match self.plan.as_mut().and_then(|plan| plan(n, ctx.rng())) {
            Some(op) => self.begin(ctx, op),
            None => self.finished = true,
        }
    }
}

impl Node for ClientNode {
    type Msg = Msg;

    fn on_start(&mut self, ctx: &mut dyn Context<Msg>) {
        self.next(ctx);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<Msg>, from: NodeId, msg: Msg) {
        let from = match from {
            VS => Target::ViewService,
            id => Target::Server {
                id,
                addr: String::new(),
            },
        };
        let out = self.clerk.on_message(&from, msg);
        self.carry_out(ctx, out);
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<Msg>, token: TimerToken) {
        if token == THINK {
            self.next(ctx);
        } else {
            let out = self.clerk.on_timeout(token);
            self.carry_out(ctx, out);
        }
    }
}

/// The cluster under test.
pub struct Cluster {
    pub sim: Simulator<Msg>,
    pub history: History,
    servers: Vec<NodeId>,
    clients: Vec<NodeId>,
    /// The client the test drives by hand with [`Cluster::put`] and friends.
    probe: NodeId,
    /// Hand-driven clients made so far (numbered from 1000).
    manual: u64,
}

impl Cluster {
    pub fn new(seed: u64) -> Self {
        let mut sim = Simulator::new(seed);
        let history = History::new(sim.clock());
        sim.add_node(VS, ViewServer::<synod_pbservice::PbMsg>::new);
        let last = RefCell::new(View::default());
        sim.add_invariant("legal view changes", move |sim| {
            let Some(vs) = sim.node::<ViewServer<synod_pbservice::PbMsg>>(VS) else {
                return Ok(());
            };
            let mut last = last.borrow_mut();
            if *vs.view() != *last {
                last.check_successor(vs.last_acked() >= last.num, vs.view())?;
                *last = vs.view().clone();
            }
            Ok(())
        });
        sim.add_invariant("backup in step with primary", |sim| {
            let servers: Vec<(NodeId, &PbServer)> = sim
                .node_ids()
                .into_iter()
                .filter_map(|id| sim.node::<PbServer>(id).map(|s| (id, s)))
                .collect();
            for &(p, primary) in &servers {
                let view = primary.view();
                if !primary.is_primary(p) {
                    continue;
                }
                for &(b, backup) in &servers {
                    let same = view.backup == Some(b)
                        && backup.view() == view
                        && backup.installed_in() == view.num;
                    if same
                        && backup.applied() == primary.applied()
                        && backup.store() != primary.store()
                    {
                        return Err(format!(
                            "primary {p} and backup {b} applied {} operations in view {} but differ",
                            primary.applied(),
                            view.num
                        ));
                    }
                }
            }
            Ok(())
        });
        let mut cluster = Cluster {
            sim,
            history,
            servers: Vec::new(),
            clients: Vec::new(),
            probe: VS,
            manual: 1000,
        };
        cluster.probe = cluster.fresh_client();
        cluster
    }

    /// Adds a hand-driven client (with no cached primary) and makes it the one [`Cluster::put`]
    /// and friends use.
    pub fn fresh_client(&mut self) -> NodeId {
        let n = self.manual;
        self.manual += 1;
        let id = NodeId(NodeId::FIRST_CLIENT + n);
        let history = self.history.clone();
        self.sim.add_node(id, move || {
            ClientNode::new(n, None, Duration::ZERO, history.clone())
        });
        self.probe = id;
        id
    }

    /// Starts KV server `n` (ids from 1).
    pub fn start_server(&mut self, n: u64) -> NodeId {
        let id = NodeId(n);
        if self.servers.contains(&id) {
            // A no-op for a server that is up.
            self.sim.restart(id);
        } else {
            self.servers.push(id);
            self.sim
                .add_node(id, move || PbServer::new(VS, format!("server-{n}")));
        }
        id
    }

    pub fn kill(&mut self, id: NodeId) {
        self.sim.crash(id);
    }

    /// Adds a client running `plan`, pausing `think` between operations.
    pub fn add_client(&mut self, plan: Plan, think: Duration) -> NodeId {
        let n = self.clients.len() as u64;
        let id = NodeId(NodeId::FIRST_CLIENT + n);
        self.clients.push(id);
        let history = self.history.clone();
        let mut plan = Some(plan);
        self.sim.add_node(id, move || {
            let plan = plan.take().expect("clients never restart");
            ClientNode::new(n, Some(plan), think, history.clone())
        });
        id
    }

    pub fn client(&self, id: NodeId) -> &ClientNode {
        self.sim.node::<ClientNode>(id).expect("client")
    }

    /// Asks every client to stop and waits until they are all idle.
    pub fn stop_clients(&mut self, limit: Duration) {
        for &id in &self.clients {
            self.sim.call(id, |c: &mut ClientNode, _| c.stop());
        }
        let clients = self.clients.clone();
        self.sim.require(limit, "clients finish", |sim| {
            clients
                .iter()
                .all(|&id| !sim.node::<ClientNode>(id).unwrap().busy())
        });
    }

    /// Waits until every client has run its whole plan.
    pub fn wait_clients(&mut self, limit: Duration) {
        let clients = self.clients.clone();
        self.sim
            .require(limit, "clients complete their plans", |sim| {
                clients
                    .iter()
                    .all(|&id| sim.node::<ClientNode>(id).unwrap().finished)
            });
    }

    pub fn view(&self) -> View {
        self.sim
            .node::<ViewServer<synod_pbservice::PbMsg>>(VS)
            .unwrap()
            .view()
            .clone()
    }

    pub fn server(&self, id: NodeId) -> &PbServer {
        self.sim.node::<PbServer>(id).expect("server up")
    }

    /// Runs up to `intervals` ping intervals until `done` holds for the current view.
    pub fn wait_view(&mut self, intervals: u32, done: impl Fn(&View) -> bool) -> bool {
        let limit = synod_viewservice::PING_INTERVAL * intervals;
        self.sim.run_until(limit, |sim| {
            sim.node::<ViewServer<synod_pbservice::PbMsg>>(VS)
                .is_some_and(|vs| done(vs.view()))
        })
    }

    /// Starts `op` on the probe client without waiting.
    pub fn start_op(&mut self, op: Op) {
        self.sim
            .call(self.probe, |c: &mut ClientNode, ctx| c.begin(ctx, op));
    }

    /// The probe's result, once its operation completed.
    pub fn probe_result(&self) -> Option<String> {
        let probe = self.client(self.probe);
        if probe.busy() {
            None
        } else {
            probe.last.clone()
        }
    }

    /// Runs `op` on the probe client to completion (within 10 s of virtual time).
    pub fn run_op(&mut self, op: Op) -> String {
        self.start_op(op);
        let probe = self.probe;
        self.sim
            .require(Duration::from_secs(10), "operation completes", |sim| {
                !sim.node::<ClientNode>(probe).unwrap().busy()
            });
        self.probe_result().expect("completed")
    }

    pub fn put(&mut self, key: &str, value: &str) {
        self.run_op(put(key, value));
    }

    pub fn append(&mut self, key: &str, value: &str) {
        self.run_op(append(key, value));
    }

    pub fn get(&mut self, key: &str) -> String {
        self.run_op(get(key))
    }

    /// The course's `check`: a Get through the service returns `value`.
    pub fn check(&mut self, key: &str, value: &str) {
        let got = self.get(key);
        assert_eq!(got, value, "Get({key:?}) (seed {})", self.sim.seed());
    }

    /// Checks every recorded operation for linearizability.
    pub fn check_linearizable(&self) {
        let ops: Vec<Operation<KvInput, String>> = self
            .history
            .operations()
            .into_iter()
            .map(|op| Operation {
                client: op.client,
                input: op.input,
                call: op.call,
                output: op.output,
                ret: op.ret,
            })
            .collect();
        let model = AppendOnlyHint::new(&ops);
        let result = check_operations(&model, &ops, Some(Duration::from_secs(20)))
            .expect("well-formed history");
        match result {
            CheckResult::Ok => {}
            CheckResult::Illegal(analysis) => panic!(
                "history of {} operations is not linearizable (seed {}): {:?}",
                ops.len(),
                self.sim.seed(),
                analysis
                    .partitions
                    .iter()
                    .filter(|p| p.stuck.is_some())
                    .collect::<Vec<_>>()
            ),
            CheckResult::Unknown => {
                panic!("linearizability check timed out (seed {})", self.sim.seed())
            }
        }
    }
}

/// The KV model plus a sound shortcut for keys that are only ever appended to.
///
/// A history of many concurrent Appends to one key, read once at the end, is the worst case
/// of the linearizability search: every interleaving leads to a different state, so
/// memoisation cannot prune, and only the final read rules orders out. But on a key that no
/// Put touches, the states of any linearization form a chain under "is a prefix of", and every
/// value a Get returned is one of them. So a state that is neither a prefix nor an extension of
/// such a value can never lead to a legal linearization, and the search may reject it at once.
struct AppendOnlyHint {
    /// For each append-only key, the longest value a Get returned.
    read: BTreeMap<String, String>,
}

impl AppendOnlyHint {
    fn new(ops: &[Operation<KvInput, String>]) -> Self {
        let mut read = BTreeMap::new();
        let mut put: BTreeSet<&str> = BTreeSet::new();
        for op in ops {
            match (&op.input, &op.output) {
                (KvInput::Put { key, .. }, _) => {
                    put.insert(key);
                }
                (KvInput::Get { key }, Some(value)) => {
                    let longest: &mut String = read.entry(key.clone()).or_default();
                    if value.len() > longest.len() {
                        *longest = value.clone();
                    }
                }
                _ => {}
            }
        }
        read.retain(|key, _| !put.contains(key.as_str()));
        AppendOnlyHint { read }
    }
}

type KvState = <KvModel as Model>::State;

impl Model for AppendOnlyHint {
    type State = KvState;
    type Input = KvInput;
    type Output = String;

    fn init(&self) -> KvState {
        KvModel.init()
    }

    fn step(&self, state: &KvState, input: &KvInput, output: Option<&String>) -> Option<KvState> {
        let next = KvModel.step(state, input, output)?;
        match (input, self.read.get(input.key())) {
            (KvInput::Append { .. }, Some(read))
                if !(read.starts_with(&*next) || next.starts_with(read.as_str())) =>
            {
                None
            }
            _ => Some(next),
        }
    }

    fn partition(&self, input: &KvInput) -> String {
        KvModel.partition(input)
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        KvModel.is_read_only(input)
    }

    fn describe_operation(&self, input: &KvInput, output: Option<&String>) -> String {
        KvModel.describe_operation(input, output)
    }

    fn describe_state(&self, state: &KvState) -> String {
        KvModel.describe_state(state)
    }
}

pub fn get(key: &str) -> Op {
    Op::Get { key: key.into() }
}

pub fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
    }
}

pub fn append(key: &str, value: &str) -> Op {
    Op::Append {
        key: key.into(),
        value: value.into(),
    }
}

/// The element client `client` appends as its `n`th operation in the append tests.
pub fn element(client: u64, n: u64) -> String {
    format!("x {client} {n} y")
}

/// A plan appending `element(client, n)` to `key` for n in 0..count.
pub fn append_plan(client: u64, key: &'static str, count: u64) -> Plan {
    Box::new(move |n, _| (n < count).then(|| append(key, &element(client, n))))
}

/// The course's `checkAppends`: every element of every client occurs exactly once in `value`,
/// and each client's elements appear in the order it appended them.
pub fn check_appends(value: &str, counts: &[u64]) {
    for (client, &count) in counts.iter().enumerate() {
        let mut last = None;
        for n in 0..count {
            let wanted = element(client as u64, n);
            let Some(at) = value.find(&wanted) else {
                panic!("missing element {wanted:?} in appended value {value:?}");
            };
            assert!(
                value[at + wanted.len()..].find(&wanted).is_none(),
                "duplicate element {wanted:?} in appended value"
            );
            if let Some(before) = last {
                assert!(at > before, "element {wanted:?} out of order");
            }
            last = Some(at);
        }
    }
}

/// A client without a clerk: sends one request to the server the test names, once, and keeps
/// every answer. It stands in for the course's delay proxy, which delivers a request to an old
/// primary seconds after the client sent it.
#[derive(Default)]
pub struct RawClient {
    pub answers: Vec<(NodeId, synod_pbservice::PbMsg)>,
}

impl RawClient {
    pub fn send(
        &mut self,
        ctx: &mut dyn Context<Msg>,
        to: NodeId,
        request: synod_pbservice::Request,
    ) {
        ctx.send(to, Msg::Service(synod_pbservice::PbMsg::Request(request)));
    }
}

impl Node for RawClient {
    type Msg = Msg;
    fn on_start(&mut self, _ctx: &mut dyn Context<Msg>) {}
    fn on_message(&mut self, _ctx: &mut dyn Context<Msg>, from: NodeId, msg: Msg) {
        if let Msg::Service(answer) = msg {
            self.answers.push((from, answer));
        }
    }
    fn on_timer(&mut self, _ctx: &mut dyn Context<Msg>, _token: TimerToken) {}
}

/// What the course's history records for `reply`: a Get's value as text, "" for a write.
pub fn course_output(reply: &Reply) -> String {
    match reply {
        Reply::Bulk(Some(value)) => String::from_utf8_lossy(value).into_owned(),
        _ => String::new(),
    }
}

/// `key`'s value at `server`, as text ("" if it has none, as the course reads it).
pub fn stored(server: &PbServer, key: &str) -> String {
    let value = server.store().get(key).cloned().unwrap_or_default();
    String::from_utf8(value).expect("the tests store text")
}
