//! The Paxos KV client: sessions, retries across replicas, at most once.
//!
//! Every operation runs under a *session* (client id, next sequence number) and is retried
//! with the same number, on one replica after another, until one answers. A session has one
//! operation outstanding at a time; concurrent callers take different sessions from a pool.
//! A session whose operation timed out is thrown away, because its outcome is unknown.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use synod_kvpaxos::{KvMsg, KvOp, KvReply};
use synod_net::Client;

use crate::error::server_list;
use crate::ClientError;

/// How long one attempt on one replica may take before trying the next: a replica in a
/// minority, or stopped, never answers.
const ATTEMPT: Duration = Duration::from_millis(800);

/// How long an operation keeps retrying by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

struct Session {
    client: u64,
    seq: u64,
    /// A connection kept for the next operation, with the index of its replica.
    conn: Option<(usize, Client<KvMsg>)>,
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
    /// The replica a new session tries first.
    preferred: usize,
    timeout: Duration,
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
            preferred: 0,
            timeout: DEFAULT_TIMEOUT,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// How long each operation keeps retrying before it fails with
    /// [`ClientError::Timeout`] (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Makes new sessions try replica `index` (of the servers given to
    /// [`KvClient::connect`]) first, instead of the first one. A RESP front prefers the
    /// replica in its own process: whenever the front can be reached, so can that replica,
    /// and a session that starts at a replica cut off or stopped waits a whole attempt.
    ///
    /// # Panics
    /// If `index` is not an index into the servers.
    pub fn prefer(mut self, index: usize) -> Self {
        assert!(
            index < self.servers.len(),
            "preferred replica {index} of {} servers",
            self.servers.len()
        );
        self.preferred = index;
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

    /// Runs one operation, retrying across replicas until one answers or the timeout passes.
    pub async fn call(&self, op: KvOp) -> Result<KvReply, ClientError> {
        let mut session = self.take_session();
        session.seq += 1;
        let deadline = Instant::now() + self.timeout;
        let mut server = session.conn.as_ref().map_or(self.preferred, |(i, _)| *i);
        let msg = KvMsg::Request {
            client: session.client,
            seq: session.seq,
            op,
        };
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            match attempt(&mut session, &self.servers, server, &msg, ATTEMPT.min(left)).await {
                Some(KvReply::SessionExpired) => return Err(ClientError::SessionExpired),
                Some(reply) => {
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.push(session);
                    }
                    return Ok(reply);
                }
                None => {
                    session.conn = None;
                    server = (server + 1) % self.servers.len();
                }
            }
        }
        Err(ClientError::Timeout(self.timeout))
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

/// One try on replica `index`, reusing the session's connection if it goes there. Returns
/// the reply to this request, or `None` if the replica did not answer in time.
async fn attempt(
    session: &mut Session,
    servers: &[String],
    index: usize,
    msg: &KvMsg,
    limit: Duration,
) -> Option<KvReply> {
    let start = Instant::now();
    let conn = match session.conn.take() {
        Some((i, conn)) if i == index => conn,
        _ => Client::connect(servers[index].as_str(), limit).await.ok()?,
    };
    session.conn = Some((index, conn));
    let (_, conn) = session.conn.as_mut()?;
    conn.send(msg).await.ok()?;
    let KvMsg::Request { seq, .. } = msg else {
        return None;
    };
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match conn.recv(left).await.ok()? {
            // Replies to earlier attempts of earlier operations can still arrive: skip them.
            KvMsg::Reply { seq: got, reply } if got == *seq => return Some(reply),
            _ => continue,
        }
    }
}
