//! What secures a RESP port: TLS (so `redis-cli --tls` and redis-py's `ssl=True` connect),
//! and access control (the `auth` module). Both are optional; a port without either is open,
//! as before.
//!
//! A port with TLS speaks only TLS, unless `plain_too`: then a connection that does not open
//! with a TLS handshake record is served plain (told apart by its first byte, as a RESP
//! command never starts with 0x16), which suits a port on loopback that local tools reach
//! without TLS and remote ones with it.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use crate::auth::Access;

/// How long a client may take over its TLS handshake.
pub const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// The first byte of a TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The security of a RESP port.
#[derive(Clone, Default)]
pub struct RespSecurity {
    /// With an acceptor, the port speaks TLS...
    pub tls: Option<TlsAcceptor>,
    /// ...and, with this, plain RESP as well.
    pub plain_too: bool,
    /// With users, every connection must `AUTH` before anything else.
    pub access: Option<Arc<Access>>,
}

/// A connection to a RESP port: plain or TLS.
pub(crate) type Connection = Either<TcpStream, TlsStream<TcpStream>>;

/// Takes a new connection as the port's security says: a TLS handshake (within
/// [`TLS_HANDSHAKE_LIMIT`]) where TLS is required, or where it is allowed and the client
/// opens with one.
pub(crate) async fn accept(
    security: &RespSecurity,
    stream: TcpStream,
) -> std::io::Result<Connection> {
    let Some(tls) = &security.tls else {
        return Ok(Either::Left(stream));
    };
    let handshake = async {
        if security.plain_too {
            let mut first = [0u8; 1];
            stream.peek(&mut first).await?;
            if first[0] != TLS_HANDSHAKE_RECORD {
                return Ok(Either::Left(stream));
            }
        }
        tls.accept(stream)
            .await
            .map(Either::Right)
            .map_err(|e| std::io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))
    };
    tokio::time::timeout(TLS_HANDSHAKE_LIMIT, handshake)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ))
        })
}
