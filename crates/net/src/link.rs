//! Outbound links: one task per peer server that this node sends to.
//!
//! ```text
//!   node task ──try_send(frame)──▶ [bounded queue] ──▶ link task ──TCP──▶ peer's server
//! ```
//!
//! The node never waits for a link: `Context::send` encodes the message and `try_send`s it,
//! dropping it if the queue is full. The link task owns the connection and cycles through
//!
//! 1. *connecting*: TCP connect and handshake, checking that the server at the configured
//!    address really is the peer we meant;
//! 2. *connected*: write queued frames in batches while also watching the socket for EOF, so
//!    a peer that restarts is noticed at once rather than on the next failed write;
//! 3. *backing off* after a failure: exponential delay with jitter, so a cluster restarting
//!    together does not reconnect in lockstep, reset after every successful handshake.
//!
//! Frames queued while disconnected wait (up to the queue bound) and go out after the next
//! connect; a frame taken off the queue just before the connection breaks is lost, which the
//! protocols tolerate. Links are one-way: replies come back on the peer's own link to us.
//!
//! Shutdown: the node drops the queue's sender. A connected link writes what is queued and
//! closes; a disconnected one gives up at once when the shared cancellation token fires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use synod_node::NodeId;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::codec::Hello;
use crate::config::NetOptions;
use crate::conn::{handshake, write_batch, FrameReader, FrameWriter};
use crate::error::NetError;

/// Identity of one link: from whom to whom, and where the peer listens.
pub(crate) struct LinkTarget {
    pub me: NodeId,
    pub to: NodeId,
    pub addr: SocketAddr,
}

/// Runs a link until its queue is closed and drained, or cancellation while disconnected.
pub(crate) async fn run_link(
    target: LinkTarget,
    mut queue: mpsc::Receiver<Bytes>,
    opts: Arc<NetOptions>,
    cancel: CancellationToken,
) {
    let LinkTarget { to, addr, .. } = target;
    let mut failures: u32 = 0;
    loop {
        let connected = tokio::select! {
            result = connect(&target, &opts) => result,
            _ = cancel.cancelled() => return,
        };
        match connected {
            Ok((reader, writer)) => {
                failures = 0;
                debug!(peer = %to, %addr, "link up");
                match pump(reader, writer, &mut queue).await {
                    Ok(()) => return,
                    Err(NetError::Closed) => info!(peer = %to, %addr, "link closed by peer"),
                    Err(e) => warn!(peer = %to, %addr, reason = %e, "link down"),
                }
            }
            Err(e) => {
                // The first failure is news; the rest of a long outage is noise.
                if failures == 0 {
                    warn!(peer = %to, %addr, reason = %e, "cannot reach peer; retrying with backoff");
                } else {
                    debug!(peer = %to, %addr, reason = %e, failures, "reconnect failed");
                }
                failures = failures.saturating_add(1);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff(&opts, failures)) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

async fn connect(
    target: &LinkTarget,
    opts: &NetOptions,
) -> Result<(FrameReader<OwnedReadHalf>, FrameWriter), NetError> {
    let stream = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(target.addr))
        .await
        .map_err(|_| NetError::Timeout {
            what: "connect",
            after: opts.connect_timeout,
        })??;
    let (reader, writer, theirs) = handshake(
        stream,
        Hello::Peer(target.me),
        opts.max_frame,
        opts.handshake_timeout,
    )
    .await?;
    if theirs != Hello::Peer(target.to) {
        return Err(NetError::UnexpectedHello {
            expected: format!("server {}", target.to),
            found: theirs,
        });
    }
    Ok((reader, writer))
}

/// Moves frames from the queue to the socket until the queue closes (`Ok`) or the
/// connection fails.
async fn pump(
    mut reader: FrameReader<OwnedReadHalf>,
    mut writer: FrameWriter,
    queue: &mut mpsc::Receiver<Bytes>,
) -> Result<(), NetError> {
    loop {
        tokio::select! {
            next = queue.recv() => match next {
                Some(frame) => write_batch(&mut writer, frame, queue).await?,
                None => {
                    writer.shutdown().await?;
                    return Ok(());
                }
            },
            // The peer never writes on our link; reading only detects that it went away.
            inbound = reader.read_frame() => return Err(match inbound? {
                None => NetError::Closed,
                Some(_) => NetError::UnexpectedFrame,
            }),
        }
    }
}

/// Delay before reconnect attempt number `failures`: exponential, capped, with "equal
/// jitter" (half fixed, half random) so it never collapses to zero.
fn backoff(opts: &NetOptions, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX);
    let base = opts
        .backoff_min
        .saturating_mul(factor)
        .min(opts.backoff_max);
    let half = base / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_bounds() {
        let opts = NetOptions {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            ..NetOptions::default()
        };
        for _ in 0..100 {
            let first = backoff(&opts, 0);
            assert!(first >= Duration::from_millis(5) && first <= Duration::from_millis(10));
            let third = backoff(&opts, 2);
            assert!(third >= Duration::from_millis(20) && third <= Duration::from_millis(40));
            let capped = backoff(&opts, 1000);
            assert!(capped >= Duration::from_millis(50) && capped <= Duration::from_millis(100));
        }
    }
}
