//! The primary/backup client: the sans-IO [`Clerk`] of `synod-pbservice` plus the connections
//! it asks for, and a pool of them so one [`PbClient`] serves concurrent callers.
//!
//! The clerk decides what to send where; this module only carries it. A session keeps one
//! connection to the view service and one to the primary it currently believes in, and turns
//! [`RETRY_INTERVAL`] of silence (or a broken connection) into [`Clerk::on_timeout`], exactly
//! as the simulator's driver does, so the retry logic tested there is the one that runs here.

use std::time::Duration;

use synod_net::limits::TooLarge;
use synod_net::{Client, NetError};
use synod_pbservice::{Clerk, Command, Msg, Op, Outgoing, Reply, Step, Target, RETRY_INTERVAL};
use tokio::time::Instant;

use crate::pool::{Pool, DEFAULT_TIMEOUT};
use crate::ClientError;

/// Longest wait for one TCP connect + handshake (further bounded by the operation's deadline).
const CONNECT_LIMIT: Duration = Duration::from_secs(1);

/// A client of a primary/backup cluster (`synod view serve` + `synod pb serve`).
///
/// Each operation borrows an idle session from a pool (or makes one), so concurrent callers
/// run concurrent operations, and the service sees as many client ids as there were
/// operations at once, not one per operation.
///
/// ```no_run
/// # async fn demo() -> Result<(), synod_client::ClientError> {
/// let pb = synod_client::PbClient::connect("127.0.0.1:7000")?;
/// pb.put("k", "v").await?;
/// assert_eq!(pb.append("k", "w").await?, 2);
/// assert_eq!(pb.get("k").await?, b"vw");
/// # Ok(()) }
/// ```
pub struct PbClient {
    view_service: String,
    timeout: Duration,
    idle: Pool<Session>,
}

impl PbClient {
    /// A client of the cluster whose view service listens at `view` (`HOST:PORT`).
    /// Connections are opened by the first operation.
    pub fn connect(view: impl Into<String>) -> Result<Self, ClientError> {
        let view_service = view.into();
        if view_service.is_empty() {
            return Err(ClientError::NoServers);
        }
        Ok(PbClient {
            view_service,
            timeout: DEFAULT_TIMEOUT,
            idle: Pool::new(),
        })
    }

    /// How long each operation keeps retrying before it fails with
    /// [`ClientError::NoPrimary`] (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `key`'s value, empty if it has none (the course's Get; [`PbClient::redis`] with a
    /// `GET` tells a missing key from an empty value).
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Vec<u8>, ClientError> {
        match self.call(Op::Get { key: key.into() }).await? {
            Reply::Bulk(value) => Ok(value.unwrap_or_default()),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        let op = Op::Put {
            key: key.into(),
            value: value.into(),
        };
        self.call(op).await.map(drop)
    }

    /// Appends `value` to `key`'s value and returns the new length in bytes.
    pub async fn append(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<u64, ClientError> {
        let op = Op::Append {
            key: key.into(),
            value: value.into(),
        };
        match self.call(op).await? {
            Reply::Integer(len) => Ok(len as u64),
            other => Err(unexpected(other)),
        }
    }

    /// Runs one Redis command (a `MULTI`/`EXEC` transaction included) as one operation.
    pub async fn redis(&self, command: Command) -> Result<Reply, ClientError> {
        self.call(Op::Redis(command)).await
    }

    /// Runs `op` until a primary completes it or the timeout passes, and returns its reply.
    pub async fn call(&self, op: Op) -> Result<Reply, ClientError> {
        let mut session = self.idle.take(|| Session::new(self.view_service.clone()));
        let result = session.call(op, self.timeout).await;
        // A failed session stays usable: `Clerk::start` gives the next operation a new
        // sequence number, leaving only the failed one's outcome unknown.
        self.idle.put(session);
        result
    }
}

fn unexpected(reply: Reply) -> ClientError {
    ClientError::Unexpected(format!("{reply:?}"))
}

/// One client id of the service: one operation at a time.
struct Session {
    clerk: Clerk,
    view_service: String,
    view_conn: Option<Client<Msg>>,
    /// The connection to the server the clerk last sent a request to, with its address.
    server_conn: Option<(String, Client<Msg>)>,
}

impl Session {
    /// A session with a fresh random client id (the service filters retries by it).
    fn new(view_service: String) -> Self {
        Session {
            clerk: Clerk::new(rand::random()),
            view_service,
            view_conn: None,
            server_conn: None,
        }
    }

    async fn call(&mut self, op: Op, limit: Duration) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + limit;
        let mut problem = None;
        let mut out = self.clerk.start(op);
        loop {
            match self.exchange(out, deadline).await {
                Ok(answer) => return answer.map_err(ClientError::from),
                Err(Some(e)) => problem = Some(e),
                Err(None) => {}
            }
            // Silence for a retry interval: the clerk decides whom to ask next.
            match self.clerk.on_timeout() {
                Some(next) if Instant::now() < deadline => out = next,
                _ => {
                    return Err(ClientError::NoPrimary {
                        after: limit,
                        problem,
                    })
                }
            }
        }
    }

    /// Sends `out` and feeds answers to the clerk until it completes (with the value or a
    /// refusal for its size), or until a retry
    /// interval passes without anything useful (`Err(None)`) or a connection fails
    /// (`Err(Some(why))`, after waiting out the interval so a dead server is not hammered).
    async fn exchange(
        &mut self,
        mut out: Outgoing,
        deadline: Instant,
    ) -> Result<Result<Reply, TooLarge>, Option<String>> {
        loop {
            let retry_at = (Instant::now() + RETRY_INTERVAL).min(deadline);
            let result = self.send_and_wait(&out, retry_at).await;
            match result {
                Ok(Step::Done(value)) => return Ok(Ok(value)),
                Ok(Step::Refused(refused)) => return Ok(Err(refused)),
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
