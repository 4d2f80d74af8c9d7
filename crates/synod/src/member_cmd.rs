//! `synod kv member`: the Paxos KV's membership, listed from the replicas' status reports
//! and changed through the log (`RsmMsg::Reconfigure`; docs/paxos.md, "Membership
//! changes").

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use synod_kvpaxos::KvMsg;
use synod_net::{Client, Credentials};
use synod_node::NodeId;
use synod_paxos::{Config, ConfigError};
use synod_rsm::{RsmMsg, StatusReport};

use crate::status_cmd::{self, StatusArgs};

#[derive(Subcommand)]
pub enum MemberCommand {
    /// Print the group's configuration (and a decided change not yet in effect), then each
    /// answering replica's role: voter, learner, leaving, removed or joining.
    List {
        #[command(flatten)]
        target: StatusArgs,
    },
    /// Remove replica ID (`n2` or `2`) from the group, through the log; waits until the change
    /// is decided. It stops voting once the change is in effect.
    Remove {
        #[command(flatten)]
        target: StatusArgs,
        id: String,
    },
}

pub async fn run(cmd: MemberCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MemberCommand::List { target } => {
            let reports = reports(&target).await?;
            println!("{}", status_cmd::membership(&reports));
            for (addr, r) in target.servers.iter().zip(&reports) {
                println!("{addr} id={} {}", r.id, r.role.name());
            }
            Ok(ExitCode::SUCCESS)
        }
        MemberCommand::Remove { target, id } => {
            let id = parse_id(&id)?;
            remove(&target, id).await
        }
    }
}

/// `n2` or `2`: a replica's node id as `synod status` prints it, or its number.
fn parse_id(text: &str) -> anyhow::Result<NodeId> {
    let digits = text.strip_prefix('n').unwrap_or(text);
    match digits.parse() {
        Ok(n) if n < NodeId::FIRST_CLIENT => Ok(NodeId(n)),
        _ => bail!("{text:?} is not a replica id (like n2)"),
    }
}

/// Every listed replica's report, in order; fails unless all of them answer, so that the
/// list lines up with `--servers`.
async fn reports(target: &StatusArgs) -> anyhow::Result<Vec<StatusReport>> {
    let limit = target.limit()?;
    target.tls.install()?;
    let credentials = target.credentials.credentials()?;
    let mut reports = Vec::new();
    for addr in &target.servers {
        let report = status_cmd::ask(addr, limit, credentials.as_ref())
            .await
            .with_context(|| format!("asking {addr} for its status"))?;
        reports.push(report);
    }
    Ok(reports)
}

/// Proposes the newest configuration without `id` through an answering voter, again while
/// a change is in progress, until it is decided or the time is up.
async fn remove(target: &StatusArgs, id: NodeId) -> anyhow::Result<ExitCode> {
    let limit = target.limit()?;
    target.tls.install()?;
    let credentials = target.credentials.credentials()?;
    let deadline = Instant::now() + limit.max(Duration::from_secs(10));
    loop {
        let mut answering = Vec::new();
        for addr in &target.servers {
            if let Ok(report) = status_cmd::ask(addr, limit, credentials.as_ref()).await {
                answering.push((addr, report));
            }
        }
        let Some((_, newest)) = answering
            .iter()
            .filter_map(|(_, r)| r.configs.last().map(|(_, c)| c))
            .map(|c| (c.epoch, c))
            .max_by_key(|(epoch, _)| *epoch)
        else {
            bail!("no replica answered with the group's configuration");
        };
        if !newest.is_member(id) {
            println!("{id} is not a member (epoch {})", newest.epoch);
            return Ok(ExitCode::SUCCESS);
        }
        let config = Config {
            epoch: newest.epoch + 1,
            voters: newest.voters.iter().copied().filter(|&v| v != id).collect(),
            learners: newest
                .learners
                .iter()
                .copied()
                .filter(|&l| l != id)
                .collect(),
        };
        let via = answering
            .iter()
            .filter(|(_, r)| r.role == synod_rsm::Role::Voter)
            .map(|(addr, _)| *addr);
        for addr in via {
            match propose(addr, &config, limit, credentials.as_ref()).await {
                Ok(from) => {
                    println!(
                        "removed {id}: epoch {} decided, in effect from instance {from}",
                        config.epoch
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                Err(why) => tracing::info!(%addr, "change not taken: {why:#}"),
            }
        }
        if Instant::now() > deadline {
            bail!("the change was not decided in time (is a majority of the voters up?)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks the replica at `addr` to propose `config`, presenting `credentials`; the instance
/// it governs from, once decided, or why not.
async fn propose(
    addr: &str,
    config: &Config,
    limit: Duration,
    credentials: Option<&Credentials>,
) -> anyhow::Result<u64> {
    let mut client: Client<KvMsg> = Client::connect_as(addr, limit, credentials).await?;
    let ask = RsmMsg::Reconfigure {
        config: config.clone(),
    };
    match client.call(&ask, limit).await? {
        RsmMsg::Reconfigured { result } => result.map_err(|e: ConfigError| e.into()),
        _ => bail!("{addr} answered something else"),
    }
}
