//! Clients of a sharded cluster (`synod shardctl serve` + `synod shardkv serve`):
//! [`CtlClient`] for the shard controller, [`ShardKvClient`] for the keys.
//!
//! Both are sans-I/O clerks run by the crate's driver: [`CtlClient`] the controller's
//! (`synod_shardctl::CtlClerk`), [`ShardKvClient`] the sharded KV's
//! (`synod_shardkv::ShardKvClerk`: the configuration cache, the owning group's servers
//! hedged, `WrongGroup` and a silent group sending it to the controller, per-shard
//! numbering for at most once). The simulator's shardkv suites run the same clerks.
//!
//! [`ShardKvClient`] is given only the controllers' addresses. Sessions come from a pool,
//! one operation outstanding each; a session whose operation timed out is dropped, since its
//! outcome is unknown. The newest configuration any session learned is handed to the next
//! operation's session, so one refresh serves every caller. Controller requests run under a
//! session of their own with the same rule.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use synod_keyspace::{Command, Reply};
use synod_kvpaxos::KvOp;
use synod_net::{Client, Credentials, NetError};
use synod_node::clerk::Clerk;
use synod_resp::{Backend, BackendError};
use synod_shardctl::{Config, CtlClerk, CtlMsg, CtlOp, CtlReply, Gid};
use synod_shardkv::clerk::ShardOutput;
use synod_shardkv::{
    key2shard, segment, shard_hash, Preference, ShardKvClerk, ShardMsg, ShardReply, ShardServer,
};
use tokio::time::Instant;
use tracing::trace;

use crate::coalesce::Coalescer;
use crate::driver::{self, Connection, Dialer, TcpDialer};
use crate::error::server_list;
use crate::pool::Pool;
use crate::resp::{abandoned, backend_error};
use crate::ClientError;

/// How long an operation keeps retrying by default: the one policy of every client.
pub use crate::pool::DEFAULT_TIMEOUT;

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
    dialer: CtlDialer,
    timeout: Duration,
    session: driver::Session<CtlClerk, CtlConn>,
}

impl CtlClient {
    /// A client of the controllers at `servers` (`HOST:PORT` each). Connects lazily.
    pub fn connect<S: Into<String>>(
        servers: impl IntoIterator<Item = S>,
    ) -> Result<Self, ClientError> {
        let servers = server_list(servers)?;
        let session = driver::Session::new(Self::new_clerk(servers.len()));
        Ok(CtlClient {
            dialer: CtlDialer(TcpDialer::new(servers)),
            timeout: DEFAULT_TIMEOUT,
            session,
        })
    }

    /// How long each request keeps retrying before [`ClientError::Timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Presents `credentials` to the controllers (which refuse a client without valid ones
    /// when they have users: [`ClientError::Refused`]); a change of the configuration then
    /// needs a user allowed everything ([`CtlReply::Denied`] otherwise). Presented over TLS
    /// only, as [`crate::KvClient::with_credentials`] explains.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.dialer.0.authenticate(credentials);
        self
    }

    /// Configuration `num`, or the latest if `num` is negative or too large.
    pub async fn query(&mut self, num: i64) -> Result<Config, ClientError> {
        match self.call(CtlOp::Query { num }).await? {
            CtlReply::Config(config) => Ok(config),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Runs one controller operation; [`CtlReply::Invalid`] says it was refused, and
    /// [`CtlReply::Denied`] that its user may not make it.
    pub async fn call(&mut self, op: CtlOp) -> Result<CtlReply, ClientError> {
        self.call_until(op, Instant::now() + self.timeout).await
    }

    async fn call_until(&mut self, op: CtlOp, deadline: Instant) -> Result<CtlReply, ClientError> {
        let answer = self
            .session
            .run(|c| c.start(op), &self.dialer, deadline)
            .await;
        match answer {
            Ok(CtlReply::SessionExpired) => {
                self.session.clerk = Self::new_clerk(self.dialer.0.addrs().len());
                Err(ClientError::SessionExpired)
            }
            Ok(reply @ CtlReply::Denied(_)) => {
                // Refused before the log: the controllers never saw the number, and the next
                // one of a client they do not know would look evicted.
                self.session.clerk = Self::new_clerk(self.dialer.0.addrs().len());
                Ok(reply)
            }
            Ok(reply) => Ok(reply),
            Err(stopped) => {
                // The request may or may not have been applied: its number cannot be reused
                // for another request, nor skipped (an unknown client past number 1 looks
                // evicted).
                self.session.clerk = Self::new_clerk(self.dialer.0.addrs().len());
                self.session.disconnect();
                Err(stopped.error(|_| ClientError::Timeout(self.timeout)))
            }
        }
    }

    fn new_clerk(servers: usize) -> CtlClerk {
        CtlClerk::new(rand::random::<u64>() >> 1, servers)
    }
}

/// A connection to a controller of a sharded cluster, which speaks [`ShardMsg`]: carries the
/// controller's own messages inside [`ShardMsg::Ctl`] and skips anything else.
struct CtlConn(Client<ShardMsg>);

impl Connection<CtlMsg> for CtlConn {
    fn send(&mut self, msg: &CtlMsg) -> impl Future<Output = Result<(), NetError>> + Send {
        let msg = ShardMsg::Ctl(msg.clone());
        async move { self.0.send(&msg).await }
    }

    fn recv(&mut self, limit: Duration) -> impl Future<Output = Result<CtlMsg, NetError>> + Send {
        let deadline = Instant::now() + limit;
        async move {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.0.recv(left).await? {
                    ShardMsg::Ctl(msg) => return Ok(msg),
                    other => trace!(?other, "skipping a message that is not the controller's"),
                }
            }
        }
    }
}

