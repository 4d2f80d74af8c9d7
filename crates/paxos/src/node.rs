//! [`PaxosNode`]: a node that is nothing but a Paxos peer, driven by a periodic timer. The
//! course's Paxos tests run against it; services embed [`crate::Paxos`] themselves.

use std::time::Duration;

use synod_node::{Context, Node, NodeId, TimerToken};

use crate::io::Embed;
use crate::msg::PaxosMsg;
use crate::peer::Paxos;
use crate::{PaxosConfig, PaxosError, PaxosState, Value};

/// How often the peer's retries and rejoin are driven.
pub const TICK: Duration = Duration::from_millis(10);

/// Log records after which the node writes a snapshot (which empties its log).
const COMPACT_EVERY: usize = 1000;

/// A standalone Paxos peer.
#[derive(Debug, Clone, Hash)]
pub struct PaxosNode<V> {
    paxos: Paxos<V>,
    /// Set when recovery failed: the node then ignores all input rather than vote without
    /// its past.
    broken: bool,
    /// Fault hook: drop incoming requests but keep replies (see [`PaxosNode::set_deaf_to_requests`]).
    deaf_to_requests: bool,
}

fn io<V>(ctx: &mut dyn Context<PaxosMsg<V>>) -> Embed<'_, PaxosMsg<V>, V> {
    Embed::new(ctx, |m| m)
}

impl<V: Value> PaxosNode<V> {
    pub fn new(peers: Vec<NodeId>, me: usize, config: PaxosConfig) -> Self {
        PaxosNode {
            paxos: Paxos::new(peers, me, config),
            broken: false,
            deaf_to_requests: false,
        }
    }

    pub fn paxos(&self) -> &Paxos<V> {
        &self.paxos
    }

    /// [`Paxos::start`] from the node's own context.
    pub fn start(&mut self, ctx: &mut dyn Context<PaxosMsg<V>>, seq: u64, value: V) {
        if self.broken {
            return;
        }
        self.paxos.start(&mut io(ctx), seq, value);
    }

    /// [`Paxos::campaign`] from the node's own context.
    pub fn campaign(&mut self, ctx: &mut dyn Context<PaxosMsg<V>>, from: u64) {
        if self.broken {
            return;
        }
        self.paxos.campaign(&mut io(ctx), from);
    }

    /// The course's deaf peer: its socket file was removed, so nobody could call it, yet its
    /// own calls were still answered. With one-way messages, a node that hears nothing (the
    /// simulator's `deaf`) cannot learn the answers to its own requests, so this hook drops
    /// only incoming requests.
    pub fn set_deaf_to_requests(&mut self, deaf: bool) {
        self.deaf_to_requests = deaf;
    }

    pub fn done(&mut self, seq: u64) {
        self.paxos.done(seq);
    }

    fn recover(&mut self, ctx: &mut dyn Context<PaxosMsg<V>>) -> Result<(), PaxosError> {
        let recovered = ctx.storage().recover()?;
        let state: Option<PaxosState<V>> = match recovered.snapshot {
            Some(bytes) => {
                Some(postcard::from_bytes(&bytes).map_err(|e| PaxosError::Decode(e.to_string()))?)
            }
            None => None,
        };
        self.paxos.recover(&mut io(ctx), state, &recovered.records)
    }

    fn compact(&mut self, ctx: &mut dyn Context<PaxosMsg<V>>) {
        if self.paxos.log_records() < COMPACT_EVERY || self.paxos.failure().is_some() {
            return;
        }
        let result = postcard::to_allocvec(&self.paxos.checkpoint())
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                ctx.storage()
                    .install_snapshot(&bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(why) = result {
            tracing::error!(node = %ctx.id(), "cannot write snapshot: {why}");
        }
    }
}

impl<V: Value> Node for PaxosNode<V> {
    type Msg = PaxosMsg<V>;

    fn on_start(&mut self, ctx: &mut dyn Context<PaxosMsg<V>>) {
        match self.recover(ctx) {
            Ok(()) => ctx.set_timer(TICK, 0),
            Err(why) => {
                self.broken = true;
                tracing::error!(node = %ctx.id(), "cannot recover, not serving: {why}");
            }
        }
    }

    fn on_message(&mut self, ctx: &mut dyn Context<PaxosMsg<V>>, from: NodeId, msg: PaxosMsg<V>) {
        if self.broken || (self.deaf_to_requests && msg.is_request()) {
            return;
        }
        self.paxos.handle(&mut io(ctx), from, msg);
        self.compact(ctx);
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<PaxosMsg<V>>, _token: TimerToken) {
        self.paxos.tick(&mut io(ctx));
        self.compact(ctx);
        ctx.set_timer(TICK, 0);
    }
}
