//! The viewer's scenarios: the course's tests (Paxos with deaf and partitioned peers, view
//! changes, primary/backup failover, shard moves) and a random fault schedule, each a script
//! over the deterministic simulator that narrates its steps and reports what the cores decide.
//!
//! A scenario is a pure function of its seed: the simulator's RNG draws every delay, loss and
//! random choice, so the same seed replays the same run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use synod_check::kv::KvInput;
use synod_kvpaxos::KvOp;
use synod_paxos::{PaxosConfig, PaxosMsg, PaxosNode};
use synod_pbservice::{Op, PbServer, Reply, Target};
use synod_shardctl::{Config, CtlClerk, CtlOp, CtlReply, Gid};
use synod_shardkv::{
    controller_node, server_id, CtlNode, GroupServer, ShardKvClerk, ShardMsg, ShardReply,
    ShardServer,
};
use synod_sim::{Move, Nemesis, NetConfig, NodeId, RecordedOp, Simulator};
use synod_viewservice::ViewServer;

use super::clerk_node::{ClerkNode, History, SimClerk};
use super::trace::{Recorder, Trace, TraceNode};

/// How long a scenario waits for a step that must happen (a decision, a view) before it
/// reports the run as stuck.
const PATIENCE: Duration = Duration::from_secs(20);

/// A scenario's name, its one-line description, and the script.
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// Whether it runs clients, whose operations make a history.
    pub clients: bool,
    run: fn(u64) -> Result<Outcome, Stuck>,
}

/// What a scenario produced: the recorded run and, if it had clients, their history.
pub struct Outcome {
    pub trace: Trace,
    pub history: Option<Vec<RecordedOp<KvInput, String>>>,
}

/// A step that must happen did not within [`PATIENCE`] of virtual time.
#[derive(Debug, thiserror::Error)]
#[error("scenario stuck at virtual time {at:?}: {what} did not happen")]
pub struct Stuck {
    what: String,
    at: Duration,
}

impl Scenario {
    pub fn run(&self, seed: u64) -> Result<Outcome, Stuck> {
        (self.run)(seed)
    }
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "paxos-deaf",
        about: "5 Paxos peers, two of them deaf: the other three decide; healed, the deaf learn the value",
        clients: false,
        run: paxos_deaf,
    },
    Scenario {
        name: "paxos-partition",
        about: "5 Paxos peers split into minorities (no decision), then a majority (decides), then healed",
        clients: false,
        run: paxos_partition,
    },
    Scenario {
        name: "view-change",
        about: "a view service and three primary/backup servers: views form, the primary dies, the backup takes over",
        clients: false,
        run: view_change,
    },
    Scenario {
        name: "pb-failover",
        about: "a client writes through primary/backup while the primary crashes and the backup takes over",
        clients: true,
        run: pb_failover,
    },
    Scenario {
        name: "shard-move",
        about: "sharded KV: group 100 serves every shard, group 101 joins (a replica of 100 down) and half the shards move, with their data",
        clients: true,
        run: shard_move,
    },
    Scenario {
        name: "random",
        about: "5 Paxos peers proposing under a random fault schedule drawn from the seed (partitions, crashes, one-way links, loss)",
        clients: false,
        run: random,
    },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// Looks at the cores after a step and records what they newly decided.
type Watch<M> = Box<dyn FnMut(&Simulator<M>, &Recorder)>;

/// A simulation being recorded, with the scenario's eye on what its cores decide.
struct Run<M> {
    sim: Simulator<M>,
    rec: Recorder,
    /// Runs after every step.
    watch: Watch<M>,
}

impl<M: Clone + Debug + Serialize + 'static> Run<M> {
    fn new(seed: u64, watch: impl FnMut(&Simulator<M>, &Recorder) + 'static) -> Self {
        let mut sim = Simulator::new(seed);
        let rec = Recorder::attach(&mut sim);
        Run {
            sim,
            rec,
            watch: Box::new(watch),
        }
    }

    fn note(&self, text: &str) {
        self.rec.note(text);
    }

    fn run_for(&mut self, duration: Duration) {
        self.run_until(duration, |_| false);
    }

    /// Runs until `done` holds or `limit` passes; returns whether `done` held.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Simulator<M>) -> bool) -> bool {
        let Run { sim, rec, watch } = self;
        sim.run_until(limit, |s| {
            watch(s, rec);
            done(s)
        })
    }

    /// Runs until `done` holds; not within [`PATIENCE`] is a stuck scenario named `what`.
    fn require(
        &mut self,
        what: &str,
        done: impl FnMut(&Simulator<M>) -> bool,
    ) -> Result<(), Stuck> {
        if self.run_until(PATIENCE, done) {
            Ok(())
        } else {
            Err(Stuck {
                what: what.to_owned(),
                at: self.sim.now(),
            })
        }
    }

    fn finish(self, scenario: &str, nodes: Vec<TraceNode>) -> Trace {
        let about = find(scenario).map_or("", |s| s.about);
        self.rec.finish(scenario, self.sim.seed(), about, nodes)
    }
}

