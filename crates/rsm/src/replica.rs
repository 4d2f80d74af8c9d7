//! [`Rsm`]: one replica of a replicated state machine. It embeds a Paxos peer, turns client
//! requests and internal commands into log entries, applies the decided log in order and
//! answers clients once their command is applied.
//!
//! Requests are batched and pipelined: a replica keeps at most [`WINDOW`] instances of its
//! own in flight ([`LEADER_WINDOW`] while it leads), and every request that arrives
//! meanwhile waits for a free slot and then goes, together with all others waiting, into one
//! [`Entry::Batch`]. Under light load a request is proposed at once, alone; under heavy load
//! one Paxos round carries many.
//!
//! A stable leader (multi-Paxos, see `synod_paxos`'s `lead` module) makes the common case
//! one round trip per batch: a replica that has not heard from a leader for
//! [`ELECTION_TIMEOUT`] (randomized) campaigns; the others forward client requests to the
//! leader they know and keep them waiting, so they still answer their own clients once the
//! command is applied. Leadership only serves liveness: a replica that hears of no live
//! leader proposes on its own, exactly as without one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use synod_node::{limits, Context, Node, NodeId, SnapshotProgress, TimerToken};
use synod_paxos::{
    Config, ConfigError, Embed, Fate, Membership, Paxos, PaxosConfig, PaxosError, PaxosState,
    Schedule,
};

use crate::guard::{ignore, Ignored};
use crate::sessions::Verdict;
use crate::status::{CatchUp, Role, SnapshotStatus, SnapshotTaken, StatusReport};
use crate::transfer::{Chunk, Receiving, Serving, SnapshotId, MAX_STALLS, SERVING_IDLE};
use crate::{
    Entry, EntryOf, MsgOf, RsmMsg, StateMachine, MAX_BATCH_COMMANDS, MAX_BATCH_REPLY_BYTES,
};

/// How often the replica drives Paxos retries and looks for holes in its log.
pub const TICK: Duration = Duration::from_millis(10);

/// The timer token the replica uses. A node that embeds an [`Rsm`] routes timers with this
/// token to it and uses other tokens for its own.
pub const TIMER: TimerToken = 0;

/// How long the next instance to apply may stay undecided, once it is known to be in use,
/// before the replica proposes a no-op there to learn or fill it.
const HOLE_PATIENCE: Duration = Duration::from_millis(100);

/// How long the next instance to apply may stay undecided, once it is known to be in use,
/// before the replica asks a peer for the decisions from there on (and between two asks
/// while nothing arrives). Shorter than [`HOLE_PATIENCE`]: asking costs no proposal.
const CATCH_UP_PATIENCE: Duration = Duration::from_millis(30);

/// How long the next instance may stay undecided, where this replica may not vote, before
/// it says so in the log.
const VOTELESS_WARNING: Duration = Duration::from_secs(5);

/// Instances this replica proposes in at once (its own, not yet applied). More would only
/// make concurrent replicas collide on the same instances more often.
pub const WINDOW: usize = 1;

/// The window of a replica that leads: nobody competes with it for instances.
pub const LEADER_WINDOW: usize = 8;

/// A leader not heard from for this long (plus a random part up to as much again) is
/// presumed gone, and the replica campaigns.
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(300);

/// How long a request forwarded to the leader may stay unapplied before it is forwarded
/// again (or proposed here, if no leader is known by then).
const FORWARD_RETRY: Duration = Duration::from_millis(200);

/// Largest number of client entries in one batch...
const MAX_BATCH: usize = 256;
/// ...and their largest serialized size: a batch always takes at least one entry, so an
/// entry above this goes alone, and `limits::Limits::max_entry` covers both cases.
const MAX_BATCH_BYTES: usize = limits::BATCH_BYTES;

/// Minimum time between two snapshot requests.
const SNAPSHOT_RETRY: Duration = Duration::from_millis(200);

/// Compact the log once it holds this many records per MiB of the last snapshot (at least
/// one MiB's worth)...
const COMPACT_RECORDS: usize = 1000;
/// ...or more bytes than this plus half the last snapshot. Both grow with the snapshot, so a
/// snapshot's cost, O(state), is spread over O(state) bytes written: the amortized cost per
/// write does not grow with the state. The durable state stays within about 1.5 times the
/// snapshot plus this, and a restart replays at most that much log.
const COMPACT_BYTES: usize = 1 << 20;

/// The snapshot: the state machine next to the Paxos state. Every log record is a Paxos
/// record.
#[derive(Serialize, Deserialize)]
struct Durable<P, S> {
    /// [`SNAPSHOT_FORMAT`]: a snapshot of another format is refused, not misread.
    format: [u8; 4],
    paxos: P,
    next: u64,
    machine: S,
}

/// The first bytes of every snapshot this build writes; changed whenever what a snapshot
/// holds changes incompatibly (`b"syn9"`: configurations in the Paxos state, protocol 10).
const SNAPSHOT_FORMAT: [u8; 4] = *b"syn9";

/// What one client request asks for: one command ([`RsmMsg::Request`]) or several applied
/// in order as one ([`RsmMsg::Batch`]). Replicas keep requests in this form, and clerks
/// that send batches too (shardkv's) build their requests from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Commands<C> {
    One(C),
    /// Never empty: an empty batch is ignored where it arrives.
    Many(Vec<C>),
}

