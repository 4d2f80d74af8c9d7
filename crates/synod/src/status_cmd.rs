//! `synod status`: asks every listed replica of a replicated service (kv, shardctl, shardkv)
//! for its status and prints one line per replica.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use synod_net::{Client, Credentials};
use synod_paxos::Membership;
use synod_rsm::{voter_shortage, CatchUp, StatusMsg, StatusReport};

use crate::credential_args::CredentialArgs;
use crate::tls_args::ClientTlsArgs;

#[derive(Args)]
pub struct StatusArgs {
    /// The replicas' addresses, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) servers: Vec<String>,
    /// How long to wait for each replica, in seconds.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    #[command(flatten)]
    pub(crate) tls: ClientTlsArgs,
    #[command(flatten)]
    pub(crate) credentials: CredentialArgs,
}

impl StatusArgs {
    /// `--timeout`, checked.
    pub(crate) fn limit(&self) -> anyhow::Result<Duration> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!("--timeout must be a positive number of seconds");
        }
        Ok(Duration::from_secs_f64(self.timeout))
    }
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let limit = args.limit()?;
    args.tls.install()?;
    let credentials = args.credentials.credentials()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut reports = Vec::new();
    for addr in &args.servers {
        match runtime.block_on(ask(addr, limit, credentials.as_ref())) {
            Ok(report) => {
                println!("{addr} {}", describe(&report));
                reports.push(report);
            }
            Err(why) => println!("{addr} unreachable: {why:#}"),
        }
    }
    if reports.is_empty() {
        bail!("no replica answered");
    }
    println!("{}", membership(&reports));
    // Every replica reports its group's size; the lists are the same by construction.
    let group_size = reports[0].peers.len();
    if let Some(shortage) = voter_shortage(&reports, group_size) {
        let excluded: Vec<String> = shortage
            .excluded
            .iter()
            .map(|(id, m)| match m {
                Membership::Rejoining => format!("{id} (rejoining)"),
                Membership::Voting { horizon } => {
                    format!("{id} (votes above {})", horizon.map_or(0, |h| h))
                }
            })
            .collect();
        println!(
            "WEDGED: instance {} can get at most {} of the {} votes it needs: {} lost their \
             disks and may not vote there. More disks were lost than the cluster tolerates \
             before it caught up; see docs/paxos.md, \"Rejoining after a lost disk\".",
            shortage.instance,
            shortage.voters,
            shortage.needed,
            excluded.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One replica's status report, asked presenting `credentials`, or why it did not give one
/// within `limit`.
pub(crate) async fn ask(
    addr: &str,
    limit: Duration,
    credentials: Option<&Credentials>,
) -> anyhow::Result<StatusReport> {
    let mut client: Client<StatusMsg> = Client::connect_as(addr, limit, credentials).await?;
    match client.call(&StatusMsg::Query, limit).await? {
        StatusMsg::Report(report) => Ok(report),
        StatusMsg::Query => bail!("answered with a query"),
    }
}

/// One `membership:` line per group among the answering replicas (`synod status` may be
/// given several groups' replicas, shardkv's say), each as the group's most advanced
/// answering replica knows it: the configuration in effect, and a decided change not yet in
/// effect. Replicas whose configurations share a member are of one group.
pub(crate) fn membership(reports: &[StatusReport]) -> String {
    let mut newest_first: Vec<&StatusReport> =
        reports.iter().filter(|r| !r.configs.is_empty()).collect();
    newest_first
        .sort_by_key(|r| std::cmp::Reverse((r.configs.last().map(|(_, c)| c.epoch), r.applied)));
    let mut seen: Vec<synod_node::NodeId> = Vec::new();
    let mut lines = Vec::new();
    for r in newest_first {
        let members: Vec<synod_node::NodeId> =
            r.configs.iter().flat_map(|(_, c)| c.members()).collect();
        if members.iter().any(|m| seen.contains(m)) {
            continue;
        }
        seen.extend(members);
        lines.push(describe_configs(&r.configs));
    }
    if lines.is_empty() {
        return "membership: unknown (no answering replica has its group's state yet)".to_owned();
    }
    lines.join("\n")
}

fn describe_configs(configs: &[(u64, synod_paxos::Config)]) -> String {
    let names = |ids: &[synod_node::NodeId]| {
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        format!("[{}]", names.join(","))
    };
    let parts: Vec<String> = configs
        .iter()
        .enumerate()
        .map(|(i, (from, c))| {
            let when = match i {
                0 => "in effect".to_owned(),
                _ => format!("decided, in effect from instance {from}"),
            };
            let mut text = format!(
                "epoch {} ({when}) voters {} learners {}",
                c.epoch,
                names(&c.voters),
                names(&c.learners)
            );
            if !c.addrs.is_empty() {
                let addrs: Vec<String> =
                    c.addrs.iter().map(|(id, a)| format!("{id}={a}")).collect();
                text.push_str(&format!(" joined at [{}]", addrs.join(",")));
            }
            text
        })
        .collect();
    format!("membership: {}", parts.join("; "))
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
        (Membership::Voting { .. }, None) if r.leader => "voting leader".to_owned(),
        (Membership::Voting { .. }, None) => "voting follower".to_owned(),
        (Membership::Rejoining, None) => "rejoining".to_owned(),
    };
    // A replica that rejoined after losing its disk votes only above its horizon.
    let role = match r.membership {
        Membership::Voting { horizon: Some(h) } => format!("{role} (rejoined: votes above {h})"),
        _ => role,
    };
    let snapshots = &r.snapshots;
    let writing = snapshots
        .writing_for_ms
        .map_or(String::new(), |ms| format!(" snapshot_writing_ms={ms}"));
    let last = snapshots.last.as_ref().map_or(String::new(), |taken| {
        format!(
            " last_snapshot_bytes={} last_snapshot_ms={}",
            taken.bytes, taken.millis
        )
    });
    format!(
        "id={} replica={}/{} {role} member={} max={} applied={} min={} durable_bytes={} state_bytes={}{writing}{last}",
        r.id,
        r.index,
        r.peers.len(),
        r.role.name(),
        opt(r.max),
        opt(r.applied),
        r.min,
        r.durable_bytes,
        r.state_bytes,
    )
}