fn named(id: NodeId, name: impl Into<String>) -> TraceNode {
    TraceNode {
        id: id.0,
        name: name.into(),
    }
}

// ---- Paxos ------------------------------------------------------------------------------

type PaxosSim = Run<PaxosMsg<String>>;

const PAXOS_PEERS: usize = 5;

fn peer_ids() -> Vec<NodeId> {
    (0..PAXOS_PEERS as u64).map(NodeId).collect()
}

/// A run of five Paxos peers that records each value a peer learns, and asserts what the page
/// teaches: no two peers ever learn different values for one instance. A peer whose disk is
/// empty after its first life rejoins, as a real deployment starts it.
fn paxos_run(seed: u64) -> PaxosSim {
    let mut seen: BTreeSet<(NodeId, u64)> = BTreeSet::new();
    let mut chosen: BTreeMap<u64, String> = BTreeMap::new();
    let mut run = PaxosSim::new(seed, move |sim, rec| {
        for id in peer_ids() {
            let Some(peer) = sim.node::<PaxosNode<String>>(id) else {
                continue;
            };
            for (seq, value) in peer.paxos().decided() {
                if seen.insert((id, seq)) {
                    rec.decision(id, format!("decided #{seq} = {value:?}"));
                    let first = chosen.entry(seq).or_insert_with(|| value.clone());
                    assert_eq!(
                        first,
                        value,
                        "instance {seq}: {id} learned another value (seed {})",
                        sim.seed()
                    );
                }
            }
        }
    });
    for i in 0..PAXOS_PEERS {
        let mut lives = 0;
        run.sim.add_node(NodeId(i as u64), move || {
            lives += 1;
            let config = PaxosConfig {
                rejoin: lives > 1,
                ..PaxosConfig::default()
            };
            PaxosNode::<String>::new(peer_ids(), i, config)
        });
    }
    run
}

fn paxos_nodes() -> Vec<TraceNode> {
    peer_ids()
        .into_iter()
        .map(|id| named(id, format!("peer {}", id.0)))
        .collect()
}

fn propose(run: &mut PaxosSim, peer: u64, seq: u64, value: &str) {
    run.note(&format!(
        "peer {peer} proposes {value:?} for instance {seq}"
    ));
    let value = value.to_owned();
    run.sim
        .call(NodeId(peer), |node: &mut PaxosNode<String>, ctx| {
            node.start(ctx, seq, value)
        });
}

/// How many running peers learned instance `seq`.
fn learned(sim: &Simulator<PaxosMsg<String>>, seq: u64) -> usize {
    peer_ids()
        .into_iter()
        .filter_map(|id| sim.node::<PaxosNode<String>>(id))
        .filter(|peer| peer.paxos().decided().any(|(s, _)| s == seq))
        .count()
}

fn paxos_deaf(seed: u64) -> Result<Outcome, Stuck> {
    let mut run = paxos_run(seed);
    run.note("peers 0 and 4 go deaf: they send, but hear nothing");
    run.sim.set_deaf(NodeId(0), true);
    run.sim.set_deaf(NodeId(4), true);
    propose(&mut run, 1, 0, "hello");
    run.require("three peers decide instance 0", |s| learned(s, 0) >= 3)?;
    run.run_for(Duration::from_millis(500));
    run.note("a deaf peer proposes: its prepares arrive, the answers do not");
    propose(&mut run, 0, 1, "from the deaf");
    run.run_for(Duration::from_millis(600));
    run.note("peers 0 and 4 hear again, and peer 4 asks about instance 0");
    run.sim.set_deaf(NodeId(0), false);
    run.sim.set_deaf(NodeId(4), false);
    propose(&mut run, 4, 0, "too late");
    run.require("every peer learns instance 0", |s| {
        learned(s, 0) == PAXOS_PEERS
    })?;
    run.require("every peer learns instance 1", |s| {
        learned(s, 1) == PAXOS_PEERS
    })?;
    run.run_for(Duration::from_millis(200));
    Ok(Outcome {
        trace: run.finish("paxos-deaf", paxos_nodes()),
        history: None,
    })
}

