//! `synod kv`: the Paxos-replicated key/value store — replicas, a command-line client, and
//! a Redis-protocol front. The client side is `synod_client::KvClient`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use synod_client::KvClient;
use synod_kvpaxos::{KvOp, KvReplica, KvReply};
use synod_node::limits::{Limits, DEFAULT_MAX_VALUE_BYTES};
use synod_node::NodeId;

use crate::credential_args::CredentialArgs;
use crate::limit_args::LimitArgs;
use crate::member_cmd::{self, MemberCommand};
use crate::replica_start::{serve_replica, Replica, ReplicaArgs};
use crate::resp_front::Front;
use crate::resp_security_args::{native_guard, RespSecurityArgs};
use crate::tls_args::ClientTlsArgs;

#[derive(Subcommand)]
pub enum KvCommand {
    /// Run replica I of a cluster, keeping its durable state in DIR.
    Serve {
        #[command(flatten)]
        replica: Box<ReplicaArgs>,
        /// Join the running cluster whose replicas were started with --peers (and
        /// --cluster-token) as a new replica listening on ADDR, under --id, a new id beyond
        /// --peers: it waits, voting nowhere, until `synod kv member add` makes it a learner,
        /// then fetches the state. Restart it with the same flags.
        #[arg(long, value_name = "ADDR", conflicts_with_all = ["bootstrap", "rejoin"])]
        join: Option<SocketAddr>,
        /// Also accept the Redis protocol (GET, SET, APPEND, PING, ECHO) on this address.
        #[arg(long, env = "SYNOD_RESP")]
        resp: Option<SocketAddr>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        resp_security: Box<RespSecurityArgs>,
        /// Bytes of keys and values the store may hold; a SET or APPEND that would pass it is
        /// refused ("-OOM command not allowed when used memory > 'maxmemory'.") and Gets are
        /// still served. A replica needs about 2.2 bytes of memory per byte of state
        /// (docs/running.md, "Memory"). Give every replica the same one. [default: no limit]
        #[arg(long, env = "SYNOD_MAX_MEMORY")]
        max_memory: Option<u64>,
    },
    /// Print KEY's value ("" if it has none).
    Get {
        #[command(flatten)]
        target: Target,
        key: String,
    },
    /// Set KEY to VALUE.
    Put {
        #[command(flatten)]
        target: Target,
        key: String,
        value: String,
    },
    /// Append VALUE to KEY's value and print the new length.
    Append {
        #[command(flatten)]
        target: Target,
        key: String,
        value: String,
    },
    /// The group's membership: list it, add, promote, replace or remove a replica
    /// (docs/running.md, "Membership").
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Args)]
pub struct Target {
    /// The replicas' addresses, comma-separated.
    #[arg(long, env = "SYNOD_SERVERS", value_delimiter = ',', required = true)]
    servers: Vec<String>,
    /// Give up after this many seconds without an answer.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Refuse values above this many bytes before sending them: the servers'
    /// --max-value-bytes.
    #[arg(long, env = "SYNOD_MAX_VALUE_BYTES", default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    max_value_bytes: usize,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(flatten)]
    credentials: CredentialArgs,
}

pub fn run(cmd: KvCommand) -> anyhow::Result<ExitCode> {
    let runtime = match &cmd {
        KvCommand::Serve { replica, .. } => replica.start.runtime()?,
        _ => tokio::runtime::Runtime::new().context("starting the async runtime")?,
    };
    runtime.block_on(async move {
        match cmd {
            KvCommand::Serve {
                replica,
                join,
                resp,
                limits,
                resp_security,
                max_memory,
            } => serve(*replica, join, resp, limits, *resp_security, max_memory).await,
            KvCommand::Get { target, key } => request(target, KvOp::Get { key: key.into() }).await,
            KvCommand::Put { target, key, value } => {
                request(
                    target,
                    KvOp::Put {
                        key: key.into(),
                        value: value.into(),
                    },
                )
                .await
            }
            KvCommand::Append { target, key, value } => {
                request(
                    target,
                    KvOp::Append {
                        key: key.into(),
                        value: value.into(),
                    },
                )
                .await
            }
            KvCommand::Member(member) => member_cmd::run(member, &member_cmd::KV).await,
        }
    })
}

