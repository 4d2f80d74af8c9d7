//! The nodes of a sharded cluster: [`GroupServer`] (one replica of a shard group) and
//! [`CtlNode`] (a shard controller replica speaking the cluster's message type).
//!
//! Node ids: controller replica `i` is `NodeId(i)` (`i < 256`); replica `i` of group `gid`
//! is [`server_id`]`(gid, i)`. Servers learn other groups' addresses from configurations
//! (and a pushing group's from its push) and hand them to the driver with `add_peer`.

use std::collections::BTreeMap;
use std::time::Duration;

use synod_node::limits::Limits;
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_paxos::PaxosConfig;
use synod_rsm::{Role, Rsm, RsmMsg, Wrap};
use synod_shardctl::{controller, Config, Controller, CtlMsg, CtlOp, CtlReply, Gid};

use synod_kvpaxos::KvOp;

use crate::state::{GroupOp, GroupState};
use crate::{GroupMsg, ShardMsg, ShardReply};

/// How often a group polls the controller and pushes the shards it owes.
pub const POLL: Duration = Duration::from_millis(100);

/// The poll timer's token; the embedded replica uses [`synod_rsm::TIMER`] (0).
const POLL_TIMER: TimerToken = 1;

/// The node id of replica `index` of group `gid`.
pub fn server_id(gid: Gid, index: usize) -> NodeId {
    NodeId(gid << 8 | index as u64)
}

fn from_group(m: GroupMsg) -> ShardMsg {
    match m {
        RsmMsg::Status(r) => ShardMsg::Status(r),
        m => ShardMsg::Group(m),
    }
}

fn from_ctl(m: CtlMsg) -> ShardMsg {
    match m {
        RsmMsg::Status(r) => ShardMsg::Status(r),
        m => ShardMsg::Ctl(m),
    }
}

/// Teaches the driver every group server address in `config`.
fn learn(ctx: &mut dyn Context<ShardMsg>, config: &Config) {
    for &gid in config.groups.keys() {
        for (i, addr) in config.servers_of(gid) {
            ctx.add_peer(server_id(gid, i), addr);
        }
    }
}

/// One replica of a shard group.
#[derive(Debug)]
pub struct GroupServer {
    /// This group's servers: ids and addresses.
    group: Vec<(NodeId, String)>,
    controllers: Vec<NodeId>,
    rsm: Rsm<GroupState>,
    /// This server's session with the controller (a new one every life, and after the
    /// controller evicted it).
    ctl_client: u64,
    ctl_seq: u64,
    /// Whether `ctl_seq` was answered. A query is retried under the same number until it
    /// is: a higher number arriving first would make the controller think our session was
    /// evicted.
    ctl_answered: bool,
    polls: usize,
    /// Client requests with a key or value above these are refused before they are proposed.
    limits: Limits,
}

impl GroupServer {
    /// Replica `me` of group `gid`, whose servers have the addresses `addrs` (labels under
    /// the simulator), in a cluster of `shards` shards with the given controllers.
    pub fn new(
        gid: Gid,
        me: usize,
        addrs: Vec<String>,
        controllers: Vec<NodeId>,
        shards: usize,
        config: PaxosConfig,
    ) -> Self {
        let ids: Vec<NodeId> = (0..addrs.len()).map(|i| server_id(gid, i)).collect();
        GroupServer {
            group: ids.iter().copied().zip(addrs).collect(),
            controllers,
            rsm: Rsm::with_machine(ids, me, config, GroupState::new(gid, shards)),
            ctl_client: 0,
            ctl_seq: 0,
            ctl_answered: true,
            polls: 0,
            limits: Limits::default(),
        }
    }

    /// Replica `me` of group `gid`, new to the running group whose first servers have the
    /// addresses `addrs`, listening at `own`: it has no state and votes nowhere until a
    /// membership change of the group names it, then fetches the group's state from them
    /// (`synod_rsm::Rsm::joining`). It polls the controller only once it has that state.
    pub fn joining(
        gid: Gid,
        me: usize,
        addrs: Vec<String>,
        own: String,
        controllers: Vec<NodeId>,
        config: PaxosConfig,
    ) -> Self {
        let mut group: Vec<(NodeId, String)> = addrs
            .into_iter()
            .enumerate()
            .map(|(i, a)| (server_id(gid, i), a))
            .collect();
        let contacts = group.iter().map(|(id, _)| *id).collect();
        group.push((server_id(gid, me), own));
        GroupServer {
            group,
            controllers,
            rsm: Rsm::joining(contacts, server_id(gid, me), config),
            ctl_client: 0,
            ctl_seq: 0,
            ctl_answered: true,
            polls: 0,
            limits: Limits::default(),
        }
    }