fn paxos_partition(seed: u64) -> Result<Outcome, Stuck> {
    let ids = peer_ids();
    let mut run = paxos_run(seed);
    run.note("partition {0,2} {1,3} {4}: no side is a majority");
    run.sim
        .partition(&[&[ids[0], ids[2]], &[ids[1], ids[3]], &[ids[4]]]);
    for peer in 0..PAXOS_PEERS as u64 {
        propose(&mut run, peer, 1, &format!("v{peer}"));
    }
    run.run_for(Duration::from_secs(1));
    run.note("partition {0} {1,2,3} {4}: peers 1, 2 and 3 are a majority");
    run.sim
        .partition(&[&[ids[0]], &[ids[1], ids[2], ids[3]], &[ids[4]]]);
    run.require("the majority decides instance 1", |s| learned(s, 1) >= 3)?;
    run.run_for(Duration::from_millis(300));
    run.note("peer 0 switches sides: partition {0,1,2} {3,4}");
    run.sim
        .partition(&[&[ids[0], ids[1], ids[2]], &[ids[3], ids[4]]]);
    propose(&mut run, 0, 2, "after the switch");
    run.require("the new majority decides instance 2", |s| {
        learned(s, 2) >= 3
    })?;
    run.note("the network heals; the peers that missed a decision ask about it by proposing");
    run.sim.heal();
    for peer in 0..PAXOS_PEERS as u64 {
        for seq in [1, 2] {
            let known = run
                .sim
                .node::<PaxosNode<String>>(NodeId(peer))
                .is_some_and(|p| p.paxos().decided().any(|(s, _)| s == seq));
            if !known {
                propose(&mut run, peer, seq, "catching up");
            }
        }
    }
    run.require("every peer learns instances 1 and 2", |s| {
        learned(s, 1) == PAXOS_PEERS && learned(s, 2) == PAXOS_PEERS
    })?;
    run.run_for(Duration::from_millis(200));
    Ok(Outcome {
        trace: run.finish("paxos-partition", paxos_nodes()),
        history: None,
    })
}

fn random(seed: u64) -> Result<Outcome, Stuck> {
    const ROUNDS: u64 = 8;
    let mut run = paxos_run(seed);
    run.note("the network loses 5% of messages and delays some by up to a second");
    run.sim.set_network(NetConfig {
        drop: 0.05,
        long_delay_prob: 0.02,
        long_delay: (Duration::from_millis(200), Duration::from_millis(1000)),
        ..NetConfig::reliable()
    });
    let mut nemesis = Nemesis::new(peer_ids(), 0);
    for seq in 0..ROUNDS {
        let chosen = nemesis.step(&mut run.sim);
        run.note(&format!("fault: {}", describe_move(chosen)));
        let peer = run.sim.rng().gen_range(0..PAXOS_PEERS as u64);
        if run.sim.is_up(NodeId(peer)) {
            propose(&mut run, peer, seq, &format!("r{seq}-p{peer}"));
        }
        let pause = run.sim.rng().gen_range(200..600);
        run.run_for(Duration::from_millis(pause));
    }
    run.note("every fault healed, every crashed peer restarted; each peer proposes each instance");
    run.sim.heal_all();
    for seq in 0..ROUNDS {
        for peer in 0..PAXOS_PEERS as u64 {
            let value = format!("final-p{peer}");
            run.sim
                .call(NodeId(peer), |node: &mut PaxosNode<String>, ctx| {
                    node.start(ctx, seq, value)
                });
        }
    }
    run.require("every peer learns every instance", |s| {
        (0..ROUNDS).all(|seq| learned(s, seq) == PAXOS_PEERS)
    })?;
    run.run_for(Duration::from_millis(200));
    Ok(Outcome {
        trace: run.finish("random", paxos_nodes()),
        history: None,
    })
}

