//! Counters a test can assert on: what each node sent and received, and what the network lost.

use std::collections::BTreeMap;

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The link was cut by a partition or a one-way block (at send or at delivery time).
    Partition,
    /// Random loss on the network or the link.
    Network,
    /// The receiver's `drop_incoming` fault.
    Incoming,
    /// The sender's `drop_outgoing` fault.
    Outgoing,
    /// The receiver is deaf.
    Deaf,
    /// The receiver was crashed when the message arrived.
    Crashed,
    /// The receiver id belongs to no node.
    UnknownNode,
}

/// Per-node counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Messages this node handed to the network (before any fault).
    pub sent: u64,
    /// Serialized bytes of those messages.
    pub bytes_sent: u64,
    /// Messages delivered to this node.
    pub received: u64,
    /// Serialized bytes of those messages.
    pub bytes_received: u64,
    /// Messages to this node that were lost, by reason.
    pub dropped_in: BTreeMap<DropReason, u64>,
    /// Timers that fired on this node.
    pub timers: u64,
    /// How many times this node was started (1 + restarts).
    pub starts: u64,
}

impl NodeStats {
    /// All messages to this node that were lost, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_in.values().sum()
    }
}

/// Whole-run counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events processed (deliveries, drops at delivery and timers).
    pub steps: u64,
    /// Messages delivered to a node.
    pub delivered: u64,
    /// Extra copies created by duplication.
    pub duplicated: u64,
    /// Messages lost, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
}

impl SimStats {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}
