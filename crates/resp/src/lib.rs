//! A small, service-agnostic Redis protocol (RESP2) front, so `redis-cli` (and other Redis
//! clients) can talk to synod's key/value services.
//!
//! - [`Value`], [`encode`] and [`parse`]: the wire format. The parser is incremental (it says
//!   when it needs more bytes), bounded (bulk strings, arrays and nesting have limits) and
//!   never panics on bad input; it also accepts the "inline" commands a human types into
//!   `telnet` (`PING\r\n`).
//! - [`serve_resp`]: a tokio server. Redis's string and keyspace commands
//!   ([`synod_keyspace::Command`], parsed with Redis's error texts) go to a [`Backend`], one
//!   command per operation, MULTI/EXEC as one; the connection commands (PING, ECHO, QUIT,
//!   HELLO 2, CLIENT, SELECT 0, COMMAND, INFO) are answered by the front (module
//!   `connection`). Any other command gets Redis's `unknown command` error and the
//!   connection stays usable. A protocol error is answered with an error and closes the
//!   connection, as Redis does; so does an HTTP request line (`POST`, `Host:`), without a
//!   reply and with a warning in the log, so a web page cannot write to the store.
//!   Pipelined commands are handed to the backend in batches ([`Backend::run_batch`]), one
//!   batch in flight per connection, and answered in order.
//!
//! - [`serve_resp_secured`]: the same with TLS and `AUTH`/ACL users ([`security`],
//!   [`auth`]).
//!
//! The backend is the only thing a service provides: a client of the primary/backup KV, of
//! the Paxos KV or of the sharded KV. Keys and values are byte strings.

pub mod auth;
mod commands;
mod connection;
mod parse;
pub mod security;
mod server;
mod value;

pub use connection::REDIS_VERSION;
pub use parse::{
    parse, ParseError, ParseLimits, Parsed, Parser, ELEMENT_COST, MAX_DEPTH, MAX_ELEMENTS,
};
pub use server::{
    serve_resp, serve_resp_secured, Backend, BackendError, RespLimits, FREE_PER_CONNECTION,
    MAX_BATCH_COMMANDS,
};
pub use synod_keyspace::{Command, Reply};
pub use value::{encode, Value};