impl<C: Clone> Commands<C> {
    /// The command that picks the session table (a batch's commands share one table).
    pub fn first(&self) -> &C {
        match self {
            Commands::One(op) => op,
            Commands::Many(ops) => &ops[0],
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, C> {
        match self {
            Commands::One(op) => std::slice::from_ref(op).iter(),
            Commands::Many(ops) => ops.iter(),
        }
    }

    /// The request that carries these commands under (client, seq).
    pub fn request<I, R>(&self, client: u64, seq: u64) -> RsmMsg<C, I, R> {
        match self {
            Commands::One(op) => RsmMsg::Request {
                client,
                seq,
                op: op.clone(),
            },
            Commands::Many(ops) => RsmMsg::Batch {
                client,
                seq,
                ops: ops.clone(),
            },
        }
    }

    fn entry<I>(&self, client: u64, seq: u64) -> Entry<C, I> {
        match self {
            Commands::One(op) => Entry::Client {
                client,
                seq,
                op: op.clone(),
            },
            Commands::Many(ops) => Entry::Commands {
                client,
                seq,
                ops: ops.clone(),
            },
        }
    }
}

/// A client request this replica has taken on and not yet answered.
#[derive(Debug, Clone, Hash)]
struct Waiting<C> {
    seq: u64,
    op: Commands<C>,
    from: NodeId,
    /// The instance it was last proposed in.
    instance: Option<u64>,
    /// When it was last forwarded to the leader.
    forwarded: Option<Duration>,
}

/// A read answered without a log entry, waiting for its barrier and for the log to be
/// applied up to the barrier's index.
#[derive(Debug, Clone, Hash)]
struct Read<C> {
    client: u64,
    seq: u64,
    op: Commands<C>,
    from: NodeId,
    barrier: Option<u64>,
}

/// One replica. Usable as a [`Node`] by itself (kvpaxos, the shard controller) or embedded
/// in a node with messages of its own (shardkv) through [`crate::Wrap`]. Clonable and
/// hashable (when its state machine is) so the model checker can branch and deduplicate.
#[derive(Debug, Clone, Hash)]
pub struct Rsm<S: StateMachine> {
    paxos: Paxos<EntryOf<S>>,
    machine: S,
    /// The next log instance to apply; every instance below it is applied.
    next: u64,
    /// `next` as restored from a snapshot (this replica's own at start, or a peer's): the
    /// instances below it were applied without being decided here.
    snapshot_next: u64,
    /// Requests waiting for their command to be applied, by client.
    waiting: BTreeMap<u64, Waiting<S::Command>>,
    reads: Vec<Read<S::Command>>,
    /// Internal commands proposed and not yet seen applied, with their instance.
    internal: Vec<(S::Internal, u64)>,
    /// Lowest instance this replica may propose a new entry in.
    next_propose: u64,
    /// Instances at or above `next` this replica proposed client or internal entries in:
    /// its window.
    in_flight: BTreeSet<u64>,
    /// When to campaign for leadership, unless a live leader is heard of by then.
    campaign_at: Duration,
    /// Since when the instance `next` has been waited for.
    stuck_since: (u64, Duration),
    /// The instance this replica last asked its peers to teach it (`Learn`), and when.
    catch_up_asked: Option<(u64, Duration)>,
    /// The last instance this replica warned it cannot vote in while it stays undecided.
    voteless_warned: Option<u64>,
    /// When this replica last asked a peer for a snapshot chunk.
    snapshot_asked: Option<Duration>,
    /// A snapshot arriving from a peer, chunk by chunk.
    receiving: Option<Receiving>,
    /// This replica's state, serialized once for the peers that fetch it.
    serving: Option<Serving>,
    /// Largest snapshot chunk this replica sends.
    snapshot_chunk: usize,
    /// Since when this replica has needed a snapshot (its peers forgot its next instance).
    behind_since: Option<Duration>,
    /// Why the last snapshot received could not be installed, until one is.
    install_failure: Option<String>,
    /// The time of the last tick, for the status report.
    now: Duration,
    last_snapshot_bytes: usize,
    /// When the background snapshot being written was begun (storage has not reported it
    /// installed yet); `None` when none is.
    snapshot_begun: Option<Duration>,
    /// The last background snapshot that became durable, for the status report.
    last_snapshot: Option<SnapshotTaken>,
    /// The membership change this replica proposed and has not seen decided: the
    /// configuration, its instance, and the operator waiting for the outcome.
    change: Option<Change>,
    /// The newest epoch whose members' addresses were handed to the driver
    /// ([`Config::addrs`], `Context::add_peer`).
    announced: Option<u64>,
    broken: bool,
}

/// A membership change on its way ([`Rsm::reconfigure`]).
#[derive(Debug, Clone, Hash)]
struct Change {
    config: Config,
    /// The instance it was proposed in here; `None` when it was forwarded to the leader.
    instance: Option<u64>,
    /// When it was proposed or forwarded.
    asked_at: Duration,
    reply_to: Option<NodeId>,
}

/// Runs `ops` in order with `run` (apply, or read) and returns their replies, stopping after
/// a reply that ends the batch ([`StateMachine::ends_batch`]), and at a command whose reply
/// takes the replies' bytes ([`StateMachine::reply_bytes`]) past [`MAX_BATCH_REPLY_BYTES`]:
/// before it if it only reads ([`StateMachine::reads_only`]: dropping its reply leaves the
/// state as if the batch had been only the commands before it), after it otherwise (it was
/// applied, so its reply must reach the client). The first command always counts.
/// Deterministic: every replica stops at the same command. `None` if `run` gave no reply (a
/// read path asked to run a command that is no read).
fn within_budget<S: StateMachine>(
    ops: &[S::Command],
    mut run: impl FnMut(&S::Command) -> Option<S::Reply>,
) -> Option<Vec<S::Reply>> {
    let mut replies = Vec::with_capacity(ops.len());
    let mut used = 0;
    for op in ops {
        let reply = run(op)?;
        let size = S::reply_bytes(&reply);
        let over = !replies.is_empty() && size > 0 && used + size > MAX_BATCH_REPLY_BYTES;
        if over && S::reads_only(op) {
            break;
        }
        used += size;
        let ends = over || S::ends_batch(&reply);
        replies.push(reply);
        if ends {
            break;
        }
    }
    Some(replies)
}

fn io<S: StateMachine>(ctx: &mut dyn Context<MsgOf<S>>) -> Embed<'_, MsgOf<S>, EntryOf<S>> {
    Embed::new(ctx, RsmMsg::Paxos)
}

impl<S: StateMachine> Rsm<S> {
    /// Replica `me` (an index into `peers`), starting from the default state.
    pub fn new(peers: Vec<NodeId>, me: usize, config: PaxosConfig) -> Self {
        Self::with_machine(peers, me, config, S::default())
    }

    /// Replica `me`, starting from `machine` when its storage holds no snapshot (a cluster
    /// parameter such as the shard controller's number of shards). Every replica of a
    /// cluster must be given the same initial state.
    pub fn with_machine(peers: Vec<NodeId>, me: usize, config: PaxosConfig, machine: S) -> Self {
        Self::around(Paxos::new(peers, me, Self::alpha(config)), machine)
    }

    /// Replica `me`, new to a running group whose replicas include `contacts`: it starts as
    /// nothing but a learner in waiting, fetches a snapshot of the group's state (with its
    /// configurations) from a peer once the group has added it, and follows the log from
    /// there. A replica that lost its disk comes back this way, under a new id.
    pub fn joining(contacts: Vec<NodeId>, me: NodeId, config: PaxosConfig) -> Self {
        Self::around(
            Paxos::joining(contacts, me, Self::alpha(config)),
            S::default(),
        )
    }

    /// The α of every replicated state machine: the leader's window, so a leader that
    /// applied up to `next - 1` knows the configuration of every instance it may propose in.
    fn alpha(config: PaxosConfig) -> PaxosConfig {
        PaxosConfig {
            alpha: Some(LEADER_WINDOW as u64),
            ..config
        }
    }

