//! The live dashboard of `synod up`: one self-contained page (`dashboard.html`, no external
//! assets) served by `up` itself, so it outlives any replica it shows, and `/api/cluster`,
//! the JSON the page polls.
//!
//! `up` gathers the view: every [`POLL_EVERY`] it reads each replica's `/status.json` from
//! its metrics port (and, in sharded mode, the latest configuration from the controllers),
//! and it records faults from two sources: its own supervision (a replica died, came back)
//! and the difference between two polls (a replica unreachable or behind, a leader change).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use synod_client::shardkv::CtlClient;
use synod_metrics::http::{self, Response};
use synod_net::Credentials;
use synod_rsm::StatusReport;
use synod_shardctl::{CtlOp, CtlReply};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::layout::{ChildSpec, Plan, ShardedSetup};

/// How often the view is refreshed.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// Faults kept for the page, newest last.
const FAULTS_KEPT: usize = 50;
/// Instances a replica may trail its group's most advanced replica before it is "behind".
const BEHIND_BY: u64 = 50;

const PAGE: &str = include_str!("dashboard.html");

/// One replica as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    pub name: String,
    /// `kv`, `controllers`, `group 100`: replicas of one group share a log and a leader.
    pub group: String,
    pub peer: SocketAddr,
    pub resp: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub pid: Option<u32>,
    /// Whether its process runs (as far as its supervisor knows).
    pub running: bool,
    /// Whether its metrics port answered the last poll.
    pub reachable: bool,
    pub report: Option<StatusReport>,
    pub requests: u64,
    pub request_errors: u64,
    pub request_micros: u64,
}

/// One fault, as the page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Milliseconds since `up` started.
    pub at_ms: u64,
    pub text: String,
}

/// The shard map of a sharded cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ShardMap {
    pub config: u64,
    /// Shard → gid (0: none).
    pub owners: Vec<u64>,
    /// Shards whose owner changed in the latest configuration: moving or just moved.
    pub moved: Vec<usize>,
    pub groups: BTreeMap<u64, Vec<String>>,
}

/// Everything `/api/cluster` answers.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub layout: &'static str,
    pub uptime_ms: u64,
    pub replicas: Vec<ReplicaView>,
    pub shards: Option<ShardMap>,
    pub faults: VecDeque<Fault>,
    /// The last leader seen in each group, to tell a change from a leader seen again.
    #[serde(skip)]
    last_leaders: BTreeMap<String, String>,
}

/// What a replica's `/status.json` holds (`crate::observe::ReplicaStatus`).
#[derive(Debug, Deserialize)]
struct ReplicaStatus {
    report: Option<StatusReport>,
    requests: u64,
    request_errors: u64,
    request_micros: u64,
}

/// The view shared by the poller, the supervision loop and the HTTP port.
#[derive(Clone)]
pub struct Dashboard {
    view: Arc<Mutex<ClusterView>>,
    started: Instant,
}

impl Dashboard {
    /// A view of `plan`'s children, whose metrics ports are `metrics` (by child index).
    pub fn new(layout: &'static str, plan: &Plan, metrics: &[Option<SocketAddr>]) -> Dashboard {
        let replicas = plan
            .children
            .iter()
            .zip(metrics)
            .map(|(spec, &metrics)| view_of(spec, metrics))
            .collect();
        Dashboard {
            view: Arc::new(Mutex::new(ClusterView {
                layout,
                uptime_ms: 0,
                replicas,
                shards: None,
                faults: VecDeque::new(),
                last_leaders: BTreeMap::new(),
            })),
            started: Instant::now(),
        }
    }

    fn with_view<T>(&self, f: impl FnOnce(&mut ClusterView) -> T) -> T {
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        view.uptime_ms = self.started.elapsed().as_millis() as u64;
        f(&mut view)
    }

    /// Records a fault.
    pub fn fault(&self, text: String) {
        let at_ms = self.started.elapsed().as_millis() as u64;
        self.with_view(|view| {
            if view.faults.len() == FAULTS_KEPT {
                view.faults.pop_front();
            }
            view.faults.push_back(Fault { at_ms, text });
        });
    }

    /// A child started after the others (a replica `up` adds to the cluster), as the next
    /// index.
    pub fn add(&self, spec: &ChildSpec, metrics: Option<SocketAddr>) {
        self.with_view(|view| view.replicas.push(view_of(spec, metrics)));
    }

    /// Child `index` runs as `pid`.
    pub fn started(&self, index: usize, pid: u32) {
        self.with_view(|view| {
            if let Some(r) = view.replicas.get_mut(index) {
                r.pid = Some(pid);
                r.running = true;
            }
        });
    }

