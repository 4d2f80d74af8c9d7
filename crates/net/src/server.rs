//! `run_node`: serve one protocol core over TCP until told to stop.
//!
//! Tasks and who owns what:
//!
//! ```text
//!                      ┌──────────── accept task ────────────┐
//!  TcpListener ──────▶ │ accept, connection limit, JoinSet   │──spawn──▶ connection task (1 per socket)
//!                      └─────────────────────────────────────┘            │ handshake, read frames,
//!                                                                          │ write a client's replies
//!                                 inbox (bounded mpsc) ◀───────────────────┘
//!                                          │
//!                      node task (the caller's task, see `driver`)
//!                                          │ try_send
//!                          link task per peer (see `link`) ──▶ other servers
//! ```
//!
//! Every connection task owns one socket and nothing else; a problem with it (garbage, a
//! wrong magic or version, an oversized or truncated frame, an undecodable message, silence
//! past the handshake timeout, a peer vanishing mid-frame) ends that task with a
//! `tracing::warn!` naming the peer address and the reason, and nothing else notices.
//!
//! Inbound connections come in two kinds, told apart by the handshake. A *peer* connection
//! only carries messages into this node, stamped with the id the peer announced (replies
//! travel on this node's own link to that peer); the only frames going back are echoes of
//! the link's probes (see [`crate::liveness`]). A *client* connection carries both ways: it
//! gets a fresh [`NodeId`] from [`NodeId::FIRST_CLIENT`] upwards, registers a reply queue with
//! the node, and unregisters it when it closes, after which replies to it are dropped.
//!
//! The connection limit is a `tokio::sync::Semaphore`: each connection task holds a permit
//! for its whole life and releases it by being dropped, however it ends. Over the limit, a
//! new connection is closed right after accept instead of waiting in the kernel backlog,
//! so the client sees a prompt close rather than a silent hang.
//!
//! Shutdown, once the `shutdown` future resolves: the node loop stops (the node gets no
//! further input); the cancellation token stops the accept loop (the listener is dropped,
//! so the port refuses connections) and tells connections to stop reading; outbound queues
//! are closed so links and client connections write what they already hold, bounded by
//! `flush_timeout`; storage is synced; `run_node` returns.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;
use synod_node::{Node, NodeId, Storage};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::codec::{decode_msg, Hello, PROBE};
use crate::config::{Listen, NetOptions, NodeConfig};
use crate::conn::{
    handshake, no_delay, tune_peer_socket, write_batch, FrameReader, FrameWriter, Halves, ReadHalf,
};
use crate::driver::{Driver, Event};
use crate::error::NetError;
use crate::local::{self, Route};
use crate::tls::{PeerTls, TLS_HANDSHAKE_RECORD};

