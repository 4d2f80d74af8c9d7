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
//! On a server run with a [`ClientGuard`] ([`run_guarded_node`]), a client is admitted only
//! with valid credentials or a certificate from the cluster's CA (see the codec's docs), and
//! each message of a client admitted as a user is screened against its permissions before
//! the node sees it: a refused one is logged and answered with the guard's refusal, and
//! goes no further. In-process clients (the `local` module) are the server's own process
//! and are not screened.
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

use synod_auth::{Access, AuthFailure, Credentials, Denied, Need, Permissions};

use crate::codec::{decode_msg, encode_frame, Admission, Hello, PROBE};
use crate::config::{Listen, NetOptions, NodeConfig};
use crate::conn::{
    handshake, no_delay, tune_peer_socket, write_batch, FrameReader, FrameWriter, Halves, ReadHalf,
};
use crate::driver::{Driver, Event};
use crate::error::NetError;
use crate::local::{self, Route};
use crate::tls::{PeerTls, TLS_HANDSHAKE_RECORD};

/// How a server with users admits its clients and screens their messages.
pub struct ClientGuard<M> {
    /// The users, and the bound on failed authentications (a replica shares it with its
    /// RESP front).
    pub access: Arc<Access>,
    /// What a client's message needs to be allowed.
    pub needs: fn(&M) -> Need<'_>,
    /// The reply to a message refused for the reason given, if its sender waits for one.
    pub refusal: fn(&M, Denied) -> Option<M>,
}

impl<M> ClientGuard<M> {
    /// Admits members only, that is clients with a certificate from the cluster's CA (on a
    /// server with TLS): no user can authenticate, and a member's messages are not screened.
    pub fn members_only() -> Self {
        ClientGuard {
            access: Access::new(synod_auth::Users::default()),
            needs: |_| Need::Nothing,
            refusal: |_, _| None,
        }
    }
}

