//! The KV replica: a replicated state machine ([`synod_rsm::Rsm`]) over [`KvState`], and
//! the edge where requests are refused before anything is proposed: those above the size
//! policy, and writes that would take the store past `--max-memory`.
//!
//! Refusing at the edge, before proposing, keeps replicas identical whatever their flags:
//! a refused write is in no log entry, and a write that was proposed is applied by every
//! replica alike. The memory decision is based on the replicated state's size (the bytes
//! of keys and values applied so far), not on the process's RSS, so it does not depend on
//! allocator or page cache.

use synod_node::limits::Limits;
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_paxos::{Config, ConfigError, Paxos, PaxosConfig};
use synod_rsm::{Role, Rsm, RsmMsg, StatusReport};

use crate::state::KvState;
use crate::{KvMsg, KvOp, KvReply, Op};

/// One replica of the store.
#[derive(Debug, Clone, Hash)]
pub struct KvReplica {
    rsm: Rsm<KvState>,
    limits: Limits,
    /// Bytes of keys and values past which Puts and Appends are refused; `None`: no limit.
    max_memory: Option<u64>,
}

impl KvReplica {
    /// Replica `me` (an index into `peers`), with the default size policy.
    pub fn new(peers: Vec<NodeId>, me: usize, config: PaxosConfig) -> Self {
        KvReplica {
            rsm: Rsm::new(peers, me, config),
            limits: Limits::default(),
            max_memory: None,
        }
    }

    /// A new replica `me` joining the running group whose replicas include `contacts` (see
    /// [`Rsm::joining`]): it serves once the group added it and it received the state.
    pub fn joining(contacts: Vec<NodeId>, me: NodeId, config: PaxosConfig) -> Self {
        KvReplica {
            rsm: Rsm::joining(contacts, me, config),
            limits: Limits::default(),
            max_memory: None,
        }
    }

    /// Proposes a membership change (see [`Rsm::reconfigure`]).
    pub fn reconfigure(
        &mut self,
        ctx: &mut dyn Context<KvMsg>,
        config: Config,
    ) -> Result<(), ConfigError> {
        self.rsm.reconfigure(ctx, config, None)
    }

    /// This replica's role in the group's configuration.
    pub fn role(&self) -> Role {
        self.rsm.role()
    }

    /// The next log instance this replica applies.
    pub fn next(&self) -> u64 {
        self.rsm.next()
    }

    /// The same replica, sending snapshots in chunks of at most `bytes` (see
    /// [`Rsm::with_snapshot_chunk`]).
    pub fn with_snapshot_chunk(mut self, bytes: usize) -> Self {
        self.rsm = self.rsm.with_snapshot_chunk(bytes);
        self
    }

    /// The same replica, refusing keys and values above `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The same replica, refusing a Put or Append when the store's keys and values plus the
    /// write's would exceed `bytes` ([`KvReply::OutOfMemory`]).
    pub fn with_max_memory(mut self, bytes: Option<u64>) -> Self {
        self.max_memory = bytes;
        self
    }

    pub fn kv(&self) -> &KvState {
        self.rsm.machine()
    }

    pub fn paxos(&self) -> &Paxos<Op> {
        self.rsm.paxos()
    }

    /// What this replica answers to a status query.
    pub fn status(&self, id: NodeId) -> StatusReport {
        self.rsm.status(id)
    }

    /// Whether the replica stopped because its storage failed or could not be read.
    pub fn broken(&self) -> bool {
        self.rsm.broken()
    }
}

impl KvReplica {
    /// Why the operations of one request (one, or a batch) must be refused before they are
    /// proposed: one of them, or all of them together, above the size policy, or writes
    /// that would take the store past `--max-memory`.
    fn refusal(&self, ops: &[KvOp]) -> Option<KvReply> {
        if let Err(refused) = KvOp::check_batch(ops, &self.limits) {
            return Some(KvReply::TooLarge(refused));
        }
        let used = self.kv().data_bytes();
        let added: u64 = ops.iter().map(KvOp::added_bytes).sum();
        self.max_memory
            .filter(|&limit| added > 0 && used + added > limit)
            .map(|limit| KvReply::OutOfMemory { used, limit })
    }
}

impl Node for KvReplica {
    type Msg = KvMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<KvMsg>) {
        self.rsm.on_start(ctx);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<KvMsg>, from: NodeId, msg: KvMsg) {
        let refusal = match &msg {
            RsmMsg::Request { seq, op, .. } => self
                .refusal(std::slice::from_ref(op))
                .map(|reply| (*seq, reply)),
            RsmMsg::Batch { seq, ops, .. } => self.refusal(ops).map(|reply| (*seq, reply)),
            _ => None,
        };
        if let Some((seq, reply)) = refusal {
            // Refused whole, before it is proposed: nothing of it is ever applied.
            tracing::debug!(%from, ?reply, "request refused at the edge");
            return ctx.send(from, RsmMsg::Reply { seq, reply });
        }
        self.rsm.on_message(ctx, from, msg);
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<KvMsg>, token: TimerToken) {
        self.rsm.on_timer(ctx, token);
    }
}
