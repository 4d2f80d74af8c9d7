//! `synod mr`: run MapReduce jobs (issue 4) — whole jobs on this machine, or a coordinator
//! and workers on several.
//!
//! A coordinator and workers on several hosts authenticate each other with certificates
//! from one CA (`synod certs`), given to each with `--tls-cert`, `--tls-key` and `--tls-ca`:
//! then every connection is TLS (which authenticates every frame) and a process without a
//! certificate from that CA is refused, and logged. Without them, anyone who reaches the
//! coordinator's port can take part, which a coordinator says on stderr when it starts. A
//! whole job on this machine (`synod mr run`) runs its workers on loopback, which every
//! local user can reach: so it makes a CA for the run and gives the coordinator and its
//! workers a certificate from it (unless `--insecure`), and admits no other process.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use synod_mapreduce::coordinator::{CoordinatorConfig, Status};
use synod_mapreduce::service::{self, worker::WorkerOptions};
use synod_mapreduce::worker::WorkerConfig;
use synod_mapreduce::{plan, run_sequential, AppSpec, JobConfig, Registry};
use synod_net::tls::{PeerTls, TlsFiles};
use synod_node::NodeId;
use tokio::sync::watch;

use crate::identity::DEFAULT_CLUSTER_TOKEN;
use crate::tls_args::{self, ServerTlsArgs};

#[derive(clap::Subcommand)]
pub enum MrCommand {
    /// Run a whole job on this machine: a coordinator and worker processes.
    Run(RunArgs),
    /// Coordinate a job for workers that connect over TCP; exits 0 once the output is complete.
    Coordinator(CoordinatorArgs),
    /// Run tasks for a coordinator until its job is done.
    Worker(WorkerArgs),
}

#[derive(clap::Args)]
pub struct JobArgs {
    /// Application: wc (word count), ii (inverted index) or grep.
    #[arg(long)]
    app: String,
    /// Regular expression for --app grep.
    #[arg(long)]
    pattern: Option<String>,
    /// Output directory; receives part-00000 … part-<R-1>.
    #[arg(long)]
    output: PathBuf,
    /// Number of map tasks (default: from the input size).
    #[arg(long)]
    maps: Option<u32>,
    /// Number of reduce tasks (output files).
    #[arg(long, default_value_t = 8)]
    reduces: u32,
    /// Replace part files already in the output directory.
    #[arg(long)]
    force: bool,
    /// Memory budget per task for sorting, in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mb: u64,
    /// Input files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Worker processes (default: number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Run everything in this process, one task at a time (the reference mode).
    #[arg(long)]
    sequential: bool,
    /// Serve a status page at this address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Let the coordinator and its workers talk plain TCP, admitting any process that
    /// reaches the coordinator's loopback port, instead of TLS with certificates from a CA
    /// made for the run.
    #[arg(long, conflicts_with = "sequential")]
    insecure: bool,
}

