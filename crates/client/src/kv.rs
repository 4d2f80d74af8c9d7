//! The Paxos KV client: the sans-I/O [`KvClerk`] of `synod-kvpaxos` run by the crate's
//! driver, with a pool of sessions so one [`KvClient`] serves concurrent callers.
//!
//! Every operation runs under a *session* (client id, next sequence number) and is sent with
//! the same number to one replica after another, while the earlier ones may still answer
//! (the clerk's hedging; see `synod_rsm::clerk`), until one answers. A session has one
//! operation outstanding at a time; concurrent callers take different sessions from a pool.
//! A session whose operation timed out is thrown away, because its outcome is unknown.

use std::time::Duration;

use synod_keyspace::{Command, Reply};
use synod_kvpaxos::{KvClerk, KvMsg, KvOp, KvReply};
use synod_net::limits::Limits;
use synod_net::{Client, Credentials};
use synod_node::clerk::Clerk;
use synod_resp::BackendError;
use synod_rsm::clerk::RsmOutput;
use synod_rsm::StatusMsg;
use tokio::time::Instant;

use crate::coalesce::Coalescer;
use crate::driver::{self, TcpDialer};
use crate::error::server_list;
use crate::pool::{Pool, DEFAULT_TIMEOUT};
use crate::ClientError;

type Session = driver::Session<KvClerk, Client<KvMsg>>;

/// A client of a Paxos KV cluster (`synod kv serve`).
///
/// ```no_run
/// # async fn demo() -> Result<(), synod_client::ClientError> {
/// use std::time::Duration;
/// let kv = synod_client::KvClient::connect(["127.0.0.1:7000", "127.0.0.1:7001"])?
///     .with_timeout(Duration::from_secs(2));
/// kv.put("k", "v").await?;
/// assert_eq!(kv.get("k").await?, b"v");
/// # Ok(()) }
/// ```
pub struct KvClient {
    dialer: TcpDialer<KvMsg>,
    /// The replica an operation tries right after the one that answered its session last.
    preferred: Option<usize>,
    timeout: Duration,
    limits: Limits,
    idle: Pool<Session>,
    /// The Redis-protocol front's single commands, queued by kind (writes or not) to leave
    /// in batches.
    pub(crate) together: Coalescer<bool, Command, Result<Reply, BackendError>>,
}

impl KvClient {
    /// A client of the replicas at `servers` (`HOST:PORT` each). Connections are opened by
    /// the first operation, so this succeeds while the cluster is still starting.
    pub fn connect<S: Into<String>>(
        servers: impl IntoIterator<Item = S>,
    ) -> Result<Self, ClientError> {
        let servers = server_list(servers)?;
        Ok(KvClient {
            dialer: TcpDialer::new(servers),
            preferred: None,
            timeout: DEFAULT_TIMEOUT,
            limits: Limits::default(),
            idle: Pool::new(),
            together: Coalescer::new(),
        })
    }

