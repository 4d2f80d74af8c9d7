//! A small, service-agnostic Redis protocol (RESP2) front, so `redis-cli` (and other Redis
//! clients) can talk to synod's key/value services.
//!
//! - [`Value`], [`encode`] and [`parse`]: the wire format. The parser is incremental (it says
//!   when it needs more bytes), bounded (bulk strings, arrays and nesting have limits) and
//!   never panics on bad input; it also accepts the "inline" commands a human types into
//!   `telnet` (`PING\r\n`).
//! - [`serve_resp`]: a tokio server that answers `GET`, `SET`, `APPEND`, `PING` and `ECHO` by calling a
//!   [`Backend`]; any other command gets a Redis-style error and the connection stays usable.
//!   A protocol error is answered with an error and closes the connection, as Redis does.
//!   Pipelined commands are handed to the backend in batches ([`Backend::run_batch`]), one
//!   batch in flight per connection, and answered in order.
//!
//! - [`serve_resp_secured`]: the same with TLS and `AUTH`/ACL users ([`security`],
//!   [`auth`]).
//!
//! The backend is the only thing a service provides: a client of the primary/backup KV or of
//! the Paxos KV, say. Keys and values are UTF-8 strings, as in those services.
//!
//! `APPEND` answers the new length, as Redis does, when the backend knows it; a backend that
//! does not (the primary/backup KV) gets `+OK`.

pub mod auth;
mod parse;
pub mod security;
mod server;
mod value;

pub use parse::{
    parse, ParseError, ParseLimits, Parsed, Parser, ELEMENT_COST, MAX_DEPTH, MAX_ELEMENTS,
};
pub use server::{
    run_one, serve_resp, serve_resp_secured, Answer, Backend, BackendError, Op, RespLimits,
    FREE_PER_CONNECTION, MAX_BATCH_COMMANDS,
};
pub use value::{encode, Value};