    fn around(paxos: Paxos<EntryOf<S>>, machine: S) -> Self {
        Rsm {
            paxos,
            machine,
            next: 0,
            snapshot_next: 0,
            waiting: BTreeMap::new(),
            reads: Vec::new(),
            internal: Vec::new(),
            next_propose: 0,
            in_flight: BTreeSet::new(),
            campaign_at: Duration::ZERO,
            stuck_since: (0, Duration::ZERO),
            catch_up_asked: None,
            voteless_warned: None,
            snapshot_asked: None,
            receiving: None,
            serving: None,
            snapshot_chunk: limits::SNAPSHOT_CHUNK_BYTES,
            behind_since: None,
            install_failure: None,
            now: Duration::ZERO,
            last_snapshot_bytes: 0,
            snapshot_begun: None,
            last_snapshot: None,
            change: None,
            announced: None,
            broken: false,
        }
    }

    /// The same replica, sending snapshots in chunks of at most `bytes` (default
    /// [`limits::SNAPSHOT_CHUNK_BYTES`]; tests use small ones to cut small states in many).
    pub fn with_snapshot_chunk(mut self, bytes: usize) -> Self {
        assert!(
            (1..=limits::SNAPSHOT_CHUNK_BYTES).contains(&bytes),
            "a snapshot chunk must be 1..={} bytes to fit a frame",
            limits::SNAPSHOT_CHUNK_BYTES
        );
        self.snapshot_chunk = bytes;
        self
    }

    /// The replicated state, as of every applied instance.
    pub fn machine(&self) -> &S {
        &self.machine
    }

    pub fn paxos(&self) -> &Paxos<EntryOf<S>> {
        &self.paxos
    }

    /// The next log instance to apply (every instance below it is applied).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Whether the replica stopped because its storage failed or could not be read.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Proposes an internal command, unless the same one is already on its way.
    pub fn propose(&mut self, ctx: &mut dyn Context<MsgOf<S>>, op: S::Internal) {
        if self.broken || self.internal.iter().any(|(o, _)| *o == op) {
            return;
        }
        let instance = self.free_instance();
        self.in_flight.insert(instance);
        self.internal.push((op.clone(), instance));
        self.paxos
            .start(&mut io::<S>(ctx), instance, Entry::Internal(op));
    }

    /// This replica's role in the configuration of its next instance.
    pub fn role(&self) -> Role {
        Role::of(self.paxos.id(), self.paxos.schedule().entries())
    }

    /// Proposes a membership change to `config`, whose epoch must be the newest one's plus
    /// one; `reply_to` (an operator) hears the outcome ([`RsmMsg::Reconfigured`]) once it is
    /// decided. A follower that knows a live leader forwards the change to it, as it does
    /// client requests (a classic proposal would mostly lose its instance to the leader's
    /// pipeline), and settles it by what its log says. Refused at once if it cannot apply:
    /// a change of this replica's is already on its way, or the newest change is not in
    /// effect yet, or `config` is malformed.
    pub fn reconfigure(
        &mut self,
        ctx: &mut dyn Context<MsgOf<S>>,
        config: Config,
        reply_to: Option<NodeId>,
    ) -> Result<(), ConfigError> {
        let refusal = self.reconfigure_refusal(&config);
        if let Err(why) = refusal {
            if let Some(to) = reply_to {
                ctx.send(
                    to,
                    RsmMsg::Reconfigured {
                        result: Err(why.clone()),
                    },
                );
            }
            return Err(why);
        }
        let now = ctx.now();
        let instance = match self.live_leader(now).filter(|&l| l != ctx.id()) {
            Some(leader) => {
                ctx.send(
                    leader,
                    RsmMsg::Reconfigure {
                        config: config.clone(),
                    },
                );
                None
            }
            None => {
                let instance = self.free_instance();
                self.in_flight.insert(instance);
                self.paxos.start(
                    &mut io::<S>(ctx),
                    instance,
                    Entry::Reconfigure(config.clone()),
                );
                Some(instance)
            }
        };
        tracing::info!(node = %ctx.id(), ?instance, ?config, "proposing a membership change");
        self.change = Some(Change {
            config,
            instance,
            asked_at: now,
            reply_to,
        });
        Ok(())
    }

    /// Why [`reconfigure`](Self::reconfigure) would be refused now, as far as this replica can
    /// tell (the log decides in the end).
    fn reconfigure_refusal(&self, config: &Config) -> Result<(), ConfigError> {
        config.validate()?;
        let Some((from, latest)) = self.paxos.schedule().latest() else {
            return Err(ConfigError::Unknown);
        };
        if self.change.is_some() || from > self.next {
            return Err(ConfigError::ChangeInProgress {
                latest: latest.epoch,
                from,
            });
        }
        if config.epoch != latest.epoch + 1 {
            return Err(ConfigError::StaleEpoch {
                latest: latest.epoch,
                proposed: config.epoch,
            });
        }
        Ok(())
    }

    /// Settles the membership change this replica proposed once the log decided a change
    /// of its epoch: the operator hears whether it was this one. A change whose instance
    /// went to another entry, or whose forward to the leader was not decided within
    /// [`FORWARD_RETRY`], is proposed again.
    fn settle_change(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        let Some(change) = &self.change else {
            return;
        };
        let latest = self
            .paxos
            .schedule()
            .latest()
            .map(|(from, c)| (from, c.clone()));
        let decided = latest
            .as_ref()
            .is_some_and(|(_, c)| c.epoch >= change.config.epoch);
        let lost = match change.instance {
            Some(instance) => instance < self.next,
            None => ctx.now() >= change.asked_at + FORWARD_RETRY,
        };
        if !decided && !lost {
            return;
        }
        let Some(change) = self.change.take() else {
            return;
        };
        if !decided {
            let _ = self.reconfigure(ctx, change.config, change.reply_to);
            return;
        }
        let result = match latest {
            Some((from, config)) if config == change.config => Ok(from),
            Some((_, config)) => Err(ConfigError::StaleEpoch {
                latest: config.epoch,
                proposed: change.config.epoch,
            }),
            None => Err(ConfigError::Unknown),
        };
        tracing::info!(node = %ctx.id(), ?result, "membership change settled");
        if let Some(to) = change.reply_to {
            ctx.send(to, RsmMsg::Reconfigured { result });
        }
    }