/// Runs `node` as a server until `shutdown` resolves, then shuts down gracefully.
///
/// Returns an error only if the id is in the client range, the listen address cannot be
/// bound, or the final storage sync fails; trouble on any single connection is logged and
/// contained.
pub async fn run_node<N>(
    mut node: N,
    config: NodeConfig,
    storage: Box<dyn Storage + Send>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NetError>
where
    N: Node + Send,
    N::Msg: Serialize + DeserializeOwned + Send + 'static,
{
    let NodeConfig {
        id,
        listen,
        peers,
        net,
    } = config;
    if id.is_client() {
        return Err(NetError::ClientIdForServer(id));
    }
    let listener = match listen {
        Listen::Bound(listener) => listener,
        Listen::Addr(addr) => TcpListener::bind(addr)
            .await
            .map_err(|source| NetError::Bind { addr, source })?,
    };
    let addr = listener.local_addr()?;
    info!(node = %id, %addr, "serving");
    let opts = Arc::new(net);
    let cancel = CancellationToken::new();
    let (inbox_tx, inbox_rx) = mpsc::channel(opts.inbox_capacity);
    let shared = Arc::new(Shared {
        id,
        opts: opts.clone(),
        inbox: inbox_tx,
        cancel: cancel.clone(),
        next_client: Arc::new(AtomicU64::new(NodeId::FIRST_CLIENT)),
    });
    // With `in_process`, clients in this process reach the node through its inbox while it
    // serves.
    let _local = opts.in_process.then(|| {
        let route = Route {
            server: id,
            inbox: shared.inbox.clone(),
            next_client: shared.next_client.clone(),
            send_queue: opts.send_queue,
        };
        local::register(addr, route)
    });
    let acceptor =
        tokio::spawn(accept_loop(listener, shared).instrument(tracing::info_span!("accept")));

    let mut driver = Driver::new(id, peers, storage, opts, cancel.clone());
    driver.run(&mut node, inbox_rx, shutdown).await;
    info!(node = %id, "shutting down");
    cancel.cancel();
    let synced = driver.close().await;
    if let Err(e) = acceptor.await {
        warn!(reason = %e, "accept task ended abnormally");
    }
    synced?;
    Ok(())
}

/// A future that resolves on SIGTERM or Ctrl-C (SIGINT): the usual `shutdown` argument of
/// [`run_node`].
///
/// The handlers are installed when this function is *called*, not when the future is first
/// polled, so a server that calls it before announcing that it is ready cannot be killed by
/// a signal that arrives in between. Must be called inside a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind, name: &'static str| {
        let stream = signal(kind)
            .map_err(|e| warn!(reason = %e, "cannot listen for {name}"))
            .ok();
        async move {
            match stream {
                Some(mut stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
    };
    let interrupt = listen(SignalKind::interrupt(), "Ctrl-C");
    let terminate = listen(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            () = interrupt => info!("Ctrl-C received"),
            () = terminate => info!("SIGTERM received"),
        }
    }
}

/// What every connection task needs; shared read-only, hence a plain `Arc` and no lock.
struct Shared<M> {
    id: NodeId,
    opts: Arc<NetOptions>,
    inbox: mpsc::Sender<Event<M>>,
    cancel: CancellationToken,
    /// The next client id, for TCP and in-process clients alike.
    next_client: Arc<AtomicU64>,
}

/// Pause after a failed `accept` (typically out of file descriptors) so the loop does not
/// spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

async fn accept_loop<M>(listener: TcpListener, shared: Arc<Shared<M>>)
where
    M: DeserializeOwned + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(shared.opts.max_connections));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            // Reap finished connections so the set only holds live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, addr) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!(reason = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                };
                let metrics = synod_metrics::global();
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    metrics.connections_refused.inc();
                    warn!(peer = %addr, limit = shared.opts.max_connections,
                        "connection limit reached; closing new connection");
                    continue;
                };
                let client_id = NodeId(shared.next_client.fetch_add(1, Ordering::Relaxed));
                let task = serve_connection(stream, client_id, shared.clone());
                metrics.connections_accepted.inc();
                metrics.connections.inc();
                connections.spawn(
                    async move {
                        let _permit = permit;
                        task.await;
                        synod_metrics::global().connections.dec();
                    }
                    .instrument(tracing::info_span!("conn", peer = %addr)),
                );
            }
        }
    }
    // Stop accepting first: the port refuses connections from here on.
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(shared.opts.flush_timeout, drain)
        .await
        .is_err()
    {
        debug!("connections did not finish in time; closing them");
    }
    connections.shutdown().await;
}

/// One inbound connection from start to end, logging why it ended.
async fn serve_connection<M>(stream: TcpStream, client_id: NodeId, shared: Arc<Shared<M>>)
where
    M: DeserializeOwned + Send + 'static,
{
    let addr = stream.peer_addr().ok();
    let peer = addr.map_or_else(|| "unknown".to_string(), |a| a.to_string());
    match handle_connection(stream, client_id, &shared).await {
        Ok(()) | Err(NetError::Closed) => debug!(%peer, "connection closed"),
        Err(e) => warn!(%peer, reason = %e, "closing connection"),
    }
}

