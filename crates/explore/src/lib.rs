//! A model checker for synod's protocols that runs the real sans-I/O cores.
//!
//! It explores every interleaving of message deliveries, drops, duplicates, timer firings,
//! crashes, restarts and disk wipes, and of the environment's inputs (campaigns, proposals,
//! client requests), up to a bound, breadth first, fingerprinting every world so none is
//! expanded twice, and checks the model's invariants after every step. A violation comes back
//! as the shortest schedule that reaches it.
//!
//! The cores are the ones the simulator and the TCP driver run ([`world::Actor`] is any
//! `Node + Clone + Hash`). Models: [`models::paxos`], [`models::kv`] (the Paxos KV: a
//! replicated state machine with client sessions, checked for linearizability) and
//! [`models::pb`] (the view service with primary/backup). `synod explore` runs them;
//! `docs/simulator.md` says what each bound covers and how long it takes.

pub mod model;
pub mod models;
pub mod search;
pub mod world;

pub use model::Model;
pub use search::{explore, Action, Bounds, Counterexample, Report};
pub use world::{Actor, Budget, Envelope, Life, World};