/// What a nemesis move does, for the narration.
fn describe_move(chosen: Move) -> &'static str {
    match chosen {
        Move::DuelingLeaders => "dueling leaders: one peer cut off from the others",
        Move::Bridge => "a bridge: two sides that cannot reach each other, one peer reaching both",
        Move::OneWay => "a one-way link: one peer cannot reach another, which still reaches it",
        Move::Wipe => "a wiped disk: a peer restarts with nothing",
        Move::Crash => "a crash (the peer restarts at the next move)",
        Move::Heal => "the network heals",
    }
}

// ---- primary/backup ---------------------------------------------------------------------

type PbSim = Run<synod_pbservice::Msg>;

const VIEW_SERVICE: NodeId = NodeId(0);
const PB_CLIENT: u64 = 1;

impl SimClerk for synod_pbservice::Clerk {
    type NodeMsg = synod_pbservice::Msg;

    fn node_of(server: &Target) -> NodeId {
        match server {
            Target::ViewService => VIEW_SERVICE,
            Target::Server { id, .. } => *id,
        }
    }

    fn server_of(id: NodeId) -> Option<Target> {
        Some(match id {
            VIEW_SERVICE => Target::ViewService,
            id => Target::Server {
                id,
                addr: String::new(),
            },
        })
    }

    fn wrap(msg: synod_pbservice::Msg) -> synod_pbservice::Msg {
        msg
    }

    fn unwrap(msg: synod_pbservice::Msg) -> Option<synod_pbservice::Msg> {
        Some(msg)
    }

    fn input(op: &Op) -> Option<KvInput> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match op {
            Op::Get { key } => Some(KvInput::get(text(key))),
            Op::Put { key, value } => Some(KvInput::put(text(key), text(value))),
            Op::Append { key, value } => Some(KvInput::append(text(key), text(value))),
            Op::Redis(_) => None,
        }
    }

    fn output(reply: &synod_pbservice::PbReply) -> String {
        match reply {
            Ok(Reply::Bulk(Some(value))) => String::from_utf8_lossy(value).into_owned(),
            _ => String::new(),
        }
    }
}

/// A view service and `servers` primary/backup servers (ids from 1), recording each view the
/// service moves to and each view a server installs.
fn pb_run(seed: u64, servers: u64) -> PbSim {
    let mut known: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut run = PbSim::new(seed, move |sim, rec| {
        if let Some(vs) = sim.node::<ViewServer<synod_pbservice::PbMsg>>(VIEW_SERVICE) {
            note_view(&mut known, rec, VIEW_SERVICE, vs.view(), "view");
        }
        for id in (1..=servers).map(NodeId) {
            if let Some(server) = sim.node::<PbServer>(id) {
                note_view(&mut known, rec, id, server.view(), "knows view");
            }
        }
    });
    run.sim
        .add_node(VIEW_SERVICE, ViewServer::<synod_pbservice::PbMsg>::new);
    for n in 1..=servers {
        run.sim.add_node(NodeId(n), move || {
            PbServer::new(VIEW_SERVICE, format!("server-{n}"))
        });
    }
    run
}

/// Records `view` as a decision of `node` if it is newer than the last one recorded there.
fn note_view(
    known: &mut BTreeMap<NodeId, u64>,
    rec: &Recorder,
    node: NodeId,
    view: &synod_viewservice::View,
    what: &str,
) {
    let last = known.entry(node).or_default();
    if view.num != *last {
        *last = view.num;
        let role = |r: Option<NodeId>| r.map_or("none".to_owned(), |id| id.0.to_string());
        rec.decision(
            node,
            format!(
                "{what} {}: primary {}, backup {}",
                view.num,
                role(view.primary),
                role(view.backup)
            ),
        );
    }
}

fn view_of(sim: &Simulator<synod_pbservice::Msg>) -> synod_viewservice::View {
    sim.node::<ViewServer<synod_pbservice::PbMsg>>(VIEW_SERVICE)
        .map(|vs| vs.view().clone())
        .unwrap_or_default()
}

fn pb_nodes(servers: u64, client: bool) -> Vec<TraceNode> {
    let mut nodes = vec![named(VIEW_SERVICE, "view service")];
    nodes.extend((1..=servers).map(|n| named(NodeId(n), format!("server {n}"))));
    if client {
        nodes.push(named(client_id(PB_CLIENT), "client"));
    }
    nodes
}

