//! What `synod up` starts: the cluster layouts, the child processes each one needs, and the
//! ports they listen on, recorded in the cluster directory so a rerun finds them again.
//!
//! A new layout is a new [`Layout`] variant with its [`Layout::plan`] arm: the supervisor, the
//! printing and the readiness probe work on any [`Plan`].

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use synod_net::Credentials;
use synod_node::NodeId;
use synod_shardkv::server_id;
use synod_storage::FileStorage;

use crate::{data_dir, identity, tls_args};

/// Every process of a local cluster listens on loopback.
const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Which cluster to start.
#[derive(Debug, Clone, Copy)]
pub enum Layout {
    /// `replicas` Paxos KV replicas, each with a RESP port.
    Kv { replicas: usize },
    /// The view service and two primary/backup servers, each server with a RESP port.
    Pb,
    /// [`CONTROLLERS`] shard controllers and the groups of [`GROUPS`], each of
    /// [`GROUP_SIZE`] sharded-KV replicas with a RESP port; `up` joins the groups.
    Sharded,
}

/// The file in a secured cluster's `tls` directory with its RESP password.
pub const RESP_PASSWORD: &str = "resp-password";

/// Shard controllers of `up --sharded`.
pub const CONTROLLERS: usize = 3;
/// Replica groups of `up --sharded` (their gids).
pub const GROUPS: [u64; 2] = [100, 101];
/// Replicas per group of `up --sharded`.
pub const GROUP_SIZE: usize = 3;

/// One child process of the cluster.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// How `up` names it in what it prints: `replica 0`, `view service`, `server 1`.
    pub name: String,
    /// The `synod` arguments that run it.
    pub args: Vec<String>,
    /// Text in the stdout line by which it says it is listening (the start of it for synod's
    /// own servers; somewhere in a log line for Redis and etcd, which `synod bench` runs).
    pub ready: String,
    /// Its address for the other servers (and for native clients).
    pub peer: SocketAddr,
    /// Its Redis-protocol address, if it has one.
    pub resp: Option<SocketAddr>,
    /// Whether `up` may restart it after it dies. The view service keeps its state in
    /// memory only, so a restarted one would contradict the servers' views.
    pub restartable: bool,
    /// A Paxos replica's data directory. A replica whose directory holds no state is started
    /// with `--bootstrap` until the cluster has formed, and with `--rejoin` after (it lost
    /// its disk).
    pub paxos_data: Option<PathBuf>,
    /// Its node id as a member of a cluster whose peer links can be secured with TLS
    /// ([`Plan::secure`]); `None` for servers that speak plain TCP only.
    pub member: Option<NodeId>,
}

/// The children of one cluster, in start order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub children: Vec<ChildSpec>,
    /// What a sharded cluster needs done once its processes listen.
    pub sharded: Option<ShardedSetup>,
    /// The password its RESP fronts require (`AUTH`), once secured.
    pub resp_password: Option<String>,
}

/// The groups a sharded cluster joins to its controllers before it is ready.
#[derive(Debug, Clone)]
pub struct ShardedSetup {
    pub controllers: Vec<SocketAddr>,
    /// Each group's gid and its servers' addresses.
    pub groups: Vec<(u64, Vec<SocketAddr>)>,
}

/// Where the clients of a secured cluster find what they need to connect.
#[derive(Debug, Clone)]
pub struct Secured {
    /// The cluster CA's certificate: what clients trust (`--tls-ca`).
    pub ca: PathBuf,
    /// The file holding the password of the RESP fronts' `default` user.
    pub resp_password: PathBuf,
}

