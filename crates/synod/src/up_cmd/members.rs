//! The membership changes `synod up` makes on a Paxos KV cluster that ran before: replacing a
//! replica whose data directory was lost by a new one under a new id, and changing the size
//! to `--replicas N`. Each is a change through the log made with `synod kv member`'s own
//! steps ([`Group`]), once the replicas that exist are up and the cluster is ready, one
//! change at a time, with what it does printed on stdout.
//!
//! The members are recorded in `DIR/members-kv.json` ([`KvMembers`]) once `up` changes them,
//! so a plain `synod up` restarts the cluster as it is: the replicas it was formed with (the
//! `--peers` of every replica, for life) that are still members, and the replicas that joined
//! it, each restarted with its `--join`. A new replica is recorded (with its new id and
//! ports) before it starts, so an id is never handed out twice. Each change is recorded as
//! [`Pending`] before it is made and cleared once it is done: an `up` stopped in the middle
//! of one leaves it recorded, and the next `up` finishes it before anything else (every step
//! is idempotent: a change already decided is not made again).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use synod_net::Credentials;
use synod_node::NodeId;
use synod_paxos::Config;
use synod_storage::FileStorage;
use tokio::sync::mpsc;

use super::child::Event;
use super::dashboard::Dashboard;
use super::layout::{self, ChildSpec, KvMember, KvMembers, Pending, Plan};
use super::{finish_child, line, report, Running};
use crate::member_cmd::{self, Group};
use crate::status_cmd;

/// How long each replica may take to answer a status request during a change.
const ASK_LIMIT: Duration = Duration::from_secs(2);
/// How long a new replica may take to listen (its supervisor gives it 20 s per try).
const START_LIMIT: Duration = Duration::from_secs(60);

/// What `up` needs to make changes on a running cluster.
pub(crate) struct Cluster<'a> {
    pub running: &'a mut Running,
    pub board: &'a Dashboard,
    pub events: &'a mut mpsc::UnboundedReceiver<Event>,
    pub dir: &'a Path,
    pub insecure: bool,
    pub max_value_bytes: usize,
}

/// The changes to make once the cluster is ready.
pub(crate) struct Changes {
    /// The members as recorded (or as the cluster was formed, before any change).
    record: KvMembers,
    /// Members whose data directory holds nothing although the cluster formed: not started,
    /// replaced.
    lost: Vec<u64>,
    /// The number of members wanted.
    target: usize,
    /// The `--peers` of the replicas the cluster was formed with.
    peers: String,
}

impl Changes {
    /// Makes `plan`, the Paxos KV cluster in `dir` as it was formed, that of its members now,
    /// leaves out the members whose directories were lost (when the others are a majority
    /// that can replace them), and says what is to change to reach `replicas` members.
    pub fn plan(
        plan: &mut Plan,
        dir: &Path,
        replicas: Option<usize>,
        formed: bool,
    ) -> anyhow::Result<Changes> {
        let peers = plan.kv_peers();
        let record = match KvMembers::read(dir)? {
            Some(record) => {
                plan.with_members(dir, &record)?;
                record
            }
            None => KvMembers::formed(plan),
        };
        // The replica of a pending change is new or leaving, not lost: its change is
        // finished first (a leaving one whose directory is gone is not started at all).
        let pending = match record.pending {
            Some(Pending::Add { id } | Pending::Replace { new: id, .. }) => Some(id),
            Some(Pending::Remove { id }) => {
                plan.children
                    .retain(|c| c.member != Some(NodeId(id)) || !is_blank(c));
                Some(id)
            }
            None => None,
        };
        let mut lost = Vec::new();
        if formed {
            let blank: Vec<u64> = plan
                .children
                .iter()
                .filter(|c| is_blank(c))
                .filter_map(|c| c.member.map(|m| m.0))
                .filter(|&id| Some(id) != pending)
                .collect();
            let n = plan.children.len();
            if !blank.is_empty() && n - blank.len() > n / 2 {
                plan.children
                    .retain(|c| !c.member.is_some_and(|m| blank.contains(&m.0)));
                for id in &blank {
                    eprintln!(
                        "synod up: replica {id} has no data in its directory although the \
                         cluster has formed; it will be replaced by a new replica once the \
                         others are ready"
                    );
                }
                lost = blank;
            } else if !blank.is_empty() {
                let joined = (plan.children.iter()).find(|c| {
                    c.member.is_some_and(|m| blank.contains(&m.0))
                        && c.args.iter().any(|a| a == "--join")
                });
                if let Some(joined) = joined {
                    bail!(
                        "{} joined the cluster and its data directory holds nothing, and the \
                         {} replicas that hold data are no majority of the {n} to replace it \
                         through a membership change; a replica that joined cannot rejoin \
                         under its id (--rejoin is for the replicas the cluster was formed \
                         with)",
                        joined.name,
                        n - blank.len()
                    );
                }
                eprintln!(
                    "synod up: {} of the {n} replicas have no data in their directories: the \
                     others are no majority, which a membership change needs, so they rejoin \
                     under their old ids (--rejoin)",
                    blank.len()
                );
            }
        }
        // Without --replicas, the size the cluster has once the pending change is done.
        let leaving = matches!(record.pending, Some(Pending::Remove { .. }));
        let target = replicas.unwrap_or(record.members.len() - usize::from(leaving));
        Ok(Changes {
            record,
            lost,
            target,
            peers,
        })
    }

