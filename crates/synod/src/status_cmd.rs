//! `synod status`: asks every listed replica of a replicated service (kv, shardctl, shardkv)
//! for its status and prints one line per replica.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use synod_net::Client;
use synod_rsm::{StatusMsg, StatusReport};

#[derive(Args)]
pub struct StatusArgs {
    /// The replicas' addresses, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    servers: Vec<String>,
    /// How long to wait for each replica, in seconds.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let limit = Duration::from_secs_f64(args.timeout);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut answered = 0;
    for addr in &args.servers {
        match runtime.block_on(ask(addr, limit)) {
            Ok(report) => {
                answered += 1;
                println!("{addr} {}", describe(&report));
            }
            Err(why) => println!("{addr} unreachable: {why:#}"),
        }
    }
    if answered == 0 {
        bail!("no replica answered");
    }
    Ok(ExitCode::SUCCESS)
}

/// One replica's status report, or why it did not give one within `limit`.
async fn ask(addr: &str, limit: Duration) -> anyhow::Result<StatusReport> {
    let mut client: Client<StatusMsg> = Client::connect(addr, limit).await?;
    match client.call(&StatusMsg::Query, limit).await? {
        StatusMsg::Report(report) => Ok(report),
        StatusMsg::Query => bail!("answered with a query"),
    }
}

fn describe(r: &StatusReport) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let role = match r.membership {
        synod_paxos::Membership::Voting { .. } if r.broken => "broken",
        synod_paxos::Membership::Voting { .. } if r.leader => "voting leader",
        synod_paxos::Membership::Voting { .. } => "voting follower",
        synod_paxos::Membership::Rejoining => "rejoining",
    };
    format!(
        "id={} replica={}/{} {role} max={} applied={} min={} durable_bytes={} state_bytes={}",
        r.id,
        r.index,
        r.peers.len(),
        opt(r.max),
        opt(r.applied),
        r.min,
        r.durable_bytes,
        r.state_bytes,
    )
}
