// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

//! Harness for the shardkv simulator tests: three controllers, groups 100, 101 and 102 of
//! three replicas each, clerks that route keys to groups and record every operation for the
//! linearizability checker, an admin clerk for the controller, and the invariant that no
//! shard is ever served by two groups in the same configuration.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use rand::Rng;
use synod_check::kv::KvInput;
use synod_kvpaxos::KvOp;
use synod_node::clerk::{Clerk as _, ClerkOutput};
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_paxos::PaxosConfig;
use synod_rsm::clerk::RsmOutput;
use synod_shardctl::{Config, CtlClerk, CtlOp, CtlReply, Gid};
use synod_shardkv::clerk::ShardOutput;
use synod_shardkv::{
    controller_node, key2shard, segment, server_id, GroupServer, ShardKvClerk, ShardMsg,
    ShardReply, ShardServer,
};
use synod_sim::{OpId, Recorder, Simulator};
use synod_testkit::kv_input;

pub type Sim = Simulator<ShardMsg>;
pub type History = Recorder<KvInput, String>;

pub const SHARDS: usize = 10;
pub const GIDS: [Gid; 3] = [100, 101, 102];
pub const CONTROLLERS: u64 = 3;
pub const REPLICAS: usize = 3;
/// Added to a clerk's id for its controller-change session.
const ADMIN_SESSION: u64 = 1 << 40;

pub fn ctl_ids() -> Vec<NodeId> {
    (0..CONTROLLERS).map(NodeId).collect()
}

pub fn addrs(gid: Gid) -> Vec<String> {
    (0..REPLICAS).map(|i| format!("g{gid}-{i}")).collect()
}

/// Ten keys, one per shard (key `k` of the result is in shard `k`).
pub fn shard_keys() -> Vec<String> {
    (0..SHARDS)
        .map(|s| {
            (0..)
                .map(|n| format!("key{n}"))
                .find(|k| key2shard(k, SHARDS) == s)
                .expect("some key lands in every shard")
        })
        .collect()
}

pub struct Cluster {
    pub sim: Sim,
    pub history: History,
    clients: u64,
    admin: NodeId,
}

impl Cluster {
    pub fn new(seed: u64, unreliable: bool) -> Self {
        let mut sim = Sim::new(seed);
        let history = History::new(sim.clock());
        for i in 0..CONTROLLERS as usize {
            sim.add_node(NodeId(i as u64), move || {
                controller_node(ctl_ids(), i, PaxosConfig::default(), SHARDS)
            });
        }
        for gid in GIDS {
            for i in 0..REPLICAS {
                let mut lives = 0;
                sim.add_node(server_id(gid, i), move || {
                    lives += 1;
                    let config = PaxosConfig {
                        rejoin: lives > 1,
                        ..PaxosConfig::default()
                    };
                    GroupServer::new(gid, i, addrs(gid), ctl_ids(), SHARDS, config)
                });
                sim.set_unreliable(server_id(gid, i), unreliable);
            }
        }
        add_one_owner_invariant(&mut sim);
        let mut c = Cluster {
            sim,
            history,
            clients: 0,
            admin: NodeId(0),
        };
        c.admin = c.clerk();
        c
    }

    /// A new KV clerk (it can also run controller operations).
    pub fn clerk(&mut self) -> NodeId {
        let id = NodeId(NodeId::FIRST_CLIENT + self.clients);
        self.clients += 1;
        let client = 1000 + self.clients;
        let history = self.history.clone();
        self.sim
            .add_node(id, move || Clerk::new(client, history.clone()));
        id
    }

    pub fn submit(&mut self, clerk: NodeId, ops: Vec<Op>) {
        self.sim.call(clerk, |c: &mut Clerk, ctx| {
            c.queue.extend(ops);
            c.next(ctx);
        });
    }

    pub fn idle(&self, clerk: NodeId) -> bool {
        self.sim.node::<Clerk>(clerk).is_some_and(Clerk::idle)
    }

