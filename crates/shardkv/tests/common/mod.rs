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
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_paxos::PaxosConfig;
use synod_rsm::RsmMsg;
use synod_shardctl::{Config, CtlOp, CtlReply, Gid};
use synod_shardkv::{
    controller_node, key2shard, server_id, GroupServer, Numbering, ShardMsg, ShardReply,
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
/// A clerk gives up on a server after this long and tries the next one.
pub const RETRY: Duration = Duration::from_millis(100);

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
        self.sim.add_node(id, move || Clerk {
            id: client,
            config: Config::initial(SHARDS),
            numbering: Numbering::default(),
            ctl_seq: 0,
            ctl_answered: true,
            admin_seq: 0,
            attempt: 0,
            queue: VecDeque::new(),
            pending: None,
            results: Vec::new(),
            history: history.clone(),
        });
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
    Ctl(CtlOp),
}

struct Pending {
    op: Op,
    record: Option<OpId>,
    /// For a KV operation: its shard and per-shard sequence number.
    shard: usize,
    seq: u64,
}

/// A simulated client. KV operations are numbered per shard (each shard's session table
/// moves with it) and sent to the owning group's servers in turn; after a WrongGroup answer,
/// or a round of silence, the clerk asks the controller for the latest configuration.
pub struct Clerk {
    id: u64,
    config: Config,
    numbering: Numbering,
    ctl_seq: u64,
    /// Whether `ctl_seq` was answered; until then retries reuse it.
    ctl_answered: bool,
    /// Controller changes (join, leave, move) run under a session of their own
    /// (`id + ADMIN_SESSION`), one sequence number per change, so a configuration refresh
    /// never shares a number with a change.
    admin_seq: u64,
    attempt: u64,
    queue: VecDeque<Op>,
    pending: Option<Pending>,
    pub results: Vec<String>,
    history: History,
}

impl Clerk {
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
        let (shard, seq, record) = match &op {
            Op::Kv(kv) => {
                let (shard, seq) = self.numbering.next(kv, SHARDS);
                (shard, seq, Some(self.history.invoke(self.id, kv_input(kv))))
            }
            Op::Ctl(_) => {
                self.admin_seq += 1;
                (0, self.admin_seq, None)
            }
        };
        self.pending = Some(Pending {
            op,
            record,
            shard,
            seq,
        });
        self.send(ctx, false);
    }

    /// Sends a configuration query (`admin == None`) or change number `admin`.
    fn query(&mut self, ctx: &mut dyn Context<ShardMsg>, op: CtlOp, admin: Option<u64>) {
        let (client, seq) = match admin {
            Some(seq) => (self.id + ADMIN_SESSION, seq),
            None => {
                if self.ctl_answered {
                    self.ctl_seq += 1;
                    self.ctl_answered = false;
                }
                (self.id, self.ctl_seq)
            }
        };
        let to = NodeId(self.attempt % CONTROLLERS);
        let msg = RsmMsg::Request { client, seq, op };
        ctx.send(to, ShardMsg::Ctl(msg));
    }

    fn send(&mut self, ctx: &mut dyn Context<ShardMsg>, refresh: bool) {
        let Some(p) = &self.pending else {
            return;
        };
        let (op, shard, seq) = (p.op.clone(), p.shard, p.seq);
        self.attempt += 1;
        ctx.set_timer(RETRY, self.attempt);
        match op {
            Op::Ctl(op) => self.query(ctx, op, Some(seq)),
            Op::Kv(op) => {
                let gid = self.config.shards[shard];
                if refresh || gid == 0 {
                    self.query(ctx, CtlOp::Query { num: -1 }, None);
                }
                if gid != 0 {
                    let servers = self.config.groups[&gid].len() as u64;
                    let to = server_id(gid, (self.attempt % servers) as usize);
                    let msg = RsmMsg::Request {
                        client: self.id,
                        seq,
                        op,
                    };
                    ctx.send(to, ShardMsg::Group(msg));
                }
            }
        }
    }

    fn finish(&mut self, ctx: &mut dyn Context<ShardMsg>, output: String) {
        if let Some(p) = self.pending.take() {
            if let Some(record) = p.record {
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

    fn on_message(&mut self, ctx: &mut dyn Context<ShardMsg>, _from: NodeId, msg: ShardMsg) {
        let Some((is_ctl, shard, pseq)) = self
            .pending
            .as_ref()
            .map(|p| (matches!(p.op, Op::Ctl(_)), p.shard, p.seq))
        else {
            return;
        };
        match msg {
            ShardMsg::Ctl(RsmMsg::Reply { seq, reply }) if is_ctl && seq == pseq => {
                // A refused change (a move to a group that left, say) completes all the same.
                let output = match reply {
                    CtlReply::Config(config) => config.num.to_string(),
                    other => format!("{other:?}"),
                };
                self.finish(ctx, output);
            }
            ShardMsg::Ctl(RsmMsg::Reply { seq, reply })
                if !is_ctl && seq == self.ctl_seq && !self.ctl_answered =>
            {
                self.ctl_answered = true;
                match reply {
                    CtlReply::Config(config) if config.num > self.config.num => {
                        self.config = config;
                        self.send(ctx, false);
                    }
                    CtlReply::Config(_) => {}
                    other => panic!("controller answered a query with {other:?}"),
                }
            }
            ShardMsg::Group(RsmMsg::Reply { seq, reply }) if seq == pseq && !is_ctl => {
                if reply.shard().is_some_and(|s| s != shard) {
                    return; // A late reply to an earlier request on another shard.
                }
                match reply {
                    ShardReply::Value { value, .. } => self.finish(ctx, value),
                    ShardReply::Written { .. } => self.finish(ctx, String::new()),
                    ShardReply::WrongGroup { .. } => self.send(ctx, true),
                    ShardReply::SessionExpired => panic!("client {} session expired", self.id),
                    ShardReply::TooLarge { refused, .. } => {
                        panic!("simulated values stay small: {refused}")
                    }
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<ShardMsg>, token: TimerToken) {
        if token == self.attempt && self.pending.is_some() {
            // Every third silent attempt, the configuration may be stale: ask again.
            self.send(ctx, self.attempt.is_multiple_of(3));
        }
    }
}

/// Random values for the course's `TestBasic`-style checks.
pub fn random_value(sim: &mut Sim) -> String {
    format!("v{}", sim.rng().gen::<u32>())
}
