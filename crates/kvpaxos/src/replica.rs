//! The KV replica: a node that embeds a Paxos peer, turns client requests into log entries,
//! applies the decided log in order and answers clients once their operation is applied.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_paxos::{Embed, Fate, Paxos, PaxosConfig, PaxosError, PaxosState};

use crate::state::KvState;
use crate::{KvMsg, KvOp, Op};

/// How often the replica drives Paxos retries and looks for holes in its log.
pub const TICK: Duration = Duration::from_millis(10);

/// How long the next instance to apply may stay undecided, while later ones exist, before
/// the replica proposes a no-op there to learn or fill it.
const HOLE_PATIENCE: Duration = Duration::from_millis(100);

/// Minimum time between two snapshot requests.
const SNAPSHOT_RETRY: Duration = Duration::from_millis(200);

/// Compact the log once it holds this many records...
const COMPACT_RECORDS: usize = 1000;
/// ...or more bytes than this plus twice the last snapshot (so compaction costs amortize).
const COMPACT_BYTES: usize = 1 << 20;

/// The snapshot: the KV state next to the Paxos state. Every log record is a Paxos record.
#[derive(Serialize)]
struct DurableRef<'a> {
    paxos: &'a PaxosState<Op>,
    kv: &'a KvState,
}

#[derive(Deserialize)]
struct Durable {
    paxos: PaxosState<Op>,
    kv: KvState,
}

/// A client request this replica has taken on and not yet answered.
#[derive(Debug)]
struct Waiting {
    seq: u64,
    op: KvOp,
    from: NodeId,
    /// The instance it was last proposed in.
    instance: Option<u64>,
}

/// One replica of the store.
#[derive(Debug)]
pub struct KvReplica {
    peers: Vec<NodeId>,
    paxos: Paxos<Op>,
    kv: KvState,
    /// Requests waiting for their operation to be applied, by client.
    waiting: BTreeMap<u64, Waiting>,
    /// Lowest instance this replica may propose a new operation in.
    next_propose: u64,
    /// Since when the instance `kv.next` has been waited for.
    stuck_since: (u64, Duration),
    snapshot_asked: Option<Duration>,
    last_snapshot_bytes: usize,
    broken: bool,
}

fn io<'a>(ctx: &'a mut dyn Context<KvMsg>) -> Embed<'a, KvMsg, Op> {
    Embed::new(ctx, KvMsg::Paxos)
}

impl KvReplica {
    /// Replica `me` (an index into `peers`).
    pub fn new(peers: Vec<NodeId>, me: usize, config: PaxosConfig) -> Self {
        KvReplica {
            paxos: Paxos::new(peers.clone(), me, config),
            peers,
            kv: KvState::default(),
            waiting: BTreeMap::new(),
            next_propose: 0,
            stuck_since: (0, Duration::ZERO),
            snapshot_asked: None,
            last_snapshot_bytes: 0,
            broken: false,
        }
    }

    pub fn kv(&self) -> &KvState {
        &self.kv
    }

    pub fn paxos(&self) -> &Paxos<Op> {
        &self.paxos
    }

    /// Whether the replica stopped because its storage failed or could not be read.
    pub fn broken(&self) -> bool {
        self.broken
    }

    fn recover(&mut self, ctx: &mut dyn Context<KvMsg>) -> Result<(), PaxosError> {
        let recovered = ctx.storage().recover()?;
        let (paxos, kv) = match recovered.snapshot {
            Some(bytes) => {
                let d: Durable =
                    postcard::from_bytes(&bytes).map_err(|e| PaxosError::Decode(e.to_string()))?;
                self.last_snapshot_bytes = bytes.len();
                (Some(d.paxos), d.kv)
            }
            None => (None, KvState::default()),
        };
        self.kv = kv;
        self.kv.reindex();
        self.paxos
            .recover(&mut io(ctx), paxos, &recovered.records)?;
        if let Some(last) = self.kv.next.checked_sub(1) {
            self.paxos.done(last);
        }
        Ok(())
    }

