//! The servers `synod bench` starts for itself — a 3-replica synod cluster, a sharded synod
//! cluster as `synod up --sharded` lays it out, one Redis, a 3-member etcd cluster — each in a temporary directory, on free loopback ports, run by
//! `synod up`'s child supervisor (own process group, SIGTERM if `bench` dies) and stopped
//! (SIGTERM, then SIGKILL) when the benchmark is done with them.
//!
//! Children are stopped one at a time, in order: an etcd leader that is asked to stop first
//! hands leadership to a peer, and waits for it for seconds if that peer is exiting too.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use synod_net::tls::ClientTls;
use tempfile::TempDir;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::up_cmd::child::{self, Event};
use crate::up_cmd::layout::{path_arg, ports, strings, ChildSpec, Layout, Plan};
use crate::up_cmd::set_up_and_probe;

/// How long a started cluster may take to accept its first write.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One started service: its child processes, their supervisors and their directory.
pub struct Local {
    pub plan: Plan,
    /// Each child's stop switch and supervisor, in start order.
    supervisors: Vec<(watch::Sender<bool>, JoinHandle<()>)>,
    events: mpsc::UnboundedReceiver<Event>,
    /// How clients reach a secured service.
    pub secure_client: Option<SecureClient>,
    /// Removed (with every child's data) when the service is dropped, after `stop`.
    _dir: TempDir,
}

impl Local {
    /// Starts every child of `plan` (running `program`) and waits until each says it listens.
    async fn start(program: &Path, plan: Plan, dir: TempDir) -> anyhow::Result<Local> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let exe: Arc<Path> = program.into();
        // Never set: a child that dies is reported, not restarted, since a benchmark over a
        // restarting server would measure the restart.
        let cluster_up = Arc::new(AtomicBool::new(false));
        let mut supervisors = Vec::new();
        for (index, spec) in plan.children.iter().enumerate() {
            let (stop, stop_rx) = watch::channel(false);
            let ctx = child::Context {
                exe: exe.clone(),
                log_format: "text",
                events: events_tx.clone(),
                stop: stop_rx,
                cluster_up: cluster_up.clone(),
                formed: false,
            };
            let supervisor = tokio::spawn(child::supervise(index, spec.clone(), ctx));
            supervisors.push((stop, supervisor));
        }
        // Only the supervisors hold senders now, so `listening` sees them all end.
        drop(events_tx);
        let mut local = Local {
            plan,
            supervisors,
            events,
            secure_client: None,
            _dir: dir,
        };
        match local.listening().await {
            Ok(()) => Ok(local),
            Err(e) => {
                local.stop().await;
                Err(e)
            }
        }
    }

    async fn listening(&mut self) -> anyhow::Result<()> {
        let mut ready = vec![false; self.plan.children.len()];
        while ready.contains(&false) {
            match self.events.recv().await {
                Some(Event::Ready { index, .. }) => ready[index] = true,
                Some(Event::Died {
                    index, pid, why, ..
                }) => {
                    bail!("{} (pid {pid}) {why}", self.plan.children[index].name)
                }
                None => bail!("every supervisor ended"),
            }
        }
        Ok(())
    }

    /// Why a child died since the service started, if one did.
    pub fn death(&mut self) -> Option<String> {
        while let Ok(event) = self.events.try_recv() {
            if let Event::Died {
                index, pid, why, ..
            } = event
            {
                return Some(format!(
                    "{} (pid {pid}) {why}",
                    self.plan.children[index].name
                ));
            }
        }
        None
    }

    /// Stops the children one after the other, each once the previous one has exited.
    pub async fn stop(self) {
        for (stop, supervisor) in self.supervisors {
            let _ = stop.send(true);
            let _ = supervisor.await;
        }
    }
}

/// A fresh synod cluster as `synod up` lays it out (fsync on, as always): 3 Paxos KV
/// replicas, or with `Layout::Sharded` 3 controllers and 2 groups of 3, the groups joined.
/// Ready once a write went through.
pub async fn synod(exe: &Path, layout: Layout) -> anyhow::Result<Local> {
    let dir = temp_dir(match layout {
        Layout::Sharded => "synod-sharded",
        _ => "synod",
    })?;
    let plan = layout.plan(dir.path())?;
    ready(exe, plan, dir, None).await
}

