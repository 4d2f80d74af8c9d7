//! Clients of a sharded cluster (`synod shardctl serve` + `synod shardkv serve`):
//! [`CtlClient`] for the shard controller, [`ShardKvClient`] for the keys.
//!
//! [`ShardKvClient`] is given only the controllers' addresses. It asks them for the latest
//! configuration, caches it, and sends each operation to a server of the group that owns
//! the key's shard, trying that group's servers in turn. A `WrongGroup` answer, or a whole
//! group that stays silent, means the cached configuration may be stale: it asks the
//! controller again (one refresh at a time, shared by every caller) and retries.
//!
//! At most once: requests are numbered per shard with [`synod_shardkv::Numbering`], the
//! same numbering the simulator's clerk uses, because each shard's session table moves with
//! the shard; a request keeps its number across groups and retries. Sessions come from a
//! pool, one operation outstanding each; a session whose operation timed out is dropped,
//! since its outcome is unknown. Controller requests run under a session of their own with
//! the same rule.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use synod_kvpaxos::KvOp;
use synod_resp::{Backend, BackendError};
use synod_rsm::RsmMsg;
use synod_shardctl::{Config, CtlOp, CtlReply};
use synod_shardkv::{Numbering, ShardMsg, ShardReply};
use tokio::time::Instant;

use crate::attempt::hedge_step;
use crate::error::server_list;
use crate::hedge::{self, Conn};
use crate::resp::backend_error;
use crate::ClientError;

/// How long a group may leave a request unanswered, every server tried, before the client
/// asks the controller whether the group still owns the shard.
const GROUP_SILENCE: Duration = Duration::from_secs(2);

/// Pause before retrying when the controller has nothing newer (a shard in transit: its new
/// owner answers `WrongGroup` until the data arrives), so clients do not flood the
/// controller's log with queries.
const PAUSE: Duration = Duration::from_millis(50);

/// How long an operation keeps retrying by default (shorter than a RESP client's patience,
/// so the front answers with an error rather than leaving it hanging).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of the shard controller: joins, leaves, moves and queries, at most once.
///
/// ```no_run
/// # async fn demo() -> Result<(), synod_client::ClientError> {
/// use synod_client::shardkv::CtlClient;
/// let mut ctl = CtlClient::connect(["127.0.0.1:7000", "127.0.0.1:7001"])?;
/// let latest = ctl.query(-1).await?;
/// println!("configuration {}: {:?}", latest.num, latest.shards);
/// # Ok(()) }
/// ```
pub struct CtlClient {
    servers: Vec<String>,
    timeout: Duration,
    client: u64,
    seq: u64,
    /// A connection to the controller that answered last, tried first next time.
    conn: Conn<ShardMsg>,
}

impl CtlClient {
    /// A client of the controllers at `servers` (`HOST:PORT` each). Connects lazily.
    pub fn connect<S: Into<String>>(
        servers: impl IntoIterator<Item = S>,
    ) -> Result<Self, ClientError> {
        let servers = server_list(servers)?;
        Ok(CtlClient {
            servers,
            timeout: DEFAULT_TIMEOUT,
            client: rand::random::<u64>() >> 1,
            seq: 0,
            conn: None,
        })
    }