    /// What this replica knows about itself.
    pub fn status(&self, id: NodeId) -> StatusReport {
        let configs = self.paxos.schedule().entries().to_vec();
        let peers = configs
            .first()
            .map_or_else(Vec::new, |(_, c)| c.voters.clone());
        StatusReport {
            id,
            index: peers.iter().position(|&p| p == id).unwrap_or(peers.len()),
            peers,
            role: Role::of(self.paxos.id(), &configs),
            configs,
            membership: self.paxos.membership(),
            leader: self.paxos.leading(),
            max: self.paxos.max(),
            applied: self.next.checked_sub(1),
            min: self.paxos.min(),
            durable_bytes: (self.last_snapshot_bytes + self.paxos.log_bytes()) as u64,
            state_bytes: self.machine.state_bytes(),
            broken: self.broken,
            catch_up: self.catch_up(),
            snapshots: SnapshotStatus {
                writing_for_ms: self
                    .snapshot_begun
                    .map(|begun| millis(self.now.saturating_sub(begun))),
                last: self.last_snapshot.clone(),
            },
        }
    }

    /// How far this replica got in fetching a snapshot, if it needs one.
    fn catch_up(&self) -> Option<CatchUp> {
        if let Some(r) = &self.receiving {
            return Some(CatchUp::Receiving {
                from: r.from,
                received: r.received(),
                total: r.id.len,
            });
        }
        if let Some(reason) = &self.install_failure {
            return Some(CatchUp::Failed {
                reason: reason.clone(),
            });
        }
        let since = self.behind_since?;
        Some(CatchUp::Waiting {
            for_ms: millis(self.now.saturating_sub(since)),
        })
    }

    fn recover(&mut self, ctx: &mut dyn Context<MsgOf<S>>) -> Result<(), PaxosError> {
        let recovered = ctx.storage().recover()?;
        let (paxos, next, machine) = match recovered.snapshot {
            Some(bytes) => {
                let format = bytes.get(..4);
                if format != Some(&SNAPSHOT_FORMAT[..]) {
                    return Err(PaxosError::Decode(format!(
                        "the stored snapshot is not of format {SNAPSHOT_FORMAT:?} (found {format:?}): \
                         written by a synod from before membership changes (protocol 8 or \
                         older), whose snapshots this one cannot read"
                    )));
                }
                let d: Durable<PaxosState<EntryOf<S>>, S> =
                    postcard::from_bytes(&bytes).map_err(|e| PaxosError::Decode(e.to_string()))?;
                self.last_snapshot_bytes = bytes.len();
                (Some(d.paxos), d.next, d.machine)
            }
            // Nothing durable yet: the initial state this replica was built with.
            None => (None, 0, std::mem::take(&mut self.machine)),
        };
        self.machine = machine;
        self.machine.reindex();
        self.next = next;
        self.snapshot_next = next;
        self.paxos
            .recover(&mut io::<S>(ctx), paxos, &recovered.records)?;
        if let Some(last) = self.next.checked_sub(1) {
            self.paxos.done(last);
        }
        Ok(())
    }

    fn on_request(
        &mut self,
        ctx: &mut dyn Context<MsgOf<S>>,
        from: NodeId,
        client: u64,
        seq: u64,
        op: Commands<S::Command>,
    ) {
        if matches!(self.role(), Role::Removed | Role::Joining) {
            return ignore(ctx.id(), Ignored::NotServing, from, "Request");
        }
        if let Some(table) = self.machine.sessions(op.first()) {
            if let Some(reply) = table.replied(client, seq) {
                let reply = reply.clone();
                ctx.send(from, RsmMsg::Reply { seq, reply });
                return;
            }
            if table.seen(client, seq) {
                return ignore(ctx.id(), Ignored::InProgress, from, "Request");
            }
            // A read from a client with a session needs no entry. (Without a session it is
            // logged: the table must see a client's first command, or the client's next one
            // would look like a retry after eviction.)
            if table.contains(client) && op.iter().all(|op| self.machine.read(op).is_some()) {
                match self
                    .reads
                    .iter_mut()
                    .find(|r| r.client == client && r.seq == seq)
                {
                    Some(r) => r.from = from,
                    None => self.reads.push(Read {
                        client,
                        seq,
                        op,
                        from,
                        barrier: None,
                    }),
                }
                return;
            }
        }
        match self.waiting.get_mut(&client) {
            // A retry of what we are already proposing: answer wherever it came from last.
            Some(w) if w.seq == seq => w.from = from,
            _ => {
                self.waiting.insert(
                    client,
                    Waiting {
                        seq,
                        op,
                        from,
                        instance: None,
                        forwarded: None,
                    },
                );
            }
        }
    }

    /// Applies one decided entry at instance `at`, adding the client replies it settles
    /// (client, sequence number, reply) to `settled`.
    fn apply(&mut self, at: u64, entry: EntryOf<S>, settled: &mut Vec<(u64, u64, S::Reply)>) {
        let (client, seq, op) = match entry {
            Entry::Noop => return,
            Entry::Internal(op) => return self.machine.apply_internal(at, &op),
            Entry::Reconfigure(config) => {
                // Refused alike by every replica: the refusal depends only on the log.
                if let Err(why) = self.paxos.reconfigure(at, config) {
                    tracing::info!(at, "membership change refused: {why}");
                }
                return;
            }
            Entry::Batch(entries) => {
                for entry in entries {
                    self.apply(at, entry, settled);
                }
                return;
            }
            Entry::Client { client, seq, op } => (client, seq, Commands::One(op)),
            // Refused where it arrived, so only a replica of another build proposes these.
            Entry::Commands { ops, .. } if ops.is_empty() || !S::BATCHES => return,
            Entry::Commands { client, seq, ops } => (client, seq, Commands::Many(ops)),
        };
        let verdict = self
            .machine
            .sessions(op.first())
            .map(|t| t.check(client, seq));
        let reply = match verdict {
            Some(Verdict::Duplicate(reply)) => reply,
            Some(Verdict::Expired) => S::expired(),
            Some(Verdict::New) | None => {
                let reply = match &op {
                    Commands::One(op) => self.machine.apply(at, op),
                    Commands::Many(ops) => {
                        let machine = &mut self.machine;
                        let apply = |op: &S::Command| Some(machine.apply(at, op));
                        let replies = within_budget::<S>(ops, apply);
                        S::batch_reply(replies.unwrap_or_default())
                    }
                };
                if let Some(table) = self.machine.sessions_mut(op.first()) {
                    table.record(client, seq, reply.clone(), at);
                }
                reply
            }
        };
        settled.push((client, seq, reply));
    }