async fn handle_connection<M>(
    stream: TcpStream,
    client_id: NodeId,
    shared: &Shared<M>,
) -> Result<(), NetError>
where
    M: DeserializeOwned + Send + 'static,
{
    let opts = &shared.opts;
    // Before the handshake tells a peer from a client, so clients get the same timings: a
    // client that vanished is noticed as soon as a peer would be.
    tune_peer_socket(&stream, opts)?;
    no_delay(&stream)?;
    let (halves, transport) = match &opts.tls {
        None => (Halves::plain(stream), Transport::Plain),
        Some(tls) => {
            let limit = opts.handshake_timeout;
            tokio::time::timeout(limit, accept_transport(stream, tls))
                .await
                .map_err(|_| NetError::Timeout {
                    what: "TLS handshake",
                    after: limit,
                })??
        }
    };
    let (mut reader, mut writer, hello) = handshake(
        halves,
        Hello::Peer(shared.id),
        opts.max_frame,
        opts.handshake_timeout,
    )
    .await?;
    admit(opts, hello, &transport)?;
    match hello {
        Hello::Peer(from) => {
            debug!(%from, "peer connected");
            loop {
                let frame = tokio::select! {
                    frame = reader.read_frame() => frame?,
                    _ = shared.cancel.cancelled() => return Ok(()),
                };
                match frame {
                    Some(payload) if payload.is_empty() => {
                        writer.write_all(&PROBE).await?;
                        writer.flush().await?;
                    }
                    Some(payload) if deliver(shared, from, &payload).await? => {}
                    _ => return Ok(()),
                }
            }
        }
        Hello::Client => {
            let (outbox, replies) = mpsc::channel(opts.send_queue);
            let up = Event::ClientUp {
                id: client_id,
                outbox,
            };
            if shared.inbox.send(up).await.is_err() {
                return Ok(());
            }
            debug!(client = %client_id, "client connected");
            let result = serve_client(client_id, reader, writer, replies, shared).await;
            // Fails at once if the node has stopped, which is just as good.
            let _ = shared.inbox.send(Event::ClientDown { id: client_id }).await;
            result
        }
    }
}

/// How a connection reached this server.
enum Transport {
    Plain,
    /// TLS, with the client certificate it presented (verified against the CA), if any.
    Tls {
        cert: Option<CertificateDer<'static>>,
    },
}

/// Accepts `stream` on a server with TLS: TLS if it opens with a TLS handshake, else plain
/// (which [`admit`] then refuses to peers, and to clients unless they may be plain).
async fn accept_transport(
    stream: TcpStream,
    tls: &PeerTls,
) -> Result<(Halves, Transport), NetError> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Err(NetError::Closed);
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        return Ok((Halves::plain(stream), Transport::Plain));
    }
    let secured = tls.accept(stream).await?;
    let cert = secured
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.clone().into_owned());
    Ok((Halves::tls(secured), Transport::Tls { cert }))
}

/// Whether a connection that introduced itself with `hello` may go on: on a server with TLS,
/// a peer must have come over TLS with a certificate naming the member it claims to be, and
/// a client over TLS unless [`NetOptions::plain_clients`].
fn admit(opts: &NetOptions, hello: Hello, transport: &Transport) -> Result<(), NetError> {
    let Some(tls) = &opts.tls else {
        return Ok(());
    };
    match (hello, transport) {
        (Hello::Peer(_), Transport::Plain) => Err(NetError::PlainRefused { who: "peer" }),
        (Hello::Peer(from), Transport::Tls { cert }) => tls.check_member(cert.as_ref(), from),
        (Hello::Client, Transport::Plain) if !opts.plain_clients => {
            Err(NetError::PlainRefused { who: "client" })
        }
        (Hello::Client, _) => Ok(()),
    }
}

/// Reads a client's requests and writes the node's replies, on one task: replies are written
/// between reads, and `read_frame` is cancel-safe so a reply arriving mid-frame loses nothing.
/// On shutdown it stops reading and keeps writing until the node closes the reply queue.
async fn serve_client<M>(
    id: NodeId,
    mut reader: FrameReader<ReadHalf>,
    mut writer: FrameWriter,
    mut replies: mpsc::Receiver<bytes::Bytes>,
    shared: &Shared<M>,
) -> Result<(), NetError>
where
    M: DeserializeOwned + Send + 'static,
{
    let mut draining = false;
    loop {
        tokio::select! {
            frame = reader.read_frame(), if !draining => match frame? {
                Some(payload) if deliver(shared, id, &payload).await? => {}
                _ => return Ok(()),
            },
            reply = replies.recv() => match reply {
                Some(frame) => write_batch(&mut writer, frame, &mut replies).await?,
                None => return Ok(()),
            },
            _ = shared.cancel.cancelled(), if !draining => draining = true,
        }
    }
}

/// Decodes a payload and hands it to the node; `false` if the node has stopped.
async fn deliver<M: DeserializeOwned>(
    shared: &Shared<M>,
    from: NodeId,
    payload: &[u8],
) -> Result<bool, NetError> {
    let msg = decode_msg(payload)?;
    let peer = (!from.is_client()).then_some(from);
    synod_metrics::global().record_link(false, peer, payload.len());
    Ok(shared
        .inbox
        .send(Event::Message { from, msg })
        .await
        .is_ok())
}
