//! A Paxos KV client over TCP, and the RESP front's backend built on it.
//!
//! At most once: every operation runs under a *session* (client id, next sequence number)
//! and is retried with the same number, on one server after another, until one answers. A
//! session has one operation outstanding at a time; concurrent callers take different
//! sessions from a pool. A session whose operation timed out is thrown away, because its
//! outcome is unknown.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use synod_kvpaxos::{KvMsg, KvOp, KvReply};
use synod_net::Client;
use synod_resp::{Backend, BackendError};

/// How long one attempt on one server may take before trying the next: a server in a
/// minority, or stopped, never answers.
const ATTEMPT: Duration = Duration::from_millis(800);

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClerkError {
    #[error("no server answered within {0:?}; the operation may or may not have been applied")]
    Timeout(Duration),
    #[error("the server forgot this client's session; the operation was not applied")]
    SessionExpired,
}

struct Session {
    client: u64,
    seq: u64,
    /// A connection kept for the next operation, with the index of its server.
    conn: Option<(usize, Client<KvMsg>)>,
}

/// A client of a kvpaxos cluster.
pub struct Clerk {
    servers: Vec<String>,
    timeout: Duration,
    idle: Mutex<Vec<Session>>,
}

impl Clerk {
    pub fn new(servers: Vec<String>, timeout: Duration) -> Self {
        Clerk {
            servers,
            timeout,
            idle: Mutex::new(Vec::new()),
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

    /// Runs one operation, retrying across servers until one answers or the timeout passes.
    pub async fn call(&self, op: KvOp) -> Result<KvReply, ClerkError> {
        let mut session = self.take_session();
        session.seq += 1;
        let deadline = Instant::now() + self.timeout;
        let mut server = session.conn.as_ref().map_or(0, |(i, _)| *i);
        let msg = KvMsg::Request {
            client: session.client,
            seq: session.seq,
            op,
        };
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            match attempt(&mut session, &self.servers, server, &msg, ATTEMPT.min(left)).await {
                Some(KvReply::SessionExpired) => return Err(ClerkError::SessionExpired),
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
        Err(ClerkError::Timeout(self.timeout))
    }
}

/// One try on server `index`, reusing the session's connection if it goes there. Returns
/// the reply to this request, or `None` if the server did not answer in time.
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

fn backend_error(e: ClerkError) -> BackendError {
    match e {
        ClerkError::Timeout(_) => BackendError::Timeout,
        ClerkError::SessionExpired => BackendError::Unavailable(e.to_string()),
    }
}

fn unexpected(reply: KvReply) -> BackendError {
    BackendError::Unavailable(format!("unexpected reply {reply:?}"))
}

impl Backend for Clerk {
    async fn get(&self, key: String) -> Result<Option<String>, BackendError> {
        match self.call(KvOp::Get { key }).await.map_err(backend_error)? {
            KvReply::Value(v) => Ok(Some(v)),
            other => Err(unexpected(other)),
        }
    }

    async fn put(&self, key: String, value: String) -> Result<(), BackendError> {
        match self
            .call(KvOp::Put { key, value })
            .await
            .map_err(backend_error)?
        {
            KvReply::Written { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn append(&self, key: String, value: String) -> Result<Option<u64>, BackendError> {
        match self
            .call(KvOp::Append { key, value })
            .await
            .map_err(backend_error)?
        {
            KvReply::Written { len } => Ok(Some(len)),
            other => Err(unexpected(other)),
        }
    }
}
