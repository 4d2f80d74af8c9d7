//! The KV replica: a replicated state machine ([`synod_rsm::Rsm`]) over [`KvState`], and
//! the edge where requests above the size policy are refused before anything is proposed.

use synod_node::limits::Limits;
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_paxos::{Paxos, PaxosConfig};
use synod_rsm::{Rsm, RsmMsg, StatusReport};

use crate::state::KvState;
use crate::{KvMsg, KvReply, Op};

/// One replica of the store.
#[derive(Debug, Clone, Hash)]
pub struct KvReplica {
    rsm: Rsm<KvState>,
    limits: Limits,
}

impl KvReplica {
    /// Replica `me` (an index into `peers`), with the default size policy.
    pub fn new(peers: Vec<NodeId>, me: usize, config: PaxosConfig) -> Self {
        KvReplica {
            rsm: Rsm::new(peers, me, config),
            limits: Limits::default(),
        }
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

impl Node for KvReplica {
    type Msg = KvMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<KvMsg>) {
        self.rsm.on_start(ctx);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<KvMsg>, from: NodeId, msg: KvMsg) {
        if let RsmMsg::Request { seq, op, .. } = &msg {
            if let Err(refused) = op.check_size(&self.limits) {
                // Refused whole, before it is proposed: nothing of it is ever applied.
                tracing::debug!(%from, %refused, "request refused for its size");
                let reply = KvReply::TooLarge(refused);
                return ctx.send(from, RsmMsg::Reply { seq: *seq, reply });
            }
        }
        self.rsm.on_message(ctx, from, msg);
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<KvMsg>, token: TimerToken) {
        self.rsm.on_timer(ctx, token);
    }
}