    /// Applies every decided instance in order, answers the clients whose commands were
    /// applied, and (re)proposes the rest. Called after every input.
    fn settle(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        let mut settled = Vec::new();
        // A joining replica applies nothing before it has the group's state: the entries
        // would land on an empty state, under configurations it does not know.
        let known = !self.paxos.schedule().is_empty();
        while let (true, Fate::Decided(entry)) = (known, self.paxos.status(self.next)) {
            let entry = entry.clone();
            let at = self.next;
            self.next += 1;
            self.apply(at, entry, &mut settled);
            for (client, seq, reply) in settled.drain(..) {
                if let Some(w) = self.waiting.remove(&client) {
                    if w.seq == seq {
                        ctx.send(w.from, RsmMsg::Reply { seq, reply });
                    } else {
                        self.waiting.insert(client, w);
                    }
                }
            }
            self.paxos.done(at);
        }
        // An internal command whose instance went to another entry is dropped: the embedder
        // proposes it again if it is still needed (it may have been applied elsewhere).
        let next = self.next;
        self.internal.retain(|(_, instance)| *instance >= next);
        let machine = &self.machine;
        self.waiting.retain(|&client, w| {
            let Some(table) = machine.sessions(w.op.first()) else {
                return true;
            };
            if let Some(reply) = table.replied(client, w.seq) {
                let reply = reply.clone();
                ctx.send(w.from, RsmMsg::Reply { seq: w.seq, reply });
            }
            !table.seen(client, w.seq)
        });
        self.in_flight = self.in_flight.split_off(&next);
        self.announce_addresses(ctx);
        self.settle_change(ctx);
        self.answer_reads(ctx);
        self.propose_waiting(ctx);
        self.compact(ctx);
        self.check_invariants();
    }

    /// Tells the driver the address of every member that joined through a change, once per
    /// newest epoch: after a change is applied here, a snapshot installed, or a restart.
    fn announce_addresses(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        let Some((_, latest)) = self.paxos.schedule().latest() else {
            return;
        };
        if self.announced == Some(latest.epoch) {
            return;
        }
        self.announced = Some(latest.epoch);
        for (_, config) in self.paxos.schedule().entries() {
            for (&id, addr) in &config.addrs {
                if id != ctx.id() {
                    tracing::info!(node = %ctx.id(), peer = %id, addr, "a member's address");
                    ctx.add_peer(id, addr);
                }
            }
        }
    }

    /// What holds after every input, checked where a bug would first show.
    fn check_invariants(&self) {
        // Applied <= decided: what this replica applied from its log was decided here (or
        // forgotten since, by every peer, after being applied everywhere).
        if let Some(applied) = self
            .next
            .checked_sub(1)
            .filter(|&a| a >= self.snapshot_next)
        {
            assert!(
                !matches!(self.paxos.status(applied), Fate::Pending),
                "applied instance {applied} is not decided"
            );
        }
        // The window: client batches stay within it; internal commands may add to it.
        let own = self.internal.len() + usize::from(self.change.is_some());
        assert!(
            self.in_flight.len() <= LEADER_WINDOW + own,
            "{} instances in flight, window {LEADER_WINDOW} + {own} internal or changes",
            self.in_flight.len(),
        );
        // One change at a time: the newest configuration's epoch is one more than the one
        // before it, and at most one change is decided and not yet in effect.
        let configs = self.paxos.schedule().entries();
        assert!(configs.windows(2).all(|w| w[1].1.epoch == w[0].1.epoch + 1));
        assert!(
            configs.len() <= 2 || configs[configs.len() - 2].0 <= self.next,
            "two changes pending at once: {configs:?}"
        );
        debug_assert!(self.in_flight.iter().all(|&i| i >= self.next));
        debug_assert!(self.internal.iter().all(|&(_, i)| i >= self.next));
        debug_assert!(self.next_propose >= self.in_flight.last().map_or(0, |&i| i + 1));
    }

    /// Starts one barrier for every read that has none, unless a barrier is still waiting
    /// for its majority, and answers the reads whose barrier completed and whose index is
    /// applied.
    ///
    /// One barrier at a time: a read that arrives while one is on its way cannot use it (it
    /// began before the read arrived, so a write acknowledged in between might be above its
    /// index), so it waits for the next, which then serves every read that arrived
    /// meanwhile. Under many concurrent reads this costs a read at most one more round trip
    /// and saves a round of messages to every peer per batch of requests, which is what
    /// bounds reads on a machine whose cores are busy. A barrier that a read waits for is
    /// always open in Paxos (it is ended only once no read refers to it, and Paxos starts
    /// a life with no reads), and an open barrier completes once a majority answers (it
    /// asks again every `BARRIER_RETRY`), so waiting for it cannot stall reads forever.
    fn answer_reads(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        let barrier_waiting = self
            .reads
            .iter()
            .filter_map(|r| r.barrier)
            .any(|id| self.paxos.barrier(id).is_none());
        if !barrier_waiting && self.reads.iter().any(|r| r.barrier.is_none()) {
            let id = self.paxos.read_barrier(&mut io::<S>(ctx));
            for r in self.reads.iter_mut().filter(|r| r.barrier.is_none()) {
                r.barrier = Some(id);
            }
        }
        let (paxos, machine, next) = (&self.paxos, &self.machine, self.next);
        let mut finished = Vec::new();
        self.reads.retain(|r| {
            let Some(id) = r.barrier else {
                return true;
            };
            let ready = paxos
                .barrier(id)
                .is_some_and(|index| index.is_none_or(|i| i < next));
            if !ready {
                return true;
            }
            let reply = match &r.op {
                Commands::One(op) => machine.read(op),
                Commands::Many(ops) => {
                    within_budget::<S>(ops, |op| machine.read(op)).map(S::batch_reply)
                }
            };
            if let Some(reply) = reply {
                ctx.send(r.from, RsmMsg::Reply { seq: r.seq, reply });
            }
            finished.push(id);
            false
        });
        for id in finished {
            if !self.reads.iter().any(|r| r.barrier == Some(id)) {
                self.paxos.end_barrier(id);
            }
        }
    }

    /// The next instance nobody is known to use, and reserves it.
    fn free_instance(&mut self) -> u64 {
        let next_free = self.paxos.max().map_or(0, |m| m + 1);
        let instance = self.next_propose.max(self.next).max(next_free);
        self.next_propose = instance + 1;
        instance
    }