    /// Makes the changes on the running `cluster`: replaces the lost replicas, then adds
    /// or removes replicas until there are as many as wanted. `Some(exit code)` if a child
    /// died for good meanwhile (the cluster stops).
    pub async fn make(mut self, cluster: &mut Cluster<'_>) -> anyhow::Result<Option<ExitCode>> {
        let changing = self.record.pending.is_some()
            || !self.lost.is_empty()
            || self.target != self.record.members.len();
        let began = std::time::Instant::now();
        match self.record.pending {
            Some(Pending::Add { id }) => {
                println!("finishing the change an earlier `up` began: adding replica {id}");
                self.join(cluster, id, None).await?;
            }
            Some(Pending::Replace { old, new }) => {
                println!(
                    "finishing the change an earlier `up` began: replacing replica {old} by \
                     replica {new}"
                );
                self.join(cluster, new, Some(old)).await?;
            }
            Some(Pending::Remove { id }) => {
                println!("finishing the change an earlier `up` began: removing replica {id}");
                self.leave(cluster, id).await?;
            }
            None => {}
        }
        for old in std::mem::take(&mut self.lost) {
            let new = match self.start_new(cluster, Some(old)).await? {
                Ok(new) => new,
                Err(code) => return Ok(Some(code)),
            };
            self.join(cluster, new, Some(old)).await?;
        }
        while self.record.members.len() < self.target {
            let new = match self.start_new(cluster, None).await? {
                Ok(new) => new,
                Err(code) => return Ok(Some(code)),
            };
            self.join(cluster, new, None).await?;
        }
        while self.record.members.len() > self.target {
            let Some(id) = self.record.members.iter().map(|m| m.id).max() else {
                break;
            };
            println!("removing replica {id}");
            self.leave(cluster, id).await?;
        }
        if changing {
            let ids: Vec<String> = self
                .record
                .members
                .iter()
                .map(|m| format!("n{}", m.id))
                .collect();
            println!(
                "members: {} (changed in {:.1} s)",
                ids.join(","),
                began.elapsed().as_secs_f64()
            );
        }
        Ok(None)
    }

    /// Makes running member `id` a voter (in `replacing`'s place, if given) unless the
    /// cluster's newest configuration already has it so; then the change is done.
    async fn join(
        &mut self,
        cluster: &Cluster<'_>,
        id: u64,
        replacing: Option<u64>,
    ) -> anyhow::Result<()> {
        let Some(member) = self.record.members.iter().find(|m| m.id == id) else {
            bail!("replica {id} is not in {}", layout::MEMBERS_FILE);
        };
        let addr = loopback(member.peer);
        let servers = self.servers();
        let credentials = cluster.running.plan.credentials();
        let (new, old) = (NodeId(id), replacing.map(NodeId));
        let done = newest_config(&servers, credentials.as_ref())
            .await
            .is_some_and(|c| c.is_voter(new) && old.is_none_or(|old| !c.is_member(old)));
        if !done {
            let group = Group::of(&servers, ASK_LIMIT, credentials, &member_cmd::KV);
            group.add_learner(new, addr).await?;
            group.caught_up(new, addr).await?;
            group.promote(new, old).await?;
        }
        if let Some(old) = replacing {
            // It held nothing: that is why it was replaced.
            remove_dir(&layout::kv_replica_dir(cluster.dir, old as usize))?;
            println!("replica {old} (its data directory was lost) replaced by replica {id}");
        }
        self.record.pending = None;
        self.record.write(cluster.dir)
    }

    /// Removes member `id` from the cluster, then stops it and deletes its directory.
    async fn leave(&mut self, cluster: &mut Cluster<'_>, id: u64) -> anyhow::Result<()> {
        self.record.pending = Some(Pending::Remove { id });
        self.record.write(cluster.dir)?;
        let servers = self.servers();
        let credentials = cluster.running.plan.credentials();
        Group::of(&servers, ASK_LIMIT, credentials, &member_cmd::KV)
            .remove(NodeId(id))
            .await?;
        let running = &mut *cluster.running;
        if let Some(index) =
            (running.plan.children.iter()).position(|c| c.member == Some(NodeId(id)))
        {
            running.stop(index).await;
            cluster.board.died(index, "removed from the cluster".into());
        }
        // A removed replica never votes again, and its id is never reused.
        remove_dir(&layout::kv_replica_dir(cluster.dir, id as usize))?;
        self.record.members.retain(|m| m.id != id);
        self.record.pending = None;
        self.record.write(cluster.dir)?;
        println!("replica {id} stopped and its data directory removed");
        Ok(())
    }