fn client_id(n: u64) -> NodeId {
    NodeId(NodeId::FIRST_CLIENT + n)
}

fn view_change(seed: u64) -> Result<Outcome, Stuck> {
    let mut run = pb_run(seed, 3);
    run.note("three servers ping the view service; the first becomes primary, the next backup");
    run.require("a view with a primary and a backup", |s| {
        let v = view_of(s);
        v.primary.is_some() && v.backup.is_some()
    })?;
    run.run_for(Duration::from_millis(300));
    let old = view_of(&run.sim);
    let primary = old.primary.expect("the view has a primary");
    run.note(&format!("the primary, server {}, crashes", primary.0));
    run.sim.crash(primary);
    run.require("the backup becomes primary", |s| {
        let v = view_of(s);
        v.num > old.num && v.primary == old.backup && v.backup.is_some()
    })?;
    run.run_for(Duration::from_millis(300));
    run.note(&format!(
        "server {} restarts, empty, and pings again",
        primary.0
    ));
    run.sim.restart(primary);
    run.run_for(Duration::from_secs(1));
    Ok(Outcome {
        trace: run.finish("view-change", pb_nodes(3, false)),
        history: None,
    })
}

fn pb_failover(seed: u64) -> Result<Outcome, Stuck> {
    let mut run = pb_run(seed, 2);
    let history = History::new(run.sim.clock());
    run.require("a view with a primary and a backup", |s| {
        let v = view_of(s);
        v.primary.is_some() && v.backup.is_some()
    })?;
    run.note("a client appends to one key, then reads it, through the primary");
    let plan: Vec<Op> = (0..6)
        .map(|i| Op::Append {
            key: b"k".to_vec(),
            value: format!("x{i} ").into_bytes(),
        })
        .chain([Op::Get { key: b"k".to_vec() }])
        .collect();
    let client_history = history.clone();
    run.sim.add_node(client_id(PB_CLIENT), move || {
        ClerkNode::new(
            synod_pbservice::Clerk::new(PB_CLIENT),
            PB_CLIENT,
            plan.clone(),
            Duration::from_millis(30),
            client_history.clone(),
        )
    });
    type PbClient = ClerkNode<synod_pbservice::Clerk>;
    run.require("the client's first three operations", |s| {
        s.node::<PbClient>(client_id(PB_CLIENT))
            .is_some_and(|c| c.completed() >= 3)
    })?;
    let old = view_of(&run.sim);
    let primary = old.primary.expect("the view has a primary");
    run.note(&format!(
        "the primary, server {}, crashes in the middle of the client's work",
        primary.0
    ));
    run.sim.crash(primary);
    run.require("the client finishes through the new primary", |s| {
        s.node::<PbClient>(client_id(PB_CLIENT))
            .is_some_and(PbClient::finished)
    })?;
    run.run_for(Duration::from_millis(300));
    Ok(Outcome {
        trace: run.finish("pb-failover", pb_nodes(2, true)),
        history: Some(history.operations()),
    })
}

// ---- sharded KV -------------------------------------------------------------------------

type ShardSim = Run<ShardMsg>;

const SHARDS: usize = 10;
const CONTROLLERS: u64 = 3;
const GROUP_REPLICAS: usize = 3;
const GROUPS: [Gid; 2] = [100, 101];
/// Client numbers: the admin's controller session and the key/value clerk.
const ADMIN: u64 = 1;
const KV_CLIENT: u64 = 2;

fn ctl_ids() -> Vec<NodeId> {
    (0..CONTROLLERS).map(NodeId).collect()
}

fn group_addrs(gid: Gid) -> Vec<String> {
    (0..GROUP_REPLICAS).map(|i| format!("g{gid}-{i}")).collect()
}

fn group_member(addr: &str) -> Option<NodeId> {
    GROUPS.iter().find_map(|&gid| {
        group_addrs(gid)
            .iter()
            .position(|a| a == addr)
            .map(|i| server_id(gid, i))
    })
}

fn shard_server_of(id: NodeId) -> Option<ShardServer> {
    if id.0 < CONTROLLERS {
        return Some(ShardServer::Controller(id.0 as usize));
    }
    GROUPS.iter().find_map(|&gid| {
        (0..GROUP_REPLICAS)
            .find(|&i| server_id(gid, i) == id)
            .map(|i| ShardServer::Group(group_addrs(gid)[i].clone()))
    })
}

