//! [`Wrap`]: a node's [`Context`] seen by a component that speaks a narrower message type,
//! so a service can embed an [`crate::Rsm`] (or any node) inside its own message enum.

use std::time::Duration;

use rand::RngCore;
use synod_node::{Context, NodeId, Storage, TimerToken};

/// A [`Context<Inner>`] over a `Context<Outer>`: sends are wrapped by `wrap` (typically an
/// enum variant constructor); everything else passes through.
pub struct Wrap<'a, Outer, Inner> {
    ctx: &'a mut dyn Context<Outer>,
    wrap: fn(Inner) -> Outer,
}

impl<'a, Outer, Inner> Wrap<'a, Outer, Inner> {
    pub fn new(ctx: &'a mut dyn Context<Outer>, wrap: fn(Inner) -> Outer) -> Self {
        Wrap { ctx, wrap }
    }
}

impl<Outer, Inner> Context<Inner> for Wrap<'_, Outer, Inner> {
    fn id(&self) -> NodeId {
        self.ctx.id()
    }
    fn now(&self) -> Duration {
        self.ctx.now()
    }
    fn send(&mut self, to: NodeId, msg: Inner) {
        self.ctx.send(to, (self.wrap)(msg));
    }
    fn set_timer(&mut self, after: Duration, token: TimerToken) {
        self.ctx.set_timer(after, token);
    }
    fn add_peer(&mut self, id: NodeId, addr: &str) {
        self.ctx.add_peer(id, addr);
    }
    fn rng(&mut self) -> &mut dyn RngCore {
        self.ctx.rng()
    }
    fn storage(&mut self) -> &mut dyn Storage {
        self.ctx.storage()
    }
}
