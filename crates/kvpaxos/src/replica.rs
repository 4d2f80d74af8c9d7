//! The KV replica: a replicated state machine ([`synod_rsm::Rsm`]) over [`KvState`].

use synod_node::{Context, Node, NodeId, TimerToken};
use synod_paxos::{Paxos, PaxosConfig};
use synod_rsm::{Rsm, StatusReport};

use crate::state::KvState;
use crate::{KvMsg, Op};

/// One replica of the store.
#[derive(Debug, Clone, Hash)]
pub struct KvReplica(Rsm<KvState>);

impl KvReplica {
    /// Replica `me` (an index into `peers`).
    pub fn new(peers: Vec<NodeId>, me: usize, config: PaxosConfig) -> Self {
        KvReplica(Rsm::new(peers, me, config))
    }

    pub fn kv(&self) -> &KvState {
        self.0.machine()
    }

    pub fn paxos(&self) -> &Paxos<Op> {
        self.0.paxos()
    }

    /// What this replica answers to a status query.
    pub fn status(&self, id: NodeId) -> StatusReport {
        self.0.status(id)
    }

    /// Whether the replica stopped because its storage failed or could not be read.
    pub fn broken(&self) -> bool {
        self.0.broken()
    }
}

impl Node for KvReplica {
    type Msg = KvMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<KvMsg>) {
        self.0.on_start(ctx);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<KvMsg>, from: NodeId, msg: KvMsg) {
        self.0.on_message(ctx, from, msg);
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<KvMsg>, token: TimerToken) {
        self.0.on_timer(ctx, token);
    }
}
