//! `synod shardkv`: the sharded key/value store — group replicas (with an optional
//! Redis-protocol front that routes every key to its owning group), and a command-line
//! client. Both sides find the groups through the shard controller (`--ctl`); the client is
//! `synod_client::shardkv::ShardKvClient`. Node ids are explained in `shardctl_cmd`.
//!
//! A replica with users (`--requirepass-file`, `--acl-file`) holds them to their
//! permissions on its RESP port and on its native port alike; the client authenticates with
//! `--user` and `--password-file` (`synod_shardkv::guard`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use synod_client::shardkv::ShardKvClient;
use synod_kvpaxos::KvOp;
use synod_node::NodeId;
use synod_shardctl::{Gid, DEFAULT_SHARDS};
use synod_shardkv::{server_id, GroupServer, ShardReply};

use crate::limit_args::LimitArgs;
use crate::observe::MetricsArgs;
use crate::replica_start::{self, serve_replica, StartArgs};
use crate::resp_front::Front;
use crate::resp_security_args::{native_guard, RespSecurityArgs};
use crate::shardctl_cmd::{controller_ids, CtlArgs, MAX_REPLICAS};

/// Group ids must keep `gid << 8 | i` below the client id range.
const MAX_GID: Gid = (NodeId::FIRST_CLIENT >> 8) - 1;

#[derive(Subcommand)]
pub enum ShardkvCommand {
    /// Run replica I of group GID, keeping its durable state in DIR.
    Serve {
        /// The group's id (1 or more); join it with `synod shardctl join --gid GID`.
        #[arg(long, env = "SYNOD_GID")]
        gid: Gid,
        /// This replica's index (0-based) in --peers; it listens on that address.
        #[arg(long, env = "SYNOD_ID")]
        id: usize,
        /// The group's servers, comma-separated, the same list on every replica and in
        /// `synod shardctl join --servers`.
        #[arg(long, env = "SYNOD_PEERS", value_delimiter = ',', required = true)]
        peers: Vec<SocketAddr>,
        /// The controllers' addresses, comma-separated, in their --peers order.
        #[arg(long, env = "SYNOD_CTL", value_delimiter = ',', required = true)]
        ctl: Vec<SocketAddr>,
        /// Directory for the replica's durable state (created if missing, locked while
        /// running); a replica restarted on it recovers from it.
        #[arg(long, env = "SYNOD_DATA")]
        data: PathBuf,
        /// Also accept the Redis protocol (GET, SET, APPEND, PING, ECHO) on this address,
        /// for every key of the cluster.
        #[arg(long, env = "SYNOD_RESP")]
        resp: Option<SocketAddr>,
        /// Number of shards: the controllers' --shards.
        #[arg(long, default_value_t = DEFAULT_SHARDS)]
        shards: usize,
        #[command(flatten)]
        start: Box<StartArgs>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        metrics: MetricsArgs,
        #[command(flatten)]
        resp_security: Box<RespSecurityArgs>,
    },
    /// Print KEY's value ("" if it has none).
    Get {
        #[command(flatten)]
        ctl: CtlArgs,
        key: String,
    },
    /// Set KEY to VALUE.
    Put {
        #[command(flatten)]
        ctl: CtlArgs,
        key: String,
        value: String,
    },
    /// Append VALUE to KEY's value and print the new length.
    Append {
        #[command(flatten)]
        ctl: CtlArgs,
        key: String,
        value: String,
    },
}

/// Where a group replica is and who it talks to.
struct Replica {
    gid: Gid,
    id: usize,
    peers: Vec<SocketAddr>,
    ctl: Vec<SocketAddr>,
    shards: usize,
    start: StartArgs,
    limits: LimitArgs,
    metrics: MetricsArgs,
    resp_security: RespSecurityArgs,
}

