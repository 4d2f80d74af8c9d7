//! A recording hook: what happened in a run, event by event, for tools that draw it (the
//! protocol viewer, `synod sim`).
//!
//! A test that sets no observer pays one `None` check per event: the events are built from
//! references only when an observer is set ([`Simulator::set_observer`](crate::Simulator::set_observer)).
//! The observer reads global virtual time from a [`SimClock`](crate::SimClock) handle it
//! holds, so events carry no time of their own.

use std::collections::BTreeSet;

use synod_node::{NodeId, TimerToken};

use crate::faults::NodeFaults;
use crate::stats::DropReason;

/// One event of a run, as the observer sees it. Messages are lent, not cloned.
#[derive(Debug)]
pub enum Observed<'a, M> {
    /// Node `node` started: its first life (`restart == false`) or a restart after a crash.
    Start { node: NodeId, restart: bool },
    /// Node `node` crashed (its in-memory state and unsynced writes are gone).
    Crash { node: NodeId },
    /// `from` handed `msg` to the network. `msg_id` names this copy in the later
    /// [`Deliver`](Observed::Deliver) or [`Drop`](Observed::Drop); a duplicated message is
    /// sent as two copies with ids of their own.
    Send {
        msg_id: u64,
        from: NodeId,
        to: NodeId,
        msg: &'a M,
    },
    /// The copy `msg_id` reached `to`, which handles it now.
    Deliver {
        msg_id: u64,
        from: NodeId,
        to: NodeId,
        msg: &'a M,
    },
    /// The copy `msg_id` was lost, at sending or at delivery.
    Drop {
        msg_id: u64,
        from: NodeId,
        to: NodeId,
        reason: DropReason,
    },
    /// A timer of `node` fired.
    Timer { node: NodeId, token: TimerToken },
    /// The set of cut directed links `(from, to)` changed (a partition, a block, a heal).
    Links {
        blocked: &'a BTreeSet<(NodeId, NodeId)>,
    },
    /// Node `node`'s fault settings changed (deaf, unreliable, ...).
    Faults {
        node: NodeId,
        faults: &'a NodeFaults,
    },
}

/// The observer's type: called once per event, in the order events happen.
pub(crate) type Observer<M> = Box<dyn FnMut(Observed<'_, M>)>;
