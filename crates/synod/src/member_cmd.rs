//! `synod kv member`, `synod shardctl member` and `synod shardkv member`: a replicated
//! service's membership, listed from the replicas' status reports and changed through the
//! log (`RsmMsg::Reconfigure`; docs/paxos.md, "Membership changes"): add a replica started
//! with `serve --join` (a learner, then a voter once it caught up), promote a learner,
//! remove a replica, replace one by a new one. The commands are the same for every
//! service; a [`Service`] says how its messages carry a change and how its replicas are
//! numbered, and a sharded group's command then records the group's new servers at the
//! controller (`shardkv_cmd`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use serde::de::DeserializeOwned;
use serde::Serialize;
use synod_kvpaxos::KvMsg;
use synod_net::{Client, Credentials};
use synod_node::NodeId;
use synod_paxos::{Config, ConfigError};
use synod_rsm::{Role, RsmMsg, StatusReport};

use crate::status_cmd::{self, StatusArgs};

/// How one replicated service's messages carry a membership change, and how its replicas
/// are named: what the member commands need to know of it.
pub struct Service<M> {
    /// The change, as a message to a replica of the service.
    pub ask: fn(Config) -> M,
    /// The answer to it: the instance the change governs from, or why not; `None` for any
    /// other message.
    pub answer: fn(M) -> Option<Result<u64, ConfigError>>,
    /// For a sharded KV group, its id: replica `--id I` is then node `gid << 8 | I`
    /// (`synod_shardkv::server_id`); else replica `--id I` is node `I`.
    pub gid: Option<u64>,
}

/// The Paxos KV: its messages are the replicated state machine's.
pub const KV: Service<KvMsg> = Service {
    ask: rsm_ask,
    answer: rsm_answer,
    gid: None,
};

/// A change, as a replicated state machine's message.
pub fn rsm_ask<C, I, R>(config: Config) -> RsmMsg<C, I, R> {
    RsmMsg::Reconfigure { config }
}

/// A replicated state machine's answer to a change.
pub fn rsm_answer<C, I, R>(msg: RsmMsg<C, I, R>) -> Option<Result<u64, ConfigError>> {
    match msg {
        RsmMsg::Reconfigured { result } => Some(result),
        _ => None,
    }
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// Print the group's configuration (and a decided change not yet in effect), then each
    /// answering replica's role: voter, learner, leaving, removed or joining.
    List {
        #[command(flatten)]
        target: StatusArgs,
    },
    /// Add replica ID (its --id, or its node id as `synod status` prints it, like n3),
    /// started with `serve --id ID --join ADDR`, as a learner; wait until it has caught up
    /// with the group, then promote it to voter. Each step waits up to --timeout (at least
    /// 10 s).
    Add {
        #[command(flatten)]
        target: StatusArgs,
        /// Stop once it is a learner (promote it later with `member promote`).
        #[arg(long)]
        learner: bool,
        id: String,
        addr: SocketAddr,
    },
    /// Make learner ID a voter.
    Promote {
        #[command(flatten)]
        target: StatusArgs,
        id: String,
    },
    /// Remove replica ID from the group, through the log; waits until the change is
    /// decided. It stops voting once the change is in effect.
    Remove {
        #[command(flatten)]
        target: StatusArgs,
        id: String,
    },
    /// Replace replica OLD (dead, or whose disk was lost) by NEW, started with `serve --id
    /// NEW --join ADDR`: add NEW as a learner, wait until it caught up, then one change makes
    /// it a voter in OLD's place.
    Replace {
        #[command(flatten)]
        target: StatusArgs,
        old: String,
        new: String,
        addr: SocketAddr,
    },
}

impl MemberCommand {
    /// The replicas named, and how to reach them.
    pub fn target(&self) -> &StatusArgs {
        match self {
            MemberCommand::List { target }
            | MemberCommand::Add { target, .. }
            | MemberCommand::Promote { target, .. }
            | MemberCommand::Remove { target, .. }
            | MemberCommand::Replace { target, .. } => target,
        }
    }

    /// Whether the command changes the membership (rather than list it).
    pub fn changes(&self) -> bool {
        !matches!(self, MemberCommand::List { .. })
    }
}