impl Plan {
    /// Secures the cluster: issues (once, kept in `dir/tls`) the cluster CA and a
    /// certificate for every member, and gives each member its files (mutual TLS between
    /// members, TLS for native clients). A member's certificate also names the loopback
    /// address, which is where clients reach it. Every member requires clients to
    /// authenticate with a password generated once (`dir/tls/resp-password`): on its native
    /// port (clients other than members, which present their certificates) and on its RESP
    /// front, if it has one, which speaks TLS as well as plain RESP (the port is on
    /// loopback).
    /// `None` for a plan with no member to secure (`--pb`).
    pub fn secure(&mut self, dir: &Path) -> anyhow::Result<Option<Secured>> {
        if self.children.iter().all(|c| c.member.is_none()) {
            return Ok(None);
        }
        let tls_dir = dir.join("tls");
        let hosts = [HOST.to_string(), "localhost".to_string()];
        for child in &mut self.children {
            let Some(id) = child.member else { continue };
            let files =
                tls_args::issue_member(&tls_dir, identity::DEFAULT_CLUSTER_TOKEN, id, &hosts)?;
            child.args.extend(tls_args::server_flags(&files)?);
        }
        let password_file = tls_dir.join(RESP_PASSWORD);
        let password = tls_args::ensure_password(&password_file)?;
        let password_arg = path_arg(&password_file)?;
        for child in self.children.iter_mut().filter(|c| c.member.is_some()) {
            child
                .args
                .extend(strings(&["--requirepass-file", &password_arg]));
            if child.resp.is_some() {
                child
                    .args
                    .extend(strings(&["--resp-tls", "--resp-plain-too"]));
            }
        }
        self.resp_password = Some(password);
        Ok(Some(Secured {
            ca: tls_dir.join(tls_args::CA_CERT),
            resp_password: password_file,
        }))
    }

    /// What `up`'s own native clients (joining a sharded cluster's groups, polling its
    /// controllers for the dashboard) present to a secured cluster: requirepass's user.
    pub fn credentials(&self) -> Option<Credentials> {
        let password = self.resp_password.as_deref()?;
        Some(Credentials::new("default", password))
    }

    /// Every RESP address, for the readiness probe and the `redis-cli` hint.
    pub fn resp_addrs(&self) -> Vec<SocketAddr> {
        self.children.iter().filter_map(|c| c.resp).collect()
    }

    /// Whether the cluster formed in an earlier run: some Paxos replica holds state (a
    /// replica writes its first record before it ever votes). Damaged state counts too: it
    /// was written by someone.
    pub fn formed(&self) -> bool {
        self.children
            .iter()
            .filter_map(|c| c.paxos_data.as_ref())
            .any(|dir| FileStorage::holds_state(dir).unwrap_or(true))
    }
}

