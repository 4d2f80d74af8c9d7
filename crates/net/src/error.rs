//! Errors of the networking layer.
//!
//! [`FrameError`](crate::FrameError) (in the codec) says what was wrong with bytes from the
//! wire; [`NetError`] wraps it together with everything else that can go wrong with a
//! connection: I/O, timeouts, a peer that closed, a peer that turned out to be someone else.
//! A `NetError` on one connection ends that connection only; `run_node` itself fails only if
//! it cannot listen or cannot make the node's storage durable on the way out.

use std::net::SocketAddr;
use std::time::Duration;

use synod_node::{NodeId, StorageError};

use crate::codec::{FrameError, Hello};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// The other side closed the connection cleanly (between frames).
    #[error("connection closed by the other side")]
    Closed,
    /// The handshake succeeded but announced someone we did not mean to talk to, such as a
    /// client where a server was expected, or server n3 at the address configured for n2.
    #[error("expected {expected} at the other end, but it introduced itself as {found:?}")]
    UnexpectedHello { expected: String, found: Hello },
    /// Server ids must be below [`NodeId::FIRST_CLIENT`]; the ones above belong to clients.
    #[error("{0} is a client id and cannot be used for a server")]
    ClientIdForServer(NodeId),
    /// A server peer sent a frame on a link that only carries messages the other way.
    #[error("unexpected frame on an outbound peer link")]
    UnexpectedFrame,
    /// The TLS handshake failed: no certificate from the cluster's CA, a certificate that
    /// does not name the member expected, or bytes that are not TLS.
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A connection announced itself as member `claimed` without proving it.
    #[error("refused a peer claiming to be {claimed}: {reason}")]
    NotMember { claimed: NodeId, reason: String },
    /// A plain (not TLS) connection to a server that requires TLS of it.
    #[error("refused a plain connection from a {who}: this server requires TLS")]
    PlainRefused { who: &'static str },
    /// The server refused this client's credentials (or their absence).
    #[error("the server refused this client: {0}")]
    AuthRefused(#[from] synod_auth::AuthFailure),
    #[error("final storage sync failed: {0}")]
    Storage(#[from] StorageError),
}
