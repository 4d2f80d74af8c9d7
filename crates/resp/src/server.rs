//! The RESP server: one task per connection, commands answered in order by a [`Backend`].
//!
//! Pipelining: a connection's commands that have arrived are handed to the backend together,
//! as one batch ([`Backend::run_batch`], at most [`MAX_BATCH_COMMANDS`] commands and
//! [`limits::BATCH_BYTES`] of keys and values), and the replies are written in order. While
//! a batch is being run the commands that follow wait in the socket and the parser, and
//! form the next batch, so a connection has one batch in flight: its commands take effect
//! in the order they were sent, whatever the backend does with each batch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
#[cfg(test)]
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use synod_node::limits::{self, Limits};

use std::sync::atomic::{AtomicU64, Ordering};

use synod_keyspace::{Command, Reply};

use crate::auth::Session;
use crate::connection::{spliced, value_of, Connection, Step, REDIS_VERSION};
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

/// Most commands of one connection handed to the backend as one batch.
pub const MAX_BATCH_COMMANDS: usize = 256;

/// The key/value service behind the RESP front. Implementations are usually a client (a
/// clerk) of a replicated service; each command is one linearizable operation (one log
/// entry), a MULTI/EXEC transaction ([`Command::Exec`]) included.
pub trait Backend: Send + Sync + 'static {
    /// Runs one command and returns its reply.
    fn run(&self, command: Command) -> impl Future<Output = Result<Reply, BackendError>> + Send;

    /// Runs the commands of a pipelined batch and answers each, in order: one answer per
    /// command, and every command takes effect after the ones before it. A backend may
    /// run them as one unit (one log entry); the default runs them one by one.
    fn run_batch(
        &self,
        commands: Vec<Command>,
    ) -> impl Future<Output = Vec<Result<Reply, BackendError>>> + Send {
        async move {
            let mut answers = Vec::with_capacity(commands.len());
            for command in commands {
                answers.push(self.run(command).await);
            }
            answers
        }
    }

    /// The lines of INFO's replication section (`field:value`): the role, the leader,
    /// log positions, as far as the service has them.
    fn replication(&self) -> impl Future<Output = Vec<(String, String)>> + Send {
        async { vec![("role".to_owned(), "master".to_owned())] }
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
                    // As Redis does: a reply leaves at once, never held back by Nagle's
                    // algorithm until the client acknowledges the previous one.
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(%peer, reason = %e, "cannot disable Nagle's algorithm");
                    }
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
                            Err(Closed::CrossProtocol(command)) => warn!(
                                %peer, command,
                                "Possible SECURITY ATTACK detected: a command of another protocol (HTTP) was sent to the RESP port; connection closed"
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
    #[error("sent {0:?}, a command of another protocol")]
    CrossProtocol(String),
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
    let mut connection = Connection::new(NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed));
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
                            Ok(command) => step_of(&mut connection, command),
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
            let closing = batch.run(&*backend, &mut out).await;
            if let Some(closing) = closing {
                let _ = within(idle, stream.write_all(&out)).await;
                return match closing {
                    Closing::Quit => Ok(()),
                    Closing::CrossProtocol(command) => Err(Closed::CrossProtocol(command)),
                };
            }
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
        // The chunk is part of the connection's task, not a buffer of its own, and is left
        // uninitialized (`ReadBuf` tracks what the read filled): zeroing 16 KiB before every
        // read was a measurable part of a front's CPU.
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut filled = ReadBuf::uninit(&mut chunk);
        let read = within(
            idle,
            std::future::poll_fn(|cx| Pin::new(&mut stream).poll_read(cx, &mut filled)),
        )
        .await
        .ok_or(Closed::Idle(idle.unwrap_or_default()))?
        .map(|()| filled.filled());
        match read {
            Ok([]) if parser.mid_value() => {
                return Err(Closed::MidCommand {
                    buffered: parser.buffered(),
                })
            }
            Ok([]) => return Ok(()),
            Ok(bytes) => parser.feed(bytes),
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

/// Connection ids, as `CLIENT ID` and `HELLO` report them: unique in the process.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// What `command` (a parsed RESP value) asks of the connection.
fn step_of(connection: &mut Connection, command: Value) -> Step {
    let Value::Array(Some(items)) = command else {
        return Step::Reply(Value::Error("ERR expected an array of bulk strings".into()));
    };
    let mut args = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Bulk(Some(bytes)) => args.push(bytes),
            _ => return Step::Reply(Value::Error("ERR expected an array of bulk strings".into())),
        }
    }
    connection.step(args)
}

fn payload_bytes(step: &Step) -> usize {
    match step {
        Step::Run { command, .. } => command.payload_bytes(),
        _ => 0,
    }
}