/// Runs `node` as a server until `shutdown` resolves, then shuts down gracefully; its
/// clients are not authenticated (see [`run_guarded_node`]).
///
/// Returns an error only if the id is in the client range, the listen address cannot be
/// bound, or the final storage sync fails; trouble on any single connection is logged and
/// contained.
pub async fn run_node<N>(
    node: N,
    config: NodeConfig,
    storage: Box<dyn Storage + Send>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NetError>
where
    N: Node + Send,
    N::Msg: Serialize + DeserializeOwned + Send + 'static,
{
    run_guarded_node(node, config, storage, shutdown, None).await
}

/// [`run_node`], admitting clients and screening their messages with `guard` if given.
pub async fn run_guarded_node<N>(
    mut node: N,
    config: NodeConfig,
    storage: Box<dyn Storage + Send>,
    shutdown: impl Future<Output = ()>,
    guard: Option<ClientGuard<N::Msg>>,
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
        guard,
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
    guard: Option<ClientGuard<M>>,
}

/// Pause after a failed `accept` (typically out of file descriptors) so the loop does not
/// spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

async fn accept_loop<M>(listener: TcpListener, shared: Arc<Shared<M>>)
where
    M: Serialize + DeserializeOwned + Send + 'static,
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
    M: Serialize + DeserializeOwned + Send + 'static,
{
    let addr = stream.peer_addr().ok();
    let peer = addr.map_or_else(|| "unknown".to_string(), |a| a.to_string());
    match handle_connection(stream, client_id, &peer, &shared).await {
        Ok(()) | Err(NetError::Closed) => debug!(%peer, "connection closed"),
        Err(e) => warn!(%peer, reason = %e, "closing connection"),
    }
}

async fn handle_connection<M>(
    stream: TcpStream,
    client_id: NodeId,
    peer: &str,
    shared: &Shared<M>,
) -> Result<(), NetError>
where
    M: Serialize + DeserializeOwned + Send + 'static,
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
        &[],
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
                    Some(payload)
                        if deliver(shared, from, decode_msg(&payload)?, payload.len()).await? => {}
                    _ => return Ok(()),
                }
            }
        }
        Hello::Client => {
            let standing = admit_client(&mut reader, &mut writer, &transport, peer, shared).await?;
            let (outbox, replies) = mpsc::channel(opts.send_queue);
            let up = Event::ClientUp {
                id: client_id,
                outbox,
            };
            if shared.inbox.send(up).await.is_err() {
                return Ok(());
            }
            debug!(client = %client_id, "client connected");
            let result = serve_client(client_id, &standing, reader, writer, replies, shared).await;
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

/// Who a client connection was admitted as.
enum Standing {
    /// Anyone: the server has no users.
    Open,
    /// A member of the cluster, by its certificate: not screened.
    Member,
    /// A user, held to its permissions.
    User {
        name: String,
        permissions: Permissions,
    },
}

/// Reads a client's credentials (its first frame) and answers with its [`Admission`]: on a
/// server with a guard, a client with a certificate from the cluster's CA is a member, one
/// with a user's valid credentials is that user, and any other is refused (the refusal is
/// logged, and the error ends the connection).
async fn admit_client<M>(
    reader: &mut FrameReader<ReadHalf>,
    writer: &mut FrameWriter,
    transport: &Transport,
    peer: &str,
    shared: &Shared<M>,
) -> Result<Standing, NetError> {
    let limit = shared.opts.handshake_timeout;
    let frame = tokio::time::timeout(limit, reader.read_frame())
        .await
        .map_err(|_| NetError::Timeout {
            what: "client credentials",
            after: limit,
        })??
        .ok_or(NetError::Closed)?;
    let credentials: Option<Credentials> = decode_msg(&frame)?;
    let decided = match (&shared.guard, transport, credentials) {
        (None, _, _) => Ok(Standing::Open),
        (Some(_), Transport::Tls { cert: Some(_) }, _) => Ok(Standing::Member),
        (Some(guard), _, Some(Credentials { user, password })) => guard
            .access
            .authenticate(&user, &password, &peer, "native")
            .map(|permissions| Standing::User {
                name: user,
                permissions,
            }),
        (Some(_), _, None) => {
            warn!(%peer, "native client refused: no credentials");
            Err(AuthFailure::Required)
        }
    };
    let admission = match &decided {
        Ok(_) => Admission::Admitted,
        Err(failure) => Admission::Refused(*failure),
    };
    writer
        .write_all(&encode_frame(&admission, shared.opts.max_frame)?)
        .await?;
    writer.flush().await?;
    Ok(decided?)
}

/// Whether a client admitted as `standing` may send `msg`.
fn screen<M>(standing: &Standing, guard: Option<&ClientGuard<M>>, msg: &M) -> Result<(), Denied> {
    match (standing, guard) {
        (Standing::User { name, permissions }, Some(guard)) => {
            permissions.allow(name, &(guard.needs)(msg))
        }
        _ => Ok(()),
    }
}

/// Reads a client's requests and writes the node's replies, on one task: replies are written
/// between reads, and `read_frame` is cancel-safe so a reply arriving mid-frame loses nothing.
/// On shutdown it stops reading and keeps writing until the node closes the reply queue.
async fn serve_client<M>(
    id: NodeId,
    standing: &Standing,
    mut reader: FrameReader<ReadHalf>,
    mut writer: FrameWriter,
    mut replies: mpsc::Receiver<bytes::Bytes>,
    shared: &Shared<M>,
) -> Result<(), NetError>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    let mut draining = false;
    loop {
        tokio::select! {
            frame = reader.read_frame(), if !draining => {
                let Some(payload) = frame? else { return Ok(()) };
                let msg = decode_msg(&payload)?;
                match screen(standing, shared.guard.as_ref(), &msg) {
                    Ok(()) => {
                        if !deliver(shared, id, msg, payload.len()).await? {
                            return Ok(());
                        }
                    }
                    Err(denied) => {
                        warn!(client = %id, reason = %denied, "native request refused");
                        let refusal = shared.guard.as_ref().and_then(|g| (g.refusal)(&msg, denied));
                        if let Some(reply) = refusal {
                            writer.write_all(&encode_frame(&reply, shared.opts.max_frame)?).await?;
                            writer.flush().await?;
                        }
                    }
                }
            }
            reply = replies.recv() => match reply {
                Some(frame) => write_batch(&mut writer, frame, &mut replies).await?,
                None => return Ok(()),
            },
            _ = shared.cancel.cancelled(), if !draining => draining = true,
        }
    }
}

/// Hands a message (of `size` bytes on the wire) to the node; `false` if the node has
/// stopped.
async fn deliver<M>(
    shared: &Shared<M>,
    from: NodeId,
    msg: M,
    size: usize,
) -> Result<bool, NetError> {
    let peer = (!from.is_client()).then_some(from);
    synod_metrics::global().record_link(false, peer, size);
    Ok(shared
        .inbox
        .send(Event::Message { from, msg })
        .await
        .is_ok())
}
