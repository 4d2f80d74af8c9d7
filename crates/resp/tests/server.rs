//! The RESP server against an in-memory backend, over real TCP.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use synod_resp::{serve_resp, Backend, BackendError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Memory(Mutex<BTreeMap<String, String>>);

impl Memory {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Backend for Memory {
    async fn get(&self, key: String) -> Result<Option<String>, BackendError> {
        if key == "unavailable" {
            return Err(BackendError::Unavailable("no primary".into()));
        }
        Ok(self.map().get(&key).cloned())
    }
    async fn put(&self, key: String, value: String) -> Result<(), BackendError> {
        self.map().insert(key, value);
        Ok(())
    }
    async fn append(&self, key: String, value: String) -> Result<Option<u64>, BackendError> {
        let mut map = self.map();
        let entry = map.entry(key).or_default();
        entry.push_str(&value);
        Ok(Some(entry.len() as u64))
    }
}

async fn start() -> (TcpStream, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_resp(listener, Arc::new(Memory::default()), async {
        let _ = stopped.await;
    }));
    (TcpStream::connect(addr).await.unwrap(), stop)
}

/// Sends `request` and reads until `expected.len()` bytes arrived (or 5 s passed).
async fn exchange(stream: &mut TcpStream, request: &[u8], expected: &[u8]) {
    stream.write_all(request).await.unwrap();
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut got))
        .await
        .expect("reply in time")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

#[tokio::test]
async fn answers_get_set_append_ping_and_survives_unknown_commands() {
    let (mut s, _stop) = start().await;
    exchange(&mut s, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n").await;
    exchange(&mut s, b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n", b"$2\r\nhi\r\n").await;
    exchange(&mut s, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"$-1\r\n").await;
    exchange(
        &mut s,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nab\r\n",
        b"+OK\r\n",
    )
    .await;
    exchange(
        &mut s,
        b"*3\r\n$6\r\nappend\r\n$1\r\nk\r\n$1\r\nc\r\n",
        b":3\r\n",
    )
    .await;
    exchange(&mut s, b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n", b"$3\r\nabc\r\n").await;
    exchange(
        &mut s,
        b"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n",
        b"-ERR unknown command 'incr'\r\n",
    )
    .await;
    exchange(
        &mut s,
        b"*1\r\n$3\r\nGET\r\n",
        b"-ERR wrong number of arguments for 'get' command\r\n",
    )
    .await;
    exchange(
        &mut s,
        b"*2\r\n$3\r\nGET\r\n$11\r\nunavailable\r\n",
        b"-ERR unavailable: no primary\r\n",
    )
    .await;
    // Still usable, pipelined, and inline commands work too.
    exchange(
        &mut s,
        b"PING\r\nPING hello\r\n",
        b"+PONG\r\n$5\r\nhello\r\n",
    )
    .await;
}

#[tokio::test]
async fn a_protocol_error_is_answered_then_the_connection_closes() {
    let (mut s, _stop) = start().await;
    s.write_all(b"*1\r\n$x\r\n").await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply))
        .await
        .expect("closed in time")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
}