async fn serve(
    args: ReplicaArgs,
    join: Option<SocketAddr>,
    resp: Option<SocketAddr>,
    limit_args: LimitArgs,
    resp_security: RespSecurityArgs,
    max_memory: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let security = resp_security.security(&args.start.tls, &args.start.cluster_token)?;
    // The users guard the native port too, sharing the RESP port's bound on failures.
    let guard = native_guard(
        security.access.clone(),
        &args.start.tls,
        synod_kvpaxos::guard::needs,
        synod_kvpaxos::guard::refusal,
    )?;
    let (id, peers) = (args.id, &args.peers);
    let limits = limit_args.limits()?;
    let resp_limits = limit_args.resp()?;
    let ids: Vec<NodeId> = (0..peers.len() as u64).map(NodeId).collect();
    let name = format!("kv replica {id}");
    let mut replica = Replica::numbered(name, &args, limits.max_frame());
    replica.join = join;
    if let Some(addr) = join {
        replica.links.insert(NodeId(id as u64), addr);
    }
    // A joining replica (and one that joined, restarted) knows the group's configuration
    // only from the state it fetches or stored: it contacts the replicas of --peers.
    let node = |paxos| {
        let replica = match join {
            None => KvReplica::new(ids.clone(), id, paxos),
            Some(_) => KvReplica::joining(ids.clone(), NodeId(id as u64), paxos),
        };
        Ok(replica.with_limits(limits).with_max_memory(max_memory))
    };
    // The front's client tries this replica first (in-process), then the others over TCP
    // when this one cannot answer (it is in a minority, say).
    let (servers, preferred) = match join {
        None => (peers.clone(), id),
        Some(addr) => (
            std::iter::once(addr).chain(peers.iter().copied()).collect(),
            0,
        ),
    };
    let front = || async {
        let Some(addr) = resp else {
            return Ok(None);
        };
        let front = Front::bind_secured(addr, resp_limits, security, || {
            Ok(KvClient::connect(servers.iter().map(ToString::to_string))?
                .with_limits(limits)
                .prefer(preferred))
        });
        Ok(Some(front.await?))
    };
    serve_replica(replica, node, front, guard).await
}

async fn request(target: Target, op: KvOp) -> anyhow::Result<ExitCode> {
    if !(target.timeout.is_finite() && target.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let limits = Limits::new(target.max_value_bytes).context("--max-value-bytes")?;
    target.tls.install()?;
    let mut client = KvClient::connect(target.servers)?
        .with_timeout(Duration::from_secs_f64(target.timeout))
        .with_limits(limits);
    if let Some(credentials) = target.credentials.credentials()? {
        client = client.with_credentials(credentials);
    }
    match client.call(op).await? {
        KvReply::Value(v) => print_value(&v)?,
        KvReply::Written { len } => println!("{len}"),
        KvReply::SessionExpired => bail!("session expired; the operation was not applied"),
        KvReply::TooLarge(refused) => bail!("{refused}; the operation was not applied"),
        KvReply::OutOfMemory { used, limit } => bail!(
            "out of memory: the store holds {used} bytes, --max-memory is {limit}; \
             the operation was not applied"
        ),
        KvReply::Denied(denied) => bail!("refused: {denied}; the operation was not applied"),
        KvReply::Batch(_) | KvReply::Redis(_) => {
            bail!("the server answered another kind of operation")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a value read by `get` as it is stored (bytes, not necessarily text), then a newline.
pub(crate) fn print_value(value: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(value)?;
    out.write_all(b"\n")
}