impl Layout {
    /// The name of the file in the cluster directory that records this layout's ports.
    fn ports_file(&self) -> &'static str {
        match self {
            Layout::Kv { .. } => "ports-kv.json",
            Layout::Pb => "ports-pb.json",
            Layout::Sharded => "ports-sharded.json",
        }
    }

    /// The name of the file in the cluster directory that records the metrics ports of its
    /// replicas and the dashboard's port.
    pub fn metrics_ports_file(&self) -> String {
        format!("metrics-{}", self.ports_file())
    }

    /// What the dashboard calls it.
    pub fn name(&self) -> &'static str {
        match self {
            Layout::Kv { .. } => "kv",
            Layout::Pb => "primary/backup",
            Layout::Sharded => "sharded",
        }
    }

    fn ports_needed(&self) -> usize {
        match self {
            Layout::Kv { replicas } => 2 * replicas,
            Layout::Pb => 5,
            // A peer port per controller, a peer and a RESP port per group replica.
            Layout::Sharded => CONTROLLERS + 2 * GROUPS.len() * GROUP_SIZE,
        }
    }

    /// The children to start for a cluster in `dir`, on ports recorded there when they are
    /// free (so a rerun keeps the addresses clients know) and on fresh free ports otherwise,
    /// unless the cluster cannot move: then a recorded port in use is an error.
    pub fn plan(&self, dir: &Path) -> anyhow::Result<Plan> {
        // The controllers of a sharded cluster remember its servers' addresses in their
        // configurations, and a Paxos KV replica records its peer list in its directory's
        // identity and refuses to run with another: neither can move once started.
        let fixed = match *self {
            Layout::Kv { replicas } => started_at_this_size(dir, replicas)?,
            Layout::Pb => false,
            Layout::Sharded => true,
        };
        let ports = ports(&dir.join(self.ports_file()), self.ports_needed(), fixed)?;
        let addr = |i: usize| SocketAddr::from((HOST, ports[i]));
        let mut sharded = None;
        let children = match *self {
            Layout::Kv { replicas } => {
                let addrs: Vec<SocketAddr> = (0..replicas).map(addr).collect();
                let peers = join_addrs(&addrs);
                (0..replicas)
                    .map(|i| kv_child(dir, &peers, i as u64, addr(i), addr(replicas + i), false))
                    .collect::<anyhow::Result<Vec<_>>>()?
            }
            Layout::Pb => {
                let view = addr(0);
                let mut children = vec![ChildSpec {
                    name: "view service".into(),
                    args: strings(&["view", "serve", "--listen", &view.to_string()]),
                    ready: "view service listening on".into(),
                    peer: view,
                    resp: None,
                    restartable: false,
                    paxos_data: None,
                    member: None,
                }];
                for id in 1..=2 {
                    let (peer, resp) = (addr(id), addr(id + 2));
                    children.push(ChildSpec {
                        name: format!("server {id}"),
                        args: strings(&[
                            "pb",
                            "serve",
                            "--listen",
                            &peer.to_string(),
                            "--view",
                            &view.to_string(),
                            "--id",
                            &id.to_string(),
                            "--resp",
                            &resp.to_string(),
                        ]),
                        ready: "pb listening on".into(),
                        peer,
                        resp: Some(resp),
                        restartable: true,
                        paxos_data: None,
                        member: None,
                    });
                }
                children
            }
            Layout::Sharded => {
                let controllers: Vec<SocketAddr> = (0..CONTROLLERS).map(addr).collect();
                let ctl = join_addrs(&controllers);
                let mut children = Vec::new();
                for (i, &peer) in controllers.iter().enumerate() {
                    let data_dir = dir.join(format!("controller-{i}"));
                    let data = path_arg(&data_dir)?;
                    children.push(ChildSpec {
                        name: format!("controller {i}"),
                        args: strings(&[
                            "shardctl",
                            "serve",
                            "--id",
                            &i.to_string(),
                            "--peers",
                            &ctl,
                            "--data",
                            &data,
                        ]),
                        ready: format!("shardctl replica {i} listening on"),
                        peer,
                        resp: None,
                        restartable: true,
                        paxos_data: Some(data_dir),
                        member: Some(NodeId(i as u64)),
                    });
                }
                let replicas = GROUPS.len() * GROUP_SIZE;
                let mut groups = Vec::new();
                for (g, &gid) in GROUPS.iter().enumerate() {
                    let first = CONTROLLERS + g * GROUP_SIZE;
                    let servers: Vec<SocketAddr> = (first..first + GROUP_SIZE).map(addr).collect();
                    let peers = join_addrs(&servers);
                    for (i, &peer) in servers.iter().enumerate() {
                        let data_dir = dir.join(format!("group-{gid}-{i}"));
                        let data = path_arg(&data_dir)?;
                        let resp = addr(first + replicas + i);
                        children.push(ChildSpec {
                            name: format!("group {gid} replica {i}"),
                            args: strings(&[
                                "shardkv",
                                "serve",
                                "--gid",
                                &gid.to_string(),
                                "--id",
                                &i.to_string(),
                                "--peers",
                                &peers,
                                "--ctl",
                                &ctl,
                                "--data",
                                &data,
                                "--resp",
                                &resp.to_string(),
                            ]),
                            ready: format!("shardkv {gid} replica {i} listening on"),
                            peer,
                            resp: Some(resp),
                            restartable: true,
                            paxos_data: Some(data_dir),
                            member: Some(server_id(gid, i)),
                        });
                    }
                    groups.push((gid, servers));
                }
                sharded = Some(ShardedSetup {
                    controllers,
                    groups,
                });
                children
            }
        };
        Ok(Plan {
            children,
            sharded,
            resp_password: None,
        })
    }
}

/// The data directory of Paxos KV replica `i` in the cluster directory `dir`.
pub(crate) fn kv_replica_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("replica-{i}"))
}

/// Paxos KV replica `id` of the cluster formed with `peers` (its `--peers`), listening on
/// `peer`, with its RESP port `resp`: one of the replicas it was formed with, or one that
/// joined it later (`kv serve --join`), which restarts with the same `--join` for life.
pub(crate) fn kv_child(
    dir: &Path,
    peers: &str,
    id: u64,
    peer: SocketAddr,
    resp: SocketAddr,
    joined: bool,
) -> anyhow::Result<ChildSpec> {
    let data_dir = kv_replica_dir(dir, id as usize);
    let data = path_arg(&data_dir)?;
    let (id_arg, peer_arg, resp_arg) = (id.to_string(), peer.to_string(), resp.to_string());
    let mut args = strings(&["kv", "serve", "--id", &id_arg, "--peers", peers]);
    if joined {
        args.extend(strings(&["--join", &peer_arg]));
    }
    args.extend(strings(&["--data", &data, "--resp", &resp_arg]));
    Ok(ChildSpec {
        name: format!("replica {id}"),
        args,
        ready: format!("kv replica {id} listening on"),
        peer,
        resp: Some(resp),
        restartable: true,
        paxos_data: Some(data_dir),
        member: Some(NodeId(id)),
    })
}