    /// Proposes the waiting commands that are in no live instance (new ones, and those whose
    /// instance went to another entry), in batches, while the window has room.
    fn propose_waiting(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        let next = self.next;
        let now = ctx.now();
        let leader = self.live_leader(now);
        let mut ready = self
            .waiting
            .iter()
            .filter(|(_, w)| w.instance.is_none_or(|i| i < next))
            .filter(|(_, w)| w.forwarded.is_none_or(|at| now >= at + FORWARD_RETRY))
            .map(|(&c, _)| c)
            .peekable();
        if let Some(leader) = leader.filter(|&l| l != ctx.id()) {
            let clients: Vec<u64> = ready.collect();
            for client in clients {
                let Some(w) = self.waiting.get_mut(&client) else {
                    continue;
                };
                w.forwarded = Some(now);
                ctx.send(leader, w.op.request(client, w.seq));
            }
            return;
        }
        // Only voters propose client commands: a learner forwards them to the leader, and
        // keeps them waiting while it knows none.
        if self.role() != Role::Voter && self.role() != Role::Leaving {
            return;
        }
        let window = if self.paxos.leading() {
            LEADER_WINDOW
        } else {
            WINDOW
        };
        let mut batches = Vec::new();
        while ready.peek().is_some() && self.in_flight.len() + batches.len() < window {
            let (mut batch, mut bytes) = (Vec::new(), 0);
            while let Some(&client) = ready.peek() {
                let size: usize = self.waiting[&client]
                    .op
                    .iter()
                    .map(|op| postcard::experimental::serialized_size(op).unwrap_or(0))
                    .sum();
                if !batch.is_empty() && (batch.len() == MAX_BATCH || bytes + size > MAX_BATCH_BYTES)
                {
                    break;
                }
                bytes += size;
                batch.push(client);
                ready.next();
            }
            batches.push(batch);
        }
        for clients in batches {
            let instance = self.free_instance();
            self.in_flight.insert(instance);
            let mut entries = Vec::with_capacity(clients.len());
            for client in clients {
                let Some(w) = self.waiting.get_mut(&client) else {
                    continue;
                };
                w.instance = Some(instance);
                entries.push(w.op.entry(client, w.seq));
            }
            let entry = match entries.len() {
                1 => entries.remove(0),
                _ => Entry::Batch(entries),
            };
            self.paxos.start(&mut io::<S>(ctx), instance, entry);
        }
        if self.paxos.leading() {
            self.fill_to_change(ctx, window);
        }
    }

    /// A decided membership change takes effect only once the log reaches the instance it
    /// governs from: without client traffic it would wait forever (and with it every later
    /// change), so the leader fills the instances up to there with no-ops.
    fn fill_to_change(&mut self, ctx: &mut dyn Context<MsgOf<S>>, window: usize) {
        let Some((from, _)) = self.paxos.schedule().latest() else {
            return;
        };
        while self.in_flight.len() < window {
            let next_free = self.paxos.max().map_or(0, |m| m + 1);
            if self.next_propose.max(self.next).max(next_free) >= from {
                break;
            }
            let instance = self.free_instance();
            self.in_flight.insert(instance);
            self.paxos.start(&mut io::<S>(ctx), instance, Entry::Noop);
        }
    }

    /// The leader, if one was heard from within [`ELECTION_TIMEOUT`]: where this replica
    /// forwards the client commands it is sent.
    pub fn live_leader(&self, now: Duration) -> Option<NodeId> {
        let (leader, heard) = self.paxos.leader(now)?;
        (now < heard + ELECTION_TIMEOUT).then_some(leader)
    }

    /// Campaigns for leadership when no live leader is known and the randomized timer ran
    /// out (random so that replicas rarely campaign at once).
    fn elect(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        let now = ctx.now();
        if self.live_leader(now).is_some() {
            self.campaign_at = self.campaign_at.max(now + self.election_jitter(ctx));
            return;
        }
        if now < self.campaign_at {
            return;
        }
        self.campaign_at = now + ELECTION_TIMEOUT + self.election_jitter(ctx);
        self.paxos.campaign(&mut io::<S>(ctx), self.next);
    }

    fn election_jitter(&self, ctx: &mut dyn Context<MsgOf<S>>) -> Duration {
        let max = ELECTION_TIMEOUT.as_micros() as u64;
        Duration::from_micros(ctx.rng().gen_range(0..=max))
    }

    fn tick(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        self.poll_snapshot(ctx);
        self.paxos.tick(&mut io::<S>(ctx));
        self.elect(ctx);
        let now = ctx.now();
        self.now = now;
        if self
            .serving
            .as_ref()
            .is_some_and(|s| now >= s.last_asked + SERVING_IDLE)
        {
            self.serving = None;
        }
        if let Some(peer) = self.paxos.take_lagging() {
            self.ask_snapshot(ctx, Some(peer));
        }
        let forgotten = matches!(self.paxos.status(self.next), Fate::Forgotten);
        if forgotten && self.behind_since.is_none() {
            self.behind_since = Some(now);
            tracing::warn!(
                node = %ctx.id(), next = self.next,
                "behind: the peers forgot instances this replica needs; fetching a snapshot"
            );
        } else if !forgotten && self.receiving.is_none() {
            self.behind_since = None;
        }
        // A joining replica has no state to follow the log from: it needs a peer's.
        let joining = self.paxos.schedule().is_empty();
        if forgotten || joining || self.receiving.is_some() {
            self.ask_snapshot(ctx, None);
        }
        match self.paxos.status(self.next) {
            Fate::Forgotten => {}
            Fate::Pending => {
                if self.stuck_since.0 != self.next {
                    self.stuck_since = (self.next, now);
                }
                // `>=`: a follower that forwarded its requests and missed the decision of
                // the last instance has no later one to notice, and must still learn it.
                let known = self.paxos.max().is_some_and(|m| m >= self.next);
                // Behind with nothing else to learn from (no client traffic): ask a peer for
                // the decisions in bulk, again every CATCH_UP_PATIENCE while no progress is
                // made, so k instances behind costs about k / LEARN_BATCH round trips.
                let waited = now.saturating_sub(self.stuck_since.1);
                let asked = self.catch_up_asked.is_some_and(|(at_next, at)| {
                    at_next == self.next && now < at + CATCH_UP_PATIENCE
                });
                if known && waited >= CATCH_UP_PATIENCE && !asked {
                    self.catch_up_asked = Some((self.next, now));
                    self.paxos.catch_up(&mut io::<S>(ctx), self.next);
                }
                self.warn_if_voteless(ctx, waited);
                let voter = matches!(self.role(), Role::Voter | Role::Leaving);
                if voter && known && now >= self.stuck_since.1 + HOLE_PATIENCE {
                    // Learns what was decided there, or fills the hole; a no-op if this
                    // replica already proposes in it.
                    self.paxos.start(&mut io::<S>(ctx), self.next, Entry::Noop);
                }
            }
            Fate::Decided(_) => {}
        }
    }

