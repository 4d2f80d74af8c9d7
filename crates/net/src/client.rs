//! A small client for CLIs and tests: one connection, one request at a time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), synod_net::NetError> {
//! use std::time::Duration;
//! let mut client = synod_net::Client::<String>::connect("127.0.0.1:7000", Duration::from_secs(1)).await?;
//! let reply = client.call(&"ping".to_string(), Duration::from_secs(1)).await?;
//! # Ok(()) }
//! ```
//!
//! The server knows this connection as a fresh client [`NodeId`] and sends replies back on
//! it. The client does **not** reconnect: after an error the connection's state is unknown
//! (a request may or may not have been applied), so the caller decides whether to connect
//! again and retry; the services' own clerks do that with their at-most-once request ids.
//!
//! A client presents [`Credentials`] (or none) when it connects, and a server with users
//! refuses it unless they are valid ([`NetError::AuthRefused`]); see the codec's docs. Only
//! over TLS: a plain connection presents none. An in-process connection presents none
//! either: the process is the server's own.
//!
//! With TLS installed for this process's clients ([`crate::tls::use_for_clients`]), the
//! connection is TLS, and the server's certificate must name the address connected to.
//!
//! A server run by [`crate::run_node`] in this very process is reached in-process, through
//! its inbox (see the `local` module): same messages, same limits, no socket.
//!
//! After a [`NetError::Timeout`] from [`Client::recv`] or [`Client::call`], the connection
//! stays usable, but the late reply to the timed-out request may still arrive and will be
//! returned by the next `recv`; callers that pipeline or retry should match replies to
//! requests (the services' messages carry request ids for this) or reconnect.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::SocketAddr;
use synod_node::NodeId;
use tokio::io::AsyncWriteExt;
use tokio::net::{lookup_host, TcpStream, ToSocketAddrs};
use tokio::time::timeout;

use crate::codec::{decode_msg, encode_frame, Admission, Credentials, Hello, CLIENT_MAX_FRAME};
use crate::conn::{handshake, no_delay, FrameReader, FrameWriter, Halves, ReadHalf};
use crate::error::NetError;
use crate::local::{self, LocalConn};
use crate::tls;

/// A connection to one synod server, exchanging messages of type `M`.
pub struct Client<M> {
    link: Link<M>,
    server: NodeId,
    max_frame: usize,
    _msg: PhantomData<fn(M) -> M>,
}

/// How the messages travel.
enum Link<M> {
    Tcp {
        reader: FrameReader<ReadHalf>,
        writer: FrameWriter,
    },
    /// To a node in this process.
    Local(LocalConn<M>),
}

impl<M: Serialize + DeserializeOwned + Send + 'static> Client<M> {
    /// Connects and handshakes within `limit`, accepting frames as large as any server may
    /// be configured to send ([`CLIENT_MAX_FRAME`]).
    pub async fn connect(addr: impl ToSocketAddrs, limit: Duration) -> Result<Self, NetError> {
        Self::connect_as(addr, limit, None).await
    }

    /// Connects as [`connect`](Self::connect) does, presenting `credentials` to the server.
    pub async fn connect_as(
        addr: impl ToSocketAddrs,
        limit: Duration,
        credentials: Option<&Credentials>,
    ) -> Result<Self, NetError> {
        Self::open(addr, limit, CLIENT_MAX_FRAME, credentials).await
    }

    /// Connects with a custom frame-size limit (applied to what it sends and receives).
    pub async fn connect_with_max_frame(
        addr: impl ToSocketAddrs,
        limit: Duration,
        max_frame: usize,
    ) -> Result<Self, NetError> {
        Self::open(addr, limit, max_frame, None).await
    }

    async fn open(
        addr: impl ToSocketAddrs,
        limit: Duration,
        max_frame: usize,
        credentials: Option<&Credentials>,
    ) -> Result<Self, NetError> {
        // Credentials travel only inside TLS: a server with users requires it, so a plain
        // connection presents none rather than a password anyone on the path could read.
        let credentials = credentials.filter(|_| tls::for_clients().is_some());
        let presented = encode_frame(&credentials, max_frame)?;
        let attempt = async {
            let addrs: Vec<SocketAddr> = lookup_host(addr).await?.collect();
            if let Some(route) = addrs.iter().find_map(|&a| local::route::<M>(a)) {
                return Ok((
                    Link::Local(LocalConn::open(route.clone()).await?),
                    route.server,
                ));
            }
            let stream = TcpStream::connect(&addrs[..]).await?;
            no_delay(&stream)?;
            let halves = match tls::for_clients() {
                None => Halves::plain(stream),
                Some(tls) => {
                    let ip = stream.peer_addr()?.ip();
                    Halves::tls(tls.connect(stream, ip).await?)
                }
            };
            let (mut reader, writer, hello) =
                handshake(halves, Hello::Client, &presented, max_frame, limit).await?;
            let Hello::Peer(server) = hello else {
                return Err(NetError::UnexpectedHello {
                    expected: "a server".to_string(),
                    found: hello,
                });
            };
            let answer = reader.read_frame().await?.ok_or(NetError::Closed)?;
            match decode_msg(&answer)? {
                Admission::Admitted => Ok((Link::Tcp { reader, writer }, server)),
                Admission::Refused(failure) => Err(NetError::AuthRefused(failure)),
            }
        };
        let (link, server) = timeout(limit, attempt)
            .await
            .map_err(|_| NetError::Timeout {
                what: "connect",
                after: limit,
            })??;
        Ok(Client {
            link,
            server,
            max_frame,
            _msg: PhantomData,
        })
    }

    /// Whether this connection reaches its server in-process rather than over TCP.
    pub fn is_local(&self) -> bool {
        matches!(self.link, Link::Local(_))
    }

    /// The id the server announced in its handshake.
    pub fn server_id(&self) -> NodeId {
        self.server
    }

    /// Sends one message. Waits only for the socket to take it, not for any reply.
    pub async fn send(&mut self, msg: &M) -> Result<(), NetError> {
        match &mut self.link {
            Link::Tcp { writer, .. } => {
                let frame = encode_frame(msg, self.max_frame)?;
                writer.write_all(&frame).await?;
                writer.flush().await?;
                Ok(())
            }
            Link::Local(conn) => conn.send(msg, self.max_frame).await,
        }
    }

    /// Waits up to `limit` for the next message from the server. [`NetError::Closed`] if the
    /// server closed the connection.
    pub async fn recv(&mut self, limit: Duration) -> Result<M, NetError> {
        let timed_out = |_| NetError::Timeout {
            what: "receive",
            after: limit,
        };
        match &mut self.link {
            Link::Tcp { reader, .. } => {
                let frame = timeout(limit, reader.read_frame())
                    .await
                    .map_err(timed_out)??;
                let payload = frame.ok_or(NetError::Closed)?;
                Ok(decode_msg(&payload)?)
            }
            Link::Local(conn) => timeout(limit, conn.recv()).await.map_err(timed_out)?,
        }
    }

    /// Sends `msg` and returns the next message from the server, all within `limit`.
    pub async fn call(&mut self, msg: &M, limit: Duration) -> Result<M, NetError> {
        let start = tokio::time::Instant::now();
        timeout(limit, self.send(msg))
            .await
            .map_err(|_| NetError::Timeout {
                what: "request",
                after: limit,
            })??;
        self.recv(limit.saturating_sub(start.elapsed()))
            .await
            .map_err(|e| match e {
                NetError::Timeout { .. } => NetError::Timeout {
                    what: "request",
                    after: limit,
                },
                other => other,
            })
    }
}
