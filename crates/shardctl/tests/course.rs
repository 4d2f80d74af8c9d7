//! The course's shard controller tests (6.824 lab 4A, `TestBasic`, `TestUnreliable`,
//! `TestFreshQuery`) on the simulator, with the same numbers: three controller replicas,
//! ten shards, clerks (the production `CtlClerk`) that hedge over every replica or stick to
//! one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::Rng;
use synod_node::clerk::Clerk as _;
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_paxos::PaxosConfig;
use synod_rsm::clerk::RsmOutput;
use synod_shardctl::{controller, Config, Controller, CtlClerk, CtlMsg, CtlOp, CtlReply, Gid};
use synod_sim::{seed_from_env, Simulator};

type Sim = Simulator<CtlMsg>;

const N: usize = 3;
const LIMIT: Duration = Duration::from_secs(30);

/// A simulated controller client: the production [`CtlClerk`] run as a simulator node, one
/// operation at a time.
struct Clerk {
    servers: Vec<NodeId>,
    core: CtlClerk,
    queue: VecDeque<CtlOp>,
    results: Vec<CtlReply>,
}

impl Clerk {
    fn idle(&self) -> bool {
        !self.core.busy() && self.queue.is_empty()
    }

    fn next(&mut self, ctx: &mut dyn Context<CtlMsg>) {
        if self.core.busy() {
            return;
        }
        if let Some(op) = self.queue.pop_front() {
            let out = self.core.start(op);
            self.carry_out(ctx, out);
        }
    }

    fn carry_out(
        &mut self,
        ctx: &mut dyn Context<CtlMsg>,
        outputs: Vec<RsmOutput<CtlOp, (), CtlReply>>,
    ) {
        let servers = &self.servers;
        for reply in synod_testkit::carry_out(ctx, outputs, |&to| servers[to], |t| t) {
            self.results.push(reply);
            self.next(ctx);
        }
    }
}

impl Node for Clerk {
    type Msg = CtlMsg;
    fn on_start(&mut self, ctx: &mut dyn Context<CtlMsg>) {
        self.next(ctx);
    }
    fn on_message(&mut self, ctx: &mut dyn Context<CtlMsg>, from: NodeId, msg: CtlMsg) {
        let Some(server) = self.servers.iter().position(|&s| s == from) else {
            return;
        };
        let out = self.core.on_message(&server, msg);
        self.carry_out(ctx, out);
    }
    fn on_timer(&mut self, ctx: &mut dyn Context<CtlMsg>, token: TimerToken) {
        let out = self.core.on_timeout(token);
        self.carry_out(ctx, out);
    }
}

struct Cluster {
    sim: Sim,
    clerks: u64,
}

impl Cluster {
    fn new(seed: u64) -> Self {
        let mut sim = Sim::new(seed);
        let peers: Vec<NodeId> = (0..N as u64).map(NodeId).collect();
        for i in 0..N {
            let peers = peers.clone();
            sim.add_node(NodeId(i as u64), move || {
                controller(peers.clone(), i, PaxosConfig::default(), 10)
            });
        }
        Cluster { sim, clerks: 0 }
    }

    /// A clerk over the given servers, tried in that order.
    fn clerk(&mut self, servers: &[u64]) -> NodeId {
        let id = NodeId(NodeId::FIRST_CLIENT + self.clerks);
        self.clerks += 1;
        let servers: Vec<NodeId> = servers.iter().copied().map(NodeId).collect();
        let client = 1000 + self.clerks;
        self.sim.add_node(id, move || Clerk {
            core: CtlClerk::new(client, servers.len()),
            servers: servers.clone(),
            queue: VecDeque::new(),
            results: Vec::new(),
        });
        id
    }

    fn submit(&mut self, clerk: NodeId, ops: Vec<CtlOp>) {
        self.sim.call(clerk, |c: &mut Clerk, ctx| {
            c.queue.extend(ops);
            c.next(ctx);
        });
    }

    fn wait(&mut self, clerks: &[NodeId], what: &str) {
        self.sim.require(LIMIT, what, |s| {
            clerks
                .iter()
                .all(|&c| s.node::<Clerk>(c).is_some_and(Clerk::idle))
        });
    }

