//! The primary/backup client: the sans-IO [`Clerk`] of `synod-pbservice`, run by the one
//! driver every client shares ([`crate::driver`]), and a pool of sessions so one
//! [`PbClient`] serves concurrent callers.
//!
//! The clerk decides what to send where and when to ask again; this module only says how
//! to reach its two kinds of servers: the view service, and the primary at the address
//! the view service announced.

use std::future::Future;
use std::io;
use std::time::Duration;

use synod_net::{Client, NetError};
use synod_node::clerk::Clerk as _;
use synod_pbservice::{Clerk, Command, Msg, Op, Reply, Target};
use tokio::time::Instant;

use crate::driver::{self, Dialer};
use crate::pool::{Pool, DEFAULT_TIMEOUT};
use crate::ClientError;

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
    dialer: PbDialer,
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
            dialer: PbDialer { view_service },
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
        let mut session = self.idle.take(|| Session::new(Clerk::new(rand::random())));
        let deadline = Instant::now() + self.timeout;
        let answer = session
            .run(|clerk| clerk.start(op), &self.dialer, deadline)
            .await;
        // A failed session stays usable: `Clerk::start` gives the next operation a new
        // sequence number, leaving only the failed one's outcome unknown.
        self.idle.put(session);
        match answer {
            Ok(reply) => reply.map_err(ClientError::from),
            Err(stopped) => Err(stopped.error(|problem| ClientError::NoPrimary {
                after: self.timeout,
                problem,
            })),
        }
    }
}

fn unexpected(reply: Reply) -> ClientError {
    ClientError::Unexpected(format!("{reply:?}"))
}

type Session = driver::Session<Clerk, Client<Msg>>;

/// Connects to the view service at its address, and to a KV server at the address the view
/// service announced for it; a failure says which it was.
struct PbDialer {
    view_service: String,
}

impl Dialer<Target> for PbDialer {
    type Msg = Msg;
    type Conn = Client<Msg>;

    fn dial(
        &self,
        server: &Target,
        limit: Duration,
    ) -> impl Future<Output = Result<Client<Msg>, NetError>> + Send + 'static {
        let (addr, describe) = match server {
            Target::ViewService => (
                self.view_service.clone(),
                format!("the view service at {}", self.view_service),
            ),
            Target::Server { id, addr } => (addr.clone(), format!("server {id} at {addr:?}")),
        };
        async move {
            let why = |e: String| NetError::Io(io::Error::other(e));
            if addr.is_empty() {
                return Err(why(format!(
                    "{describe}: the view service knows no address"
                )));
            }
            Client::connect(addr, limit)
                .await
                .map_err(|e| why(format!("connecting to {describe}: {e}")))
        }
    }
}