    /// Child `index` died; `why` says how.
    pub fn died(&self, index: usize, why: String) {
        let name = self.with_view(|view| {
            view.replicas.get_mut(index).map(|r| {
                r.running = false;
                r.reachable = false;
                r.name.clone()
            })
        });
        if let Some(name) = name {
            self.fault(format!("{name} down: {why}"));
        }
    }

    /// Serves the page and `/api/cluster` on `listener` until dropped.
    pub async fn serve(self, listener: TcpListener) {
        let page = PAGE.replace("/*PAGE_STYLE*/", http::PAGE_STYLE);
        http::serve(listener, move |path| match path {
            "/" => Response::ok("text/html; charset=utf-8", page.clone()),
            "/api/cluster" => {
                let body = self.with_view(|view| serde_json::to_vec(view).unwrap_or_default());
                Response::ok("application/json", body)
            }
            _ => Response::not_found(),
        })
        .await;
    }

    /// Refreshes the view every [`POLL_EVERY`] until dropped. A sharded cluster's controllers are asked as the user of `credentials`, if given.
    pub async fn poll(self, sharded: Option<ShardedSetup>, credentials: Option<Credentials>) {
        let mut ctl = sharded.as_ref().and_then(|s| {
            let ctl = CtlClient::connect(s.controllers.iter().map(ToString::to_string)).ok()?;
            let ctl = ctl.with_timeout(POLL_EVERY * 2);
            Some(match credentials {
                Some(credentials) => ctl.with_credentials(credentials),
                None => ctl,
            })
        });
        let mut interval = tokio::time::interval(POLL_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let targets: Vec<Option<SocketAddr>> =
                self.with_view(|v| v.replicas.iter().map(|r| r.metrics).collect());
            let mut answers = Vec::with_capacity(targets.len());
            for target in targets {
                answers.push(match target {
                    Some(addr) => fetch(addr).await,
                    None => None,
                });
            }
            let faults = self.with_view(|view| update(view, answers));
            for fault in faults {
                self.fault(fault);
            }
            if let Some(ctl) = ctl.as_mut() {
                if let Ok(CtlReply::Config(config)) = ctl.call(CtlOp::Query { num: -1 }).await {
                    self.shard_config(config);
                }
            }
        }
    }

    fn shard_config(&self, config: synod_shardctl::Config) {
        let faults = self.with_view(|view| {
            let mut faults = Vec::new();
            let moved = match &view.shards {
                Some(before) if before.config == config.num => before.moved.clone(),
                Some(before) => {
                    let moved: Vec<usize> = (0..config.shards.len())
                        .filter(|&s| before.owners.get(s) != config.shards.get(s))
                        .collect();
                    if !moved.is_empty() {
                        faults.push(format!(
                            "configuration {}: {} shard(s) move",
                            config.num,
                            moved.len()
                        ));
                    }
                    moved
                }
                None => Vec::new(),
            };
            view.shards = Some(ShardMap {
                config: config.num,
                owners: config.shards.clone(),
                moved,
                groups: config.groups.clone(),
            });
            faults
        });
        for fault in faults {
            self.fault(fault);
        }
    }
}

/// How the dashboard first shows `spec`, whose metrics port is `metrics`: not running yet.
fn view_of(spec: &ChildSpec, metrics: Option<SocketAddr>) -> ReplicaView {
    ReplicaView {
        name: spec.name.clone(),
        group: group_of(&spec.name),
        peer: spec.peer,
        resp: spec.resp,
        metrics,
        pid: None,
        running: false,
        reachable: false,
        report: None,
        requests: 0,
        request_errors: 0,
        request_micros: 0,
    }
}

/// The group a child belongs to, from its name: `group 100 replica 2` is in `group 100`.
fn group_of(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    match words.as_slice() {
        ["controller", ..] => "controllers".into(),
        ["group", gid, ..] => format!("group {gid}"),
        ["replica", ..] => "kv".into(),
        _ => name.into(),
    }
}

