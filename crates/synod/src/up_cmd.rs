//! `synod up`: a whole cluster on this machine, as child processes on loopback, in one
//! command — the Paxos KV by default, the view service with primary/backup servers with
//! `--pb`, shard controllers and two joined replica groups with `--sharded`.
//!
//! What it prints on stdout, in order: one line per child once it listens
//! (`replica 0: peer 127.0.0.1:P resp 127.0.0.1:Q metrics 127.0.0.1:M pid N`), then `ready`
//! once a real write and read through a Redis-protocol port worked, then a `redis-cli` hint,
//! then (when secured) `tls: --tls-ca PATH --password-file PATH`, the flags of native clients
//! (`synod kv`, `synod status`, `synod shardkv`, `synod shardctl`), then the dashboard's URL (see
//! [`dashboard`]).
//!
//! Security is on unless `--insecure`: the replicas' peer links use mutual TLS with
//! certificates `up` issues once into `DIR/tls` (see [`layout::Plan::secure`]), so only
//! members of the cluster can take part in its Paxos, and native clients (of the KV
//! replicas, of a sharded cluster's controllers and groups) must connect with TLS, trusting
//! `DIR/tls/ca.pem`, and authenticate with the password in `DIR/tls/resp-password`, as the
//! RESP fronts require `AUTH` with it; the fronts speak TLS (and plain RESP, on loopback). The primary/backup
//! layout (`--pb`) is not secured. A child that is restarted gets its line printed again
//! with its new pid.
//!
//! Supervision: a child that dies is reported on stderr and restarted with the same
//! arguments (and so the same data directory and ports), after a delay that grows while it
//! keeps dying at once; the others keep running. The exception is the primary/backup view
//! service, which keeps its state in memory only: a restarted one would contradict the
//! servers, so its death stops the cluster and `up` exits 1. A child that dies before the
//! cluster is first ready also stops everything (exit 1): its own error on stderr says why.
//! SIGTERM or Ctrl-C stops every child (SIGTERM, then SIGKILL after 5 s) and exits 0.

pub(crate) mod child;
pub(crate) mod dashboard;
pub(crate) mod layout;
pub(crate) mod members;
pub(crate) mod probe;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use synod_net::{shutdown_signal, Credentials};
use synod_node::limits::{Limits, DEFAULT_MAX_VALUE_BYTES};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::data_dir;
use child::Event;
use dashboard::Dashboard;
use layout::{ChildSpec, Layout, Plan, Secured, ShardedSetup};
use synod_client::shardkv::CtlClient;
use synod_net::tls::ClientTls;
use synod_shardctl::{CtlOp, CtlReply};

#[derive(Args)]
pub struct UpArgs {
    /// Directory for the cluster: each replica's data, the ports in use (reused by a rerun
    /// when free), and a lock so only one `up` uses it at a time.
    #[arg(long, env = "SYNOD_DIR", default_value = "synod-data")]
    dir: PathBuf,
    /// Start the view service and two primary/backup servers instead of the Paxos KV
    /// (their state is in memory: a rerun starts empty).
    #[arg(long)]
    pb: bool,
    /// Start 3 shard controllers and 2 groups of 3 sharded-KV servers, joined, instead of the
    /// Paxos KV.
    #[arg(long, conflicts_with = "pb")]
    sharded: bool,
    /// Number of Paxos KV replicas: a new cluster's size [default: 3]. On a cluster that
    /// already ran, the size to change it to through membership changes, one replica at a
    /// time (docs/running.md, "One command: `synod up`"); without it, it keeps its size.
    #[arg(long, conflicts_with_all = ["pb", "sharded"])]
    replicas: Option<usize>,
    /// Seconds to wait for the cluster to accept a write before giving up, on top of the
    /// time the replicas may need to load the data already in DIR (one second per
    /// 20 MB held). The wait is reported every 10 seconds.
    #[arg(long, default_value_t = 60.0)]
    ready_timeout: f64,
    /// Largest value a client may store, in bytes: passed to every server that stores values
    /// (docs/running.md, "Limits").
    #[arg(long, env = "SYNOD_MAX_VALUE_BYTES", default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    max_value_bytes: usize,
    /// Serve the live dashboard on this address. [default: a loopback port recorded in DIR
    /// with the replicas' metrics ports, reused by a rerun when free]
    #[arg(long, env = "SYNOD_DASHBOARD")]
    dashboard: Option<SocketAddr>,
    /// Run without security: plain TCP between replicas and from clients, as before
    /// security was the default. Only for a trusted machine.
    #[arg(long)]
    insecure: bool,
}

