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
//! After a [`NetError::Timeout`] from [`Client::recv`] or [`Client::call`], the connection
//! stays usable, but the late reply to the timed-out request may still arrive and will be
//! returned by the next `recv`; callers that pipeline or retry should match replies to
//! requests (the services' messages carry request ids for this) or reconnect.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use synod_node::NodeId;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::timeout;

use crate::codec::{decode_msg, encode_frame, Hello, CLIENT_MAX_FRAME};
use crate::conn::{handshake, FrameReader, FrameWriter};
use crate::error::NetError;

/// A connection to one synod server, exchanging messages of type `M`.
pub struct Client<M> {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter,
    server: NodeId,
    max_frame: usize,
    _msg: PhantomData<fn(M) -> M>,
}

impl<M: Serialize + DeserializeOwned> Client<M> {
    /// Connects and handshakes within `limit`, accepting frames as large as any server may
    /// be configured to send ([`CLIENT_MAX_FRAME`]).
    pub async fn connect(addr: impl ToSocketAddrs, limit: Duration) -> Result<Self, NetError> {
        Self::connect_with_max_frame(addr, limit, CLIENT_MAX_FRAME).await
    }

    /// Connects with a custom frame-size limit (applied to what it sends and receives).
    pub async fn connect_with_max_frame(
        addr: impl ToSocketAddrs,
        limit: Duration,
        max_frame: usize,
    ) -> Result<Self, NetError> {
        let attempt = async {
            let stream = TcpStream::connect(addr).await?;
            handshake(stream, Hello::Client, max_frame, limit).await
        };
        let (reader, writer, hello) =
            timeout(limit, attempt)
                .await
                .map_err(|_| NetError::Timeout {
                    what: "connect",
                    after: limit,
                })??;
        let Hello::Peer(server) = hello else {
            return Err(NetError::UnexpectedHello {
                expected: "a server".to_string(),
                found: hello,
            });
        };
        Ok(Client {
            reader,
            writer,
            server,
            max_frame,
            _msg: PhantomData,
        })
    }

    /// The id the server announced in its handshake.
    pub fn server_id(&self) -> NodeId {
        self.server
    }

    /// Sends one message. Waits only for the socket to take it, not for any reply.
    pub async fn send(&mut self, msg: &M) -> Result<(), NetError> {
        let frame = encode_frame(msg, self.max_frame)?;
        self.writer.write_all(&frame).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Waits up to `limit` for the next message from the server. [`NetError::Closed`] if the
    /// server closed the connection.
    pub async fn recv(&mut self, limit: Duration) -> Result<M, NetError> {
        let frame = timeout(limit, self.reader.read_frame())
            .await
            .map_err(|_| NetError::Timeout {
                what: "receive",
                after: limit,
            })??;
        let payload = frame.ok_or(NetError::Closed)?;
        Ok(decode_msg(&payload)?)
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
