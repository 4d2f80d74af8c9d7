//! The view service: one server that decides, from the pings of a set of replicas, which of
//! them is the *primary* and which is the *backup*.
//!
//! A [`View`] is a numbered `(primary, backup)` pair. Replicas ping the service every
//! [`PING_INTERVAL`] with the number of the latest view they are ready to serve in; the answer
//! is the current view. A replica that misses [`DEAD_PINGS`] intervals in a row is dead. The
//! [`ViewServer`] moves from view to view under these rules, all of them:
//!
//! 1. The first server to ping becomes primary of view 1 (with no backup).
//! 2. A new primary is always the old primary or the old backup: only they hold the data.
//! 3. The service does not move past view *N* until the primary of *N* has acknowledged it by
//!    pinging *N*. If that primary dies first, the service is stuck for good: a documented
//!    limitation of the design, not a bug (there is nobody it could safely promote).
//! 4. An idle server that pings becomes backup whenever a backup is needed.
//! 5. A server that pings 0 after having pinged a view number has restarted and lost its state:
//!    a restarted primary is dead, a restarted backup is replaced.
//! 6. A server that never acknowledged a view (only ever pinged 0) never becomes primary.
//!
//! The service itself is not replicated: it is a single point of failure by design (see
//! `docs/pbservice.md`).
//!
//! # Messages
//!
//! All nodes of a simulated cluster share one message type, and over TCP a replica talks to
//! the view service with the same encoding it uses for everything else. So the view service's
//! messages travel in an envelope, [`Msg<S>`], whose other variant carries the messages of the
//! service built on top (`S`). The view service ignores `Msg::Service`; its encoding of
//! `Msg::View` does not depend on `S`, so a view service run with `S = ()` talks to replicas
//! run with any `S`.

mod server;

use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use server::ViewServer;
use synod_node::NodeId;

/// How often replicas ping, and how often the service checks for dead ones.
pub const PING_INTERVAL: Duration = Duration::from_millis(100);

/// A replica that misses this many ping intervals in a row is dead.
pub const DEAD_PINGS: u32 = 5;

/// A numbered assignment of roles. View 0 is the empty view before anyone pinged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct View {
    pub num: u64,
    pub primary: Option<NodeId>,
    pub backup: Option<NodeId>,
}

impl View {
    /// Whether `id` is the primary or the backup of this view.
    pub fn contains(&self, id: NodeId) -> bool {
        self.primary == Some(id) || self.backup == Some(id)
    }

    /// Checks that `next` may follow `self` under the rules above, given whether `self` was
    /// acknowledged: numbers go up by one, an unacknowledged view is never left (except the
    /// empty view 0), the new primary held the data, and nobody is both primary and backup.
    /// Tests run this after every simulated step.
    pub fn check_successor(&self, acked: bool, next: &View) -> Result<(), String> {
        if next.num != self.num + 1 {
            return Err(format!("view {} followed by view {}", self.num, next.num));
        }
        if next.primary.is_none() || (next.primary == next.backup) {
            return Err(format!("malformed view {next:?}"));
        }
        if self.num > 0 {
            if !acked {
                return Err(format!("left unacknowledged view {self:?} for {next:?}"));
            }
            if !next.primary.is_some_and(|p| self.contains(p)) {
                return Err(format!(
                    "new primary of {next:?} was neither primary nor backup of {self:?}"
                ));
            }
        }
        Ok(())
    }
}

/// The view plus where its members can be reached by clients that are not simulated nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ViewReply {
    pub view: View,
    /// The address the primary announced in its pings (empty if none or unknown).
    pub primary_addr: String,
    /// The address the backup announced in its pings (empty if none or unknown).
    pub backup_addr: String,
    /// Whether the primary acknowledged this view, so the service may move past it. An
    /// operator (or a test) waits for this before taking the primary down on purpose: killing
    /// the primary of an unacknowledged view leaves the service stuck.
    pub acked: bool,
}

/// The view service's own messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ViewMsg {
    /// A replica's heartbeat: `viewnum` is the latest view it is ready to serve in (0 right
    /// after a (re)start). `addr` is where clients and the other replicas reach it: the
    /// service passes it on in replies, and over TCP also answers the ping there.
    Ping { viewnum: u64, addr: String },
    /// A client asks for the current view without taking part in it.
    Get,
    /// The answer to both `Ping` and `Get`.
    Reply(ViewReply),
}

/// Every message of a cluster built on the view service: the view service's own, and those of
/// the service `S` that uses it (primary/backup KV, say).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Msg<S> {
    View(ViewMsg),
    Service(S),
}