async fn fetch(addr: SocketAddr) -> Option<ReplicaStatus> {
    let body = http::get(addr, "/status.json", POLL_EVERY).await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// Applies one poll's answers (by child index) to `view`; returns the faults they reveal.
fn update(view: &mut ClusterView, answers: Vec<Option<ReplicaStatus>>) -> Vec<String> {
    let mut faults = Vec::new();
    for (r, answer) in view.replicas.iter_mut().zip(answers) {
        if r.metrics.is_none() {
            continue;
        }
        let was_behind = is_behind(r.report.as_ref());
        match answer {
            Some(status) => {
                if !r.reachable && r.running && r.report.is_some() {
                    faults.push(format!("{} reachable again", r.name));
                }
                r.reachable = true;
                if status.report.is_some() {
                    r.report = status.report;
                }
                r.requests = status.requests;
                r.request_errors = status.request_errors;
                r.request_micros = status.request_micros;
            }
            None => {
                if r.reachable && r.running {
                    faults.push(format!("{} unreachable", r.name));
                }
                r.reachable = false;
            }
        }
        if !was_behind && is_behind(r.report.as_ref()) && r.reachable {
            faults.push(format!("{} is catching up from a snapshot", r.name));
        }
    }
    // Lag behind the most advanced replica of the same group.
    let mut best: BTreeMap<String, u64> = BTreeMap::new();
    for r in view.replicas.iter().filter(|r| r.reachable) {
        if let Some(applied) = r.report.as_ref().and_then(|rep| rep.applied) {
            let entry = best.entry(r.group.clone()).or_default();
            *entry = (*entry).max(applied);
        }
    }
    for r in view.replicas.iter().filter(|r| r.reachable) {
        let applied = r.report.as_ref().and_then(|rep| rep.applied).unwrap_or(0);
        let lag = best
            .get(&r.group)
            .copied()
            .unwrap_or(0)
            .saturating_sub(applied);
        if lag > BEHIND_BY {
            faults.push(format!("{} behind by {lag} instances", r.name));
        }
    }
    for (group, leader) in leaders(view) {
        let before = view.last_leaders.insert(group.clone(), leader.clone());
        if before.is_some_and(|b| b != leader) {
            faults.push(format!("leader change in {group}: now {leader}"));
        }
    }
    faults
}

fn is_behind(report: Option<&StatusReport>) -> bool {
    report.is_some_and(|r| r.catch_up.is_some())
}

/// The leader of each group, among the replicas that answered.
fn leaders(view: &ClusterView) -> BTreeMap<String, String> {
    view.replicas
        .iter()
        .filter(|r| r.reachable && r.report.as_ref().is_some_and(|rep| rep.leader))
        .map(|r| (r.group.clone(), r.name.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(name: &str) -> ReplicaView {
        ReplicaView {
            name: name.into(),
            group: group_of(name),
            peer: "127.0.0.1:1".parse().unwrap(),
            resp: None,
            metrics: Some("127.0.0.1:2".parse().unwrap()),
            pid: Some(1),
            running: true,
            reachable: false,
            report: None,
            requests: 0,
            request_errors: 0,
            request_micros: 0,
        }
    }

    fn answer(index: u64, leader: bool, applied: u64) -> Option<ReplicaStatus> {
        let report = StatusReport {
            id: synod_node::NodeId(index),
            index: index as usize,
            peers: (0..2).map(synod_node::NodeId).collect(),
            role: synod_rsm::Role::Voter,
            configs: Vec::new(),
            membership: synod_paxos::Membership::Voting { horizon: None },
            leader,
            max: Some(applied),
            applied: Some(applied),
            min: 0,
            durable_bytes: 0,
            state_bytes: 0,
            broken: false,
            catch_up: None,
            snapshots: Default::default(),
        };
        Some(ReplicaStatus {
            report: Some(report),
            requests: 0,
            request_errors: 0,
            request_micros: 0,
        })
    }

    #[test]
    fn polls_reveal_unreachable_lagging_replicas_and_leader_changes() {
        let mut view = ClusterView {
            layout: "kv",
            uptime_ms: 0,
            replicas: vec![replica("replica 0"), replica("replica 1")],
            shards: None,
            faults: VecDeque::new(),
            last_leaders: BTreeMap::new(),
        };
        let first = update(&mut view, vec![answer(0, true, 10), answer(1, false, 10)]);
        assert!(first.is_empty(), "{first:?}");
        // The leader stops answering: unreachable, and no leader change until another leads.
        let lost = update(&mut view, vec![None, answer(1, false, 10)]);
        assert_eq!(lost, ["replica 0 unreachable"]);
        let led = update(&mut view, vec![None, answer(1, true, 11)]);
        assert_eq!(led, ["leader change in kv: now replica 1"]);
        // It comes back far behind.
        let back = update(&mut view, vec![answer(0, false, 11), answer(1, true, 200)]);
        assert_eq!(
            back,
            [
                "replica 0 reachable again",
                "replica 0 behind by 189 instances"
            ]
        );
    }

    #[test]
    fn children_are_grouped_by_their_names() {
        assert_eq!(group_of("replica 2"), "kv");
        assert_eq!(group_of("controller 0"), "controllers");
        assert_eq!(group_of("group 101 replica 1"), "group 101");
    }
}