#[derive(clap::Args)]
pub struct CoordinatorArgs {
    /// Address workers connect to.
    #[arg(long)]
    listen: SocketAddr,
    #[command(flatten)]
    job: JobArgs,
    /// Serve a status page at this address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Silence after which a worker is declared dead, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    heartbeat_timeout_ms: u64,
    /// The coordinator's certificate (naming the address workers reach it by), key and CA:
    /// then only workers with a certificate from that CA are admitted.
    #[command(flatten)]
    tls: ServerTlsArgs,
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// The coordinator's address (HOST:PORT).
    #[arg(long)]
    coordinator: String,
    /// Address to serve map output to other workers on (port 0: any free port).
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Local directory for map output (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The worker's certificate (naming the address it advertises), key and CA, from the
    /// coordinator's CA: it proves itself to the coordinator and the other workers with it,
    /// and admits only them to its map output.
    #[command(flatten)]
    tls: ServerTlsArgs,
}

fn job_config(a: &JobArgs) -> JobConfig {
    let mut cfg = JobConfig::new(
        AppSpec {
            name: a.app.clone(),
            pattern: a.pattern.clone(),
        },
        a.inputs.clone(),
        a.output.clone(),
    );
    cfg.maps = a.maps;
    cfg.reduces = a.reduces;
    cfg.force = a.force;
    cfg.memory_budget = a.memory_mb.saturating_mul(1 << 20);
    cfg
}

pub fn run(cmd: MrCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cmd {
        MrCommand::Run(a) => run_job(&rt, a),
        MrCommand::Coordinator(a) => coordinate(&rt, a),
        MrCommand::Worker(a) => work(&rt, a),
    }
}

fn summary(s: &Status, output: &Path) {
    eprintln!(
        "done: {} map and {} reduce tasks in {:.1} s; output in {}{}",
        s.maps.total,
        s.reduces.total,
        s.elapsed_ms as f64 / 1000.0,
        output.display(),
        if s.reexecutions + s.backups > 0 {
            format!(
                " ({} re-executions, {} backup tasks)",
                s.reexecutions, s.backups
            )
        } else {
            String::new()
        }
    );
}

/// Shows progress from the status feed: a bar on a terminal, log lines otherwise.
async fn show_progress(mut rx: watch::Receiver<Option<Status>>) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(1);
        b.set_style(
            indicatif::ProgressStyle::with_template("[{elapsed_precise}] {bar:40} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut last = None;
    while rx.changed().await.is_ok() {
        let Some(s) = rx.borrow_and_update().clone() else {
            continue;
        };
        let key = (s.maps.done, s.reduces.done, s.phase);
        if last == Some(key) {
            continue;
        }
        last = Some(key);
        let msg = format!(
            "{} · map {}/{} · reduce {}/{} · workers {}",
            s.phase,
            s.maps.done,
            s.maps.total,
            s.reduces.done,
            s.reduces.total,
            s.workers.iter().filter(|w| w.alive).count()
        );
        match &bar {
            Some(b) => {
                b.set_length((s.maps.total + s.reduces.total) as u64);
                b.set_position((s.maps.done + s.reduces.done) as u64);
                b.set_message(msg);
            }
            None => eprintln!("[{:.1}s] {msg}", s.elapsed_ms as f64 / 1000.0),
        }
        if s.finished() {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
}

fn serve_http(
    rt: &tokio::runtime::Runtime,
    addr: Option<SocketAddr>,
    rx: &watch::Receiver<Option<Status>>,
) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("cannot serve the status page on {addr}"))?;
        let addr = listener.local_addr().context("status page address")?;
        println!(
            "status page: http://{addr}/ (JSON at /status.json, Prometheus metrics at /metrics)"
        );
        rt.spawn(service::http::serve(listener, rx.clone()));
    }
    Ok(())
}

fn run_job(rt: &tokio::runtime::Runtime, a: RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = job_config(&a.job);
    let (plan, app) = plan(&cfg, &Registry::builtin())?;
    if a.sequential {
        let t = std::time::Instant::now();
        run_sequential(app.as_ref(), &plan)?;
        eprintln!(
            "done: {} map and {} reduce tasks sequentially in {:.1} s; output in {}",
            plan.spec.maps,
            plan.spec.reduces,
            t.elapsed().as_secs_f64(),
            plan.spec.output.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let workers = a
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let exe =
        std::env::current_exe().context("cannot find the synod executable to start workers")?;
    // Every local user can reach the loopback ports: unless --insecure, the coordinator and
    // the workers prove themselves with a certificate from a CA made for this run, kept in
    // a private temporary directory (mode 0700, keys 0600) removed when the job ends.
    let pki = match a.insecure {
        true => None,
        false => Some(run_pki()?),
    };
    let (tls, worker_flags) = match &pki {
        Some((_, files)) => (
            Some(PeerTls::load(files, DEFAULT_CLUSTER_TOKEN).context("loading the run's TLS")?),
            tls_args::server_flags(files)?,
        ),
        None => (None, Vec::new()),
    };
    let command = Box::new(move |coordinator: &str, work: &Path| {
        let mut c = tokio::process::Command::new(&exe);
        c.args([
            "mr",
            "worker",
            "--coordinator",
            coordinator,
            "--listen",
            "127.0.0.1:0",
            "--work-dir",
        ])
        .arg(work)
        .args(&worker_flags);
        if std::env::var_os("RUST_LOG").is_none() {
            c.env("RUST_LOG", "warn");
        }
        c
    });
    let output = plan.spec.output.clone();
    let (tx, rx) = watch::channel(None);
    serve_http(rt, a.http, &rx)?;
    let progress = rt.spawn(show_progress(rx));
    let result = rt.block_on(service::local::run(
        plan,
        workers,
        CoordinatorConfig::default(),
        command,
        tx,
        tls,
    ));
    let _ = rt.block_on(progress);
    drop(pki);
    let status = result?;
    summary(&status, &output);
    Ok(ExitCode::SUCCESS)
}

/// A CA made for one `synod mr run`, and one certificate from it (naming 127.0.0.1) that the
/// coordinator and every worker present, in a private temporary directory: holding it is
/// what makes a process one of the job's.
fn run_pki() -> anyhow::Result<(tempfile::TempDir, TlsFiles)> {
    let dir = tempfile::Builder::new()
        .prefix("synod-mr-tls-")
        .tempdir()
        .context("cannot create a directory for the job's certificates")?;
    let hosts = ["127.0.0.1".to_string()];
    let files = tls_args::issue_member(dir.path(), DEFAULT_CLUSTER_TOKEN, NodeId(0), &hosts)?;
    Ok((dir, files))
}

fn coordinate(rt: &tokio::runtime::Runtime, a: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    let (plan, _) = plan(&job_config(&a.job), &Registry::builtin())?;
    let tls = a.tls.load(DEFAULT_CLUSTER_TOKEN)?;
    if tls.is_none() {
        eprintln!(
            "insecure: any process that reaches {} can work on this job (give --tls-cert, \
             --tls-key and --tls-ca to admit only workers with a certificate from your CA)",
            a.listen
        );
    }
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(a.listen))
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let output = plan.spec.output.clone();
    let (tx, rx) = watch::channel(None);
    serve_http(rt, a.http, &rx)?;
    println!(
        "coordinator listening on {}",
        listener.local_addr().context("listen address")?
    );
    let progress = rt.spawn(show_progress(rx));
    let cfg = CoordinatorConfig {
        heartbeat_timeout: Duration::from_millis(a.heartbeat_timeout_ms.max(100)),
        ..CoordinatorConfig::default()
    };
    let result = rt.block_on(service::coordinator::serve(
        plan,
        listener.into(),
        cfg,
        tx,
        tls,
    ));
    let _ = rt.block_on(progress);
    let status = result?;
    summary(&status, &output);
    Ok(ExitCode::SUCCESS)
}

fn work(rt: &tokio::runtime::Runtime, a: WorkerArgs) -> anyhow::Result<ExitCode> {
    // Installed as the TLS of this process's clients too: the worker presents its
    // certificate to the coordinator and to the workers it fetches from.
    let tls = a.tls.peer_tls(DEFAULT_CLUSTER_TOKEN)?;
    // Without --work-dir, a temporary directory removed when the worker exits.
    let temp;
    let work_dir = match a.work_dir {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new()
                .prefix("synod-worker-")
                .tempdir()
                .context("cannot create a work directory")?;
            temp.path().to_path_buf()
        }
    };
    let opts = WorkerOptions {
        coordinator: a.coordinator,
        listen: a.listen,
        work_dir,
        cfg: WorkerConfig::default(),
        connect_timeout: Duration::from_secs(30),
        tls,
    };
    match rt.block_on(service::worker::run(opts, Registry::builtin()))? {
        None => Ok(ExitCode::SUCCESS),
        Some(error) => anyhow::bail!("the job failed: {error}"),
    }
}