    fn on_request(
        &mut self,
        ctx: &mut dyn Context<KvMsg>,
        from: NodeId,
        client: u64,
        seq: u64,
        op: KvOp,
    ) {
        if let Some(reply) = self.kv.replied(client, seq) {
            let reply = reply.clone();
            ctx.send(from, KvMsg::Reply { seq, reply });
            return;
        }
        if self.kv.seen(client, seq) {
            return;
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
                    },
                );
            }
        }
    }

    /// Applies every decided instance in order, answers the clients whose operations were
    /// applied, and (re)proposes the rest. Called after every input.
    fn settle(&mut self, ctx: &mut dyn Context<KvMsg>) {
        while let Fate::Decided(op) = self.paxos.status(self.kv.next) {
            let op = op.clone();
            if let Some((client, seq, reply)) = self.kv.apply(&op) {
                if let Some(w) = self.waiting.remove(&client) {
                    if w.seq == seq {
                        ctx.send(w.from, KvMsg::Reply { seq, reply });
                    } else {
                        self.waiting.insert(client, w);
                    }
                }
            }
            self.paxos.done(self.kv.next - 1);
        }
        let kv = &self.kv;
        self.waiting.retain(|&client, w| {
            if let Some(reply) = kv.replied(client, w.seq) {
                ctx.send(
                    w.from,
                    KvMsg::Reply {
                        seq: w.seq,
                        reply: reply.clone(),
                    },
                );
            }
            !kv.seen(client, w.seq)
        });
        let stale: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.instance.is_none_or(|i| i < self.kv.next))
            .map(|(&c, _)| c)
            .collect();
        for client in stale {
            self.propose(ctx, client);
        }
        self.compact(ctx);
    }

    /// Proposes a waiting client's operation in the next instance nobody is known to use.
    fn propose(&mut self, ctx: &mut dyn Context<KvMsg>, client: u64) {
        let next_free = self.paxos.max().map_or(0, |m| m + 1);
        let instance = self.next_propose.max(self.kv.next).max(next_free);
        let Some(w) = self.waiting.get_mut(&client) else {
            return;
        };
        w.instance = Some(instance);
        self.next_propose = instance + 1;
        let op = Op::Client {
            client,
            seq: w.seq,
            op: w.op.clone(),
        };
        self.paxos.start(&mut io(ctx), instance, op);
    }

    fn tick(&mut self, ctx: &mut dyn Context<KvMsg>) {
        self.paxos.tick(&mut io(ctx));
        let now = ctx.now();
        if let Some(peer) = self.paxos.take_lagging() {
            self.ask_snapshot(ctx, peer);
        }
        match self.paxos.status(self.kv.next) {
            Fate::Forgotten => {
                let peer = self.random_peer(ctx);
                self.ask_snapshot(ctx, peer);
            }
            Fate::Pending => {
                if self.stuck_since.0 != self.kv.next {
                    self.stuck_since = (self.kv.next, now);
                }
                let later_exists = self.paxos.max().is_some_and(|m| m > self.kv.next);
                if later_exists && now >= self.stuck_since.1 + HOLE_PATIENCE {
                    // Learns what was decided there, or fills the hole; a no-op if this
                    // replica already proposes in it.
                    self.paxos.start(&mut io(ctx), self.kv.next, Op::Noop);
                }
            }
            Fate::Decided(_) => {}
        }
    }

    fn random_peer(&self, ctx: &mut dyn Context<KvMsg>) -> NodeId {
        let me = ctx.id();
        let others: Vec<NodeId> = self.peers.iter().copied().filter(|&p| p != me).collect();
        if others.is_empty() {
            return me;
        }
        others[ctx.rng().gen_range(0..others.len())]
    }

    fn ask_snapshot(&mut self, ctx: &mut dyn Context<KvMsg>, peer: NodeId) {
        let now = ctx.now();
        if self
            .snapshot_asked
            .is_some_and(|at| now < at + SNAPSHOT_RETRY)
        {
            return;
        }
        self.snapshot_asked = Some(now);
        ctx.send(peer, KvMsg::SnapshotRequest { next: self.kv.next });
    }

    fn install(&mut self, ctx: &mut dyn Context<KvMsg>, next: u64, bytes: &[u8]) {
        if next <= self.kv.next {
            return;
        }
        let Ok(mut state) = postcard::from_bytes::<KvState>(bytes) else {
            tracing::warn!(node = %ctx.id(), "undecodable snapshot from a peer, ignored");
            return;
        };
        if state.next != next {
            return;
        }
        state.reindex();
        self.kv = state;
        self.paxos.done(next - 1);
        self.write_snapshot(ctx);
    }

    fn compact(&mut self, ctx: &mut dyn Context<KvMsg>) {
        let limit = COMPACT_BYTES + 2 * self.last_snapshot_bytes;
        if self.paxos.log_records() >= COMPACT_RECORDS || self.paxos.log_bytes() > limit {
            self.write_snapshot(ctx);
        }
    }

    fn write_snapshot(&mut self, ctx: &mut dyn Context<KvMsg>) {
        let paxos = self.paxos.checkpoint();
        let durable = DurableRef {
            paxos: &paxos,
            kv: &self.kv,
        };
        let result = postcard::to_allocvec(&durable)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.last_snapshot_bytes = bytes.len();
                ctx.storage()
                    .install_snapshot(&bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(why) = result {
            self.broken = true;
            tracing::error!(node = %ctx.id(), "cannot write snapshot, not serving: {why}");
        }
    }
}

impl Node for KvReplica {
    type Msg = KvMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<KvMsg>) {
        if let Err(why) = self.recover(ctx) {
            self.broken = true;
            tracing::error!(node = %ctx.id(), "cannot recover, not serving: {why}");
            return;
        }
        self.settle(ctx);
        ctx.set_timer(TICK, 0);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<KvMsg>, from: NodeId, msg: KvMsg) {
        if self.broken {
            return;
        }
        let from_peer = self.peers.contains(&from);
        match msg {
            KvMsg::Paxos(m) => self.paxos.handle(&mut io(ctx), from, m),
            KvMsg::Request { client, seq, op } => self.on_request(ctx, from, client, seq, op),
            KvMsg::SnapshotRequest { next } if from_peer && self.kv.next > next => {
                match postcard::to_allocvec(&self.kv) {
                    Ok(state) => ctx.send(
                        from,
                        KvMsg::Snapshot {
                            next: self.kv.next,
                            state,
                        },
                    ),
                    Err(e) => tracing::error!(node = %ctx.id(), "cannot encode state: {e}"),
                }
            }
            KvMsg::Snapshot { next, state } if from_peer => self.install(ctx, next, &state),
            KvMsg::SnapshotRequest { .. } | KvMsg::Snapshot { .. } | KvMsg::Reply { .. } => {}
        }
        self.broken |= self.paxos.failure().is_some();
        if !self.broken {
            self.settle(ctx);
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<KvMsg>, _token: TimerToken) {
        if self.broken {
            return;
        }
        self.tick(ctx);
        self.broken |= self.paxos.failure().is_some();
        if !self.broken {
            self.settle(ctx);
            ctx.set_timer(TICK, 0);
        }
    }
}
