//! `synod shardkv`: the sharded key/value store — group replicas (with an optional
//! Redis-protocol front that routes every key to its owning group), and a command-line
//! client. Both sides find the groups through the shard controller (`--ctl`); the client is
//! `synod_client::shardkv::ShardKvClient`. Node ids are explained in `shardctl_cmd`. A
//! group's membership changes with `member` (as `synod kv member`, then recorded at the
//! controller: `CtlOp::Servers`); a new replica starts with `serve --join`.
//!
//! A replica with users (`--requirepass-file`, `--acl-file`) holds them to their
//! permissions on its RESP port and on its native port alike; the client authenticates with
//! `--user` and `--password-file` (`synod_shardkv::guard`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use synod_client::shardkv::{CtlClient, ShardKvClient};
use synod_kvpaxos::KvOp;
use synod_node::NodeId;
use synod_paxos::Config;
use synod_shardctl::{CtlOp, CtlReply, Gid, DEFAULT_SHARDS};
use synod_shardkv::{server_id, GroupServer, ShardMsg, ShardReply};

use crate::limit_args::LimitArgs;
use crate::member_cmd::{self, MemberCommand, Service};
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
        /// Join the running group whose replicas were started with --peers (and
        /// --cluster-token) as a new replica listening on ADDR, under --id, a new index
        /// beyond --peers (below 256): it waits, voting nowhere, until `synod shardkv member
        /// add` makes it a learner, then fetches the group's state. Restart it with the same
        /// flags.
        #[arg(long, value_name = "ADDR", conflicts_with_all = ["bootstrap", "rejoin"])]
        join: Option<SocketAddr>,
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
    /// Group GID's membership: list it, add, promote, replace or remove a replica
    /// (docs/running.md, "Membership"). A change ends by recording the group's voters at
    /// the controller (--ctl), so clients and other groups reach them.
    #[command(subcommand_required = true)]
    Member {
        /// The group's id.
        #[arg(long, env = "SYNOD_GID", global = true)]
        gid: Option<Gid>,
        /// The controllers' addresses, comma-separated (needed by the changes).
        #[arg(long, env = "SYNOD_CTL", value_delimiter = ',', global = true)]
        ctl: Vec<String>,
        #[command(subcommand)]
        cmd: MemberCommand,
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
    join: Option<SocketAddr>,
    peers: Vec<SocketAddr>,
    ctl: Vec<SocketAddr>,
    shards: usize,
    start: StartArgs,
    limits: LimitArgs,
    metrics: MetricsArgs,
    resp_security: RespSecurityArgs,
}