    /// The same server, refusing keys and values above `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn state(&self) -> &GroupState {
        self.rsm.machine()
    }

    pub fn rsm(&self) -> &Rsm<GroupState> {
        &self.rsm
    }

    fn propose(&mut self, ctx: &mut dyn Context<ShardMsg>, op: GroupOp) {
        self.rsm.propose(&mut Wrap::new(ctx, from_group), op);
    }

    /// Asks a controller (a different one each time) for the configuration after ours, and
    /// pushes every shard we owe to a server of its new owner (rotating too).
    fn poll(&mut self, ctx: &mut dyn Context<ShardMsg>) {
        self.polls += 1;
        if self.rsm.role() == Role::Joining {
            return; // No state yet, so no configuration to ask after and nothing owed.
        }
        let state = self.rsm.machine();
        if state.awaited.is_empty() && !self.controllers.is_empty() {
            if self.ctl_answered {
                self.ctl_seq += 1;
                self.ctl_answered = false;
            }
            let to = self.controllers[self.polls % self.controllers.len()];
            let op = CtlOp::Query {
                num: state.config.num as i64 + 1,
            };
            let request = RsmMsg::Request {
                client: self.ctl_client,
                seq: self.ctl_seq,
                op,
            };
            ctx.send(to, ShardMsg::Ctl(request));
        }
        for (&(num, shard), out) in &state.outgoing {
            // Positions of replicas that left the group are empty.
            let servers: Vec<(usize, &String)> = out
                .servers
                .iter()
                .enumerate()
                .filter(|(_, a)| !a.is_empty())
                .collect();
            if servers.is_empty() {
                continue; // Every group left: nobody to hand it to (see docs/shardkv.md).
            }
            let (i, addr) = servers[self.polls % servers.len()];
            let to = server_id(out.to, i);
            ctx.add_peer(to, addr);
            let push = ShardMsg::Push {
                num,
                shard,
                data: out.shard.clone(),
                from: self.group.clone(),
            };
            ctx.send(to, push);
        }
    }

    /// Tells a client whose write came here that another replica leads the group (the write
    /// is forwarded there), so its next writes skip this hop.
    fn hint_leader(&self, ctx: &mut dyn Context<ShardMsg>, from: NodeId, msg: &GroupMsg) {
        let writes = match msg {
            RsmMsg::Request { op, .. } => !crate::reads_only(op),
            RsmMsg::Batch { ops, .. } => ops.iter().any(|op| !crate::reads_only(op)),
            _ => false,
        };
        if !writes || !from.is_client() {
            return;
        }
        let leader = self.rsm.live_leader(ctx.now());
        if leader == Some(ctx.id()) {
            return;
        }
        if let Some((_, addr)) = self.group.iter().find(|(id, _)| Some(*id) == leader) {
            ctx.send(from, ShardMsg::Leader(addr.clone()));
        }
    }

    fn on_config(&mut self, ctx: &mut dyn Context<ShardMsg>, config: Config) {
        learn(ctx, &config);
        // The controller's record of this group follows its membership changes
        // (`CtlOp::Servers`): the servers named in leader hints and pushes.
        let gid = self.rsm.machine().gid;
        if config.groups.contains_key(&gid) {
            self.group = config
                .servers_of(gid)
                .map(|(i, a)| (server_id(gid, i), a.clone()))
                .collect();
        }
        let state = self.rsm.machine();
        if config.num == state.config.num + 1 && state.awaited.is_empty() {
            self.propose(ctx, GroupOp::Reconfigure(config));
        }
    }

    fn on_push(
        &mut self,
        ctx: &mut dyn Context<ShardMsg>,
        from: NodeId,
        push: (u64, usize, crate::Shard),
        senders: Vec<(NodeId, String)>,
    ) {
        let (num, shard, data) = push;
        for (id, addr) in &senders {
            ctx.add_peer(*id, addr);
        }
        let state = self.rsm.machine();
        let installed =
            state.config.num > num || (state.config.num == num && !state.awaited.contains(&shard));
        if installed {
            ctx.send(from, ShardMsg::PushAck { num, shard });
        } else if state.config.num == num {
            self.propose(ctx, GroupOp::Install { num, shard, data });
        }
    }
}