impl SimClerk for ShardKvClerk {
    type NodeMsg = ShardMsg;

    fn node_of(server: &ShardServer) -> NodeId {
        match server {
            ShardServer::Controller(i) => NodeId(*i as u64),
            // An address of no group reaches no node: the simulator drops it as unknown.
            ShardServer::Group(addr) => group_member(addr).unwrap_or(NodeId(u64::MAX)),
        }
    }

    fn server_of(id: NodeId) -> Option<ShardServer> {
        shard_server_of(id)
    }

    fn wrap(msg: ShardMsg) -> ShardMsg {
        msg
    }

    fn unwrap(msg: ShardMsg) -> Option<ShardMsg> {
        Some(msg)
    }

    fn input(op: &KvOp) -> Option<KvInput> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match op {
            KvOp::Get { key } => Some(KvInput::get(text(key))),
            KvOp::Put { key, value } => Some(KvInput::put(text(key), text(value))),
            KvOp::Append { key, value } => Some(KvInput::append(text(key), text(value))),
            KvOp::Redis(_) => None,
        }
    }

    fn output(reply: &ShardReply) -> String {
        match reply {
            ShardReply::Value { value, .. } => String::from_utf8_lossy(value).into_owned(),
            _ => String::new(),
        }
    }
}

impl SimClerk for CtlClerk {
    type NodeMsg = ShardMsg;

    fn node_of(server: &usize) -> NodeId {
        NodeId(*server as u64)
    }

    fn server_of(id: NodeId) -> Option<usize> {
        (id.0 < CONTROLLERS).then_some(id.0 as usize)
    }

    fn wrap(msg: <CtlClerk as synod_node::clerk::Clerk>::Msg) -> ShardMsg {
        ShardMsg::Ctl(msg)
    }

    fn unwrap(msg: ShardMsg) -> Option<<CtlClerk as synod_node::clerk::Clerk>::Msg> {
        match msg {
            ShardMsg::Ctl(msg) => Some(msg),
            _ => None,
        }
    }

    fn input(_: &CtlOp) -> Option<KvInput> {
        None
    }

    fn output(_: &CtlReply) -> String {
        String::new()
    }
}

/// Three controllers and groups 100 and 101, recording each configuration the controllers
/// decide and each one a group replica reaches (with the shards it then serves).
fn shard_run(seed: u64) -> ShardSim {
    // Per node, the configuration it was last seen in and the shards it then served; every
    // node starts in configuration 0 with none, which is not news.
    let mut known: BTreeMap<NodeId, (u64, Vec<usize>)> = BTreeMap::new();
    let initial = (0, Vec::new());
    let mut run = ShardSim::new(seed, move |sim, rec| {
        for id in ctl_ids() {
            if let Some(ctl) = sim.node::<CtlNode>(id) {
                let latest = ctl.controller().machine().latest();
                let now = (latest.num, Vec::new());
                if *known.get(&id).unwrap_or(&initial) != now {
                    rec.decision(
                        id,
                        format!("config {}: shards {}", latest.num, owners(latest)),
                    );
                    known.insert(id, now);
                }
            }
        }
        for gid in GROUPS {
            for i in 0..GROUP_REPLICAS {
                let id = server_id(gid, i);
                let Some(server) = sim.node::<GroupServer>(id) else {
                    continue;
                };
                let state = server.state();
                let now = (state.config.num, state.shards.keys().copied().collect());
                if *known.get(&id).unwrap_or(&initial) != now {
                    rec.decision(
                        id,
                        format!("reached config {}: serves shards {:?}", now.0, now.1),
                    );
                    known.insert(id, now);
                }
            }
        }
    });
    for i in 0..CONTROLLERS as usize {
        run.sim.add_node(NodeId(i as u64), move || {
            controller_node(ctl_ids(), i, PaxosConfig::default(), SHARDS)
        });
    }
    for gid in GROUPS {
        for i in 0..GROUP_REPLICAS {
            run.sim.add_node(server_id(gid, i), move || {
                GroupServer::new(
                    gid,
                    i,
                    group_addrs(gid),
                    ctl_ids(),
                    SHARDS,
                    PaxosConfig::default(),
                )
            });
        }
    }
    run
}

