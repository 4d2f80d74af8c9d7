//! The RESP server: one task per connection, commands answered in order by a [`Backend`].

use std::future::Future;
use std::sync::Arc;

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::parse::{parse, ParseError};
use crate::value::{encode, Value};

/// Why a backend could not perform an operation; sent to the client as `-ERR ...`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendError {
    /// No server answered in time; the operation may or may not have taken effect.
    #[error("timed out: the operation may or may not have been applied")]
    Timeout,
    /// The service cannot serve now.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The key/value service behind the RESP front. Implementations are usually a client (a
/// clerk) of a replicated service; each call is one linearizable operation.
pub trait Backend: Send + Sync + 'static {
    /// The value of `key`, `None` if it has none (services that store "" for a missing key
    /// may return `Some("")`).
    fn get(&self, key: String)
        -> impl Future<Output = Result<Option<String>, BackendError>> + Send;
    fn put(
        &self,
        key: String,
        value: String,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Appends `value` to `key`'s value. Returns the new length in bytes where the service
    /// knows it (answered as an integer, as Redis does), else `None` (answered `+OK`).
    fn append(
        &self,
        key: String,
        value: String,
    ) -> impl Future<Output = Result<Option<u64>, BackendError>> + Send;
}

/// Serves RESP clients on `listener` until `shutdown` resolves. Connections in progress end
/// with it.
pub async fn serve_resp<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let backend = backend.clone();
                    connections.spawn(async move {
                        match serve_connection(stream, backend).await {
                            Ok(()) => debug!(%peer, "RESP connection closed"),
                            Err(Closed::MidCommand { buffered }) => info!(
                                %peer, buffered,
                                "RESP client disconnected in the middle of a command"
                            ),
                            Err(Closed::Protocol(e)) => {
                                warn!(%peer, reason = %e, "closing RESP connection: protocol error")
                            }
                            Err(Closed::Io(e)) => info!(%peer, reason = %e, "RESP connection lost"),
                        }
                    });
                }
                Err(e) => {
                    warn!(reason = %e, "RESP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// Why a connection ended other than by the client closing it between commands.
#[derive(Debug, Error)]
enum Closed {
    #[error("disconnected with {buffered} bytes of an unfinished command")]
    MidCommand { buffered: usize },
    #[error(transparent)]
    Protocol(#[from] ParseError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Input is read into a buffer only once the socket is readable, so an idle connection
/// holds no buffer at all; a buffer that grew for a large command is released afterwards.
const READ_CHUNK: usize = 16 * 1024;

async fn serve_connection<B: Backend>(
    mut stream: TcpStream,
    backend: Arc<B>,
) -> Result<(), Closed> {
    let mut buf = Vec::new();
    loop {
        // Answer every complete command in the buffer (clients may pipeline).
        loop {
            match parse(&buf) {
                Ok(Some((value, used))) => {
                    buf.drain(..used);
                    let reply = execute(value, &*backend).await;
                    let mut out = Vec::new();
                    encode(&reply, &mut out);
                    stream.write_all(&out).await?;
                }
                Ok(None) => break,
                Err(e) => {
                    let mut out = Vec::new();
                    encode(&Value::Error(format!("ERR Protocol error: {e}")), &mut out);
                    // The client may be gone already; the protocol error is what matters.
                    let _ = stream.write_all(&out).await;
                    return Err(e.into());
                }
            }
        }
        if buf.is_empty() && buf.capacity() > READ_CHUNK {
            buf = Vec::new();
        }
        stream.readable().await?;
        buf.reserve(READ_CHUNK);
        match stream.try_read_buf(&mut buf) {
            Ok(0) if buf.is_empty() => return Ok(()),
            Ok(0) => {
                return Err(Closed::MidCommand {
                    buffered: buf.len(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs one command and returns the reply.
async fn execute<B: Backend>(command: Value, backend: &B) -> Value {
    let Value::Array(Some(items)) = command else {
        return Value::Error("ERR expected an array of bulk strings".into());
    };
    let mut args = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Bulk(Some(bytes)) => match String::from_utf8(bytes) {
                Ok(text) => args.push(text),
                Err(_) => return Value::Error("ERR keys and values must be UTF-8".into()),
            },
            _ => return Value::Error("ERR expected an array of bulk strings".into()),
        }
    }
    let Some(name) = args.first().map(|n| n.to_ascii_lowercase()) else {
        return Value::Error("ERR empty command".into());
    };
    let mut args = args.into_iter().skip(1);
    let arity = args.len();
    let wrong_arity = || {
        Value::Error(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    };
    let result = match (name.as_str(), arity) {
        ("ping", 0) => return Value::Simple("PONG".into()),
        ("ping" | "echo", 1) => return Value::Bulk(args.next().map(String::into_bytes)),
        ("get", 1) => backend
            .get(args.next().unwrap_or_default())
            .await
            .map(|value| Value::Bulk(value.map(String::into_bytes))),
        ("set", 2) => {
            let (key, value) = (
                args.next().unwrap_or_default(),
                args.next().unwrap_or_default(),
            );
            backend
                .put(key, value)
                .await
                .map(|()| Value::Simple("OK".into()))
        }
        ("append", 2) => {
            let (key, value) = (
                args.next().unwrap_or_default(),
                args.next().unwrap_or_default(),
            );
            backend.append(key, value).await.map(|length| match length {
                Some(length) => Value::Integer(length as i64),
                None => Value::Simple("OK".into()),
            })
        }
        ("ping" | "echo" | "get" | "set" | "append", _) => return wrong_arity(),
        _ => {
            let shown: String = name.chars().take(64).collect();
            return Value::Error(format!("ERR unknown command '{shown}'"));
        }
    };
    result.unwrap_or_else(|e| Value::Error(format!("ERR {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every GET with "v"; writes are accepted and forgotten.
    struct Fixed;

    impl Backend for Fixed {
        async fn get(&self, _key: String) -> Result<Option<String>, BackendError> {
            Ok(Some("v".into()))
        }
        async fn put(&self, _key: String, _value: String) -> Result<(), BackendError> {
            Ok(())
        }
        async fn append(&self, _: String, _: String) -> Result<Option<u64>, BackendError> {
            Ok(None)
        }
    }

    /// Serves one connection on which the client sends `bytes` and closes its side; returns
    /// how the server saw the connection end.
    async fn ending_after(bytes: &[u8]) -> Result<(), Closed> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(bytes).await.unwrap();
        client.shutdown().await.unwrap();
        serve_connection(server, Arc::new(Fixed)).await
    }

    #[tokio::test]
    async fn the_way_a_connection_ends_is_told_apart_for_the_log() {
        assert!(ending_after(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            .await
            .is_ok());
        assert!(matches!(
            ending_after(b"*2\r\n$3\r\nGET\r\n$1").await,
            Err(Closed::MidCommand { buffered: 15 })
        ));
        assert!(matches!(
            ending_after(b"*99999999999\r\n").await,
            Err(Closed::Protocol(ParseError::ArrayTooLong(99_999_999_999)))
        ));
    }
}
