//! The RESP server against an in-memory backend, over real TCP.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use synod_keyspace::Keyspace;
use synod_resp::{
    serve_resp, Backend, BackendError, Command, ParseLimits, Reply, RespLimits, MAX_BATCH_COMMANDS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A keyspace, counting the commands it executed, and recording the size of every batch.
#[derive(Default)]
struct Memory(
    Mutex<Keyspace>,
    std::sync::atomic::AtomicUsize,
    Mutex<Vec<usize>>,
);

impl Memory {
    fn store(&self) -> std::sync::MutexGuard<'_, Keyspace> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Backend for Memory {
    async fn run(&self, command: Command) -> Result<Reply, BackendError> {
        if command.keys() == [b"unavailable"] {
            return Err(BackendError::Unavailable("no primary".into()));
        }
        Ok(self.store().apply(&command))
    }
    async fn run_batch(&self, commands: Vec<Command>) -> Vec<Result<Reply, BackendError>> {
        if let Ok(mut batches) = self.2.lock() {
            batches.push(commands.len());
        }
        let mut answers = Vec::new();
        for command in commands {
            answers.push(self.run(command).await);
        }
        answers
    }
}

async fn start() -> (TcpStream, tokio::sync::oneshot::Sender<()>) {
    let (addr, _, stop) = start_with(RespLimits::default()).await;
    (TcpStream::connect(addr).await.unwrap(), stop)
}

/// A server within `limits`: its address, its backend, and its stop switch.
async fn start_with(
    limits: RespLimits,
) -> (
    std::net::SocketAddr,
    Arc<Memory>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let backend = Arc::new(Memory::default());
    tokio::spawn(serve_resp(listener, backend.clone(), limits, async {
        let _ = stopped.await;
    }));
    (addr, backend, stop)
}

/// Small limits, so tests exercise them with small data.
fn small() -> RespLimits {
    RespLimits {
        parse: ParseLimits {
            max_bulk: 1024,
            max_command: 4096,
        },
        max_clients: 2,
        idle_timeout: Some(Duration::from_millis(300)),
        max_buffered: 1 << 20,
        max_output: 4096,
    }
}

/// Reads until the server closes the connection; returns what arrived.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got));
    // A reset after the replies counts as closed too.
    let _ = read.await.expect("closed in time");
    got
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
        b"-ERR value is not an integer or out of range\r\n",
    )
    .await;
    exchange(
        &mut s,
        b"*2\r\n$4\r\nFROB\r\n$1\r\nk\r\n",
        b"-ERR unknown command 'FROB', with args beginning with: 'k' \r\n",
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

#[tokio::test]
async fn a_value_over_the_limit_is_refused_at_once_and_never_reaches_the_backend() {
    let (addr, backend, _stop) = start_with(small()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Only the header of the value is sent: the refusal does not wait for the rest.
    exchange(
        &mut s,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000\r\n",
        b"-ERR value too large (2000 > 1024)\r\n",
    )
    .await;
    let mut rest = vec![b'v'; 2000];
    rest.extend(b"\r\n");
    s.write_all(&rest).await.unwrap();
    exchange(&mut s, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"$-1\r\n").await;
    assert_eq!(
        backend.1.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "only the GET ran"
    );
    // A command above the total limit, made of values each within it, is refused too.
    let mut big = b"*5\r\n$3\r\nSET\r\n".to_vec();
    for _ in 0..4 {
        big.extend(b"$1000\r\n");
        big.extend(vec![b'x'; 1000]);
        big.extend(b"\r\n");
    }
    s.write_all(&big).await.unwrap();
    // 4 x 1000 bytes of values, their headers, and 32 bytes of bookkeeping per element.
    exchange(
        &mut s,
        b"PING\r\n",
        b"-ERR command too large (4209 > 4096)\r\n+PONG\r\n",
    )
    .await;
}

#[tokio::test]
async fn a_client_past_the_connection_limit_is_told_why_and_closed() {
    let (addr, _, _stop) = start_with(small()).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    exchange(&mut first, b"PING\r\n", b"+PONG\r\n").await;
    exchange(&mut second, b"PING\r\n", b"+PONG\r\n").await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        until_closed(&mut third).await,
        b"-ERR max number of clients reached\r\n"
    );
    drop(first);
    // The slot is free again once the server saw the first one go.
    let fourth = loop {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PING\r\n").await.unwrap();
        let mut got = [0u8; 7];
        if s.read_exact(&mut got).await.is_ok() && &got == b"+PONG\r\n" {
            break s;
        }
    };
    drop(fourth);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (addr, _, _stop) = start_with(small()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    exchange(&mut s, b"PING\r\n", b"+PONG\r\n").await;
    // Half a command, then silence: the server closes, it does not wait forever.
    s.write_all(b"*2\r\n$3\r\nGET\r\n").await.unwrap();
    assert_eq!(until_closed(&mut s).await, b"");
}

#[tokio::test]
async fn a_client_that_reads_no_replies_stops_being_served_and_is_closed() {
    let (addr, backend, _stop) = start_with(small()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let value = "v".repeat(1000);
    exchange(
        &mut s,
        format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\n{value}\r\n").as_bytes(),
        b"+OK\r\n",
    )
    .await;
    // Far more commands than socket buffers hold, whose replies (a gigabyte) are never read.
    let gets = 1_000_000;
    let pipeline = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".repeat(gets);
    // The server stops reading while its replies wait, so this write can only end when the
    // server gives up on the client and resets the connection.
    let sent = tokio::time::timeout(Duration::from_secs(20), s.write_all(&pipeline))
        .await
        .expect("the server closed the connection in time");
    assert!(sent.is_err(), "the server read every command");
    let executed = backend.1.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        executed < gets / 10,
        "executed {executed} of {gets} commands"
    );
}

#[tokio::test]
async fn a_pipeline_is_run_in_batches_and_answered_in_order() {
    let (addr, backend, _stop) = start_with(RespLimits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // SET k i, GET k, APPEND k x, PING, for i in 0..n: every reply depends on the one before.
    let n = 2 * MAX_BATCH_COMMANDS;
    let (mut request, mut expected) = (Vec::new(), Vec::new());
    for i in 0..n {
        let i = i.to_string();
        request.extend(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{i}\r\n", i.len()).bytes());
        request.extend(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        request.extend(b"*3\r\n$6\r\nAPPEND\r\n$1\r\nk\r\n$1\r\nx\r\n");
        request.extend(b"*1\r\n$4\r\nPING\r\n");
        expected.extend(
            format!(
                "+OK\r\n${}\r\n{i}\r\n:{}\r\n+PONG\r\n",
                i.len(),
                i.len() + 1
            )
            .bytes(),
        );
    }
    exchange(&mut s, &request, &expected).await;
    let batches = backend.2.lock().unwrap().clone();
    assert_eq!(
        backend.1.load(std::sync::atomic::Ordering::Relaxed),
        3 * n,
        "every operation ran once"
    );
    assert!(
        !batches.is_empty() && batches.len() < n,
        "{} commands sent at once ran in batches {batches:?}",
        4 * n,
    );
    assert!(
        batches.iter().all(|&b| b <= MAX_BATCH_COMMANDS),
        "{batches:?}"
    );
}

#[tokio::test]
async fn values_are_bytes_and_a_missing_key_is_nil_not_empty() {
    let (mut s, _stop) = start().await;
    exchange(&mut s, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"$-1\r\n").await;
    exchange(
        &mut s,
        b"*3\r\n$3\r\nSET\r\n$1\r\ne\r\n$0\r\n\r\n",
        b"+OK\r\n",
    )
    .await;
    exchange(&mut s, b"*2\r\n$3\r\nGET\r\n$1\r\ne\r\n", b"$0\r\n\r\n").await;
    let binary: Vec<u8> = (0..=255).collect();
    let mut set = b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$256\r\n".to_vec();
    set.extend_from_slice(&binary);
    set.extend_from_slice(b"\r\n");
    exchange(&mut s, &set, b"+OK\r\n").await;
    let mut expected = b"$256\r\n".to_vec();
    expected.extend_from_slice(&binary);
    expected.extend_from_slice(b"\r\n");
    exchange(&mut s, b"*2\r\n$3\r\nGET\r\n$1\r\nb\r\n", &expected).await;
}

#[tokio::test]
async fn quit_answers_ok_then_closes() {
    let (mut s, _stop) = start().await;
    s.write_all(b"PING\r\nQUIT\r\nPING\r\n").await.unwrap();
    assert_eq!(until_closed(&mut s).await, b"+PONG\r\n+OK\r\n");
}

#[tokio::test]
async fn an_http_request_is_not_run_and_its_connection_is_closed() {
    let (addr, backend, _stop) = start_with(RespLimits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
    )
    .await
    .unwrap();
    assert_eq!(until_closed(&mut s).await, b"");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"Host: evil\r\nSET k v\r\n").await.unwrap();
    assert_eq!(until_closed(&mut s).await, b"");
    assert_eq!(backend.0.lock().unwrap().get(b"k"), None);
}

#[tokio::test]
async fn a_transaction_is_one_backend_command() {
    let (addr, backend, _stop) = start_with(RespLimits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    exchange(
        &mut s,
        b"MULTI\r\nINCR n\r\nPING\r\nINCR n\r\nEXEC\r\n",
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n:1\r\n+PONG\r\n:2\r\n",
    )
    .await;
    assert_eq!(backend.1.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn info_reports_the_keyspace() {
    let (mut s, _stop) = start().await;
    exchange(&mut s, b"SET a 1\r\n", b"+OK\r\n").await;
    s.write_all(b"INFO keyspace\r\nQUIT\r\n").await.unwrap();
    let text = "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n";
    let expected = format!("${}\r\n{text}\r\n+OK\r\n", text.len());
    assert_eq!(
        String::from_utf8_lossy(&until_closed(&mut s).await),
        expected
    );
}