/// A configuration's shard map: the owning group of each shard in order, `-` for none.
fn owners(config: &Config) -> String {
    config
        .shards
        .iter()
        .map(|&g| {
            if g == 0 {
                "-".to_owned()
            } else {
                g.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Adds client node `n` running `plan` through clerk `clerk` and waits until it is done.
fn shard_client<C: SimClerk<NodeMsg = ShardMsg>>(
    run: &mut ShardSim,
    n: u64,
    clerk: impl Fn() -> C + 'static,
    plan: Vec<C::Op>,
    history: &History,
    what: &str,
) -> Result<(), Stuck>
where
    C::Op: Clone,
{
    let history = history.clone();
    run.sim.add_node(client_id(n), move || {
        ClerkNode::new(
            clerk(),
            n,
            plan.clone(),
            Duration::from_millis(10),
            history.clone(),
        )
    });
    run.require(what, |s| {
        s.node::<ClerkNode<C>>(client_id(n))
            .is_some_and(ClerkNode::finished)
    })
}

fn shard_move(seed: u64) -> Result<Outcome, Stuck> {
    let mut run = shard_run(seed);
    let history = History::new(run.sim.clock());
    let join = |gid: Gid| CtlOp::Join {
        gid,
        servers: group_addrs(gid),
    };
    run.note("an operator joins group 100: it takes every shard");
    shard_client::<CtlClerk>(
        &mut run,
        ADMIN,
        || CtlClerk::new(ADMIN, CONTROLLERS as usize),
        vec![join(100)],
        &history,
        "group 100 joins",
    )?;
    run.note("a client writes four keys");
    let keys: Vec<String> = (0..4).map(|k| format!("key{k}")).collect();
    let puts = keys
        .iter()
        .map(|k| KvOp::Put {
            key: k.clone().into_bytes(),
            value: format!("v-{k}").into_bytes(),
        })
        .collect();
    shard_client::<ShardKvClerk>(
        &mut run,
        KV_CLIENT,
        || ShardKvClerk::new(KV_CLIENT, CONTROLLERS as usize, Config::initial(SHARDS)),
        puts,
        &history,
        "the client's writes",
    )?;
    run.note("replica 2 of group 100 crashes: its group still has a majority");
    run.sim.crash(server_id(100, 2));
    run.note("group 101 joins: the controllers rebalance, half the shards move to it");
    shard_client::<CtlClerk>(
        &mut run,
        ADMIN + 10,
        || CtlClerk::new(ADMIN + 10, CONTROLLERS as usize),
        vec![join(101)],
        &history,
        "group 101 joins",
    )?;
    run.require("group 101 serves its shards", |s| {
        (0..GROUP_REPLICAS).all(|i| {
            s.node::<GroupServer>(server_id(101, i))
                .is_some_and(|g| g.state().config.num >= 2 && g.state().awaited.is_empty())
        })
    })?;
    run.note("replica 2 of group 100 restarts and catches up");
    run.sim.restart(server_id(100, 2));
    run.note("the client reads every key back, from whichever group now serves it");
    let gets = keys
        .iter()
        .map(|k| KvOp::Get {
            key: k.clone().into_bytes(),
        })
        .collect();
    shard_client::<ShardKvClerk>(
        &mut run,
        KV_CLIENT + 10,
        || {
            ShardKvClerk::new(
                KV_CLIENT + 10,
                CONTROLLERS as usize,
                Config::initial(SHARDS),
            )
        },
        gets,
        &history,
        "the client's reads",
    )?;
    run.run_for(Duration::from_millis(200));
    let mut nodes: Vec<TraceNode> = ctl_ids()
        .into_iter()
        .map(|id| named(id, format!("controller {}", id.0)))
        .collect();
    for gid in GROUPS {
        nodes.extend(
            (0..GROUP_REPLICAS).map(|i| named(server_id(gid, i), format!("group {gid} #{i}"))),
        );
    }
    for (n, name) in [
        (ADMIN, "admin (join 100)"),
        (KV_CLIENT, "client (writes)"),
        (ADMIN + 10, "admin (join 101)"),
        (KV_CLIENT + 10, "client (reads)"),
    ] {
        nodes.push(named(client_id(n), name));
    }
    Ok(Outcome {
        trace: run.finish("shard-move", nodes),
        history: Some(history.operations()),
    })
}