/// Runs `up`; `log_format` is passed on to every child.
pub fn run(args: UpArgs, log_format: &'static str) -> anyhow::Result<ExitCode> {
    if args.replicas.is_some_and(|n| !(1..=9).contains(&n)) {
        bail!("--replicas must be between 1 and 9");
    }
    if !(args.ready_timeout.is_finite() && args.ready_timeout > 0.0) {
        bail!("--ready-timeout must be a positive number of seconds");
    }
    // One thread: `up` only waits, and on Linux a child's "signal me when my parent dies"
    // is tied to the thread that spawned it, which must live as long as `up`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(up(args, log_format))
}

async fn up(args: UpArgs, log_format: &'static str) -> anyhow::Result<ExitCode> {
    let _lock = data_dir::lock(&args.dir)?;
    let layout = if args.pb {
        Layout::Pb
    } else if args.sharded {
        Layout::Sharded
    } else {
        // A cluster that ran keeps the --peers it was formed with; --replicas changes its
        // members (see `members`).
        let founded = layout::kv_founded_size(&args.dir)?;
        Layout::Kv {
            replicas: founded.or(args.replicas).unwrap_or(3),
        }
    };
    Limits::new(args.max_value_bytes).context("--max-value-bytes")?;
    let mut plan = layout.plan(&args.dir)?;
    let formed = plan.formed();
    let changes = match layout {
        Layout::Kv { .. } => Some(members::Changes::plan(
            &mut plan,
            &args.dir,
            args.replicas,
            formed,
        )?),
        _ => None,
    };
    let secured = if args.insecure {
        None
    } else {
        plan.secure(&args.dir)?
    };
    if let Some(secured) = &secured {
        // `up`'s own clients (joining a sharded cluster's groups) connect with TLS too.
        let tls = ClientTls::trusting(&secured.ca).context("loading the cluster CA")?;
        synod_net::tls::use_for_clients(tls);
    }
    // Every child serves its metrics on a port of its own (a Paxos replica also its status,
    // which the dashboard polls); the last recorded port is the dashboard's.
    let observed = plan.children.len();
    let ports = metrics_ports(&plan, &args.dir.join(layout.metrics_ports_file()))?;
    let loopback = |port: u16| SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    let mut metrics = Vec::with_capacity(observed);
    for (child, &port) in plan.children.iter_mut().zip(&ports) {
        let addr = loopback(port);
        finish_child(child, args.max_value_bytes, addr);
        metrics.push(addr);
    }
    let dashboard_addr = args.dashboard.unwrap_or(loopback(ports[observed]));
    let dashboard_port = tokio::net::TcpListener::bind(dashboard_addr)
        .await
        .with_context(|| format!("listening for the dashboard on {dashboard_addr}"))?;
    let dashboard_addr = dashboard_port.local_addr()?;
    let status_ports: Vec<Option<SocketAddr>> = plan
        .children
        .iter()
        .zip(&metrics)
        .map(|(child, &addr)| child.paxos_data.is_some().then_some(addr))
        .collect();
    let board = Dashboard::new(layout.name(), &plan, &status_ports);
    let _dashboard = AbortOnDrop(vec![
        tokio::spawn(board.clone().serve(dashboard_port)),
        tokio::spawn(board.clone().poll(plan.sharded.clone(), plan.credentials())),
    ]);
    let exe: Arc<std::path::Path> = std::env::current_exe()
        .context("finding the synod executable")?
        .into();
    // Installed before anything is printed: a signal from here on stops the cluster cleanly.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let cluster_up = Arc::new(AtomicBool::new(false));
    let (_, no_stop) = watch::channel(false);
    let mut running = Running {
        plan: Plan {
            children: Vec::new(),
            ..plan.clone()
        },
        metrics: Vec::new(),
        supervisors: Vec::new(),
        ctx: child::Context {
            exe,
            log_format,
            events: events_tx,
            stop: no_stop,
            cluster_up: cluster_up.clone(),
            formed,
        },
    };
    for (spec, metrics) in plan.children.iter().zip(&metrics) {
        running.spawn(spec.clone(), *metrics);
    }
    let loading = loading_allowance(&args.dir);
    if !loading.is_zero() {
        eprintln!(
            "loading existing data: waiting up to {}s more for the cluster to be ready",
            loading.as_secs()
        );
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.ready_timeout) + loading;

    let outcome = tokio::select! {
        () = &mut shutdown => Ok(ExitCode::SUCCESS),
        outcome = async {
            start(&plan, &metrics, &board, secured.as_ref(), &mut events, deadline).await?;
            println!("dashboard: http://{dashboard_addr}/");
            cluster_up.store(true, Ordering::SeqCst);
            if let Some(changes) = changes {
                let dir = args.dir.as_path();
                let mut cluster = members::Cluster {
                    running: &mut running,
                    board: &board,
                    events: &mut events,
                    dir,
                    insecure: args.insecure,
                    max_value_bytes: args.max_value_bytes,
                };
                if let Some(code) = changes.make(&mut cluster).await? {
                    return Ok(code);
                }
            }
            Ok(watch_children(&running.plan, &running.metrics, &board, &mut events).await)
        } => outcome,
    };
    running.stop_all().await;
    tracing::info!("every child stopped");
    outcome
}