/// Opens [`CtlConn`]s to the controllers, by index into their addresses.
struct CtlDialer(TcpDialer<ShardMsg>);

impl Dialer<usize> for CtlDialer {
    type Msg = CtlMsg;
    type Conn = CtlConn;

    fn dial(
        &self,
        server: &usize,
        limit: Duration,
    ) -> impl Future<Output = Result<CtlConn, NetError>> + Send + 'static {
        let connect = self.0.dial(server, limit);
        async move { connect.await.map(CtlConn) }
    }
}

/// One client session of the KV: its clerk (id, per-shard numbers, configuration, a
/// controller session) and the connections it keeps.
type Session = driver::Session<ShardKvClerk, Client<ShardMsg>>;

/// TCP connections to the servers a [`ShardKvClerk`] names: controllers by index into their
/// addresses, group servers by the address the configuration lists.
struct ShardDialer(TcpDialer<ShardMsg>);

impl Dialer<ShardServer> for ShardDialer {
    type Msg = ShardMsg;
    type Conn = Client<ShardMsg>;

    fn dial(
        &self,
        server: &ShardServer,
        limit: Duration,
    ) -> impl Future<Output = Result<Client<ShardMsg>, NetError>> + Send + 'static {
        let addr = match server {
            ShardServer::Controller(i) => self.0.addrs().get(*i).cloned(),
            ShardServer::Group(addr) => Some(addr.clone()),
        };
        driver::dial_addr(addr, limit, self.0.credentials().cloned())
    }
}

/// Which single commands of a front may leave in one batch: those owned by one group, reads
/// (answered after a read barrier, without a log entry) apart from writes (one log entry).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Together {
    gid: Gid,
    writes: bool,
}

/// A client of a sharded KV cluster, given the controllers' addresses.
///
/// ```no_run
/// # async fn demo() -> Result<(), synod_client::ClientError> {
/// use synod_client::shardkv::ShardKvClient;
/// let kv = ShardKvClient::connect(["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"])?;
/// kv.put("k", "v").await?;
/// assert_eq!(kv.append("k", "w").await?, 2);
/// assert_eq!(kv.get("k").await?, b"vw");
/// # Ok(()) }
/// ```
pub struct ShardKvClient {
    dialer: ShardDialer,
    /// The newest configuration any session learned, handed to every session that starts
    /// an operation, so one refresh serves them all. Shared, not copied, per operation.
    config: Mutex<Arc<Config>>,
    timeout: Duration,
    idle: Pool<Session>,
    /// Which server of the owning group an operation tries first.
    preferred: Option<Preference>,
    /// The Redis-protocol front's single commands, queued to leave in batches.
    together: Coalescer<Together, Command, Result<Reply, BackendError>>,
}

impl ShardKvClient {
    /// A client of the cluster whose controllers listen at `controllers`. Connects lazily,
    /// so this succeeds while the cluster is still starting.
    pub fn connect<S: Into<String>>(
        controllers: impl IntoIterator<Item = S>,
    ) -> Result<Self, ClientError> {
        Ok(ShardKvClient {
            dialer: ShardDialer(TcpDialer::new(server_list(controllers)?)),
            config: Mutex::new(Arc::new(Config::initial(0))),
            timeout: DEFAULT_TIMEOUT,
            idle: Pool::new(),
            preferred: None,
            together: Coalescer::new(),
        })
    }

