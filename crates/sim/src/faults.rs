//! Fault settings: what the network as a whole does, and what happens at one node.

use std::time::Duration;

/// How every link of the simulated network behaves, unless a per-node or per-link fault says
/// otherwise. Probabilities are in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// Shortest one-way delay of a message.
    pub min_delay: Duration,
    /// Longest ordinary one-way delay. Delays are uniform in `[min_delay, max_delay]`, so two
    /// messages on one link can already overtake each other.
    pub max_delay: Duration,
    /// Probability that a message instead takes a *long* delay in `long_delay`, which
    /// reorders it behind many later messages (labrpc's "long reordering").
    pub long_delay_prob: f64,
    /// Range of long delays.
    pub long_delay: (Duration, Duration),
    /// Probability that a message is lost on any link.
    pub drop: f64,
    /// Probability that a message is delivered twice (each copy with its own delay).
    pub duplicate: f64,
}

impl NetConfig {
    /// Every message arrives, once, after 1–5 ms.
    pub fn reliable() -> Self {
        NetConfig {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            long_delay_prob: 0.0,
            long_delay: (Duration::from_millis(200), Duration::from_millis(2200)),
            drop: 0.0,
            duplicate: 0.0,
        }
    }

    /// A hostile network: 0–26 ms delays (labrpc's range), 10% loss, 5% duplicates, and 10% of
    /// messages held back 200–2200 ms so they arrive long after their successors.
    pub fn hostile() -> Self {
        NetConfig {
            min_delay: Duration::ZERO,
            max_delay: Duration::from_millis(26),
            long_delay_prob: 0.1,
            long_delay: (Duration::from_millis(200), Duration::from_millis(2200)),
            drop: 0.1,
            duplicate: 0.05,
        }
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        Self::reliable()
    }
}

/// Faults of one node, applied on top of the network's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFaults {
    /// Probability that a message *to* this node is lost before the node sees it (a request
    /// that never arrives).
    pub drop_incoming: f64,
    /// Probability that a message *from* this node is lost after the node produced it. For a
    /// server this is the course's "executed the request but the reply was lost".
    pub drop_outgoing: f64,
    /// Probability that a message to this node is delivered twice.
    pub duplicate: f64,
    /// The node can send but receives nothing (the course's removed socket).
    pub deaf: bool,
}

impl NodeFaults {
    /// The course's unreliable server: 10% of requests lost before execution, and about 18% of
    /// the rest executed with the reply lost (labrpc's 100/1000 then 200/1000).
    pub fn unreliable() -> Self {
        NodeFaults {
            drop_incoming: 0.1,
            drop_outgoing: 0.2,
            ..Default::default()
        }
    }
}
