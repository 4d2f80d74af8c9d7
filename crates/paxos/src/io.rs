//! What a Paxos peer needs from the node that embeds it, and the adapter over a node's
//! [`Context`].
//!
//! A Paxos peer is not a [`synod_node::Node`] by itself: it lives inside one (the KV replica,
//! the shard controller, or the standalone [`crate::PaxosNode`]) that owns the timers, the
//! storage and the message type. The embedding node wraps [`PaxosMsg`] into its own message
//! enum with [`Embed`].

use std::time::Duration;

use rand::RngCore;
use synod_node::{Context, NodeId, Storage};

use crate::msg::PaxosMsg;

/// The outside world as a Paxos peer sees it.
pub trait PaxosIo<V> {
    fn now(&self) -> Duration;
    fn send(&mut self, to: NodeId, msg: PaxosMsg<V>);
    fn rng(&mut self) -> &mut dyn RngCore;
    fn storage(&mut self) -> &mut dyn Storage;
}

/// A node's [`Context`] seen as [`PaxosIo`]: Paxos messages are wrapped into the node's own
/// message type by `wrap` (typically an enum variant constructor such as `KvMsg::Paxos`).
pub struct Embed<'a, M, V> {
    ctx: &'a mut dyn Context<M>,
    wrap: fn(PaxosMsg<V>) -> M,
}

impl<'a, M, V> Embed<'a, M, V> {
    pub fn new(ctx: &'a mut dyn Context<M>, wrap: fn(PaxosMsg<V>) -> M) -> Self {
        Embed { ctx, wrap }
    }
}

impl<M, V> PaxosIo<V> for Embed<'_, M, V> {
    fn now(&self) -> Duration {
        self.ctx.now()
    }
    fn send(&mut self, to: NodeId, msg: PaxosMsg<V>) {
        self.ctx.send(to, (self.wrap)(msg));
    }
    fn rng(&mut self) -> &mut dyn RngCore {
        self.ctx.rng()
    }
    fn storage(&mut self) -> &mut dyn Storage {
        self.ctx.storage()
    }
}
