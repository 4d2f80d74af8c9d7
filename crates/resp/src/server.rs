//! The RESP server: one task per connection, commands answered in order by a [`Backend`].
//!
//! Pipelining: a connection's commands that have arrived are handed to the backend together,
//! as one batch ([`Backend::run_batch`], at most [`MAX_BATCH_COMMANDS`] commands and
//! [`limits::BATCH_BYTES`] of keys and values), and the replies are written in order. While
//! a batch is being run the commands that follow wait in the socket and the parser, and
//! form the next batch, so a connection has one batch in flight: its commands take effect
//! in the order they were sent, whatever the backend does with each batch.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
#[cfg(test)]
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use synod_node::limits::{self, Limits};

use crate::auth::Session;
use crate::parse::{ParseError, ParseLimits, Parsed, Parser};
use crate::security::{self, RespSecurity};
use crate::value::{encode, Value};

/// Why a backend could not perform an operation; sent to the client as `-ERR ...` (or
/// `-OOM ...`, as Redis does).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendError {
    /// No server answered in time; the operation may or may not have taken effect.
    #[error("timed out: the operation may or may not have been applied")]
    Timeout,
    /// The service cannot serve now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Refused for its size (`value too large (N > limit)`); nothing was applied.
    #[error("{0}")]
    TooLarge(String),
    /// A write refused because the store is at its memory limit; nothing was applied. Sent
    /// as Redis sends it under `maxmemory` with `noeviction`: an `-OOM` error.
    #[error("command not allowed when used memory > 'maxmemory'.")]
    OutOfMemory,
}

/// One key/value operation of a RESP command, as a [`Backend`] runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Get { key: String },
    Set { key: String, value: String },
    Append { key: String, value: String },
}

impl Op {
    /// Bytes of key and value: what bounds a batch.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Op::Get { key } => key.len(),
            Op::Set { key, value } | Op::Append { key, value } => key.len() + value.len(),
        }
    }
}

/// A [`Backend`]'s answer to one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A GET's value (`None`: the key has none).
    Value(Option<String>),
    /// A SET took effect.
    Set,
    /// An APPEND took effect; the new length where the service knows it.
    Appended(Option<u64>),
}

/// Most commands of one connection handed to the backend as one batch.
pub const MAX_BATCH_COMMANDS: usize = 256;

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

    /// Runs the operations of a pipelined batch and answers each, in order: one answer per
    /// operation, and every operation takes effect after the ones before it. A backend may
    /// run them as one unit (one log entry); the default runs them one by one.
    fn run_batch(
        &self,
        ops: Vec<Op>,
    ) -> impl Future<Output = Vec<Result<Answer, BackendError>>> + Send {
        async move {
            let mut answers = Vec::with_capacity(ops.len());
            for op in ops {
                answers.push(run_one(self, op).await);
            }
            answers
        }
    }
}

/// Runs one operation through the backend's single-operation calls.
pub async fn run_one<B: Backend + ?Sized>(backend: &B, op: Op) -> Result<Answer, BackendError> {
    match op {
        Op::Get { key } => backend.get(key).await.map(Answer::Value),
        Op::Set { key, value } => backend.put(key, value).await.map(|()| Answer::Set),
        Op::Append { key, value } => backend.append(key, value).await.map(Answer::Appended),
    }
}

/// The bounds of a RESP port: per command, per connection and per server. Every one of them
/// is a flag of the servers (docs/running.md, "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespLimits {
    /// What one command may hold (a value above `max_bulk`, or a command above
    /// `max_command`, is answered `-ERR value too large (N > limit)` and skipped).
    pub parse: ParseLimits,
    /// Connections served at once; one more is answered `-ERR max number of clients
    /// reached` and closed, as Redis does.
    pub max_clients: usize,
    /// A connection that sends nothing, or takes none of its replies, for this long is
    /// closed (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Bytes of unfinished commands held across all connections. A connection that needs more
    /// waits (and so stops reading, which pushes back on its client through TCP) until others
    /// release theirs; the first [`FREE_PER_CONNECTION`] bytes of each need none.
    pub max_buffered: usize,
    /// Replies waiting to be written on one connection: past this, they are written before
    /// the next command is read, so a client that does not read its replies stops being
    /// read, and is closed after `idle_timeout`.
    pub max_output: usize,
}

