//! A durable counter with at-most-once increments: synod's example service.
//!
//! It is deliberately tiny, and deliberately complete: it has everything the real services
//! need from the foundation and nothing else, so it shows how a core is written and proves that
//! the same core runs under the simulator (`tests/sim.rs`) and as a real server over TCP
//! (`synod counter serve`).
//!
//! - **Durability.** An increment is appended to storage and synced *before* it is applied and
//!   acknowledged, so a crash never loses an acknowledged increment. Every
//!   [`SNAPSHOT_EVERY`] increments the whole state is written as a snapshot, which keeps
//!   recovery short.
//! - **At-most-once.** Each increment carries (client id, sequence number). A client retries
//!   with the same number until it hears back; the server remembers, per client, the last
//!   number it applied and the value it answered, and answers a retry with that value instead of
//!   applying it again. The table is part of the durable state.
//!
//! Clients send one request at a time, so a sequence number at or below the last applied one
//! is always a retry.

mod server;

pub use server::{CounterServer, SNAPSHOT_EVERY};

use serde::{Deserialize, Serialize};

/// The counter's messages, both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterMsg {
    /// Add `amount` to the counter, at most once per (client, seq).
    Add { client: u64, seq: u64, amount: i64 },
    /// Read the counter. Reads change nothing, so they need no deduplication.
    Get { seq: u64 },
    /// The answer to `Add` (the value right after that increment) or to `Get`.
    Value { seq: u64, value: i64 },
}