pub fn run(cmd: ShardkvCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cmd {
            ShardkvCommand::Serve {
                gid,
                id,
                peers,
                ctl,
                data,
                resp,
                shards,
                start,
                limits,
                metrics,
                resp_security,
            } => {
                let replica = Replica {
                    gid,
                    id,
                    peers,
                    ctl,
                    shards,
                    start: *start,
                    limits,
                    metrics,
                    resp_security: *resp_security,
                };
                serve(replica, data, resp).await
            }
            ShardkvCommand::Get { ctl, key } => request(ctl, KvOp::Get { key: key.into() }).await,
            ShardkvCommand::Put { ctl, key, value } => {
                request(
                    ctl,
                    KvOp::Put {
                        key: key.into(),
                        value: value.into(),
                    },
                )
                .await
            }
            ShardkvCommand::Append { ctl, key, value } => {
                request(
                    ctl,
                    KvOp::Append {
                        key: key.into(),
                        value: value.into(),
                    },
                )
                .await
            }
        }
    })
}

async fn serve(r: Replica, data: PathBuf, resp: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    if !(1..=MAX_GID).contains(&r.gid) {
        bail!("--gid must be between 1 and {MAX_GID}");
    }
    if r.peers.len() > MAX_REPLICAS {
        bail!("at most {MAX_REPLICAS} replicas per group");
    }
    if r.shards == 0 {
        bail!("--shards must be at least 1");
    }
    let controllers = controller_ids(r.ctl.len())?;
    let limits = r.limits.limits()?;
    let resp_limits = r.limits.resp()?;
    let security = r
        .resp_security
        .security(&r.start.tls, &r.start.cluster_token)?;
    // The users guard the native port too, sharing the RESP port's bound on failures.
    let guard = native_guard(
        security.access.clone(),
        &r.start.tls,
        synod_shardkv::guard::needs,
        synod_shardkv::guard::refusal,
    )?;
    let me = server_id(r.gid, r.id);
    // Its own group and the controllers; other groups' servers are learned from
    // configurations while running (the core calls `add_peer`).
    let group = r
        .peers
        .iter()
        .enumerate()
        .map(|(i, &a)| (server_id(r.gid, i), a));
    let links = group
        .chain(controllers.iter().copied().zip(r.ctl.iter().copied()))
        .collect();
    let replica = replica_start::Replica {
        name: format!("shardkv {} replica {}", r.gid, r.id),
        data: &data,
        index: r.id,
        peers: &r.peers,
        join: None,
        start: &r.start,
        me,
        links,
        max_frame: limits.max_frame(),
        metrics: &r.metrics,
    };
    let node = |paxos| {
        let addrs = r.peers.iter().map(ToString::to_string).collect();
        let node = GroupServer::new(r.gid, r.id, addrs, controllers.clone(), r.shards, paxos);
        Ok(node.with_limits(limits))
    };
    // The front's client asks the controllers where a key's group is, and prefers this
    // server (in-process) when it is of that group, else a server of it on this host.
    let front = || async {
        let Some(addr) = resp else {
            return Ok(None);
        };
        let own = r.peers.get(r.id).copied();
        let front = Front::bind_secured(addr, resp_limits, security, || {
            let client = ShardKvClient::connect(r.ctl.iter().map(ToString::to_string))?;
            Ok(match own {
                Some(own) => client.prefer(own, r.id),
                None => client,
            })
        });
        Ok(Some(front.await?))
    };
    serve_replica(replica, node, front, guard).await
}

async fn request(args: CtlArgs, op: KvOp) -> anyhow::Result<ExitCode> {
    args.tls.install()?;
    let timeout = args.timeout()?;
    let mut client = ShardKvClient::connect(args.ctl)?.with_timeout(timeout);
    if let Some(credentials) = args.credentials.credentials()? {
        client = client.with_credentials(credentials);
    }
    match client.call(op).await? {
        ShardReply::Value { value, .. } => crate::kv_cmd::print_value(&value)?,
        ShardReply::Written { len, .. } => println!("{len}"),
        ShardReply::TooLarge { refused, .. } => bail!("{refused}; the operation was not applied"),
        other => bail!("unexpected answer {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}