    /// Says once, in the log, when the instance this replica waits on has stayed undecided
    /// for [`VOTELESS_WARNING`] and this replica may not vote in it (it lost its disk and
    /// votes only above its rejoin horizon, or is still rejoining): progress then needs a
    /// majority of the *others*, and `synod status` tells whether one is left.
    fn warn_if_voteless(&mut self, ctx: &mut dyn Context<MsgOf<S>>, waited: Duration) {
        let may_vote = match self.paxos.membership() {
            Membership::Rejoining => false,
            Membership::Voting { horizon } => horizon.is_none_or(|h| self.next > h),
        };
        if may_vote || waited < VOTELESS_WARNING || self.voteless_warned == Some(self.next) {
            return;
        }
        self.voteless_warned = Some(self.next);
        tracing::warn!(
            node = %ctx.id(), instance = self.next, membership = ?self.paxos.membership(),
            "instance undecided for {waited:?}: this replica lost its disk and may not vote \
             in it, so it needs a majority of the other replicas (synod status says whether \
             one is left)"
        );
    }

    fn random_peer(&self, ctx: &mut dyn Context<MsgOf<S>>) -> NodeId {
        let me = ctx.id();
        let others: Vec<NodeId> = self
            .paxos
            .members()
            .into_iter()
            .filter(|&p| p != me)
            .collect();
        if others.is_empty() {
            return me;
        }
        others[ctx.rng().gen_range(0..others.len())]
    }

    /// Asks for the next snapshot chunk, unless a request is already on its way: from the
    /// peer sending the snapshot being received (until it stalls), else from `preferred`,
    /// else from a random peer.
    fn ask_snapshot(&mut self, ctx: &mut dyn Context<MsgOf<S>>, preferred: Option<NodeId>) {
        let now = ctx.now();
        if self
            .snapshot_asked
            .is_some_and(|at| now < at + SNAPSHOT_RETRY)
        {
            return;
        }
        if let Some(r) = self
            .receiving
            .as_mut()
            .filter(|_| self.snapshot_asked.is_some())
        {
            r.stalls += 1;
            if r.stalls > MAX_STALLS {
                tracing::info!(
                    node = %ctx.id(), from = %r.from, received = r.received(),
                    "snapshot transfer stalled; asking another peer"
                );
                self.receiving = None;
            }
        }
        let peer = match &self.receiving {
            Some(r) => r.from,
            None => preferred.unwrap_or_else(|| self.random_peer(ctx)),
        };
        self.request_chunk(ctx, peer);
    }

    /// Asks `peer` for the chunk that comes next in the snapshot being received (or for the
    /// start of its current snapshot).
    fn request_chunk(&mut self, ctx: &mut dyn Context<MsgOf<S>>, peer: NodeId) {
        self.snapshot_asked = Some(ctx.now());
        let resume = self.receiving.as_ref().map(|r| (r.id, r.received()));
        let next = self.next;
        ctx.send(peer, RsmMsg::SnapshotRequest { next, resume });
    }

    /// Answers a peer that is behind with one chunk of this replica's serialized state,
    /// serializing it only when no copy it can use is kept.
    fn serve_snapshot(
        &mut self,
        ctx: &mut dyn Context<MsgOf<S>>,
        from: NodeId,
        next: u64,
        resume: Option<(SnapshotId, u64)>,
    ) {
        let now = ctx.now();
        if self.serving.as_ref().is_none_or(|s| s.id.next <= next) {
            // The configurations travel with the state: the receiver needs them to act in
            // the instances from `self.next` on.
            match postcard::to_allocvec(&(self.paxos.schedule(), &self.machine)) {
                Ok(bytes) => self.serving = Some(Serving::new(self.next, bytes, now)),
                Err(e) => return tracing::error!(node = %ctx.id(), "cannot encode state: {e}"),
            }
        }
        let Some(serving) = self.serving.as_mut() else {
            return;
        };
        serving.last_asked = now;
        let offset = resume
            .filter(|(id, _)| *id == serving.id)
            .map_or(0, |(_, offset)| offset);
        let (offset, data) = serving.chunk(offset, self.snapshot_chunk);
        let id = serving.id;
        ctx.send(from, RsmMsg::SnapshotChunk { id, offset, data });
    }

    /// Takes a chunk of a snapshot; installs the snapshot once it is complete.
    fn on_chunk(
        &mut self,
        ctx: &mut dyn Context<MsgOf<S>>,
        from: NodeId,
        id: SnapshotId,
        offset: u64,
        data: &[u8],
    ) {
        if id.next <= self.next {
            return ignore(ctx.id(), Ignored::StaleSnapshot, from, "SnapshotChunk");
        }
        match Receiving::accept(&mut self.receiving, from, id, offset, data) {
            Chunk::Progress => self.request_chunk(ctx, from),
            Chunk::Complete(bytes) => self.install(ctx, from, id.next, &bytes),
            Chunk::Ignored => ignore(ctx.id(), Ignored::UnexpectedChunk, from, "SnapshotChunk"),
            Chunk::Corrupt => {
                let reason =
                    format!("the snapshot from {from} does not match its length or checksum");
                tracing::warn!(node = %ctx.id(), "{reason}; asking again");
                self.install_failure = Some(reason);
                self.snapshot_asked = None;
            }
        }
        debug_assert!(self
            .receiving
            .as_ref()
            .is_none_or(|r| r.received() < r.id.len));
    }

    fn install(&mut self, ctx: &mut dyn Context<MsgOf<S>>, from: NodeId, next: u64, bytes: &[u8]) {
        let Ok((schedule, mut machine)) = postcard::from_bytes::<(Schedule, S)>(bytes) else {
            let reason =
                format!("the snapshot from {from} does not decode as this service's state");
            tracing::warn!(node = %ctx.id(), "{reason}; asking again");
            self.install_failure = Some(reason);
            self.snapshot_asked = None;
            return ignore(ctx.id(), Ignored::Undecodable, from, "Snapshot");
        };
        machine.reindex();
        tracing::info!(
            node = %ctx.id(), %from, next, bytes = bytes.len(),
            "installed a snapshot from a peer"
        );
        self.machine = machine;
        self.next = next;
        self.snapshot_next = next;
        self.behind_since = None;
        self.install_failure = None;
        self.snapshot_asked = None;
        self.paxos.install_schedule(schedule);
        self.paxos.done(next - 1);
        self.write_snapshot(ctx);
    }