    pub fn wait(&mut self, clerks: &[NodeId], limit: Duration, what: &str) {
        self.sim.require(limit, what, |s| {
            clerks
                .iter()
                .all(|&c| s.node::<Clerk>(c).is_some_and(Clerk::idle))
        });
    }

    /// Runs one operation on `clerk` to completion and returns its output.
    pub fn run(&mut self, clerk: NodeId, op: Op) -> String {
        self.submit(clerk, vec![op.clone()]);
        self.wait(&[clerk], Duration::from_secs(30), &format!("{op:?}"));
        self.sim
            .node::<Clerk>(clerk)
            .unwrap()
            .results
            .last()
            .cloned()
            .unwrap()
    }

    pub fn get(&mut self, clerk: NodeId, key: &str) -> String {
        self.run(clerk, Op::Kv(KvOp::Get { key: key.into() }))
    }

    pub fn put(&mut self, clerk: NodeId, key: &str, value: &str) {
        let op = KvOp::Put {
            key: key.into(),
            value: value.into(),
        };
        self.run(clerk, Op::Kv(op));
    }

    pub fn append(&mut self, clerk: NodeId, key: &str, value: &str) {
        let op = KvOp::Append {
            key: key.into(),
            value: value.into(),
        };
        self.run(clerk, Op::Kv(op));
    }

    pub fn ctl(&mut self, op: CtlOp) {
        let admin = self.admin;
        self.run(admin, Op::Ctl(op));
    }

    pub fn join(&mut self, gid: Gid) {
        self.ctl(CtlOp::Join {
            gid,
            servers: addrs(gid),
        });
    }

    pub fn leave(&mut self, gid: Gid) {
        self.ctl(CtlOp::Leave { gid });
    }

    pub fn server(&self, gid: Gid, i: usize) -> Option<&GroupServer> {
        self.sim.node::<GroupServer>(server_id(gid, i))
    }

    pub fn kill_group(&mut self, gid: Gid) {
        for i in 0..REPLICAS {
            self.sim.crash(server_id(gid, i));
        }
    }

    pub fn check_linearizable(&self) {
        synod_testkit::assert_linearizable(&self.history, |_| true);
    }
}

/// After every step: no (configuration number, shard) is served by two groups.
fn add_one_owner_invariant(sim: &mut Sim) {
    let seen: Rc<RefCell<BTreeMap<(u64, usize), Gid>>> = Rc::default();
    sim.add_invariant("one group per shard per configuration", move |sim| {
        let mut seen = seen.borrow_mut();
        for gid in GIDS {
            for i in 0..REPLICAS {
                let Some(server) = sim.node::<GroupServer>(server_id(gid, i)) else {
                    continue;
                };
                let state = server.state();
                for &shard in state.shards.keys() {
                    let owner = *seen.entry((state.config.num, shard)).or_insert(gid);
                    if owner != gid {
                        return Err(format!(
                            "shard {shard} served by {owner} and {gid} in configuration {}",
                            state.config.num
                        ));
                    }
                }
            }
        }
        Ok(())
    });
}

/// What a clerk can be asked to do.
#[derive(Debug, Clone)]
pub enum Op {
    Kv(KvOp),
    /// Commands that take effect in order, as a pipeline's: sent as batch requests of
    /// [`synod_shardkv::segment`]s, each operation checked on its own in the history.
    Batch(Vec<KvOp>),
    Ctl(CtlOp),
}

struct Pending {
    op: Op,
    /// The history's record of each operation not yet answered (of a batch, in order).
    records: VecDeque<OpId>,
}

/// A simulated client: the production [`ShardKvClerk`] for keys and a [`CtlClerk`] for
/// controller changes (join, leave, move), run as one simulator node, one operation at a
/// time. Changes run under a session of their own (`id + ADMIN_SESSION`).
pub struct Clerk {
    id: u64,
    kv: ShardKvClerk,
    admin: CtlClerk,
    queue: VecDeque<Op>,
    pending: Option<Pending>,
    pub results: Vec<String>,
    history: History,
}

