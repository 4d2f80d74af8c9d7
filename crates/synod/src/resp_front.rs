//! The Redis-protocol front a replica runs beside itself when given `--resp ADDR`: a RESP
//! server whose backend is a client of the replica's own cluster.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use synod_resp::{Backend, RespLimits};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Binds `addr` (if given) and serves RESP there within `limits` through the backend `make`
/// builds, until the returned task is aborted (the caller does that when its replica stops).
pub async fn spawn<B: Backend>(
    addr: Option<SocketAddr>,
    limits: RespLimits,
    make: impl FnOnce() -> anyhow::Result<B>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for RESP on {addr}"))?;
    let backend = Arc::new(make()?);
    tracing::info!(%addr, "RESP front listening");
    Ok(Some(tokio::spawn(synod_resp::serve_resp(
        listener,
        backend,
        limits,
        std::future::pending(),
    ))))
}