    /// Begins a background snapshot once the log is due for compaction (see
    /// [`COMPACT_RECORDS`] and [`COMPACT_BYTES`]) and none is being written. The apply path
    /// pays for a Paxos checkpoint and a clone of the state; storage serializes and writes
    /// them elsewhere and cuts the log only once they are durable ([`Self::poll_snapshot`]).
    fn compact(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        let snapshot = self.last_snapshot_bytes;
        let records = COMPACT_RECORDS * (1 + snapshot / COMPACT_BYTES);
        let bytes = COMPACT_BYTES + snapshot / 2;
        let due = self.paxos.log_records() >= records || self.paxos.log_bytes() > bytes;
        if self.snapshot_begun.is_some() || !due {
            return;
        }
        let begun = ctx.now();
        let durable = self.durable();
        let job = Box::new(move |out: &mut dyn std::io::Write| {
            postcard::to_io(&durable, out)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        match ctx.storage().begin_snapshot(job) {
            Ok(SnapshotProgress::Installed { bytes }) => {
                self.snapshot_written(bytes, begun, ctx.now())
            }
            Ok(SnapshotProgress::Writing) => self.snapshot_begun = Some(begun),
            Ok(SnapshotProgress::Idle) => {
                unreachable!("storage reported no snapshot right after beginning one")
            }
            Err(why) => self.fail_snapshot(ctx, &why.to_string()),
        }
    }

    /// Learns whether the background snapshot is durable (and the log cut).
    fn poll_snapshot(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        let Some(begun) = self.snapshot_begun else {
            return;
        };
        match ctx.storage().poll_snapshot() {
            Ok(SnapshotProgress::Writing) => {}
            Ok(SnapshotProgress::Installed { bytes }) => {
                self.snapshot_begun = None;
                self.snapshot_written(bytes, begun, ctx.now());
            }
            // Nothing being written any more (it was abandoned): the log still holds every
            // record, so the next compaction simply tries again.
            Ok(SnapshotProgress::Idle) => self.snapshot_begun = None,
            Err(why) => self.fail_snapshot(ctx, &why.to_string()),
        }
    }

    /// Records a background snapshot of `bytes` begun at `begun` and durable at `now`.
    fn snapshot_written(&mut self, bytes: usize, begun: Duration, now: Duration) {
        self.last_snapshot_bytes = bytes;
        self.last_snapshot = Some(SnapshotTaken {
            bytes: bytes as u64,
            millis: millis(now.saturating_sub(begun)),
        });
    }

    /// The state to snapshot: a Paxos checkpoint (which restarts the log's counts) and a
    /// clone of the state machine, as of every instance below `next`.
    fn durable(&mut self) -> Durable<PaxosState<EntryOf<S>>, S> {
        Durable {
            format: SNAPSHOT_FORMAT,
            paxos: self.paxos.checkpoint(),
            next: self.next,
            machine: self.machine.clone(),
        }
    }

    /// Installs a snapshot synchronously (after a transfer from a peer, whose state replaces
    /// this replica's): storage abandons a background snapshot being written.
    fn write_snapshot(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        self.snapshot_begun = None;
        let durable = self.durable();
        let result = postcard::to_allocvec(&durable)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.last_snapshot_bytes = bytes.len();
                ctx.storage()
                    .install_snapshot(&bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(why) = result {
            self.fail_snapshot(ctx, &why);
        }
    }

    fn fail_snapshot(&mut self, ctx: &mut dyn Context<MsgOf<S>>, why: &str) {
        self.broken = true;
        tracing::error!(node = %ctx.id(), "cannot write snapshot, not serving: {why}");
    }
}

impl<S: StateMachine> Node for Rsm<S> {
    type Msg = MsgOf<S>;

    fn on_start(&mut self, ctx: &mut dyn Context<MsgOf<S>>) {
        if let Err(why) = self.recover(ctx) {
            self.broken = true;
            tracing::error!(node = %ctx.id(), "cannot recover, not serving: {why}");
            return;
        }
        self.campaign_at = ctx.now() + self.election_jitter(ctx);
        self.settle(ctx);
        ctx.set_timer(TICK, TIMER);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<MsgOf<S>>, from: NodeId, msg: MsgOf<S>) {
        if let RsmMsg::StatusQuery = msg {
            // Answered even by a broken replica: that is exactly what an operator wants to see.
            ctx.send(from, RsmMsg::Status(self.status(ctx.id())));
            return;
        }
        if self.broken {
            return ignore(ctx.id(), Ignored::Broken, from, "message");
        }
        let from_peer = self.paxos.is_member(from);
        match msg {
            RsmMsg::Paxos(m) => self.paxos.handle(&mut io::<S>(ctx), from, m),
            RsmMsg::Request { client, seq, op } => {
                self.on_request(ctx, from, client, seq, Commands::One(op))
            }
            RsmMsg::Batch { .. } if !S::BATCHES => {
                ignore(ctx.id(), Ignored::NoBatches, from, "Batch")
            }
            RsmMsg::Batch { ops, .. } if ops.is_empty() || ops.len() > MAX_BATCH_COMMANDS => {
                ignore(ctx.id(), Ignored::BatchSize, from, "Batch")
            }
            RsmMsg::Batch { client, seq, ops } => {
                self.on_request(ctx, from, client, seq, Commands::Many(ops))
            }
            RsmMsg::SnapshotRequest { next, resume } if from_peer && self.next > next => {
                self.serve_snapshot(ctx, from, next, resume)
            }
            RsmMsg::SnapshotChunk { id, offset, data } if from_peer => {
                self.on_chunk(ctx, from, id, offset, &data)
            }
            RsmMsg::SnapshotRequest { .. } if from_peer => {
                ignore(ctx.id(), Ignored::NotBehind, from, "SnapshotRequest")
            }
            RsmMsg::SnapshotRequest { .. } | RsmMsg::SnapshotChunk { .. } => {
                ignore(ctx.id(), Ignored::NotAPeer, from, "snapshot")
            }
            RsmMsg::Reconfigure { config } => {
                // Refused at once or answered when decided: `reconfigure` replies either way.
                // A peer forwarding its operator's change settles it from its own log.
                let reply_to = (!from_peer).then_some(from);
                let _ = self.reconfigure(ctx, config, reply_to);
            }
            RsmMsg::Reply { .. }
            | RsmMsg::Reconfigured { .. }
            | RsmMsg::StatusQuery
            | RsmMsg::Status(_) => {
                ignore(ctx.id(), Ignored::NotForReplicas, from, "client message")
            }
        }
        self.broken |= self.paxos.failure().is_some();
        if !self.broken {
            self.settle(ctx);
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<MsgOf<S>>, token: TimerToken) {
        if self.broken || token != TIMER {
            return;
        }
        self.tick(ctx);
        self.broken |= self.paxos.failure().is_some();
        if !self.broken {
            self.settle(ctx);
            ctx.set_timer(TICK, TIMER);
        }
    }
}

/// Whole milliseconds of `d`, for status reports.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
