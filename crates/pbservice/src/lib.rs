//! Primary/backup replicated key/value store: Get, Put and Append, and Redis's string and
//! keyspace commands ([`synod_keyspace::Command`], the store the other KV services share),
//! on byte-string keys, kept on two servers chosen by the view service (`synod-viewservice`).
//!
//! - The **primary** of the current view serves clients. It forwards every operation, Gets
//!   included, to the backup and answers only after the backup has applied it, one operation
//!   at a time, so the two copies apply the same operations in the same order.
//! - The **backup** applies only what comes from the primary of its view, and only in order
//!   (each forwarded operation carries its position). A new backup first receives the whole
//!   state, duplicate-detection table included, and the primary acknowledges the view to the
//!   view service only after that, so the view service never promotes a backup without the data.
//! - Any other server answers [`PbError::WrongServer`]. A deposed primary cannot answer from
//!   stale data: its forward reaches a backup that knows a newer view and refuses it, or a dead
//!   one, which never answers.
//! - **Clients** tag every operation with (client id, sequence number), one operation at a
//!   time, and retry until answered; servers keep the last write applied per client (its
//!   number and its reply) and apply a retry at most once, answering it the first reply. The [`Clerk`] is the client's logic as a sans-IO core: it
//!   caches the primary and asks the view service only when the primary seems wrong.
//!
//! State lives in memory only: a restarted server pings 0 and is treated by the view service
//! as a new, empty server. `docs/pbservice.md` has the message diagram and the limits.

mod clerk;
mod server;
mod store;

pub use clerk::{Clerk, PbOutput, PbReply, Target, RETRY_INTERVAL};
pub use server::{PbServer, PbStats, RESEND_INTERVAL};
pub use store::Store;
pub use synod_viewservice::{View, ViewMsg, ViewReply};

use serde::{Deserialize, Serialize};
pub use synod_keyspace::{Command, Reply};
use synod_node::limits::TooLarge;
use thiserror::Error;

/// Every message of a primary/backup cluster: the view service's and the KV service's.
pub type Msg = synod_viewservice::Msg<PbMsg>;

/// A key/value operation ([`synod_keyspace::KvOp`], which every KV service takes). Its
/// answer is a [`Reply`]: a Get's value as a bulk string (empty for a missing key, as in the
/// course), OK for a Put, an Append's new length.
pub use synod_keyspace::KvOp as Op;

/// A client's request. `seq` numbers the client's operations from 1, one at a time; it makes
/// Puts and Appends at-most-once and matches replies to requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Request {
    pub client: u64,
    pub seq: u64,
    pub op: Op,
}

/// Why a server did not perform a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error, Serialize, Deserialize)]
pub enum PbError {
    /// This server is not the primary of the current view (as far as it knows).
    #[error("not the primary")]
    WrongServer,
    /// A key or value above the primary's `--max-value-bytes`, or an Append that would grow a
    /// value past [`synod_node::limits::MAX_VALUE_CEILING`]; nothing was applied.
    #[error("{0}; the operation was not applied")]
    TooLarge(TooLarge),
}

/// What a backup tells the primary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackupAnswer {
    /// Applied the forwarded operation at this position (or had already).
    Applied { index: u64 },
    /// Holds the transferred state; `applied` operations so far.
    Installed { applied: u64 },
    /// Lacks the state to apply this operation (new or restarted, or missed one): send it.
    NeedState,
    /// The sender is not the primary of the backup's view.
    Refused,
}

/// The primary/backup service's own messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PbMsg {
    /// Client → primary.
    Request(Request),
    /// Server → client: the operation's reply.
    Reply {
        seq: u64,
        result: Result<Reply, PbError>,
    },
    /// Primary → backup: apply `request` as operation number `index` of this state.
    Forward {
        view: View,
        index: u64,
        request: Request,
    },
    /// Primary → backup: the complete state after `applied` operations.
    Transfer {
        view: View,
        applied: u64,
        store: Store,
    },
    /// Backup → primary, with the backup's current view so a deposed primary learns of it.
    Backup { view: View, answer: BackupAnswer },
}