/// Runs `cmd` against a group of `service`.
pub async fn run<M>(cmd: MemberCommand, service: &Service<M>) -> anyhow::Result<ExitCode>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    let parse_id = |text: &str| parse_id(text, service);
    match cmd {
        MemberCommand::List { target } => {
            let group = Group::new(&target, service)?;
            let answering = group.answering().await;
            if answering.is_empty() {
                bail!("no replica answered");
            }
            let reports: Vec<StatusReport> = answering.iter().map(|(_, r)| r.clone()).collect();
            println!("{}", status_cmd::membership(&reports));
            for addr in &target.servers {
                match answering.iter().find(|(a, _)| a == addr) {
                    Some((_, r)) => println!("{addr} id={} {}", r.id, r.role.name()),
                    None => println!("{addr} unreachable"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MemberCommand::Add {
            target,
            learner,
            id,
            addr,
        } => {
            let group = Group::new(&target, service)?;
            let id = parse_id(&id)?;
            group.add_learner(id, addr).await?;
            if !learner {
                group.caught_up(id, addr).await?;
                group.promote(id, None).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        MemberCommand::Promote { target, id } => {
            let group = Group::new(&target, service)?;
            group.promote(parse_id(&id)?, None).await?;
            Ok(ExitCode::SUCCESS)
        }
        MemberCommand::Remove { target, id } => {
            let group = Group::new(&target, service)?;
            group.remove(parse_id(&id)?).await?;
            Ok(ExitCode::SUCCESS)
        }
        MemberCommand::Replace {
            target,
            old,
            new,
            addr,
        } => {
            let group = Group::new(&target, service)?;
            let (old, new) = (parse_id(&old)?, parse_id(&new)?);
            if old == new {
                bail!("a replacement takes a new id: {new} is the replica it replaces");
            }
            group.add_learner(new, addr).await?;
            group.caught_up(new, addr).await?;
            group.promote(new, Some(old)).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The newest configuration (decided, maybe not yet in effect) that the replicas at
/// `servers` report.
pub async fn newest_config(
    servers: &[String],
    limit: Duration,
    credentials: Option<&Credentials>,
) -> anyhow::Result<Config> {
    let mut newest: Option<Config> = None;
    for addr in servers {
        match status_cmd::ask(addr, limit, credentials).await {
            Ok(report) => {
                if let Some((_, config)) = report.configs.last() {
                    if newest.as_ref().is_none_or(|n| n.epoch < config.epoch) {
                        newest = Some(config.clone());
                    }
                }
            }
            Err(why) => tracing::debug!(%addr, "no status: {why:#}"),
        }
    }
    newest.context("no listed replica answered with the group's configuration")
}

/// `n2` (a node id as `synod status` prints it) or `2` (the replica's `--id`).
fn parse_id<M>(text: &str, service: &Service<M>) -> anyhow::Result<NodeId> {
    let id = match text.strip_prefix('n') {
        Some(digits) => digits.parse().ok().map(NodeId),
        None => text.parse().ok().and_then(|i: u64| match service.gid {
            None => Some(NodeId(i)),
            Some(gid) => usize::try_from(i)
                .ok()
                .filter(|&i| i < crate::shardctl_cmd::MAX_REPLICAS)
                .map(|i| synod_shardkv::server_id(gid, i)),
        }),
    };
    match id {
        Some(id) if !id.is_client() => Ok(id),
        _ => bail!("{text:?} is not a replica id (like n2, or the replica's --id)"),
    }
}

fn without(ids: &[NodeId], id: NodeId) -> Vec<NodeId> {
    ids.iter().copied().filter(|&m| m != id).collect()
}

/// The replicas an operator named, of `service`, and how to ask them.
pub(crate) struct Group<'a, M> {
    servers: &'a [String],
    limit: Duration,
    credentials: Option<Credentials>,
    service: &'a Service<M>,
}

impl<'a, M> Group<'a, M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn new(target: &'a StatusArgs, service: &'a Service<M>) -> anyhow::Result<Self> {
        let limit = target.limit()?;
        target.tls.install()?;
        Ok(Group {
            servers: &target.servers,
            limit,
            credentials: target.credentials.credentials()?,
            service,
        })
    }

    /// The replicas at `servers` of `service`, each asked within `limit`, presenting
    /// `credentials`: how `synod up` makes its own changes (it has installed the cluster's
    /// client TLS).
    pub(crate) fn of(
        servers: &'a [String],
        limit: Duration,
        credentials: Option<Credentials>,
        service: &'a Service<M>,
    ) -> Self {
        Group {
            servers,
            limit,
            credentials,
            service,
        }
    }

    /// How long each step may take.
    fn patience(&self) -> Duration {
        self.limit.max(Duration::from_secs(10))
    }

    /// The reports of the listed replicas that answer, with their addresses.
    async fn answering(&self) -> Vec<(String, StatusReport)> {
        let mut answering = Vec::new();
        for addr in self.servers {
            match status_cmd::ask(addr, self.limit, self.credentials.as_ref()).await {
                Ok(report) => answering.push((addr.clone(), report)),
                Err(why) => tracing::debug!(%addr, "no status: {why:#}"),
            }
        }
        answering
    }

    /// Has the group decide the configuration `next` makes of the newest one, proposed
    /// through an answering voter (a follower forwards it to the leader), again while a
    /// change is in progress, until it is decided or the time is up. `next` answers `None`
    /// when there is nothing to change, and an error when the change makes no sense.
    async fn change(
        &self,
        next: impl Fn(&Config) -> anyhow::Result<Option<Config>>,
    ) -> anyhow::Result<Option<(Config, u64)>> {
        let deadline = Instant::now() + self.patience();
        loop {
            let answering = self.answering().await;
            let Some(newest) = answering
                .iter()
                .filter_map(|(_, r)| r.configs.last().map(|(_, c)| c))
                .max_by_key(|c| c.epoch)
            else {
                bail!("no listed replica answered with the group's configuration");
            };
            if let Some(gid) = self.service.gid {
                let members = newest.voters.iter().chain(&newest.learners);
                if let Some(other) = members.clone().find(|m| m.0 >> 8 != gid) {
                    bail!(
                        "{other} is no replica of group {gid} (replica i of group G is node \
                         G << 8 | i): are --servers and --gid the same group's?"
                    );
                }
            }
            let Some(config) = next(newest)? else {
                return Ok(None);
            };
            let via = answering
                .iter()
                .filter(|(_, r)| r.role == Role::Voter)
                .map(|(addr, _)| addr);
            for addr in via {
                match self.propose(addr, &config).await {
                    Ok(from) => return Ok(Some((config, from))),
                    // Refused is final: the user may not change the membership.
                    Err(why) if matches!(why.downcast_ref(), Some(ConfigError::Refused(_))) => {
                        return Err(why)
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

    /// Adds `id`, listening on `addr`, as a learner. Refused before any change when the
    /// replica at `addr` answers as another replica.
    pub(crate) async fn add_learner(&self, id: NodeId, addr: SocketAddr) -> anyhow::Result<()> {
        let there = addr.to_string();
        let answer = status_cmd::ask(&there, self.limit, self.credentials.as_ref()).await;
        if let Ok(report) = answer {
            if report.id != id {
                bail!(
                    "{addr} is replica {}, not {id}: start the new replica with --id {} \
                     --join {addr}, or name it {}",
                    report.id,
                    id.0,
                    report.id
                );
            }
        }
        let decided = self
            .change(|newest| {
                if newest.is_voter(id) {
                    bail!("{id} is already a voter (epoch {})", newest.epoch);
                }
                if newest.learners.contains(&id) {
                    return Ok(None);
                }
                let mut config = newest.clone();
                config.epoch += 1;
                config.learners.push(id);
                config.addrs.insert(id, addr.to_string());
                Ok(Some(config))
            })
            .await?;
        match decided {
            Some((config, from)) => println!(
                "added {id} at {addr} as a learner: epoch {} decided, in effect from instance \
                 {from}",
                config.epoch
            ),
            None => println!("{id} is already a learner"),
        }
        Ok(())
    }

    /// Waits until learner `id`, at `addr`, has the group's state and has applied as far
    /// as the most advanced listed replica had when the wait began.
    pub(crate) async fn caught_up(&self, id: NodeId, addr: SocketAddr) -> anyhow::Result<()> {
        let began = Instant::now();
        let target = self
            .answering()
            .await
            .iter()
            .filter_map(|(_, r)| r.applied)
            .max()
            .unwrap_or(0);
        let deadline = began + self.patience();
        let addr = addr.to_string();
        loop {
            let report = status_cmd::ask(&addr, self.limit, self.credentials.as_ref()).await;
            match &report {
                Ok(r) if r.id != id => {
                    bail!("{addr} is replica {}, not {id}", r.id)
                }
                Ok(r)
                    if r.role == Role::Learner
                        && r.catch_up.is_none()
                        && r.applied.is_some_and(|a| a >= target) =>
                {
                    println!(
                        "{id} caught up in {:.2} s (applied {} of at least {target})",
                        began.elapsed().as_secs_f64(),
                        r.applied.unwrap_or(0)
                    );
                    return Ok(());
                }
                _ => {}
            }
            if Instant::now() > deadline {
                let now = match report {
                    Ok(r) => format!("{} applied={:?}", r.role.name(), r.applied),
                    Err(why) => format!("unreachable: {why:#}"),
                };
                bail!(
                    "{id} at {addr} did not catch up in time (it is {now}; the group had \
                     applied {target}); it stays a learner"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes learner `id` a voter, in `replacing`'s place if given (one change).
    pub(crate) async fn promote(
        &self,
        id: NodeId,
        replacing: Option<NodeId>,
    ) -> anyhow::Result<()> {
        let decided = self
            .change(|newest| {
                if newest.is_voter(id) && replacing.is_none_or(|old| !newest.is_member(old)) {
                    return Ok(None);
                }
                if !newest.learners.contains(&id) {
                    bail!(
                        "{id} is no learner of epoch {} (add it first: member add --learner)",
                        newest.epoch
                    );
                }
                let mut config = newest.clone();
                config.epoch += 1;
                config.learners.retain(|&l| l != id);
                if let Some(old) = replacing {
                    if !newest.is_member(old) {
                        bail!("{old} is not a member of epoch {}", newest.epoch);
                    }
                    config.voters.retain(|&v| v != old);
                    config.learners.retain(|&l| l != old);
                    config.addrs.remove(&old);
                }
                config.voters.push(id);
                Ok(Some(config))
            })
            .await?;
        match (decided, replacing) {
            (Some((config, from)), None) => println!(
                "promoted {id} to voter: epoch {} decided, in effect from instance {from}",
                config.epoch
            ),
            (Some((config, from)), Some(old)) => println!(
                "replaced {old} by {id}: epoch {} decided, in effect from instance {from}",
                config.epoch
            ),
            (None, _) => println!("{id} is already a voter"),
        }
        Ok(())
    }

    /// Asks the replica at `addr` to propose `config`; the instance it governs from, once
    /// decided, or why not.
    async fn propose(&self, addr: &str, config: &Config) -> anyhow::Result<u64> {
        let mut client: Client<M> = Client::connect_as(addr, self.limit, self.credentials.as_ref())
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let answer = client
            .call(&(self.service.ask)(config.clone()), self.limit)
            .await?;
        match (self.service.answer)(answer) {
            Some(result) => result.map_err(|e: ConfigError| e.into()),
            None => bail!("{addr} answered something else"),
        }
    }

    /// Removes replica `id` from the group, through the log (one change).
    pub(crate) async fn remove(&self, id: NodeId) -> anyhow::Result<()> {
        let decided = self
            .change(|newest| {
                Ok(newest.is_member(id).then(|| Config {
                    epoch: newest.epoch + 1,
                    voters: without(&newest.voters, id),
                    learners: without(&newest.learners, id),
                    addrs: newest
                        .addrs
                        .iter()
                        .filter(|(&m, _)| m != id)
                        .map(|(&m, a)| (m, a.clone()))
                        .collect(),
                }))
            })
            .await?;
        match decided {
            Some((config, from)) => println!(
                "removed {id}: epoch {} decided, in effect from instance {from}",
                config.epoch
            ),
            None => println!("{id} is not a member"),
        }
        Ok(())
    }
}