    fn run(&mut self, clerk: NodeId, op: CtlOp) -> Config {
        self.submit(clerk, vec![op.clone()]);
        self.wait(&[clerk], &format!("{op:?}"));
        match self.sim.node::<Clerk>(clerk).unwrap().results.last() {
            Some(CtlReply::Config(c)) => c.clone(),
            other => panic!("{op:?} answered {other:?}"),
        }
    }

    fn query(&mut self, clerk: NodeId, num: i64) -> Config {
        self.run(clerk, CtlOp::Query { num })
    }

    /// The course's `check`: the latest configuration has exactly `groups`, every shard is
    /// on one of them, and shard counts differ by at most one.
    fn check(&mut self, clerk: NodeId, groups: &[Gid]) -> Config {
        let c = self.query(clerk, -1);
        let have: BTreeSet<Gid> = c.groups.keys().copied().collect();
        assert_eq!(have, groups.iter().copied().collect(), "groups of {c:?}");
        if !groups.is_empty() {
            let mut counts: BTreeMap<Gid, usize> = groups.iter().map(|&g| (g, 0)).collect();
            for g in &c.shards {
                *counts
                    .get_mut(g)
                    .unwrap_or_else(|| panic!("shard on unknown group {g}: {c:?}")) += 1;
            }
            let (min, max) = (counts.values().min(), counts.values().max());
            assert!(max.unwrap() - min.unwrap() <= 1, "unbalanced: {counts:?}");
        }
        c
    }
}

fn join(gid: Gid, servers: &[&str]) -> CtlOp {
    CtlOp::Join {
        gid,
        servers: servers.iter().map(|s| s.to_string()).collect(),
    }
}

fn leave(gid: Gid) -> CtlOp {
    CtlOp::Leave { gid }
}

#[test]
fn basic() {
    let mut c = Cluster::new(seed_from_env(1));
    let ck = c.clerk(&[0, 1, 2]);
    let cka: Vec<NodeId> = (0..N as u64).map(|i| c.clerk(&[i])).collect();

    // Basic leave/join.
    let mut cfa = vec![c.query(ck, -1)];
    c.check(ck, &[]);
    c.run(ck, join(1, &["x", "y", "z"]));
    cfa.push(c.check(ck, &[1]));
    c.run(ck, join(2, &["a", "b", "c"]));
    cfa.push(c.check(ck, &[1, 2]));
    c.run(ck, join(2, &["a", "b", "c"]));
    cfa.push(c.check(ck, &[1, 2]));
    let latest = c.query(ck, -1);
    assert_eq!(latest.groups[&1], ["x", "y", "z"]);
    assert_eq!(latest.groups[&2], ["a", "b", "c"]);
    c.run(ck, leave(1));
    cfa.push(c.check(ck, &[2]));
    c.run(ck, leave(1));
    cfa.push(c.check(ck, &[2]));

    // Historical queries return identical configurations, from any replica.
    for (i, old) in cfa.iter().enumerate() {
        let again = c.query(cka[i % N], old.num as i64);
        assert_eq!(&again, old, "configuration {}", old.num);
    }

    // Move.
    c.run(ck, join(503, &["3a", "3b", "3c"]));
    c.run(ck, join(504, &["4a", "4b", "4c"]));
    for shard in 0..10 {
        let gid = if shard < 5 { 503 } else { 504 };
        let before = c.query(ck, -1);
        c.run(ck, CtlOp::Move { shard, gid });
        if before.shards[shard] != gid {
            assert!(
                c.query(ck, -1).num > before.num,
                "move of {shard} made no config"
            );
        }
    }
    let moved = c.query(ck, -1);
    assert_eq!(moved.shards_of(503), [0, 1, 2, 3, 4]);
    assert_eq!(moved.shards_of(504), [5, 6, 7, 8, 9]);
    c.run(ck, leave(503));
    c.run(ck, leave(504));
    c.run(ck, leave(2));

    // Concurrent leave/join: ten clients, each through single-server clerks.
    let mut busy = Vec::new();
    for i in 0..10u64 {
        let gid = i + 1;
        let a = c.clerk(&[i % 3]);
        let b = c.clerk(&[(i + 1) % 3]);
        c.submit(a, vec![join(gid + 1000, &["a"]), join(gid, &["a"])]);
        busy.push((b, gid));
        busy.push((a, 0));
    }
    let clerks: Vec<NodeId> = busy.iter().map(|&(k, _)| k).collect();
    c.wait(&clerks, "concurrent joins");
    for &(b, gid) in busy.iter().filter(|(_, g)| *g != 0) {
        c.submit(b, vec![leave(gid + 1000)]);
    }
    c.wait(&clerks, "concurrent leaves");
    let groups: Vec<Gid> = (1..=10).collect();
    let c1 = c.check(ck, &groups);

    // Min advances after joins: every replica called done.
    c.sim.run_for(Duration::from_millis(500));
    for i in 0..N as u64 {
        let r = c.sim.node::<Controller>(NodeId(i)).unwrap();
        assert!(r.paxos().min() > 0, "replica {i}: min did not advance");
    }

    // Minimal transfers after joins.
    for gid in 11..=15 {
        c.run(ck, join(gid, &["a"]));
    }
    let c2 = c.query(ck, -1);
    for (shard, &g) in c2.shards.iter().enumerate() {
        if (1..=10).contains(&g) {
            assert_eq!(
                c1.shards[shard], g,
                "shard {shard} moved needlessly after joins"
            );
        }
    }

    // Minimal transfers after leaves.
    for gid in 11..=15 {
        c.run(ck, leave(gid));
    }
    let c3 = c.query(ck, -1);
    for (shard, &g) in c2.shards.iter().enumerate() {
        if (1..=10).contains(&g) {
            assert_eq!(
                c3.shards[shard], g,
                "shard {shard} moved needlessly after leaves"
            );
        }
    }
}