/// How a batch ends the connection, after its replies are written.
enum Closing {
    Quit,
    CrossProtocol(String),
}

/// Consecutive commands of one connection, answered together: their store commands go to
/// the backend as one batch, and the replies come out in the commands' order. A command
/// that needs more than the store (INFO) or ends the connection (QUIT) is a batch's last.
#[derive(Default)]
struct Batch {
    steps: Vec<Step>,
    bytes: usize,
    last: bool,
}

impl Batch {
    fn has_room(&self) -> bool {
        !self.last && self.steps.len() < MAX_BATCH_COMMANDS && self.bytes < limits::BATCH_BYTES
    }

    /// Whether `step` may join: a batch always takes its first command (however big: it
    /// then goes alone), and the others while their bytes stay within the bound.
    fn fits(&self, step: &Step) -> bool {
        self.steps.is_empty() || self.bytes + payload_bytes(step) <= limits::BATCH_BYTES
    }

    fn push(&mut self, step: Step) {
        self.bytes += payload_bytes(&step);
        self.last |= matches!(
            step,
            Step::Info { .. } | Step::Quit | Step::CrossProtocol(_)
        );
        self.steps.push(step);
    }

    /// Runs the batch's store commands and encodes every command's reply, in order, into
    /// `out`; says whether the connection is to be closed after them.
    async fn run<B: Backend>(self, backend: &B, out: &mut Vec<u8>) -> Option<Closing> {
        let mut commands = Vec::new();
        for step in &self.steps {
            if let Step::Run { command, .. } = step {
                commands.push(command.clone());
            }
        }
        let wanted = commands.len();
        let mut answers = match wanted {
            0 => Vec::new(),
            1 => vec![backend.run(commands.remove(0)).await],
            _ => backend.run_batch(commands).await,
        }
        .into_iter();
        if answers.len() != wanted {
            tracing::error!(
                wanted,
                got = answers.len(),
                "the backend answered a batch with the wrong number of answers"
            );
        }
        for step in self.steps {
            let reply = match step {
                Step::Reply(value) => value,
                Step::Run { splice, .. } => {
                    let value = match answers.next() {
                        Some(answer) => reply_of(answer),
                        None => Value::Error("ERR the backend gave no answer".into()),
                    };
                    match splice {
                        Some(splice) => spliced(value, splice),
                        None => value,
                    }
                }
                Step::Info { sections } => info(backend, &sections).await,
                Step::Quit => {
                    encode(&Value::Simple("OK".into()), out);
                    return Some(Closing::Quit);
                }
                Step::CrossProtocol(command) => return Some(Closing::CrossProtocol(command)),
            };
            encode(&reply, out);
        }
        None
    }
}

/// The reply to a command's answer.
fn reply_of(answer: Result<Reply, BackendError>) -> Value {
    match answer {
        Ok(reply) => value_of(reply),
        Err(e @ BackendError::OutOfMemory) => Value::Error(format!("OOM {e}")),
        Err(e) => Value::Error(format!("ERR {e}")),
    }
}

/// INFO's reply: the sections asked for (all when none is named) of server, replication
/// and keyspace.
async fn info<B: Backend>(backend: &B, sections: &[String]) -> Value {
    let wanted = |name: &str| {
        sections.is_empty()
            || sections
                .iter()
                .any(|s| s == name || s == "all" || s == "everything" || s == "default")
    };
    let mut text = String::new();
    let mut section = |title: &str, lines: Vec<(String, String)>| {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        text.push_str(&format!("# {title}\r\n"));
        for (field, value) in lines {
            text.push_str(&format!("{field}:{value}\r\n"));
        }
    };
    if wanted("server") {
        section(
            "Server",
            vec![
                ("redis_version".into(), REDIS_VERSION.into()),
                ("synod_version".into(), env!("CARGO_PKG_VERSION").into()),
                ("redis_mode".into(), "standalone".into()),
                ("process_id".into(), std::process::id().to_string()),
            ],
        );
    }
    if wanted("replication") {
        section("Replication", backend.replication().await);
    }
    if wanted("keyspace") {
        let keys = match backend.run(Command::DbSize).await {
            Ok(Reply::Integer(keys)) if keys > 0 => {
                vec![("db0".into(), format!("keys={keys},expires=0,avg_ttl=0"))]
            }
            Ok(_) => Vec::new(),
            Err(e) => vec![("error".into(), e.to_string())],
        };
        section("Keyspace", keys);
    }
    Value::bulk(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every GET with "v"; writes are accepted and forgotten.
    struct Fixed;

    impl Backend for Fixed {
        async fn run(&self, _command: Command) -> Result<Reply, BackendError> {
            Ok(Reply::Bulk(Some(b"v".to_vec())))
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