/// What every child that stores values or serves metrics is given: the same limit on
/// values (a cluster must agree on it) and its own metrics address.
fn finish_child(child: &mut ChildSpec, max_value_bytes: usize, metrics: SocketAddr) {
    if child.resp.is_some() {
        let limit = max_value_bytes.to_string();
        child.args.extend(["--max-value-bytes".to_string(), limit]);
    }
    child
        .args
        .extend(["--metrics".to_string(), metrics.to_string()]);
}

/// The children `up` runs, by index (in start order), each with its own stop switch and
/// supervisor, so one can be stopped alone (a replica removed from the cluster).
pub(crate) struct Running {
    /// Every child started so far, by index; one that was stopped keeps its place.
    pub plan: Plan,
    pub metrics: Vec<SocketAddr>,
    supervisors: Vec<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>>,
    /// What each new supervisor gets (with a stop switch of its own).
    ctx: child::Context,
}

impl Running {
    /// Starts supervising `spec`, whose metrics address is `metrics`; returns its index.
    pub fn spawn(&mut self, spec: ChildSpec, metrics: SocketAddr) -> usize {
        let index = self.plan.children.len();
        let (stop, stop_rx) = watch::channel(false);
        let ctx = child::Context {
            stop: stop_rx,
            ..self.ctx.clone()
        };
        let supervisor = tokio::spawn(child::supervise(index, spec.clone(), ctx));
        self.plan.children.push(spec);
        self.metrics.push(metrics);
        self.supervisors.push(Some((stop, supervisor)));
        index
    }

    /// Stops child `index` (SIGTERM, then SIGKILL) and waits until it has.
    pub async fn stop(&mut self, index: usize) {
        if let Some((stop, supervisor)) = self.supervisors.get_mut(index).and_then(Option::take) {
            let _ = stop.send(true);
            let _ = supervisor.await;
        }
    }

    /// Stops every child: all are asked at once, then waited for.
    async fn stop_all(&mut self) {
        let supervisors: Vec<_> = self
            .supervisors
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for (stop, _) in &supervisors {
            let _ = stop.send(true);
        }
        for (_, supervisor) in supervisors {
            let _ = supervisor.await;
        }
    }
}

/// Free ports for every child's metrics and the dashboard (last), recorded in `record`:
/// distinct from the cluster's own ports, which were chosen apart and are not held open.
fn metrics_ports(plan: &Plan, record: &std::path::Path) -> anyhow::Result<Vec<u16>> {
    let cluster: Vec<u16> = plan
        .children
        .iter()
        .flat_map(|c| [Some(c.peer), c.resp])
        .flatten()
        .map(|a| a.port())
        .collect();
    for _ in 0..10 {
        let ports = layout::ports(record, plan.children.len() + 1, false)?;
        if !ports.iter().any(|p| cluster.contains(p)) {
            return Ok(ports);
        }
        // Chosen again, away from the cluster's ports.
        std::fs::remove_file(record).with_context(|| format!("removing {}", record.display()))?;
    }
    bail!("found no free ports for the metrics apart from the cluster's")
}

/// Bytes a replica is assumed to load per second at the least when it restarts on its data
/// (reading and decoding its snapshot and replaying its log; docs/bench.md measures it).
const LOAD_BYTES_PER_SEC: u64 = 20_000_000;

/// Time the replicas may need to load what `dir` holds: its replicas' snapshots and logs
/// are loaded in parallel, so the largest directory sets it.
fn loading_allowance(dir: &std::path::Path) -> Duration {
    let size = |path: &std::path::Path| -> u64 {
        std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    };
    let largest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| size(&entry.path()))
        .max()
        .unwrap_or(0);
    Duration::from_secs(largest / LOAD_BYTES_PER_SEC)
}

