//! The Paxos KV client: sessions, retries across replicas, at most once.
//!
//! Every operation runs under a *session* (client id, next sequence number) and is sent with
//! the same number to one replica after another, while the earlier ones may still answer
//! (see [`crate::hedge`]), until one answers. A session has one
//! operation outstanding at a time; concurrent callers take different sessions from a pool.
//! A session whose operation timed out is thrown away, because its outcome is unknown.

use std::sync::Mutex;
use std::time::Duration;

use synod_kvpaxos::{KvMsg, KvOp, KvReply};
use synod_net::limits::Limits;
use tokio::time::Instant;

use crate::attempt::hedge_step;
use crate::error::server_list;
use crate::hedge::{self, Conn};
use crate::ClientError;

/// How long an operation keeps retrying by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

struct Session {
    client: u64,
    seq: u64,
    /// A connection kept for the next operation, to the replica that answered the last one.
    conn: Conn<KvMsg>,
}

/// A client of a Paxos KV cluster (`synod kv serve`).
///
/// ```no_run
/// # async fn demo() -> Result<(), synod_client::ClientError> {
/// use std::time::Duration;
/// let kv = synod_client::KvClient::connect(["127.0.0.1:7000", "127.0.0.1:7001"])?
///     .with_timeout(Duration::from_secs(2));
/// kv.put("k", "v").await?;
/// assert_eq!(kv.get("k").await?, "v");
/// # Ok(()) }
/// ```
pub struct KvClient {
    servers: Vec<String>,
    /// The replica an operation tries right after the one that answered its session last.
    preferred: Option<usize>,
    timeout: Duration,
    limits: Limits,
    idle: Mutex<Vec<Session>>,
}

impl KvClient {
    /// A client of the replicas at `servers` (`HOST:PORT` each). Connections are opened by
    /// the first operation, so this succeeds while the cluster is still starting.
    pub fn connect<S: Into<String>>(
        servers: impl IntoIterator<Item = S>,
    ) -> Result<Self, ClientError> {
        let servers = server_list(servers)?;
        Ok(KvClient {
            servers,
            preferred: None,
            timeout: DEFAULT_TIMEOUT,
            limits: Limits::default(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Refuses keys and values above `limits` before sending them (default: the default
    /// policy; give it the servers' `--max-value-bytes`). A server refuses them too, but only
    /// once they reached it.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long each operation keeps retrying before it fails with
    /// [`ClientError::Timeout`] (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Makes operations try replica `index` (of the servers given to [`KvClient::connect`])
    /// first when their session is new, and right after the replica that answered the
    /// session last otherwise. A RESP front prefers the replica in its own process: whenever
    /// the front can be reached, so can that replica.
    ///
    /// # Panics
    /// If `index` is not an index into the servers.
    pub fn prefer(mut self, index: usize) -> Self {
        assert!(
            index < self.servers.len(),
            "preferred replica {index} of {} servers",
            self.servers.len()
        );
        self.preferred = Some(index);
        self
    }

    /// `key`'s value, "" if it has none.
    pub async fn get(&self, key: impl Into<String>) -> Result<String, ClientError> {
        match self.call(KvOp::Get { key: key.into() }).await? {
            KvReply::Value(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), ClientError> {
        let op = KvOp::Put {
            key: key.into(),
            value: value.into(),
        };
        match self.call(op).await? {
            KvReply::Written { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Appends `value` to `key`'s value and returns the new length in bytes.
    pub async fn append(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<u64, ClientError> {
        let op = KvOp::Append {
            key: key.into(),
            value: value.into(),
        };
        match self.call(op).await? {
            KvReply::Written { len } => Ok(len),
            other => Err(unexpected(other)),
        }
    }

    /// Runs one operation, retrying across replicas until one answers or the timeout passes:
    /// first the replica that answered this session last, then the preferred one, then the
    /// others, each hedge step (longer for a bigger request) after the one before while those may still answer.
    pub async fn call(&self, op: KvOp) -> Result<KvReply, ClientError> {
        op.check_size(&self.limits)?;
        let step = hedge_step(op.payload_bytes());
        self.exchange(step, |client, seq| KvMsg::Request { client, seq, op })
            .await
    }

    /// Runs several operations as one request: one log entry, applied in order with nothing
    /// in between, at most once as a whole, retried like [`call`](Self::call). The replies
    /// come in the operations' order; there may be fewer (at least one), when the Gets'
    /// values would have made the reply too big: the operations without a reply were not
    /// applied, and the caller sends them again. At most [`synod_rsm::MAX_BATCH_COMMANDS`] operations,
    /// [`synod_net::limits::BATCH_BYTES`] of keys and values together (else
    /// [`ClientError::TooLarge`], and nothing is sent).
    pub async fn call_batch(&self, ops: Vec<KvOp>) -> Result<Vec<KvReply>, ClientError> {
        KvOp::check_batch(&ops, &self.limits)?;
        if ops.is_empty() || ops.len() > synod_rsm::MAX_BATCH_COMMANDS {
            return Err(ClientError::Unexpected(format!(
                "a batch of {} operations (1..={} allowed)",
                ops.len(),
                synod_rsm::MAX_BATCH_COMMANDS
            )));
        }
        let (count, bytes) = (ops.len(), ops.iter().map(KvOp::payload_bytes).sum());
        let reply = self
            .exchange(hedge_step(bytes), |client, seq| KvMsg::Batch {
                client,
                seq,
                ops,
            })
            .await?;
        match reply {
            KvReply::Batch(replies) if (1..=count).contains(&replies.len()) => Ok(replies),
            other => Err(unexpected(other)),
        }
    }

    /// Sends the request `build` makes for the next sequence number of a session, as
    /// [`call`](Self::call) describes, and returns its reply.
    async fn exchange(
        &self,
        step: Duration,
        build: impl FnOnce(u64, u64) -> KvMsg,
    ) -> Result<KvReply, ClientError> {
        let mut session = self.take_session();
        session.seq += 1;
        let deadline = Instant::now() + self.timeout;
        let seq = session.seq;
        let msg = build(session.client, seq);
        // Replies to earlier operations of the session can still arrive: skip them.
        let wanted = move |reply: KvMsg| match reply {
            KvMsg::Reply { seq: got, reply } if got == seq => Some(reply),
            _ => None,
        };
        let preferred = self.preferred.map(|i| &self.servers[i]);
        let order = hedge::order(&session.conn, &self.servers, preferred);
        match hedge::first_answer(&mut session.conn, &order, &msg, step, deadline, wanted).await {
            Some(KvReply::SessionExpired) => Err(ClientError::SessionExpired),
            // The session is dropped with it: a refusal at the edge is not recorded in the
            // server's session table, which must see a session's first command.
            Some(KvReply::TooLarge(refused)) => Err(refused.into()),
            Some(KvReply::OutOfMemory { used, limit }) => {
                Err(ClientError::OutOfMemory { used, limit })
            }
            Some(reply) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(session);
                }
                Ok(reply)
            }
            None => Err(ClientError::Timeout(self.timeout)),
        }
    }

    fn take_session(&self) -> Session {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        pooled.unwrap_or_else(|| Session {
            client: rand::random(),
            seq: 0,
            conn: None,
        })
    }
}

fn unexpected(reply: KvReply) -> ClientError {
    ClientError::Unexpected(format!("{reply:?}"))
}
