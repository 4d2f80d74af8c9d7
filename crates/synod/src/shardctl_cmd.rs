//! `synod shardctl`: the shard controller — replicas, the operator's commands (join, leave,
//! move, query) that print the resulting configuration as JSON, and the controller group's
//! membership (`member`, as `synod kv member`; a new replica starts with `serve --join`).
//!
//! A controller with users (`--requirepass-file`, `--acl-file`) admits native clients as
//! those users (`--user`, `--password-file`) or as members of the cluster (its groups'
//! servers and fronts, by their certificates); a user may query, and only a user allowed
//! everything may join, leave or move (`synod_shardctl::guard`).
//!
//! Node ids over TCP: controller replica `i` (its index in `--peers`) is `NodeId(i)`, below
//! 256; replica `i` of group `gid` is `gid << 8 | i` (see `synod_shardkv::server_id`), so the
//! two never collide as long as gids are at least 1, which the controller enforces.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use synod_client::shardkv::CtlClient;
use synod_net::DEFAULT_MAX_FRAME;
use synod_node::NodeId;
use synod_shardctl::{CtlOp, CtlReply, Gid, DEFAULT_SHARDS};
use synod_shardkv::{controller_node, joining_controller, ShardMsg};

use crate::credential_args::CredentialArgs;
use crate::member_cmd::{self, MemberCommand, Service};
use crate::observe;
use crate::replica_start::{serve_replica, Replica, ReplicaArgs};
use crate::resp_security_args::{native_guard, UserArgs};
use crate::tls_args::ClientTlsArgs;

/// At most this many controllers or replicas per group: an index must fit the 8 low bits
/// of a group server's id.
pub const MAX_REPLICAS: usize = 256;

#[derive(Subcommand)]
pub enum ShardctlCommand {
    /// Run controller replica I, keeping its durable state in DIR.
    Serve {
        #[command(flatten)]
        replica: ReplicaArgs,
        /// Join the running controller group whose replicas were started with --peers (and
        /// --cluster-token) as a new replica listening on ADDR, under --id, a new id beyond
        /// --peers (below 256): it waits, voting nowhere, until `synod shardctl member add`
        /// makes it a learner, then fetches the state. Restart it with the same flags.
        #[arg(long, value_name = "ADDR", conflicts_with_all = ["bootstrap", "rejoin"])]
        join: Option<SocketAddr>,
        /// Number of shards; fixed for the cluster's life, the same on every server.
        #[arg(long, default_value_t = DEFAULT_SHARDS)]
        shards: usize,
        #[command(flatten)]
        users: UserArgs,
    },
    /// Add group GID with the given servers (the same list, in the same order, as their
    /// --peers) and rebalance.
    Join {
        #[command(flatten)]
        ctl: CtlArgs,
        #[arg(long)]
        gid: Gid,
        #[arg(long, value_delimiter = ',', required = true)]
        servers: Vec<String>,
    },
    /// Remove group GID and give its shards to the others.
    Leave {
        #[command(flatten)]
        ctl: CtlArgs,
        #[arg(long)]
        gid: Gid,
    },
    /// Assign shard N to group GID.
    Move {
        #[command(flatten)]
        ctl: CtlArgs,
        #[arg(long)]
        shard: usize,
        #[arg(long)]
        gid: Gid,
    },
    /// Print configuration N (the latest if omitted or too large) as JSON.
    Query {
        #[command(flatten)]
        ctl: CtlArgs,
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        num: i64,
    },
    /// The controller group's membership: list it, add, promote, replace or remove a
    /// replica (docs/running.md, "Membership").
    #[command(subcommand)]
    Member(MemberCommand),
}

/// The shard controller: its messages are the controller's, within the cluster's.
pub const SERVICE: Service<ShardMsg> = Service {
    ask: |config| ShardMsg::Ctl(member_cmd::rsm_ask(config)),
    answer: |msg| match msg {
        ShardMsg::Ctl(msg) => member_cmd::rsm_answer(msg),
        _ => None,
    },
    gid: None,
};

