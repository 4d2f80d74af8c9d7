//! The contract between a client's logic (a *clerk*) and the driver that runs it.
//!
//! A clerk is the client-side twin of a [`Node`](crate::Node): a sans-I/O core that decides
//! whom to ask, when to ask again and when an operation is complete, and does no I/O of its
//! own. Its driver carries the messages and keeps the timers:
//!
//! ```text
//!              start / on_message / on_timeout / on_unreachable
//!   driver  ─────────────────────────────────────────────────────▶  Clerk (client core)
//!  (sim or  ◀─────────────────────────────────────────────────────
//!    TCP)      ClerkOutput::Send / ClerkOutput::Timer / ClerkOutput::Done
//! ```
//!
//! The simulator's test harnesses and the TCP clients of `synod-client` run the same clerks,
//! so the retry logic that meets the simulator's drops, partitions and crashes is the one
//! users run.

use std::time::Duration;

use crate::TimerToken;

/// What a clerk asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClerkOutput<S, M, R> {
    /// Send `msg` to server `to`. Best effort, as for a node.
    Send { to: S, msg: M },
    /// Call [`Clerk::on_timeout`] with `token` after `after`. Timers cannot be cancelled: the
    /// clerk ignores a stale one.
    Timer { after: Duration, token: TimerToken },
    /// The operation in progress completed with this reply; the clerk is idle again.
    Done(R),
}

/// A client core: a deterministic state machine with one operation in progress at a time.
pub trait Clerk {
    /// How the clerk names a server (an index into its server list, an address).
    type Server: Clone + Eq + std::hash::Hash + std::fmt::Debug;
    /// The cluster's message type.
    type Msg;
    /// An operation of the service.
    type Op;
    /// An operation's answer.
    type Reply;

    /// Begins `op`. An operation still in progress is abandoned (its outcome stays unknown).
    fn start(&mut self, op: Self::Op) -> Vec<ClerkOutput<Self::Server, Self::Msg, Self::Reply>>;

    /// `msg` arrived from server `from` (stale and foreign messages are ignored).
    fn on_message(
        &mut self,
        from: &Self::Server,
        msg: Self::Msg,
    ) -> Vec<ClerkOutput<Self::Server, Self::Msg, Self::Reply>>;

    /// A timer asked for with [`ClerkOutput::Timer`] fired.
    fn on_timeout(
        &mut self,
        token: TimerToken,
    ) -> Vec<ClerkOutput<Self::Server, Self::Msg, Self::Reply>>;

    /// The driver could not reach `server` (a refused connect, a broken connection): what was
    /// sent to it is lost. Drivers whose transport reports nothing (the simulator's) never
    /// call it; the clerk's timers cover that case.
    fn on_unreachable(
        &mut self,
        server: &Self::Server,
    ) -> Vec<ClerkOutput<Self::Server, Self::Msg, Self::Reply>>;

    /// Whether an operation is in progress.
    fn busy(&self) -> bool;
}