impl Node for GroupServer {
    type Msg = ShardMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<ShardMsg>) {
        self.ctl_client = ctx.rng().next_u64() >> 1;
        for (id, addr) in &self.group {
            ctx.add_peer(*id, addr);
        }
        self.rsm.on_start(&mut Wrap::new(ctx, from_group));
        let config = self.rsm.machine().config.clone();
        learn(ctx, &config);
        ctx.set_timer(POLL, POLL_TIMER);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<ShardMsg>, from: NodeId, msg: ShardMsg) {
        if self.rsm.broken() {
            if let ShardMsg::StatusQuery = msg {
                let report = self.rsm.status(ctx.id());
                ctx.send(from, ShardMsg::Status(report));
            }
            return;
        }
        match msg {
            ShardMsg::StatusQuery => {
                self.rsm
                    .on_message(&mut Wrap::new(ctx, from_group), from, RsmMsg::StatusQuery)
            }
            ShardMsg::Group(RsmMsg::Request { seq, op, .. })
                if op.check_size(&self.limits).is_err() =>
            {
                // Refused whole, before it is proposed: nothing of it is ever applied.
                let refused = op
                    .check_size(&self.limits)
                    .expect_err("checked by the guard");
                let shard = self.rsm.machine().shard_of(&op);
                let reply = ShardReply::TooLarge { shard, refused };
                ctx.send(from, ShardMsg::Group(RsmMsg::Reply { seq, reply }));
            }
            ShardMsg::Group(RsmMsg::Batch { seq, ops, .. })
                if KvOp::check_batch(&ops, &self.limits).is_err() =>
            {
                // Refused whole, as a single command is: the client runs it again one
                // command at a time, so each gets its own answer.
                let refused =
                    KvOp::check_batch(&ops, &self.limits).expect_err("checked by the guard");
                let shard = self.rsm.machine().shard_of(&ops[0]);
                let reply = ShardReply::TooLarge { shard, refused };
                ctx.send(from, ShardMsg::Group(RsmMsg::Reply { seq, reply }));
            }
            ShardMsg::Group(m) => {
                self.hint_leader(ctx, from, &m);
                self.rsm
                    .on_message(&mut Wrap::new(ctx, from_group), from, m)
            }
            ShardMsg::Ctl(RsmMsg::Reply { seq, reply }) if seq == self.ctl_seq => {
                self.ctl_answered = true;
                match reply {
                    CtlReply::Config(config) => self.on_config(ctx, config),
                    // Polls are reads, which do not refresh the session's place in the
                    // controller's table, so a server that ran long enough can see its
                    // session evicted by newer clients: it starts a new one.
                    CtlReply::SessionExpired => {
                        self.ctl_client = ctx.rng().next_u64() >> 1;
                        self.ctl_seq = 0;
                    }
                    // Nothing to do: a group reaches the controllers as a member, which no
                    // controller refuses.
                    CtlReply::Invalid(_) | CtlReply::Denied(_) => {}
                }
            }
            ShardMsg::Push {
                num,
                shard,
                data,
                from: senders,
            } => self.on_push(ctx, from, (num, shard, data), senders),
            ShardMsg::PushAck { num, shard } => {
                if self.rsm.machine().outgoing.contains_key(&(num, shard)) {
                    self.propose(ctx, GroupOp::Delete { num, shard });
                }
            }
            ShardMsg::Ctl(_) | ShardMsg::Status(_) | ShardMsg::Leader(_) => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<ShardMsg>, token: TimerToken) {
        if token == POLL_TIMER {
            if !self.rsm.broken() {
                self.poll(ctx);
                ctx.set_timer(POLL, POLL_TIMER);
            }
        } else {
            self.rsm.on_timer(&mut Wrap::new(ctx, from_group), token);
        }
    }
}

/// A shard controller replica in a sharded cluster: the controller of
/// [`synod_shardctl`], speaking [`ShardMsg`] so groups and clients reach it with the same
/// message type as everything else, and teaching the driver the addresses of the groups in
/// its configurations so its answers reach them.
#[derive(Debug)]
pub struct CtlNode {
    inner: Controller,
    taught: BTreeMap<Gid, Vec<String>>,
}

/// Controller replica `me` of `peers` for a cluster of `shards` shards.
pub fn controller_node(
    peers: Vec<NodeId>,
    me: usize,
    config: PaxosConfig,
    shards: usize,
) -> CtlNode {
    CtlNode {
        inner: controller(peers, me, config, shards),
        taught: BTreeMap::new(),
    }
}

/// Controller replica `me`, new to the running controller group whose first replicas are
/// `contacts` (`synod_rsm::Rsm::joining`): it fetches the state once a change names it.
/// Its number of shards comes with that state.
pub fn joining_controller(contacts: Vec<NodeId>, me: NodeId, config: PaxosConfig) -> CtlNode {
    CtlNode {
        inner: Controller::joining(contacts, me, config),
        taught: BTreeMap::new(),
    }
}

impl CtlNode {
    pub fn controller(&self) -> &Controller {
        &self.inner
    }

    fn teach(&mut self, ctx: &mut dyn Context<ShardMsg>) {
        let latest = self.inner.machine().latest();
        if latest
            .groups
            .iter()
            .all(|(g, s)| self.taught.get(g) == Some(s))
        {
            return;
        }
        let latest = latest.clone();
        learn(ctx, &latest);
        self.taught.extend(latest.groups);
    }
}

impl Node for CtlNode {
    type Msg = ShardMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<ShardMsg>) {
        self.inner.on_start(&mut Wrap::new(ctx, from_ctl));
        // Every group that ever joined, so a group that left can still hear answers.
        let configs = self.inner.machine().configs.clone();
        for c in &configs {
            learn(ctx, c);
        }
        self.teach(ctx);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<ShardMsg>, from: NodeId, msg: ShardMsg) {
        let inner = match msg {
            ShardMsg::StatusQuery => RsmMsg::StatusQuery,
            ShardMsg::Ctl(m) => m,
            _ => return,
        };
        self.inner
            .on_message(&mut Wrap::new(ctx, from_ctl), from, inner);
        self.teach(ctx);
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<ShardMsg>, token: TimerToken) {
        self.inner.on_timer(&mut Wrap::new(ctx, from_ctl), token);
        self.teach(ctx);
    }
}