pub fn run(cmd: ShardkvCommand) -> anyhow::Result<ExitCode> {
    let runtime = match &cmd {
        ShardkvCommand::Serve { start, .. } => start.runtime()?,
        _ => tokio::runtime::Runtime::new().context("starting the async runtime")?,
    };
    runtime.block_on(async move {
        match cmd {
            ShardkvCommand::Serve {
                gid,
                id,
                peers,
                ctl,
                data,
                join,
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
                    join,
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
            ShardkvCommand::Member { gid, ctl, cmd } => member(gid, ctl, cmd).await,
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
    if r.peers.len() > MAX_REPLICAS || r.id >= MAX_REPLICAS {
        bail!("at most {MAX_REPLICAS} replicas per group: --id must be below {MAX_REPLICAS}");
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
        .chain(r.join.map(|addr| (me, addr)))
        .chain(controllers.iter().copied().zip(r.ctl.iter().copied()))
        .collect();
    let replica = replica_start::Replica {
        name: format!("shardkv {} replica {}", r.gid, r.id),
        data: &data,
        index: r.id,
        peers: &r.peers,
        join: r.join,
        start: &r.start,
        me,
        links,
        max_frame: limits.max_frame(),
        metrics: &r.metrics,
    };
    // A joining replica (and one that joined, restarted) takes the group's configurations
    // from the state it fetches or stored: it contacts the replicas of --peers.
    let node = |paxos| {
        let addrs = r.peers.iter().map(ToString::to_string).collect();
        let (gid, id, ctls) = (r.gid, r.id, controllers.clone());
        let node = match r.join {
            None => GroupServer::new(gid, id, addrs, ctls, r.shards, paxos),
            Some(own) => GroupServer::joining(gid, id, addrs, own.to_string(), ctls, paxos),
        };
        Ok(node.with_limits(limits))
    };
    // The front's client asks the controllers where a key's group is, and prefers this
    // server (in-process) when it is of that group, else a server of it on this host.
    let front = || async {
        let Some(addr) = resp else {
            return Ok(None);
        };
        let own = r.peers.get(r.id).copied().or(r.join);
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

/// Runs a member command on group `gid`'s replicas; a change then records the group's
/// voters, as the newest configuration has them, at the controllers `ctl`.
async fn member(
    gid: Option<Gid>,
    ctl: Vec<String>,
    cmd: MemberCommand,
) -> anyhow::Result<ExitCode> {
    let Some(gid) = gid.filter(|g| (1..=MAX_GID).contains(g)) else {
        bail!("--gid (between 1 and {MAX_GID}) names the group whose membership this is");
    };
    if cmd.changes() && ctl.is_empty() {
        bail!("--ctl is needed to change a group's membership: the controller records its servers");
    }
    let target = cmd.target();
    let servers = target.servers.clone();
    let limit = target.limit()?;
    let credentials = target.credentials.credentials()?;
    let changes = cmd.changes();
    let service = Service {
        ask: |config| ShardMsg::Group(member_cmd::rsm_ask(config)),
        answer: |msg| match msg {
            ShardMsg::Group(msg) => member_cmd::rsm_answer(msg),
            _ => None,
        },
        gid: Some(gid),
    };
    let code = member_cmd::run(cmd, &service).await?;
    if changes {
        let newest = member_cmd::newest_config(&servers, limit, credentials.as_ref()).await?;
        let mut client = CtlClient::connect(ctl)?.with_timeout(limit.max(Duration::from_secs(10)));
        if let Some(credentials) = credentials {
            client = client.with_credentials(credentials);
        }
        record_servers(gid, &newest, &mut client).await?;
    }
    Ok(code)
}

/// Records at the controller group `gid`'s servers as `newest` configuration of the group
/// has its voters (`CtlOp::Servers`): replica `i` at position `i`, a first replica's address
/// as the group's Join listed it, a joined one's as the configuration carries it, and an
/// empty position for each replica no longer a voter.
async fn record_servers(gid: Gid, newest: &Config, client: &mut CtlClient) -> anyhow::Result<()> {
    let latest = match client.call(CtlOp::Query { num: -1 }).await? {
        CtlReply::Config(config) => config,
        other => bail!("the controller answered {other:?}"),
    };
    let Some(listed) = latest.groups.get(&gid) else {
        println!("group {gid} has not joined: the controller records its servers when it does");
        return Ok(());
    };
    let mut servers: Vec<String> = Vec::new();
    for &voter in &newest.voters {
        let index = (voter.0 & 0xff) as usize;
        let known = newest.addrs.get(&voter).or_else(|| listed.get(index));
        let Some(addr) = known.filter(|a| !a.is_empty()) else {
            bail!("no address known for {voter}: it neither joined through a change nor was listed at the group's Join");
        };
        if servers.len() <= index {
            servers.resize(index + 1, String::new());
        }
        servers[index] = addr.clone();
    }
    if &servers == listed {
        println!(
            "the controller lists group {gid}'s servers already: {}",
            servers.join(",")
        );
        return Ok(());
    }
    match client
        .call(CtlOp::Servers {
            gid,
            servers: servers.clone(),
        })
        .await?
    {
        CtlReply::Config(config) => println!(
            "recorded group {gid}'s servers at the controller: configuration {} lists {}",
            config.num,
            serde_json::to_string(&servers)?
        ),
        CtlReply::Invalid(why) => bail!("the controller refused the group's servers: {why}"),
        CtlReply::Denied(denied) => bail!("refused: {denied}; the servers were not recorded"),
        CtlReply::SessionExpired => bail!("session expired; the servers were not recorded"),
    }
    Ok(())
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