/// The file in the cluster directory that records a Paxos KV cluster's members once `up`
/// changed them (`ports-kv.json` keeps the ports of the replicas it was formed with).
pub const MEMBERS_FILE: &str = "members-kv.json";

/// The members of a Paxos KV cluster whose membership `up` changed: who `up` starts, on
/// which ports, and how. Written before each change is made (a new member is recorded
/// before it starts), so a new id is never handed out twice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvMembers {
    /// How many replicas the cluster was formed with: the size of every replica's `--peers`.
    pub founded: usize,
    /// The id the next new replica takes; ids are never reused.
    pub next_id: u64,
    /// The members, by id.
    pub members: Vec<KvMember>,
    /// The change `up` was making, recorded before it is made and cleared once it is done,
    /// so an `up` stopped in its middle has the next one finish it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// A membership change `up` has begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    /// Member `id` (recorded, started with `--join`) is to become a voter.
    Add { id: u64 },
    /// Member `new` (recorded in `old`'s place) is to become a voter in `old`'s place.
    Replace { old: u64, new: u64 },
    /// Member `id` (still recorded) is to be removed, stopped and its directory deleted.
    Remove { id: u64 },
}

/// One member of [`KvMembers`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvMember {
    pub id: u64,
    /// Its peer port on loopback (also the address a joined replica joined at).
    pub peer: u16,
    pub resp: u16,
    /// Whether it joined the running cluster (`kv serve --join`) rather than formed it.
    pub joined: bool,
}

impl KvMembers {
    /// The record in `dir`, if `up` changed the membership of the cluster there.
    pub fn read(dir: &Path) -> anyhow::Result<Option<KvMembers>> {
        let path = dir.join(MEMBERS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not a member record", path.display()))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The members of `plan`, a cluster of replicas `0..n` as it was formed.
    pub fn formed(plan: &Plan) -> KvMembers {
        let members: Vec<KvMember> = plan
            .children
            .iter()
            .zip(0..)
            .map(|(c, id)| KvMember {
                id,
                peer: c.peer.port(),
                resp: c.resp.map_or(0, |r| r.port()),
                joined: false,
            })
            .collect();
        KvMembers {
            founded: members.len(),
            next_id: members.len() as u64,
            members,
            pending: None,
        }
    }

    /// Records `self` in `dir`, atomically.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        data_dir::write_atomically(&dir.join(MEMBERS_FILE), text.as_bytes())
    }

    /// The child that runs `member` of the cluster formed as `plan` (its first replicas'
    /// `--peers`).
    pub fn child(
        &self,
        dir: &Path,
        plan_peers: &str,
        member: &KvMember,
    ) -> anyhow::Result<ChildSpec> {
        let loopback = |port| SocketAddr::from((HOST, port));
        kv_child(
            dir,
            plan_peers,
            member.id,
            loopback(member.peer),
            loopback(member.resp),
            member.joined,
        )
    }
}

/// The size a Paxos KV cluster in `dir` was formed with, if it was: from its member record,
/// or else from the identity a replica recorded when it first started.
pub fn kv_founded_size(dir: &Path) -> anyhow::Result<Option<usize>> {
    if let Some(record) = KvMembers::read(dir)? {
        return Ok(Some(record.founded));
    }
    Ok(recorded_replicas(dir)?
        .first()
        .map(|(_, recorded)| recorded.peers.len()))
}

/// The identities the `replica-*` directories of `dir` recorded, with each directory (none
/// when `dir` does not exist).
fn recorded_replicas(dir: &Path) -> anyhow::Result<Vec<(PathBuf, identity::Identity)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut recorded = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let is_replica = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("replica-"));
        if is_replica {
            if let Some(identity) = identity::read(&path)? {
                recorded.push((path, identity));
            }
        }
    }
    Ok(recorded)
}

impl Plan {
    /// The `--peers` of the replicas the cluster was formed with (every Paxos KV replica's).
    pub fn kv_peers(&self) -> String {
        let peers: Vec<SocketAddr> = self.children.iter().map(|c| c.peer).collect();
        join_addrs(&peers)
    }

    /// Makes the children of this plan, a Paxos KV cluster as it was formed, those of
    /// `record`: its members now.
    pub fn with_members(&mut self, dir: &Path, record: &KvMembers) -> anyhow::Result<()> {
        let peers = self.kv_peers();
        self.children = record
            .members
            .iter()
            .map(|m| record.child(dir, &peers, m))
            .collect::<anyhow::Result<_>>()?;
        Ok(())
    }
}

