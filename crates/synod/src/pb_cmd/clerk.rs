//! The primary/backup client over TCP: the sans-IO [`Clerk`] of `synod-pbservice` plus the
//! connections it asks for, and a pool of them behind the RESP front.
//!
//! The clerk decides what to send where; this module only carries it. It keeps one connection
//! to the view service and one to the primary it currently believes in, and turns
//! [`RETRY_INTERVAL`] of silence (or a broken connection) into [`Clerk::on_timeout`], exactly
//! as the simulator's driver does, so the retry logic tested there is the one that runs here.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use synod_net::{Client, NetError};
use synod_pbservice::{Clerk, Msg, Op, Outgoing, Step, Target, RETRY_INTERVAL};
use synod_resp::{Backend, BackendError};
use tokio::time::Instant;

/// Longest wait for one TCP connect + handshake (further bounded by the operation's deadline).
const CONNECT_LIMIT: Duration = Duration::from_secs(1);

/// No primary completed the operation in time; its outcome is unknown.
#[derive(Debug)]
pub struct Unanswered {
    pub after: Duration,
    /// The last connection problem seen, if any, to tell "nobody listens" from "slow".
    pub problem: Option<String>,
}

impl fmt::Display for Unanswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no primary answered within {:?}", self.after)?;
        match &self.problem {
            Some(problem) => write!(f, " (last problem: {problem})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Unanswered {}

/// One client of the service: one operation at a time.
pub struct TcpClerk {
    clerk: Clerk,
    view_service: String,
    view_conn: Option<Client<Msg>>,
    /// The connection to the server the clerk last sent a request to, with its address.
    server_conn: Option<(String, Client<Msg>)>,
}

impl TcpClerk {
    /// A clerk with a fresh random client id (the service filters retries by it).
    pub fn new(view_service: String) -> Self {
        TcpClerk {
            clerk: Clerk::new(rand::random()),
            view_service,
            view_conn: None,
            server_conn: None,
        }
    }

    /// Runs `op` until a primary completes it or `limit` passes. Returns the value for a Get
    /// (empty for a missing key) and empty for a write.
    pub async fn call(&mut self, op: Op, limit: Duration) -> Result<String, Unanswered> {
        let deadline = Instant::now() + limit;
        let mut problem = None;
        let mut out = self.clerk.start(op);
        loop {
            match self.exchange(out, deadline).await {
                Ok(value) => return Ok(value),
                Err(Some(e)) => problem = Some(e),
                Err(None) => {}
            }
            // Silence for a retry interval: the clerk decides whom to ask next.
            match self.clerk.on_timeout() {
                Some(next) if Instant::now() < deadline => out = next,
                _ => {
                    return Err(Unanswered {
                        after: limit,
                        problem,
                    })
                }
            }
        }
    }

    /// Sends `out` and feeds answers to the clerk until it completes, or until a retry
    /// interval passes without anything useful (`Err(None)`) or a connection fails
    /// (`Err(Some(why))`, after waiting out the interval so a dead server is not hammered).
    async fn exchange(
        &mut self,
        mut out: Outgoing,
        deadline: Instant,
    ) -> Result<String, Option<String>> {
        loop {
            let retry_at = (Instant::now() + RETRY_INTERVAL).min(deadline);
            let result = self.send_and_wait(&out, retry_at).await;
            match result {
                Ok(Step::Done(value)) => return Ok(value),
                Ok(Step::Send(next)) => out = next,
                Ok(Step::Wait) => return Err(None),
                Err(why) => {
                    tokio::time::sleep_until(retry_at).await;
                    return Err(Some(why));
                }
            }
        }
    }

    /// One send, then answers until the clerk has something to do or `until` passes
    /// (`Step::Wait`).
    async fn send_and_wait(&mut self, out: &Outgoing, until: Instant) -> Result<Step, String> {
        let conn = self.connection(&out.to, until).await?;
        // A stopped server stops reading; its socket buffer must not stall us past `until`.
        let sent = tokio::time::timeout_at(until, conn.send(&out.msg)).await;
        if let Err(e) = sent
            .map_err(|_| "timed out".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            let why = format!("sending to {}: {e}", self.describe(&out.to));
            self.drop_connection(&out.to);
            return Err(why);
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let conn = self.connection(&out.to, until).await?;
            match conn.recv(left).await {
                Ok(msg) => match self.clerk.on_message(msg) {
                    Step::Wait => {}
                    step => return Ok(step),
                },
                Err(NetError::Timeout { .. }) => return Ok(Step::Wait),
                Err(e) => {
                    let why = format!("from {}: {e}", self.describe(&out.to));
                    self.drop_connection(&out.to);
                    return Err(why);
                }
            }
        }
    }

    fn describe(&self, target: &Target) -> String {
        match target {
            Target::ViewService => format!("the view service at {}", self.view_service),
            Target::Server { id, addr } => format!("server {id} at {addr}"),
        }
    }

    fn drop_connection(&mut self, target: &Target) {
        match target {
            Target::ViewService => self.view_conn = None,
            Target::Server { .. } => self.server_conn = None,
        }
    }

    /// The open connection to `target`, connecting (within `until`, at most
    /// [`CONNECT_LIMIT`]) if there is none or it leads elsewhere.
    async fn connection(
        &mut self,
        target: &Target,
        until: Instant,
    ) -> Result<&mut Client<Msg>, String> {
        let limit = until
            .saturating_duration_since(Instant::now())
            .min(CONNECT_LIMIT)
            .max(Duration::from_millis(1));
        let describe = self.describe(target);
        let connect = |addr: String| {
            let describe = describe.clone();
            async move {
                Client::connect(addr, limit)
                    .await
                    .map_err(|e| format!("connecting to {describe}: {e}"))
            }
        };
        match target {
            Target::ViewService => {
                if self.view_conn.is_none() {
                    self.view_conn = Some(connect(self.view_service.clone()).await?);
                }
                Ok(self.view_conn.as_mut().expect("connected above"))
            }
            Target::Server { addr, .. } => {
                if addr.is_empty() {
                    return Err(format!("{describe}: the view service knows no address"));
                }
                if self.server_conn.as_ref().is_none_or(|(at, _)| at != addr) {
                    self.server_conn = Some((addr.clone(), connect(addr.clone()).await?));
                }
                Ok(&mut self.server_conn.as_mut().expect("connected above").1)
            }
        }
    }
}

/// The service as a RESP [`Backend`]: each operation borrows an idle clerk from a pool (or
/// makes one), so concurrent RESP connections run concurrent operations, and the service sees
/// as many client ids as there were operations at once, not one per operation.
pub struct PbBackend {
    view_service: String,
    timeout: Duration,
    idle: Mutex<Vec<TcpClerk>>,
}

impl PbBackend {
    pub fn new(view_service: String, timeout: Duration) -> Self {
        PbBackend {
            view_service,
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn call(&self, op: Op) -> Result<String, BackendError> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut clerk = taken.unwrap_or_else(|| TcpClerk::new(self.view_service.clone()));
        let result = clerk.call(op, self.timeout).await;
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(clerk);
        result.map_err(|e| {
            tracing::debug!(reason = %e, "RESP operation not answered");
            BackendError::Timeout
        })
    }
}

impl Backend for PbBackend {
    async fn get(&self, key: String) -> Result<Option<String>, BackendError> {
        self.call(Op::Get { key }).await.map(Some)
    }

    async fn put(&self, key: String, value: String) -> Result<(), BackendError> {
        self.call(Op::Put { key, value }).await.map(drop)
    }

    async fn append(&self, key: String, value: String) -> Result<Option<u64>, BackendError> {
        self.call(Op::Append { key, value }).await.map(|_| None)
    }
}