/// What a connection may buffer without drawing on [`RespLimits::max_buffered`]: small
/// commands never wait for big ones.
pub const FREE_PER_CONNECTION: usize = 64 * 1024;

impl RespLimits {
    /// The defaults for a server with the size policy `limits`.
    pub fn new(limits: &Limits) -> Self {
        RespLimits {
            parse: ParseLimits::commands(limits),
            max_clients: 1024,
            idle_timeout: Some(Duration::from_secs(300)),
            max_buffered: (256 << 20).max(2 * limits.max_command()),
            max_output: 1 << 20,
        }
    }
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits::new(&Limits::default())
    }
}

/// Serves RESP clients on `listener` until `shutdown` resolves, within `limits`.
/// Connections in progress end with it.
pub async fn serve_resp<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    limits: RespLimits,
    shutdown: impl Future<Output = ()>,
) {
    serve_resp_secured(listener, backend, limits, RespSecurity::default(), shutdown).await
}

/// [`serve_resp`] with TLS and access control (the `security` module).
pub async fn serve_resp_secured<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    limits: RespLimits,
    security: RespSecurity,
    shutdown: impl Future<Output = ()>,
) {
    let budget = Arc::new(Semaphore::new(limits.max_buffered));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if connections.len() >= limits.max_clients => {
                    // Never waits: the refusal fits any socket buffer, and a client that
                    // cannot take it is closed all the same.
                    let _ = stream.try_write(MAX_CLIENTS_REACHED);
                    warn!(%peer, max = limits.max_clients, "RESP connection refused: max number of clients reached");
                }
                Ok((stream, peer)) => {
                    let backend = backend.clone();
                    let budget = Buffered { semaphore: budget.clone(), held: 0 };
                    let security = security.clone();
                    connections.spawn(async move {
                        let session = Session::new(security.access.clone(), peer);
                        let served = match security::accept(&security, stream).await {
                            Ok(stream) => serve_connection(stream, backend, &limits, budget, session).await,
                            Err(e) => Err(Closed::Io(e)),
                        };
                        match served {
                            Ok(()) => debug!(%peer, "RESP connection closed"),
                            Err(Closed::MidCommand { buffered }) => info!(
                                %peer, buffered,
                                "RESP client disconnected in the middle of a command"
                            ),
                            Err(e @ (Closed::Idle(_) | Closed::NotReading(_))) => {
                                info!(%peer, reason = %e, "closing RESP connection")
                            }
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

const MAX_CLIENTS_REACHED: &[u8] = b"-ERR max number of clients reached\r\n";

/// Why a connection ended other than by the client closing it between commands.
#[derive(Debug, Error)]
enum Closed {
    #[error("disconnected with {buffered} bytes of an unfinished command")]
    MidCommand { buffered: usize },
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("took none of its replies for {0:?}")]
    NotReading(Duration),
    #[error(transparent)]
    Protocol(#[from] ParseError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Input is read in pieces of this size, only once the socket is readable, so an idle
/// connection holds no input buffer at all.
const READ_CHUNK: usize = 16 * 1024;

/// One connection's share of the server-wide [`RespLimits::max_buffered`] budget, given back
/// when the connection ends.
struct Buffered {
    semaphore: Arc<Semaphore>,
    held: usize,
}

impl Buffered {
    /// Holds enough budget for `need` bytes (beyond the free allowance), waiting for other
    /// connections to release theirs if the server has none left.
    async fn hold(&mut self, need: usize) {
        let need = need.saturating_sub(FREE_PER_CONNECTION);
        if need > self.held {
            let more = u32::try_from(need - self.held).unwrap_or(u32::MAX);
            // Never closed, so acquiring only waits.
            if let Ok(permit) = self.semaphore.acquire_many(more).await {
                permit.forget();
                self.held += more as usize;
            }
        } else if need < self.held {
            self.semaphore.add_permits(self.held - need);
            self.held = need;
        }
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.semaphore.add_permits(self.held);
    }
}

/// Waits for `io`, up to `limit` if there is one.
async fn within<T>(limit: Option<Duration>, io: impl Future<Output = T>) -> Option<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, io).await.ok(),
        None => Some(io.await),
    }
}

async fn serve_connection<B: Backend, S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    backend: Arc<B>,
    limits: &RespLimits,
    mut budget: Buffered,
    mut session: Session,
) -> Result<(), Closed> {
    let mut parser = Parser::new(limits.parse);
    let mut out = Vec::new();
    let idle = limits.idle_timeout;
    // A command taken from the parser that did not fit the batch before: it opens the next.
    let mut carried = None;
    loop {
        // Answer every complete command received, batch by batch (clients pipeline),
        // writing the replies whenever they pass `max_output`, and before reading more.
        loop {
            let mut batch = Batch::default();
            let mut failed = None;
            if let Some(step) = carried.take() {
                batch.push(step);
            }
            while batch.has_room() {
                match parser.take() {
                    Ok(Some(Parsed::Value(command))) => {
                        let step = match session.screen(command) {
                            Ok(command) => Step::of(command),
                            Err(reply) => Step::Reply(reply),
                        };
                        if batch.fits(&step) {
                            batch.push(step);
                        } else {
                            carried = Some(step);
                        }
                    }
                    Ok(Some(Parsed::Refused(why))) => {
                        batch.push(Step::Reply(Value::Error(format!("ERR {why}"))))
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let more = !batch.has_room() || carried.is_some();
            batch.run(&*backend, &mut out).await;
            if let Some(e) = failed {
                encode(&Value::Error(format!("ERR Protocol error: {e}")), &mut out);
                // The client may be gone already; the protocol error is what matters.
                let _ = write_replies(&mut stream, &mut out, idle).await;
                return Err(e.into());
            }
            if out.len() >= limits.max_output {
                write_replies(&mut stream, &mut out, idle).await?;
            }
            if !more {
                break;
            }
        }
        write_replies(&mut stream, &mut out, idle).await?;
        budget.hold(parser.buffered() + READ_CHUNK).await;
        // The chunk is on the stack: an idle connection holds no input buffer.
        let mut chunk = [0u8; READ_CHUNK];
        let read = within(idle, stream.read(&mut chunk))
            .await
            .ok_or(Closed::Idle(idle.unwrap_or_default()))?;
        match read {
            Ok(0) if parser.mid_value() => {
                return Err(Closed::MidCommand {
                    buffered: parser.buffered(),
                })
            }
            Ok(0) => return Ok(()),
            Ok(n) => parser.feed(&chunk[..n]),
            // A TLS client that closed without TLS's close_notify: an end like any other.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !parser.mid_value() => {
                return Ok(())
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes the waiting replies; a client that takes none of them within `idle` is closed.
async fn write_replies<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    idle: Option<Duration>,
) -> Result<(), Closed> {
    if out.is_empty() {
        return Ok(());
    }
    within(idle, async {
        stream.write_all(out).await?;
        // A TLS stream holds written bytes until flushed.
        stream.flush().await
    })
    .await
    .ok_or(Closed::NotReading(idle.unwrap_or_default()))??;
    out.clear();
    if out.capacity() > 4 * READ_CHUNK {
        *out = Vec::new();
    }
    Ok(())
}

/// What one command needs: a reply known at once (PING, a wrong command), or an operation
/// of the backend.
enum Step {
    Reply(Value),
    Run(Op),
}

impl Step {
    fn of(command: Value) -> Step {
        match operation(command) {
            Ok(op) => Step::Run(op),
            Err(reply) => Step::Reply(reply),
        }
    }

    fn payload_bytes(&self) -> usize {
        match self {
            Step::Reply(_) => 0,
            Step::Run(op) => op.payload_bytes(),
        }
    }
}

/// Consecutive commands of one connection, answered together: their backend operations go
/// to the backend as one batch, and the replies come out in the commands' order.
#[derive(Default)]
struct Batch {
    steps: Vec<Step>,
    bytes: usize,
}

impl Batch {
    fn has_room(&self) -> bool {
        self.steps.len() < MAX_BATCH_COMMANDS && self.bytes < limits::BATCH_BYTES
    }

    /// Whether `step` may join: a batch always takes its first command (however big: it
    /// then goes alone), and the others while their bytes stay within the bound.
    fn fits(&self, step: &Step) -> bool {
        self.steps.is_empty() || self.bytes + step.payload_bytes() <= limits::BATCH_BYTES
    }

    fn push(&mut self, step: Step) {
        self.bytes += step.payload_bytes();
        self.steps.push(step);
    }

    /// Runs the batch's operations and encodes every command's reply, in order, into `out`.
    async fn run<B: Backend>(self, backend: &B, out: &mut Vec<u8>) {
        let (mut ops, mut replies) = (Vec::new(), Vec::with_capacity(self.steps.len()));
        for step in self.steps {
            match step {
                Step::Reply(value) => replies.push(Some(value)),
                Step::Run(op) => {
                    ops.push(op);
                    replies.push(None);
                }
            }
        }
        let wanted = ops.len();
        let mut answers = match wanted {
            0 => Vec::new(),
            1 => vec![run_one(backend, ops.remove(0)).await],
            _ => backend.run_batch(ops).await,
        }
        .into_iter();
        if answers.len() != wanted {
            tracing::error!(
                wanted,
                got = answers.len(),
                "the backend answered a batch with the wrong number of answers"
            );
        }
        for reply in replies {
            let reply = reply.unwrap_or_else(|| match answers.next() {
                Some(answer) => reply_of(answer),
                None => Value::Error("ERR the backend gave no answer".into()),
            });
            encode(&reply, out);
        }
    }
}

/// The reply to an operation's answer.
fn reply_of(answer: Result<Answer, BackendError>) -> Value {
    match answer {
        Ok(Answer::Value(value)) => Value::Bulk(value.map(String::into_bytes)),
        Ok(Answer::Set | Answer::Appended(None)) => Value::Simple("OK".into()),
        Ok(Answer::Appended(Some(length))) => Value::Integer(length as i64),
        Err(e @ BackendError::OutOfMemory) => Value::Error(format!("OOM {e}")),
        Err(e) => Value::Error(format!("ERR {e}")),
    }
}

/// The backend operation a command asks for, or the reply to a command that needs none
/// (PING, ECHO) or is wrong.
fn operation(command: Value) -> Result<Op, Value> {
    let Value::Array(Some(items)) = command else {
        return Err(Value::Error("ERR expected an array of bulk strings".into()));
    };
    let mut args = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Bulk(Some(bytes)) => match String::from_utf8(bytes) {
                Ok(text) => args.push(text),
                Err(_) => return Err(Value::Error("ERR keys and values must be UTF-8".into())),
            },
            _ => return Err(Value::Error("ERR expected an array of bulk strings".into())),
        }
    }
    let Some(name) = args.first().map(|n| n.to_ascii_lowercase()) else {
        return Err(Value::Error("ERR empty command".into()));
    };
    let mut args = args.into_iter().skip(1);
    let arity = args.len();
    let mut next = || args.next().unwrap_or_default();
    match (name.as_str(), arity) {
        ("ping", 0) => Err(Value::Simple("PONG".into())),
        ("ping" | "echo", 1) => Err(Value::Bulk(Some(next().into_bytes()))),
        ("get", 1) => Ok(Op::Get { key: next() }),
        ("set", 2) => Ok(Op::Set {
            key: next(),
            value: next(),
        }),
        ("append", 2) => Ok(Op::Append {
            key: next(),
            value: next(),
        }),
        ("ping" | "echo" | "get" | "set" | "append", _) => Err(Value::Error(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))),
        _ => {
            let shown: String = name.chars().take(64).collect();
            Err(Value::Error(format!("ERR unknown command '{shown}'")))
        }
    }
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
        let budget = Buffered {
            semaphore: Arc::new(Semaphore::new(1 << 20)),
            held: 0,
        };
        let session = Session::new(None, "127.0.0.1:1".parse().unwrap());
        serve_connection(
            server,
            Arc::new(Fixed),
            &RespLimits::default(),
            budget,
            session,
        )
        .await
    }

    #[tokio::test]
    async fn the_way_a_connection_ends_is_told_apart_for_the_log() {
        assert!(ending_after(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            .await
            .is_ok());
        assert!(matches!(
            ending_after(b"*2\r\n$3\r\nGET\r\n$1").await,
            Err(Closed::MidCommand { .. })
        ));
        assert!(matches!(
            ending_after(b"*99999999999\r\n").await,
            Err(Closed::Protocol(ParseError::ArrayTooLong(99_999_999_999)))
        ));
    }
}