    /// The members' addresses, for [`Group`].
    fn servers(&self) -> Vec<String> {
        (self.record.members.iter())
            .map(|m| loopback(m.peer).to_string())
            .collect()
    }

    /// Records a new member (in `replacing`'s place, if given) and the change to come,
    /// starts it with `--join` and waits until it listens. Its id, or the exit code if a
    /// child died for good meanwhile.
    async fn start_new(
        &mut self,
        cluster: &mut Cluster<'_>,
        replacing: Option<u64>,
    ) -> anyhow::Result<Result<u64, ExitCode>> {
        let id = self.record.next_id;
        let [peer, resp, metrics] = self.fresh_ports(cluster)?;
        let member = KvMember {
            id,
            peer,
            resp,
            joined: true,
        };
        self.record.next_id += 1;
        self.record.members.retain(|m| Some(m.id) != replacing);
        self.record.members.push(member.clone());
        self.record.pending = Some(match replacing {
            Some(old) => Pending::Replace { old, new: id },
            None => Pending::Add { id },
        });
        self.record.write(cluster.dir)?;
        match replacing {
            Some(old) => println!("starting replica {id} to replace replica {old}"),
            None => println!("starting replica {id} to join the cluster"),
        }
        let spec = self.record.child(cluster.dir, &self.peers, &member)?;
        let mut one = Plan {
            children: vec![spec],
            sharded: None,
            resp_password: None,
        };
        if !cluster.insecure {
            // Its certificate, issued as `up` issues every member's.
            one.secure(cluster.dir)?;
        }
        let Some(mut spec) = one.children.pop() else {
            bail!("no child to start for replica {id}");
        };
        let metrics = loopback(metrics);
        finish_child(&mut spec, cluster.max_value_bytes, metrics);
        cluster.board.add(&spec, Some(metrics));
        let index = cluster.running.spawn(spec, metrics);
        let started = tokio::time::Instant::now();
        loop {
            let left = START_LIMIT.saturating_sub(started.elapsed());
            let event = tokio::time::timeout(left, cluster.events.recv()).await;
            let running = &*cluster.running;
            match event {
                Err(_) => bail!("replica {id} did not start within {START_LIMIT:?}"),
                Ok(None) => bail!("every child supervisor ended"),
                Ok(Some(Event::Ready { index: i, pid })) if i == index => {
                    cluster.board.started(index, pid);
                    let spec = &running.plan.children[index];
                    println!("{}", line(spec, running.metrics[index], pid));
                    return Ok(Ok(id));
                }
                Ok(Some(event)) => {
                    if let Some(code) =
                        report(&running.plan, &running.metrics, cluster.board, event)
                    {
                        return Ok(Err(code));
                    }
                }
            }
        }
    }

    /// Three free ports for a new replica (peer, RESP, metrics), none that a member had
    /// before: a port of a replica removed or replaced would reach its successor under the
    /// old one's address, which every formed replica's `--peers` still names.
    fn fresh_ports(&self, cluster: &Cluster<'_>) -> anyhow::Result<[u16; 3]> {
        let mut used: BTreeSet<u16> = (self.record.members.iter())
            .flat_map(|m| [m.peer, m.resp])
            .collect();
        for spec in &cluster.running.plan.children {
            used.extend(
                [Some(spec.peer), spec.resp]
                    .into_iter()
                    .flatten()
                    .map(|a| a.port()),
            );
        }
        used.extend(cluster.running.metrics.iter().map(|a| a.port()));
        used.extend(formed_ports(&self.peers));
        let listeners = layout::free_listeners(3 + used.len()).context("finding free ports")?;
        let free: Vec<u16> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok().map(|a| a.port()))
            .filter(|p| !used.contains(p))
            .take(3)
            .collect();
        match free[..] {
            [peer, resp, metrics] => Ok([peer, resp, metrics]),
            _ => bail!("found no 3 free ports for a new replica"),
        }
    }
}

/// Whether `child`'s data directory holds no state (damaged state is state: the replica
/// refuses it with the reason).
fn is_blank(child: &ChildSpec) -> bool {
    (child.paxos_data.as_deref()).is_some_and(|d| !FileStorage::holds_state(d).unwrap_or(true))
}

/// Removes `dir` and what it holds, if it exists.
fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The newest configuration the replicas at `servers` that answer know, if any answers.
async fn newest_config(servers: &[String], credentials: Option<&Credentials>) -> Option<Config> {
    let mut newest: Option<Config> = None;
    for addr in servers {
        let Ok(report) = status_cmd::ask(addr, ASK_LIMIT, credentials).await else {
            continue;
        };
        if let Some((_, config)) = report.configs.last() {
            if newest.as_ref().is_none_or(|n| config.epoch > n.epoch) {
                newest = Some(config.clone());
            }
        }
    }
    newest
}

/// The ports of the replicas the cluster was formed with, from their `--peers`.
fn formed_ports(peers: &str) -> impl Iterator<Item = u16> + '_ {
    peers
        .split(',')
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}