/// The simulator's node for a server the clerk names.
fn node_of(server: &ShardServer) -> NodeId {
    match server {
        ShardServer::Controller(i) => NodeId(*i as u64),
        ShardServer::Group(addr) => GIDS
            .iter()
            .flat_map(|&gid| (0..REPLICAS).map(move |i| (gid, i)))
            .find(|&(gid, i)| addrs(gid)[i] == *addr)
            .map_or(NodeId(u64::MAX), |(gid, i)| server_id(gid, i)),
    }
}

/// The name the clerk knows the simulator's node `id` by.
fn server_of(id: NodeId) -> Option<ShardServer> {
    if id.0 < CONTROLLERS {
        return Some(ShardServer::Controller(id.0 as usize));
    }
    GIDS.iter()
        .flat_map(|&gid| (0..REPLICAS).map(move |i| (gid, i)))
        .find(|&(gid, i)| server_id(gid, i) == id)
        .map(|(gid, i)| ShardServer::Group(addrs(gid)[i].clone()))
}

impl Clerk {
    fn new(id: u64, history: History) -> Self {
        Clerk {
            id,
            kv: ShardKvClerk::new(id, CONTROLLERS as usize, Config::initial(SHARDS)),
            admin: CtlClerk::new(id + ADMIN_SESSION, CONTROLLERS as usize),
            queue: VecDeque::new(),
            pending: None,
            results: Vec::new(),
            history,
        }
    }

    pub fn idle(&self) -> bool {
        self.pending.is_none() && self.queue.is_empty()
    }

    fn next(&mut self, ctx: &mut dyn Context<ShardMsg>) {
        if self.pending.is_some() {
            return;
        }
        let Some(op) = self.queue.pop_front() else {
            return;
        };
        let records = match &op {
            Op::Kv(kv) => VecDeque::from([self.history.invoke(self.id, kv_input(kv))]),
            Op::Batch(ops) => ops
                .iter()
                .map(|kv| self.history.invoke(self.id, kv_input(kv)))
                .collect(),
            Op::Ctl(_) => VecDeque::new(),
        };
        self.pending = Some(Pending {
            op: op.clone(),
            records,
        });
        match op {
            Op::Kv(kv) => {
                let out = self.kv.start(kv);
                self.carry_out(ctx, out);
            }
            Op::Batch(ops) => self.next_segment(ctx, ops),
            Op::Ctl(ctl) => {
                let out = self.admin.start(ctl);
                self.carry_out_admin(ctx, out);
            }
        }
    }

    /// Sends the next batch request of the batch in progress, whose unanswered commands are
    /// `ops`.
    fn next_segment(&mut self, ctx: &mut dyn Context<ShardMsg>, ops: Vec<KvOp>) {
        let take = segment(&ops, self.kv.config());
        let out = self.kv.start_batch(ops[..take].to_vec());
        self.carry_out(ctx, out);
    }

    fn carry_out(&mut self, ctx: &mut dyn Context<ShardMsg>, outputs: Vec<ShardOutput>) {
        for reply in synod_testkit::carry_out(ctx, outputs, node_of, |t| t * 2) {
            let replies = match reply {
                ShardReply::Batch(replies) => replies,
                one => vec![one],
            };
            let mut outputs: Vec<String> = replies.into_iter().map(|r| self.output(r)).collect();
            let last = outputs.pop().expect("a clerk's batch reply is never empty");
            for output in outputs {
                self.answer_one(output);
            }
            match self.pending.as_mut().map(|p| &mut p.op) {
                Some(Op::Batch(ops)) if ops.len() > 1 => {
                    self.answer_one(last);
                    let ops = self.pending_batch();
                    self.next_segment(ctx, ops);
                }
                _ => self.finish(ctx, last),
            }
        }
    }