/// Waits for every child to listen, prints their lines, then probes and prints `ready`.
async fn start(
    plan: &Plan,
    metrics: &[SocketAddr],
    board: &Dashboard,
    secured: Option<&Secured>,
    events: &mut mpsc::UnboundedReceiver<Event>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut pids = vec![None; plan.children.len()];
    while pids.iter().any(Option::is_none) {
        match events.recv().await {
            Some(Event::Ready { index, pid }) => {
                board.started(index, pid);
                pids[index] = Some(pid);
            }
            Some(Event::Died {
                index, pid, why, ..
            }) => {
                bail!(
                    "{} (pid {pid}) {why} before the cluster was ready",
                    plan.children[index].name
                )
            }
            None => bail!("every child supervisor ended"),
        }
    }
    for ((spec, pid), metrics) in plan.children.iter().zip(&pids).zip(metrics) {
        println!("{}", line(spec, *metrics, pid.unwrap_or_default()));
    }
    let fronts = plan.resp_addrs();
    tokio::select! {
        probed = set_up_and_probe(plan, deadline) => probed?,
        event = events.recv() => match event {
            Some(Event::Died { index, pid, why, .. }) => {
                bail!("{} (pid {pid}) {why} before the cluster was ready", plan.children[index].name)
            }
            _ => bail!("a child restarted before the cluster was ready"),
        },
    }
    println!("ready");
    match (fronts.first(), secured) {
        (Some(front), Some(secured)) => println!(
            "try: redis-cli -p {} --tls --cacert {} --pass \"$(cat {})\"",
            front.port(),
            secured.ca.display(),
            secured.resp_password.display()
        ),
        (Some(front), None) => println!("try: redis-cli -p {}", front.port()),
        (None, _) => {}
    }
    if let Some(secured) = secured {
        println!(
            "tls: --tls-ca {} --password-file {}",
            secured.ca.display(),
            secured.resp_password.display()
        );
    }
    Ok(())
}

/// Makes a cluster whose processes listen ready to serve: joins a sharded cluster's groups,
/// then waits until a write and a read went through its RESP fronts.
pub(crate) async fn set_up_and_probe(plan: &Plan, deadline: Instant) -> anyhow::Result<()> {
    if let Some(sharded) = &plan.sharded {
        join_groups(sharded, plan.credentials(), deadline).await?;
    }
    probe::write_and_read(&plan.resp_addrs(), plan.resp_password.as_deref(), deadline).await
}

/// Joins every group of a sharded cluster to its controllers, as the user of `credentials`
/// (a secured cluster's). A rerun joins them again, which the controller treats as a no-op,
/// so this is safe every time `up` starts.
async fn join_groups(
    sharded: &ShardedSetup,
    credentials: Option<Credentials>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut ctl =
        CtlClient::connect(sharded.controllers.iter().map(ToString::to_string))?.with_timeout(left);
    if let Some(credentials) = credentials {
        ctl = ctl.with_credentials(credentials);
    }
    for (gid, servers) in &sharded.groups {
        let servers = servers.iter().map(ToString::to_string).collect();
        match ctl.call(CtlOp::Join { gid: *gid, servers }).await {
            Ok(CtlReply::Invalid(why)) => {
                bail!("the controllers refused to join group {gid}: {why}")
            }
            Ok(CtlReply::Denied(denied)) => {
                bail!("the controllers refused to join group {gid}: {denied}")
            }
            Ok(_) => {}
            Err(e) => return Err(e).with_context(|| format!("joining group {gid}")),
        }
    }
    Ok(())
}

/// Reports deaths and restarts until a child dies for good (exit code 1).
async fn watch_children(
    plan: &Plan,
    metrics: &[SocketAddr],
    board: &Dashboard,
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> ExitCode {
    while let Some(event) = events.recv().await {
        if let Some(code) = report(plan, metrics, board, event) {
            return code;
        }
    }
    ExitCode::FAILURE
}

/// Reports a child's (re)start or death once the cluster is up; `Some(exit code)` when the
/// death stops the cluster.
pub(crate) fn report(
    plan: &Plan,
    metrics: &[SocketAddr],
    board: &Dashboard,
    event: Event,
) -> Option<ExitCode> {
    match event {
        Event::Ready { index, pid } => {
            board.started(index, pid);
            board.fault(format!("{} back (pid {pid})", plan.children[index].name));
            println!("{}", line(&plan.children[index], metrics[index], pid));
        }
        Event::Died {
            index,
            pid,
            why,
            restart_in: Some(delay),
        } => {
            board.died(index, format!("pid {pid} {why}"));
            eprintln!(
                "synod up: {} (pid {pid}) {why}; restarting it in {delay:?}",
                plan.children[index].name
            )
        }
        Event::Died {
            index, pid, why, ..
        } => {
            eprintln!(
                "synod up: {} (pid {pid}) {why}; it cannot be restarted, stopping the cluster",
                plan.children[index].name
            );
            return Some(ExitCode::FAILURE);
        }
    }
    None
}

/// `replica 0: peer 127.0.0.1:7000 resp 127.0.0.1:7003 metrics 127.0.0.1:7006 pid 1234`.
pub(crate) fn line(spec: &ChildSpec, metrics: SocketAddr, pid: u32) -> String {
    let mut line = format!("{}: peer {}", spec.name, spec.peer);
    if let Some(resp) = spec.resp {
        line += &format!(" resp {resp}");
    }
    line + &format!(" metrics {metrics} pid {pid}")
}

/// Tasks that end with `up`.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
