//! `synod status`: asks every listed replica of a replicated service (kv, shardctl, shardkv)
//! for its status and prints one line per replica.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use synod_net::Client;
use synod_rsm::{CatchUp, StatusMsg, StatusReport};

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

/// What a replica that is behind is doing about it, for people.
fn catching_up(catch_up: &CatchUp) -> String {
    match catch_up {
        CatchUp::Waiting { for_ms } => format!(
            "behind: peers forgot instances it needs, waiting {:.1} s for a snapshot",
            *for_ms as f64 / 1000.0
        ),
        CatchUp::Receiving {
            from,
            received,
            total,
        } => format!(
            "catching up: snapshot {} of {} from {from}",
            mib(*received),
            mib(*total)
        ),
        CatchUp::Failed { reason } => format!("behind: cannot install a snapshot: {reason}"),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn describe(r: &StatusReport) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    // A replica that is behind is no healthy follower, whatever its membership says.
    let role = match (&r.membership, &r.catch_up) {
        _ if r.broken => "broken".to_owned(),
        (_, Some(catch_up)) => catching_up(catch_up),
        (synod_paxos::Membership::Voting { .. }, None) if r.leader => "voting leader".to_owned(),
        (synod_paxos::Membership::Voting { .. }, None) => "voting follower".to_owned(),
        (synod_paxos::Membership::Rejoining, None) => "rejoining".to_owned(),
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