/// Where the controllers are, and how long to wait for them.
#[derive(Args)]
pub struct CtlArgs {
    /// The controllers' addresses, comma-separated.
    #[arg(long, env = "SYNOD_CTL", value_delimiter = ',', required = true)]
    pub ctl: Vec<String>,
    /// Give up after this many seconds without an answer.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

impl CtlArgs {
    pub fn timeout(&self) -> anyhow::Result<Duration> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!("--timeout must be a positive number of seconds");
        }
        Ok(Duration::from_secs_f64(self.timeout))
    }
}

/// The node ids of `n` controllers.
pub fn controller_ids(n: usize) -> anyhow::Result<Vec<NodeId>> {
    if n > MAX_REPLICAS {
        bail!("at most {MAX_REPLICAS} controllers");
    }
    Ok((0..n as u64).map(NodeId).collect())
}

pub fn run(cmd: ShardctlCommand) -> anyhow::Result<ExitCode> {
    let runtime = match &cmd {
        ShardctlCommand::Serve { replica, .. } => replica.start.runtime()?,
        _ => tokio::runtime::Runtime::new().context("starting the async runtime")?,
    };
    runtime.block_on(async move {
        match cmd {
            ShardctlCommand::Serve {
                replica,
                join,
                shards,
                users,
            } => serve(replica, join, shards, users).await,
            ShardctlCommand::Join { ctl, gid, servers } => {
                request(ctl, CtlOp::Join { gid, servers }).await
            }
            ShardctlCommand::Leave { ctl, gid } => request(ctl, CtlOp::Leave { gid }).await,
            ShardctlCommand::Move { ctl, shard, gid } => {
                request(ctl, CtlOp::Move { shard, gid }).await
            }
            ShardctlCommand::Query { ctl, num } => request(ctl, CtlOp::Query { num }).await,
            ShardctlCommand::Member(member) => member_cmd::run(member, &SERVICE).await,
        }
    })
}

async fn serve(
    args: ReplicaArgs,
    join: Option<SocketAddr>,
    shards: usize,
    users: UserArgs,
) -> anyhow::Result<ExitCode> {
    let id = args.id;
    if shards == 0 {
        bail!("--shards must be at least 1");
    }
    if id >= MAX_REPLICAS {
        bail!("--id must be below {MAX_REPLICAS}: a controller's node id is its --id");
    }
    let guard = native_guard(
        users.access()?,
        &args.start.tls,
        synod_shardkv::guard::needs,
        synod_shardkv::guard::refusal,
    )?;
    let ids = controller_ids(args.peers.len())?;
    let name = format!("shardctl replica {id}");
    let mut replica = Replica::numbered(name, &args, DEFAULT_MAX_FRAME);
    replica.join = join;
    if let Some(addr) = join {
        replica.links.insert(NodeId(id as u64), addr);
    }
    // A joining replica (and one that joined, restarted) takes the configurations, and the
    // number of shards, from the state it fetches or stored.
    let node = |paxos| {
        Ok(match join {
            None => controller_node(ids.clone(), id, paxos, shards),
            Some(_) => joining_controller(ids.clone(), NodeId(id as u64), paxos),
        })
    };
    // With a metrics port, a controller also exports the shard map.
    let shards = args
        .metrics
        .addr
        .map(|_| tokio::spawn(observe::watch_shards(args.peers.clone())));
    let served = serve_replica(replica, node, || async { Ok(None) }, guard).await;
    if let Some(shards) = shards {
        shards.abort();
    }
    served
}

async fn request(args: CtlArgs, op: CtlOp) -> anyhow::Result<ExitCode> {
    args.tls.install()?;
    let timeout = args.timeout()?;
    let mut client = CtlClient::connect(args.ctl)?.with_timeout(timeout);
    if let Some(credentials) = args.credentials.credentials()? {
        client = client.with_credentials(credentials);
    }
    match client.call(op).await? {
        CtlReply::Config(config) => println!("{}", serde_json::to_string(&config)?),
        CtlReply::Invalid(why) => bail!("refused: {why}"),
        CtlReply::Denied(denied) => bail!("refused: {denied}; the operation was not applied"),
        CtlReply::SessionExpired => bail!("session expired; the operation was not applied"),
    }
    Ok(ExitCode::SUCCESS)
}