    /// Makes every operation start at `server` when the owning group is its group, and
    /// otherwise at one of the group's servers on its host (the one at `index`, so fronts
    /// spread), after the server that answered the session last. A RESP front prefers its
    /// own server, which it reaches in-process, and its host's servers: those are reachable
    /// whenever the front is, and forward to their group's leader themselves, while a session
    /// left at another server by an earlier fault would wait a whole attempt when that
    /// server is cut off or stopped next.
    pub fn prefer(mut self, server: SocketAddr, index: usize) -> Self {
        self.preferred = Some(Preference { server, index });
        self
    }

    /// How long each operation keeps retrying before [`ClientError::Timeout`] (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Presents `credentials` to the controllers and the groups' servers (which refuse a
    /// client without valid ones when they have users: [`ClientError::Refused`]); the user's
    /// permissions then bound what it may do ([`ClientError::Denied`]). Presented over TLS
    /// only, as [`crate::KvClient::with_credentials`] explains.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.dialer.0.authenticate(credentials);
        self
    }

    /// The configuration the client last learned (number 0 before it asked).
    pub fn config(&self) -> Config {
        Config::clone(&self.shared_config())
    }

    /// The same, without copying it.
    fn shared_config(&self) -> Arc<Config> {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `key`'s value, empty if it has none (the course's Get; [`ShardKvClient::redis`]
    /// with a `GET` tells a missing key from an empty value).
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Vec<u8>, ClientError> {
        match self.call(KvOp::Get { key: key.into() }).await? {
            ShardReply::Value { value, .. } => Ok(value),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
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
        self.call(op).await.map(drop)
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
            ShardReply::Written { len, .. } => Ok(len),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Runs one Redis command (a transaction included) at the group owning its keys. A
    /// command's keys must be of one shard: the same key, or the same hash tag
    /// ([`synod_shardkv::hash_tag`]); else it is answered Redis Cluster's `CROSSSLOT` error,
    /// and a command without keys (SCAN, KEYS, DBSIZE), which would span every shard, is
    /// refused by name. Neither is sent.
    pub async fn redis(&self, command: Command) -> Result<Reply, ClientError> {
        if let Some(refusal) = refusal(&command) {
            return Ok(refusal);
        }
        match self.call(KvOp::Redis(command)).await? {
            ShardReply::Redis { reply, .. } => Ok(reply),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Runs one operation at the group owning its key, following reconfigurations, until
    /// it is answered or the timeout passes. Answers `Value` or `Written`.
    pub async fn call(&self, op: KvOp) -> Result<ShardReply, ClientError> {
        self.run(|clerk| clerk.start(op)).await
    }

    /// Runs `ops` as one request (one log entry unless they only read, applied in order, at
    /// most once as a whole) at the group owning the first one's shard, following
    /// reconfigurations. They may be of any shards ([`segment`] picks one group's). Answers
    /// a prefix of them, at least the first, in order: a group cuts a batch whose values
    /// would not fit one reply, and stops at its first command of a shard the group does
    /// not serve (applying none from there on). The caller sends the rest again.
    pub async fn call_batch(&self, ops: Vec<KvOp>) -> Result<Vec<ShardReply>, ClientError> {
        let one = ops.len() == 1;
        let replies = match self.run(|clerk| clerk.start_batch(ops)).await? {
            ShardReply::Batch(replies) => replies,
            reply if one => vec![reply],
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        if replies.is_empty() {
            return Err(ClientError::Unexpected("an empty batch reply".into()));
        }
        Ok(replies)
    }

    /// A single command run in one batch with the other single commands of its kind in
    /// flight at the same time (see the `coalesce` module): reads with the reads, writes
    /// with the writes, of the group that owns their shard. Alone while no configuration
    /// names the owners, and when it is refused without being sent.
    async fn run_together(&self, command: Command) -> Result<Reply, BackendError> {
        let config = self.shared_config();
        let owner = command
            .keys()
            .first()
            .and_then(|key| config.shards.get(key2shard(key, config.shards.len())));
        let (Some(&gid), None, true) = (owner, refusal(&command), config.num > 0) else {
            return self.redis(command).await.map_err(backend_error);
        };
        let together = Together {
            gid,
            writes: command.writes(),
        };
        let batch = |commands| Backend::run_batch(self, commands);
        self.together.run(together, command, batch, abandoned).await
    }

    async fn run(
        &self,
        start: impl FnOnce(&mut ShardKvClerk) -> Vec<ShardOutput>,
    ) -> Result<ShardReply, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let controllers = self.dialer.0.addrs().len();
        let mut session = self.idle.take(|| {
            Session::new(ShardKvClerk::new(
                rand::random::<u64>() >> 1,
                controllers,
                Config::initial(0),
            ))
        });
        session.clerk.learn(&self.shared_config());
        session.clerk.prefer(self.preferred);
        let answer = session.run(start, &self.dialer, deadline).await;
        self.learn(session.clerk.config());
        match answer {
            Ok(ShardReply::SessionExpired) => Err(ClientError::SessionExpired),
            // The session is dropped with it: a refusal at the edge is not recorded in the
            // shard's session table, which must see a session's first command.
            Ok(ShardReply::TooLarge { refused, .. }) => Err(refused.into()),
            // Dropped too: a refusal names no shard (`ShardReply::Denied`).
            Ok(ShardReply::Denied(denied)) => Err(ClientError::Denied(denied)),
            Ok(reply @ ShardReply::WrongGroup { .. }) => {
                Err(ClientError::Unexpected(format!("{reply:?}")))
            }
            Ok(reply) => {
                self.idle.put(session);
                Ok(reply)
            }
            Err(stopped) => Err(stopped.error(|_| ClientError::Timeout(self.timeout))),
        }
    }

    /// Keeps `config` as the newest known if it is newer. The lock is held only for a
    /// compare and an assignment, which leave it whole if a caller panicked meanwhile: the
    /// same recovery as the session pool's.
    fn learn(&self, latest: &Config) {
        let mut config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        if latest.num > config.num {
            *config = Arc::new(latest.clone());
        }
    }
}

/// The Redis-protocol front of a shardkv server forwards through this client, so any server
/// of the cluster answers for every key. Single commands in flight together leave in
/// batches (the reads of one group, the writes of one group); a pipeline is sent in order, as few requests
/// as its commands allow ([`synod_shardkv::segment`]).
impl Backend for ShardKvClient {
    async fn run(&self, command: Command) -> Result<Reply, BackendError> {
        self.run_together(command).await
    }

    /// One request per [`segment`], one after the other, so every command takes effect after
    /// the ones before it. A segment refused whole at the edge (a value too large) is run
    /// again one command at a time, so each gets its own answer; a command the sharded KV
    /// refuses without sending it (keys of several shards, or none) is answered in its place.
    async fn run_batch(&self, commands: Vec<Command>) -> Vec<Result<Reply, BackendError>> {
        let mut answers = Vec::with_capacity(commands.len());
        let mut rest = commands.as_slice();
        while let Some(first) = rest.first() {
            if let Some(refusal) = refusal(first) {
                answers.push(Ok(refusal));
                rest = &rest[1..];
                continue;
            }
            let kv_ops: Vec<KvOp> = rest
                .iter()
                .take_while(|c| refusal(c).is_none())
                .cloned()
                .map(KvOp::Redis)
                .collect();
            let take = segment(&kv_ops, &self.shared_config());
            let part = kv_ops[..take].to_vec();
            match self.call_batch(part).await {
                Ok(replies) => {
                    let done = replies.len();
                    answers.extend(replies.into_iter().map(answer));
                    rest = &rest[done..];
                }
                Err(e @ ClientError::TooLarge(_)) if take == 1 => {
                    answers.push(Err(backend_error(e)));
                    rest = &rest[1..];
                }
                Err(ClientError::TooLarge(_)) => {
                    // Alone, not through `run`: this may be a batch of `run`'s own.
                    for command in &rest[..take] {
                        answers.push(self.redis(command.clone()).await.map_err(backend_error));
                    }
                    rest = &rest[take..];
                }
                Err(e) => {
                    let e = backend_error(e);
                    answers.extend(rest.iter().map(|_| Err(e.clone())));
                    break;
                }
            }
        }
        answers
    }
}

/// The answer to one command in a batch's reply.
fn answer(reply: ShardReply) -> Result<Reply, BackendError> {
    match reply {
        ShardReply::Redis { reply, .. } => Ok(reply),
        ShardReply::TooLarge { refused, .. } => Err(BackendError::TooLarge(refused.to_string())),
        other => Err(BackendError::Unavailable(format!(
            "unexpected reply {other:?}"
        ))),
    }
}

/// The reply the sharded KV gives `command` without sending it, if it does: a command
/// whose keys hash to several shards gets Redis Cluster's `CROSSSLOT` (keys of one hash
/// tag share a shard, [`synod_shardkv::hash_tag`]), and one without keys (SCAN, KEYS,
/// DBSIZE), which would span every shard, is refused by name.
fn refusal(command: &Command) -> Option<Reply> {
    let keys = command.keys();
    let Some(first) = keys.first() else {
        return Some(Reply::Error(format!(
            "ERR {} spans every shard: not supported by the sharded KV (docs/running.md)",
            command.name()
        )));
    };
    let hash = shard_hash(first);
    keys.iter()
        .any(|k| shard_hash(k) != hash)
        .then(|| Reply::Error("CROSSSLOT Keys in request don't hash to the same slot".into()))
}