/// Whether a replica of the Paxos KV cluster in `dir` has started (recorded its identity),
/// refusing `replicas` replicas when one recorded a cluster of another size: that would start
/// a second cluster on the first one's data, where the new majority need not include any
/// replica that holds an acknowledged write. Every `replica-*` directory is read, not only
/// the first `replicas`, so a shrink is caught even when the directories it keeps are blank.
fn started_at_this_size(dir: &Path, replicas: usize) -> anyhow::Result<bool> {
    let recorded = recorded_replicas(dir)?;
    for (path, identity) in &recorded {
        let size = identity.peers.len();
        if size != replicas {
            bail!(
                "{} belongs to a cluster of {size} replicas, and --replicas is {replicas}: \
                 starting {replicas} on its data would form another cluster and could lose \
                 acknowledged writes. Start it at its size (--replicas {size}); a cluster changes \
                 its size only through membership changes (`synod up --dir {} \
                 --replicas N` makes them)",
                path.join(identity::IDENTITY_FILE).display(),
                dir.display(),
            );
        }
    }
    Ok(!recorded.is_empty())
}

/// `HOST:PORT,HOST:PORT,...`, the form every `--peers` and `--ctl` flag takes.
fn join_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

pub(crate) fn path_arg(path: &Path) -> anyhow::Result<String> {
    match path.to_str() {
        Some(text) => Ok(text.to_owned()),
        None => bail!("the cluster directory {} is not UTF-8", path.display()),
    }
}