    /// Completes the oldest unanswered operation of the batch in progress.
    fn answer_one(&mut self, output: String) {
        let Some(p) = &mut self.pending else {
            return;
        };
        if let Some(record) = p.records.pop_front() {
            self.history.complete(record, output.clone());
        }
        if let Op::Batch(ops) = &mut p.op {
            ops.remove(0);
        }
        self.results.push(output);
    }

    /// The unanswered commands of the batch in progress.
    fn pending_batch(&self) -> Vec<KvOp> {
        match self.pending.as_ref().map(|p| &p.op) {
            Some(Op::Batch(ops)) => ops.clone(),
            _ => Vec::new(),
        }
    }

    fn output(&self, reply: ShardReply) -> String {
        match reply {
            ShardReply::Value { value, .. } => String::from_utf8_lossy(&value).into_owned(),
            ShardReply::Written { .. } => String::new(),
            ShardReply::SessionExpired => panic!("client {} session expired", self.id),
            ShardReply::TooLarge { refused, .. } => {
                panic!("simulated values stay small: {refused}")
            }
            ShardReply::WrongGroup { .. } => unreachable!("the clerk retries these"),
            ShardReply::Batch(_) => panic!("a batch inside a batch"),
            ShardReply::Redis { .. } => panic!("the simulated clients send no Redis command"),
            ShardReply::Denied(denied) => panic!("the simulated servers have no users: {denied}"),
        }
    }

    fn carry_out_admin(
        &mut self,
        ctx: &mut dyn Context<ShardMsg>,
        outputs: Vec<RsmOutput<CtlOp, (), CtlReply>>,
    ) {
        let outputs = outputs.into_iter().map(|o| match o {
            ClerkOutput::Send { to, msg } => ClerkOutput::Send {
                to,
                msg: ShardMsg::Ctl(msg),
            },
            ClerkOutput::Timer { after, token } => ClerkOutput::Timer { after, token },
            ClerkOutput::Done(reply) => ClerkOutput::Done(reply),
        });
        let controller = |&i: &usize| NodeId(i as u64);
        for reply in synod_testkit::carry_out(ctx, outputs.collect(), controller, |t| t * 2 + 1) {
            // A refused change (a move to a group that left, say) completes all the same.
            let output = match reply {
                CtlReply::Config(config) => config.num.to_string(),
                other => format!("{other:?}"),
            };
            self.finish(ctx, output);
        }
    }

    fn finish(&mut self, ctx: &mut dyn Context<ShardMsg>, output: String) {
        if let Some(mut p) = self.pending.take() {
            if let Some(record) = p.records.pop_front() {
                self.history.complete(record, output.clone());
            }
            self.results.push(output);
        }
        self.next(ctx);
    }
}

impl Node for Clerk {
    type Msg = ShardMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<ShardMsg>) {
        self.next(ctx);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<ShardMsg>, from: NodeId, msg: ShardMsg) {
        let Some(server) = server_of(from) else {
            return;
        };
        let admin_busy = matches!(self.pending, Some(Pending { op: Op::Ctl(_), .. }));
        match (&server, msg) {
            (ShardServer::Controller(i), ShardMsg::Ctl(msg)) if admin_busy => {
                // A reply names only its sequence number, not its session: while a change
                // runs, controller replies are the admin session's. A query of the key
                // clerk still in flight is sent again by its own timers.
                let out = self.admin.on_message(i, msg);
                self.carry_out_admin(ctx, out);
            }
            (_, msg) => {
                let out = self.kv.on_message(&server, msg);
                self.carry_out(ctx, out);
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<ShardMsg>, token: TimerToken) {
        if token % 2 == 1 {
            let out = self.admin.on_timeout(token / 2);
            self.carry_out_admin(ctx, out);
        } else {
            let out = self.kv.on_timeout(token / 2);
            self.carry_out(ctx, out);
        }
    }
}

/// Random values for the course's `TestBasic`-style checks.
pub fn random_value(sim: &mut Sim) -> String {
    format!("v{}", sim.rng().gen::<u32>())
}
