//! A deterministic simulator for synod's protocol cores.
//!
//! Every core implements [`synod_node::Node`]: a state machine with no I/O of its own. This
//! crate drives many of them in *virtual time* from one seeded RNG. It is a loop over a
//! priority queue of events (message deliveries and timer firings), so a test that "waits five
//! seconds" costs microseconds, and the same seed always produces the same run, byte for byte.
//!
//! The network between nodes misbehaves on demand, each fault switchable at run time:
//!
//! | fault | how to switch it on |
//! | --- | --- |
//! | drop requests with probability p | [`NodeFaults::drop_incoming`] (per node), [`NetConfig::drop`] (every link), [`Simulator::set_link_drop`] (one link) |
//! | execute a request, drop its reply | [`NodeFaults::drop_outgoing`]; [`Simulator::set_unreliable`] sets the course's mix |
//! | duplicate delivery | [`NetConfig::duplicate`], [`NodeFaults::duplicate`] |
//! | delays, long delays, reordering | [`NetConfig::min_delay`]/[`max_delay`](NetConfig::max_delay), [`NetConfig::long_delay_prob`] |
//! | one-way and two-way partitions | [`Simulator::partition`], [`Simulator::block_link`], [`Simulator::isolate`], [`Simulator::heal`] |
//! | deaf node (sends, never receives) | [`NodeFaults::deaf`] |
//! | clock drift | [`Simulator::set_clock_rate`] |
//! | crash (unsynced writes lost), restart, wiped disk | [`Simulator::crash`], [`Simulator::restart`], [`Simulator::restart_wiped`] |
//!
//! Tools can watch every event through a recording hook ([`Simulator::set_observer`],
//! [`Observed`]); the protocol viewer (`synod sim`) draws runs from it.
//!
//! Tests can also register invariants checked after every step ([`Simulator::add_invariant`]),
//! read per-node counters ([`Simulator::stats`]), drive a node's API directly
//! ([`Simulator::call`]) and finish a randomized run the standard way: [`Simulator::heal_all`]
//! then [`Simulator::require`] progress.
//!
//! # Seeds
//!
//! A simulator that is dropped while its thread panics prints its seed and how to replay it:
//! `SYNOD_SEED=<seed> cargo test <name>`. [`seeds`] turns the environment into the list of seeds
//! a randomized test should run (`SYNOD_SEED` for one, `SYNOD_SEEDS` for how many).
//!
//! # Determinism rules for cores
//!
//! The simulator can only be deterministic if the cores are: take time from `ctx.now()`,
//! randomness from `ctx.rng()`, never iterate a `HashMap` where the order reaches a message,
//! spawn no threads. [`Simulator::digest`] hashes every event, so a test can run one seed twice
//! and compare.

mod faults;
mod history;
mod nemesis;
mod observe;
mod seed;
mod simulator;
mod stats;

pub use faults::{NetConfig, NodeFaults};
pub use history::{OpId, RecordedOp, Recorder, SimClock};
pub use nemesis::{Move, Nemesis};
pub use observe::Observed;
pub use seed::{seed_from_env, seeds};
pub use simulator::Simulator;
pub use stats::{DropReason, NodeStats, SimStats};
pub use synod_node::{Context, Node, NodeId, TimerToken};