/// Starts a synod cluster's `plan` and waits until it took a write.
async fn ready(
    exe: &Path,
    plan: Plan,
    dir: TempDir,
    secure_client: Option<SecureClient>,
) -> anyhow::Result<Local> {
    let mut local = Local::start(exe, plan, dir).await?;
    local.secure_client = secure_client;
    if let Err(e) = set_up_and_probe(&local.plan, Instant::now() + READY_TIMEOUT).await {
        local.stop().await;
        return Err(e);
    }
    Ok(local)
}

/// What a client of a secured cluster needs: TLS trusting its CA, and its RESP password.
#[derive(Clone)]
pub struct SecureClient {
    pub tls: ClientTls,
    pub password: String,
}

/// A fresh 3-replica synod cluster secured as `synod up` secures it (`Plan::secure`).
pub async fn synod_secured(exe: &Path) -> anyhow::Result<Local> {
    let dir = temp_dir("synod-secured")?;
    let mut plan = Layout::Kv { replicas: 3 }.plan(dir.path())?;
    let secured = plan
        .secure(dir.path())?
        .context("a KV cluster has members")?;
    let password = plan
        .resp_password
        .clone()
        .context("a secured plan has a password")?;
    let tls = ClientTls::trusting(&secured.ca)?;
    ready(exe, plan, dir, Some(SecureClient { tls, password })).await
}

/// One Redis with an append-only file fsynced on every write, as synod and etcd sync.
pub async fn redis(program: &Path) -> anyhow::Result<Local> {
    let dir = temp_dir("redis")?;
    let port = ports(&dir.path().join("ports.json"), 1, false)?[0];
    let addr = loopback(port);
    let spec = ChildSpec {
        name: "redis".into(),
        args: strings(&[
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--dir",
            &path_arg(dir.path())?,
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ]),
        ready: "Ready to accept connections".into(),
        peer: addr,
        resp: Some(addr),
        restartable: false,
        paxos_data: None,
        member: None,
    };
    let plan = Plan {
        children: vec![spec],
        sharded: None,
        resp_password: None,
    };
    Local::start(program, plan, dir).await
}

/// A 3-member etcd cluster (etcd fsyncs its log by default); `peer` of each child is its
/// client address.
pub async fn etcd(program: &Path) -> anyhow::Result<Local> {
    let dir = temp_dir("etcd")?;
    let ports = ports(&dir.path().join("ports.json"), 6, false)?;
    let url = |i: usize| format!("http://{}", loopback(ports[i]));
    let cluster: Vec<String> = (0..3).map(|i| format!("m{i}={}", url(3 + i))).collect();
    let cluster = cluster.join(",");
    let mut children = Vec::new();
    for (i, &client_port) in ports[..3].iter().enumerate() {
        let data = path_arg(&dir.path().join(format!("m{i}")))?;
        children.push(ChildSpec {
            name: format!("etcd member {i}"),
            args: strings(&[
                "--name",
                &format!("m{i}"),
                "--data-dir",
                &data,
                "--listen-client-urls",
                &url(i),
                "--advertise-client-urls",
                &url(i),
                "--listen-peer-urls",
                &url(3 + i),
                "--initial-advertise-peer-urls",
                &url(3 + i),
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "synod-bench",
                "--logger",
                "zap",
                "--log-outputs",
                "stdout",
            ]),
            // Logged once the member has joined the cluster and serves clients.
            ready: "serving client traffic".into(),
            peer: loopback(client_port),
            resp: None,
            restartable: false,
            paxos_data: None,
            member: None,
        });
    }
    Local::start(
        program,
        Plan {
            children,
            sharded: None,
            resp_password: None,
        },
        dir,
    )
    .await
}

/// The installed program `name` on `PATH`, if any.
pub fn installed(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| {
            file.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn temp_dir(what: &str) -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("synod-bench-{what}-"))
        .tempdir()
        .context("creating a temporary directory")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}