/// The ports recorded in `record` if there are `n` and all are free now, else `n` fresh free
/// ones (recorded for next time) — unless `fixed`, for a cluster that must keep its
/// addresses, where recorded ports in use are an error.
pub(crate) fn ports(record: &Path, n: usize, fixed: bool) -> anyhow::Result<Vec<u16>> {
    let recorded: Option<Vec<u16>> = match std::fs::read_to_string(record) {
        Ok(text) => match serde_json::from_str::<Vec<u16>>(&text) {
            Ok(ports) if ports.len() == n => Some(ports),
            // Ports that may move (the metrics') recorded for another number of processes:
            // the cluster's size changed (`up --replicas N`), which is no reason to warn.
            Ok(_) if !fixed => None,
            _ => {
                eprintln!(
                    "synod up: ignoring {}: not a list of {n} ports",
                    record.display()
                );
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", record.display())),
    };
    if let Some(ports) = recorded {
        let busy: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|&p| TcpListener::bind((HOST, p)).is_err())
            .collect();
        if busy.is_empty() {
            return Ok(ports);
        }
        if fixed {
            bail!(
                "recorded ports {busy:?} (in {}) are in use, and this cluster must restart on \
                 the same ports: free them and try again",
                record.display()
            );
        }
        eprintln!("synod up: recorded ports {busy:?} are in use; choosing new ports");
    }
    let listeners = free_listeners(n).context("finding free ports")?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()?;
    data_dir::write_atomically(record, serde_json::to_string(&ports)?.as_bytes())?;
    Ok(ports)
}

/// The lowest port a fresh cluster listens on: above the registered services' usual ports.
const LOWEST_FRESH_PORT: u16 = 10_000;

/// `n` listeners on distinct free ports of [`HOST`], held so the ports stay distinct, taken
/// below the kernel's ephemeral range (`ip_local_port_range`) when it leaves room. There the
/// kernel never puts the local end of an outgoing connection, so a port chosen now is not
/// taken by some process's connection before the child that is to listen on it binds it, as
/// a port the kernel hands out for `bind(0)` can be (a busy machine, say a test suite, opens
/// connections all the time).
pub(crate) fn free_listeners(n: usize) -> std::io::Result<Vec<TcpListener>> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok());
    let room = ephemeral_start.map_or(0, |start| start.saturating_sub(LOWEST_FRESH_PORT));
    if usize::from(room) < 4 * n {
        return (0..n).map(|_| TcpListener::bind((HOST, 0))).collect();
    }
    // From a random place, so clusters started at once look in different places.
    let offset = rand::random::<u16>() % room;
    let candidates = (0..room).map(|i| LOWEST_FRESH_PORT + (offset + i) % room);
    let listeners: Vec<TcpListener> = candidates
        .filter_map(|port| TcpListener::bind((HOST, port)).ok())
        .take(n)
        .collect();
    if listeners.len() < n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("fewer than {n} free ports below the ephemeral range"),
        ));
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_reuses_free_recorded_ports_and_replaces_busy_ones() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::Kv { replicas: 3 };
        let first = layout.plan(dir.path()).unwrap();
        let again = layout.plan(dir.path()).unwrap();
        let peers = |p: &Plan| p.children.iter().map(|c| c.peer).collect::<Vec<_>>();
        assert_eq!(peers(&first), peers(&again));
        assert_eq!(first.resp_addrs(), again.resp_addrs());

        let _busy = TcpListener::bind(first.children[0].peer).unwrap();
        let moved = layout.plan(dir.path()).unwrap();
        assert_ne!(moved.children[0].peer, first.children[0].peer);
        assert_eq!(
            layout.plan(dir.path()).unwrap().resp_addrs(),
            moved.resp_addrs()
        );
    }

    /// Records in replica `index`'s directory the identity it takes when it first starts
    /// with the peers of `plan`.
    fn record_identity(dir: &Path, plan: &Plan, index: usize) {
        let peers: Vec<SocketAddr> = plan.children.iter().map(|c| c.peer).collect();
        let replica = kv_replica_dir(dir, index);
        std::fs::create_dir_all(&replica).unwrap();
        let recorded = identity::Identity::new(index, &peers, identity::DEFAULT_CLUSTER_TOKEN);
        identity::record(&replica, &recorded.unwrap()).unwrap();
    }

    #[test]
    fn a_kv_cluster_refuses_to_start_at_another_size() {
        let dir = tempfile::tempdir().unwrap();
        let three = Layout::Kv { replicas: 3 };
        let first = three.plan(dir.path()).unwrap();
        // Only replica 2 recorded its identity: a shrink to 1 must still be caught.
        record_identity(dir.path(), &first, 2);

        for replicas in [1, 5] {
            let err = Layout::Kv { replicas }.plan(dir.path()).unwrap_err();
            let err = err.to_string();
            assert!(err.contains("belongs to a cluster of 3 replicas"), "{err}");
            assert!(err.contains("--replicas 3"), "{err}");
        }
        assert!(three.plan(dir.path()).is_ok());
    }

    #[test]
    fn a_member_record_restarts_the_cluster_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Layout::Kv { replicas: 3 }.plan(dir.path()).unwrap();
        assert_eq!(kv_founded_size(dir.path()).unwrap(), None);
        let mut record = KvMembers::formed(&plan);
        assert_eq!(record.next_id, 3);
        // Replica 1 was replaced by replica 3, which joined.
        record.members.remove(1);
        record.members.push(KvMember {
            id: 3,
            peer: 40001,
            resp: 40002,
            joined: true,
        });
        record.next_id = 4;
        record.write(dir.path()).unwrap();
        assert_eq!(kv_founded_size(dir.path()).unwrap(), Some(3));

        let peers = plan.kv_peers();
        let read = KvMembers::read(dir.path()).unwrap().unwrap();
        assert_eq!(read, record);
        plan.with_members(dir.path(), &read).unwrap();
        let names: Vec<&str> = plan.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["replica 0", "replica 2", "replica 3"]);
        let flag = |c: &ChildSpec, name: &str| {
            let at = c.args.iter().position(|a| a == name)?;
            c.args.get(at + 1).cloned()
        };
        for child in &plan.children {
            assert_eq!(flag(child, "--peers"), Some(peers.clone()), "{child:?}");
        }
        let joined = &plan.children[2];
        assert_eq!(flag(joined, "--join").as_deref(), Some("127.0.0.1:40001"));
        assert_eq!(flag(joined, "--id").as_deref(), Some("3"));
        assert_eq!(joined.member, Some(NodeId(3)));
        assert_eq!(joined.paxos_data, Some(kv_replica_dir(dir.path(), 3)));
        assert_eq!(flag(&plan.children[0], "--join"), None);
    }

    #[test]
    fn a_kv_cluster_whose_replicas_recorded_their_identity_keeps_its_ports() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::Kv { replicas: 3 };
        let first = layout.plan(dir.path()).unwrap();
        record_identity(dir.path(), &first, 1);

        let _busy = TcpListener::bind(first.children[0].peer).unwrap();
        let err = layout.plan(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("are in use, and this cluster must restart on the same ports"),
            "{err}"
        );
    }
}