/// `TestUnreliable`: twenty clients join and leave concurrently through replicas 1 and 2,
/// then replica 0 goes deaf; a clerk over all replicas still sees exactly groups 1..=20.
#[test]
fn concurrent_changes_with_a_deaf_replica() {
    let mut c = Cluster::new(seed_from_env(2));
    let mut clerks = Vec::new();
    for i in 0..20u64 {
        let gid = i + 1;
        let server = c.sim.rng().gen_range(1..3);
        let k = c.clerk(&[server]);
        c.submit(
            k,
            vec![
                join(gid + 1000, &["a"]),
                join(gid, &["a"]),
                leave(gid + 1000),
            ],
        );
        clerks.push(k);
    }
    c.wait(&clerks, "concurrent changes");
    c.sim.set_deaf(NodeId(0), true);
    let ck = c.clerk(&[0, 1, 2]);
    let groups: Vec<Gid> = (1..=20).collect();
    c.check(ck, &groups);
}

/// `TestFreshQuery`: a replica cut off from its peers must not answer a query from its own,
/// stale state; once it can reach them, its answer includes the change made meanwhile.
#[test]
fn query_on_a_cut_off_replica_reflects_the_latest_change() {
    let mut c = Cluster::new(seed_from_env(3));
    let ck0 = c.clerk(&[0]);
    let ck1 = c.clerk(&[1]);
    c.query(ck0, -1);
    c.sim.partition(&[&[NodeId(0)], &[NodeId(1), NodeId(2)]]);
    c.run(ck1, join(1001, &["a", "b", "c"]));
    c.submit(ck0, vec![CtlOp::Query { num: -1 }]);
    c.sim.run_for(Duration::from_secs(2));
    assert!(
        !c.sim.node::<Clerk>(ck0).unwrap().idle(),
        "a replica without a majority answered a query"
    );
    c.sim.heal();
    c.wait(&[ck0], "query after heal");
    match c.sim.node::<Clerk>(ck0).unwrap().results.last() {
        Some(CtlReply::Config(cfg)) => assert!(cfg.groups.contains_key(&1001), "{cfg:?}"),
        other => panic!("query answered {other:?}"),
    }
}