    /// How long each request keeps retrying before [`ClientError::Timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Configuration `num`, or the latest if `num` is negative or too large.
    pub async fn query(&mut self, num: i64) -> Result<Config, ClientError> {
        match self.call(CtlOp::Query { num }).await? {
            CtlReply::Config(config) => Ok(config),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Runs one controller operation; [`CtlReply::Invalid`] says it was refused.
    pub async fn call(&mut self, op: CtlOp) -> Result<CtlReply, ClientError> {
        self.call_until(op, Instant::now() + self.timeout).await
    }

    async fn call_until(&mut self, op: CtlOp, deadline: Instant) -> Result<CtlReply, ClientError> {
        self.seq += 1;
        let seq = self.seq;
        let msg = ShardMsg::Ctl(RsmMsg::Request {
            client: self.client,
            seq,
            op,
        });
        let wanted = move |m: ShardMsg| match m {
            ShardMsg::Ctl(RsmMsg::Reply { seq: got, reply }) if got == seq => Some(reply),
            _ => None,
        };
        let order = hedge::order(&self.conn, &self.servers, None);
        match hedge::first_answer(&mut self.conn, &order, &msg, hedge::STEP, deadline, wanted).await
        {
            Some(CtlReply::SessionExpired) => {
                self.new_session();
                Err(ClientError::SessionExpired)
            }
            Some(reply) => Ok(reply),
            None => {
                // The request may or may not have been applied: its number cannot be reused
                // for another request, nor skipped (an unknown client past number 1 looks
                // evicted).
                self.new_session();
                Err(ClientError::Timeout(self.timeout))
            }
        }
    }

    fn new_session(&mut self) {
        self.client = rand::random::<u64>() >> 1;
        self.seq = 0;
        self.conn = None;
    }
}

/// One client session of the KV: its id, per-shard numbers and a connection.
struct Session {
    client: u64,
    numbering: Numbering,
    conn: Conn<ShardMsg>,
}

/// A client of a sharded KV cluster, given the controllers' addresses.
///
/// ```no_run
/// # async fn demo() -> Result<(), synod_client::ClientError> {
/// use synod_client::shardkv::ShardKvClient;
/// let kv = ShardKvClient::connect(["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"])?;
/// kv.put("k", "v").await?;
/// assert_eq!(kv.append("k", "w").await?, 2);
/// assert_eq!(kv.get("k").await?, "vw");
/// # Ok(()) }
/// ```
pub struct ShardKvClient {
    /// Held while refreshing the configuration, so concurrent callers wait for one answer
    /// instead of each asking.
    ctl: tokio::sync::Mutex<CtlClient>,
    config: Mutex<Config>,
    timeout: Duration,
    idle: Mutex<Vec<Session>>,
    /// A host whose server an operation tries first in any group that has one there.
    preferred: Option<IpAddr>,
}

impl ShardKvClient {
    /// A client of the cluster whose controllers listen at `controllers`. Connects lazily,
    /// so this succeeds while the cluster is still starting.
    pub fn connect<S: Into<String>>(
        controllers: impl IntoIterator<Item = S>,
    ) -> Result<Self, ClientError> {
        Ok(ShardKvClient {
            ctl: tokio::sync::Mutex::new(CtlClient::connect(controllers)?),
            config: Mutex::new(Config::initial(0)),
            timeout: DEFAULT_TIMEOUT,
            idle: Mutex::new(Vec::new()),
            preferred: None,
        })
    }

    /// Makes every operation start at the owning group's server on host `ip`, when the
    /// group has one there. Without a preference an operation starts where its session is
    /// connected (the group's first server for a new one). A RESP front prefers its own
    /// host: its servers there are reachable whenever the front is, and forward to their
    /// group's leader themselves, while a session left at another server by an earlier
    /// fault would wait a whole attempt when that server is cut off or stopped next.
    pub fn prefer(mut self, ip: IpAddr) -> Self {
        self.preferred = Some(ip);
        self
    }

    /// How long each operation keeps retrying before [`ClientError::Timeout`] (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The configuration the client last learned (number 0 before it asked).
    pub fn config(&self) -> Config {
        self.config
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|_| Config::initial(0))
    }

    /// `key`'s value, "" if it has none.
    pub async fn get(&self, key: impl Into<String>) -> Result<String, ClientError> {
        match self.call(KvOp::Get { key: key.into() }).await? {
            ShardReply::Value { value, .. } => Ok(value),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
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
        self.call(op).await.map(drop)
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
            ShardReply::Written { len, .. } => Ok(len),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Runs one operation at the group owning its key, following reconfigurations, until
    /// it is answered or the timeout passes. Answers `Value` or `Written`.
    pub async fn call(&self, op: KvOp) -> Result<ShardReply, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let mut session = self.take_session();
        let mut numbered = None;
        while deadline > Instant::now() {
            let config = self.config();
            let owner = (config.num > 0)
                .then(|| {
                    let (shard, seq) = *numbered
                        .get_or_insert_with(|| session.numbering.next(&op, config.shards.len()));
                    let servers = config.groups.get(&config.shards[shard])?;
                    Some((shard, seq, servers))
                })
                .flatten();
            if let Some((shard, seq, servers)) = owner {
                match self
                    .try_group(&mut session, servers, &op, (shard, seq), deadline)
                    .await
                {
                    Some(ShardReply::SessionExpired) => return Err(ClientError::SessionExpired),
                    // The session is dropped with it: a refusal at the edge is not recorded in
                    // the shard's session table, which must see a session's first command.
                    Some(ShardReply::TooLarge { refused, .. }) => return Err(refused.into()),
                    Some(ShardReply::WrongGroup { .. }) | None => {}
                    Some(answer) => {
                        if let Ok(mut idle) = self.idle.lock() {
                            idle.push(session);
                        }
                        return Ok(answer);
                    }
                }
            }
            // Wrong group, a silent group, or nobody owns the shard: the configuration may
            // be stale.
            self.refresh(config.num, deadline).await;
            if self.config().num == config.num {
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(PAUSE.min(left)).await;
            }
        }
        Err(ClientError::Timeout(self.timeout))
    }

    /// Tries the group's servers, the one the session is connected to first, then the one on
    /// the preferred host, then the others, each hedge step (longer for a bigger request) after the one before while
    /// those may still answer. Returns the first answer, or `None` if none answered within
    /// [`GROUP_SILENCE`] of the last try.
    async fn try_group(
        &self,
        session: &mut Session,
        servers: &[String],
        op: &KvOp,
        (shard, seq): (usize, u64),
        deadline: Instant,
    ) -> Option<ShardReply> {
        let msg = ShardMsg::Group(RsmMsg::Request {
            client: session.client,
            seq,
            op: op.clone(),
        });
        let wanted = move |m: ShardMsg| match m {
            ShardMsg::Group(RsmMsg::Reply { seq: got, reply })
                if got == seq && reply.shard().is_none_or(|s| s == shard) =>
            {
                Some(reply)
            }
            _ => None,
        };
        let on_preferred_host = |addr: &&String| {
            let ip = addr.parse::<SocketAddr>().ok().map(|a| a.ip());
            ip.is_some() && ip == self.preferred
        };
        let order = hedge::order(
            &session.conn,
            servers,
            servers.iter().find(on_preferred_host),
        );
        let step = hedge_step(op.payload_bytes());
        let tried_all = step * (order.len() as u32 - 1) + GROUP_SILENCE;
        let limit = deadline.min(Instant::now() + tried_all);
        hedge::first_answer(&mut session.conn, &order, &msg, step, limit, wanted).await
    }

    /// Asks the controller for the latest configuration, unless someone else already
    /// learned one newer than `seen` while we waited for our turn.
    async fn refresh(&self, seen: u64, deadline: Instant) {
        let Ok(mut ctl) = tokio::time::timeout_at(deadline, self.ctl.lock()).await else {
            return;
        };
        if self.config().num > seen {
            return;
        }
        let Ok(CtlReply::Config(latest)) = ctl.call_until(CtlOp::Query { num: -1 }, deadline).await
        else {
            return;
        };
        if let Ok(mut config) = self.config.lock() {
            if latest.num > config.num {
                *config = latest;
            }
        }
    }

    fn take_session(&self) -> Session {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        pooled.unwrap_or_else(|| Session {
            client: rand::random::<u64>() >> 1,
            numbering: Numbering::default(),
            conn: None,
        })
    }
}

/// The Redis-protocol front of a shardkv server forwards through this client, so any server
/// of the cluster answers for every key.
impl Backend for ShardKvClient {
    async fn get(&self, key: String) -> Result<Option<String>, BackendError> {
        ShardKvClient::get(self, key)
            .await
            .map(Some)
            .map_err(backend_error)
    }

    async fn put(&self, key: String, value: String) -> Result<(), BackendError> {
        ShardKvClient::put(self, key, value)
            .await
            .map_err(backend_error)
    }

    async fn append(&self, key: String, value: String) -> Result<Option<u64>, BackendError> {
        ShardKvClient::append(self, key, value)
            .await
            .map(Some)
            .map_err(backend_error)
    }
}
