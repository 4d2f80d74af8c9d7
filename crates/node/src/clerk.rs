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

/// How long a request waits on the servers tried so far before it also goes to the next:
/// longer than a healthy cluster takes to answer (milliseconds), shorter than a leader's
/// failover, so a request held by a follower during one also reaches the other servers.
pub const STEP: Duration = Duration::from_millis(300);

/// The slowest replication rate a healthy cluster is expected to sustain for one request, in
/// bytes per second: a debug build on a loaded machine moves an 8 MiB value through Paxos at
/// roughly 10 MiB/s, a release build at hundreds.
const SLOWEST_BYTES_PER_SEC: f64 = (4 << 20) as f64;

/// The hedge step for a request carrying `bytes` of payload: [`STEP`] plus 250 ms per MiB
/// (2.3 s for an 8 MiB value). A fixed step is wrong for big requests: a write is answered
/// only once a majority has it durable, and an 8 MiB value takes longer than a small
/// command's step to get there, so the client would send the whole value to every server in
/// turn, adding to the load that made it slow.
pub fn step_for(bytes: usize) -> Duration {
    STEP + Duration::from_secs_f64(bytes as f64 / SLOWEST_BYTES_PER_SEC)
}

/// A client operation, as far as a clerk that hedges its requests cares.
pub trait ClerkOp: Clone {
    /// How long a request carrying this operation waits on the servers tried so far before
    /// it also goes to the next ([`step_for`] its size, usually).
    fn hedge_step(&self) -> Duration;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_grows_with_the_size() {
        assert!(step_for(1) < STEP + Duration::from_millis(1));
        assert_eq!(step_for(8 << 20), Duration::from_millis(2300));
    }
}
