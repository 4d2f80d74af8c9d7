//! Redis's string and keyspace commands as one deterministic, sans-I/O core, shared by
//! synod's key/value services (the Paxos KV, the primary/backup KV and the sharded KV), so
//! that each speaks Redis alike and none keeps a copy of its own.
//!
//! - [`Command`]: one command, parsed from a RESP argument list ([`Command::parse`]) with
//!   Redis's own error texts, and serializable: it is what a service puts in its log (one
//!   command, or a `MULTI`/`EXEC` transaction, per entry).
//! - [`Keyspace`]: the store (byte-string keys and values, an ordered persistent map, its
//!   byte count kept as it changes) and [`Keyspace::apply`], which performs a command and
//!   returns its [`Reply`]. Applying is a pure function of the store and the command: every
//!   replica that applies the same commands holds the same store and gives the same replies.
//! - [`KvOp`]: what a client sends any of the services: a course operation or a command.
//! - [`glob`]: Redis's glob patterns, for `SCAN MATCH` and `KEYS`.
//!
//! Keys never expire: a command with an expiry option, and the expiry commands, are refused
//! by name ([`Refusal::Expiry`]), because deciding time inside the log needs a clock stamped
//! into each entry that no service has yet (docs/running.md).

pub mod bytes;
mod command;
pub mod glob;
mod number;
mod op;
mod reply;
mod store;

pub use command::{Command, Condition, Increment, Parsed, Refusal};
pub use number::integer;
pub use op::KvOp;
pub use reply::Reply;
pub use store::Keyspace;