    /// Refuses keys and values above `limits` before sending them (default: the default
    /// policy; give it the servers' `--max-value-bytes`). A server refuses them too, but only
    /// once they reached it.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Presents `credentials` to the replicas (which refuse a client without valid ones when
    /// they have users: [`ClientError::Refused`]); the user's permissions then bound what it
    /// may do ([`ClientError::Denied`]). They are presented over TLS only
    /// (`synod_net::tls::use_for_clients`): replicas with users require it.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.dialer.authenticate(credentials);
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
        let servers = self.dialer.addrs().len();
        assert!(
            index < servers,
            "preferred replica {index} of {servers} servers"
        );
        self.preferred = Some(index);
        self
    }

    /// `key`'s value, empty if it has none (the course's Get; [`KvClient::redis`] with a
    /// `GET` tells a missing key from an empty value).
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Vec<u8>, ClientError> {
        match self.call(KvOp::Get { key: key.into() }).await? {
            KvReply::Value(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
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
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
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

    /// Runs one Redis command (a `MULTI`/`EXEC` transaction included) as one operation.
    pub async fn redis(&self, command: Command) -> Result<Reply, ClientError> {
        match self.call(KvOp::Redis(command)).await? {
            KvReply::Redis(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// The lines of the RESP front's `INFO replication`: the status of the replica this
    /// client prefers (the front's own), or of the first one. Every replica takes writes
    /// (it forwards them into the log), so each reports Redis's `role:master`; which one
    /// leads, and the log's positions, follow as `synod_*` fields.
    pub async fn replication_info(&self) -> Vec<(String, String)> {
        const ASK_LIMIT: Duration = Duration::from_secs(1);
        let index = self.preferred.unwrap_or(0);
        let addr = self.dialer.addrs()[index].clone();
        let asked = async {
            let credentials = self.dialer.credentials();
            let mut client: Client<StatusMsg> =
                Client::connect_as(addr.as_str(), ASK_LIMIT, credentials).await?;
            client.call(&StatusMsg::Query, ASK_LIMIT).await
        };
        let field = |name: &str, value: String| (name.to_owned(), value);
        let mut lines = vec![field("role", "master".into())];
        match asked.await {
            Ok(StatusMsg::Report(r)) => {
                let position = |p: Option<u64>| p.map_or("-".to_owned(), |p| p.to_string());
                lines.extend([
                    field("synod_replica", format!("{}/{}", r.index, r.peers.len())),
                    field("synod_leader", if r.leader { "yes" } else { "no" }.into()),
                    field("synod_log_max", position(r.max)),
                    field("synod_log_applied", position(r.applied)),
                    field("synod_log_min", r.min.to_string()),
                    field("synod_state_bytes", r.state_bytes.to_string()),
                ]);
            }
            Ok(StatusMsg::Query) => lines.push(field("synod_status", "answered a query".into())),
            Err(e) => lines.push(field("synod_status", format!("unreachable: {e}"))),
        }
        lines
    }

    /// Runs one operation, retrying across replicas until one answers or the timeout passes
    /// (the clerk's hedging: the replica that answered this session last, then the preferred
    /// one, then the others, one more every hedge step).
    pub async fn call(&self, op: KvOp) -> Result<KvReply, ClientError> {
        op.check_size(&self.limits)?;
        self.exchange(|clerk| clerk.start(op)).await
    }

    /// Runs several operations as one request: one log entry, applied in order with nothing
    /// in between, at most once as a whole, retried like [`call`](Self::call). The replies
    /// come in the operations' order; there may be fewer (at least one), when the Gets'
    /// values would have made the reply too big: the operations without a reply were not
    /// applied, and the caller sends them again. At most [`synod_rsm::MAX_BATCH_COMMANDS`]
    /// operations, [`synod_net::limits::BATCH_BYTES`] of keys and values together (else
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
        let count = ops.len();
        match self.exchange(|clerk| clerk.start_batch(ops)).await? {
            KvReply::Batch(replies) if (1..=count).contains(&replies.len()) => Ok(replies),
            other => Err(unexpected(other)),
        }
    }

    /// Runs the request `start` begins on a pooled session's clerk, as [`call`](Self::call)
    /// describes, and returns its reply.
    async fn exchange(
        &self,
        start: impl FnOnce(&mut KvClerk) -> Vec<RsmOutput<KvOp, (), KvReply>>,
    ) -> Result<KvReply, ClientError> {
        let mut session = self
            .idle
            .take(|| Session::new(KvClerk::new(rand::random(), self.dialer.addrs().len())));
        session.clerk.prefer(self.preferred);
        let deadline = Instant::now() + self.timeout;
        let answer = session.run(start, &self.dialer, deadline).await;
        match answer {
            Ok(KvReply::SessionExpired) => Err(ClientError::SessionExpired),
            // The session is dropped with it: a refusal at the edge is not recorded in the
            // server's session table, which must see a session's first command.
            Ok(KvReply::TooLarge(refused)) => Err(refused.into()),
            Ok(KvReply::Denied(denied)) => Err(ClientError::Denied(denied)),
            Ok(KvReply::OutOfMemory { used, limit }) => {
                Err(ClientError::OutOfMemory { used, limit })
            }
            Ok(reply) => {
                self.idle.put(session);
                Ok(reply)
            }
            Err(stopped) => Err(stopped.error(|_| ClientError::Timeout(self.timeout))),
        }
    }
}

fn unexpected(reply: KvReply) -> ClientError {
    ClientError::Unexpected(format!("{reply:?}"))
}
