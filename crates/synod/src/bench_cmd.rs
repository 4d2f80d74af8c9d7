//! `synod bench`: closed-loop load against synod's Paxos KV and sharded KV (native clients
//! and Redis protocol), etcd and Redis, with one line per target and a comparison table at
//! the end.
//!
//! By default it starts what it measures, in temporary directories on loopback: a 3-replica
//! synod cluster, a sharded synod cluster as `synod up --sharded` starts it (3 controllers,
//! 2 joined groups of 3), a 3-member etcd cluster and one Redis (append-only file, fsync on
//! every write), so every target syncs each write to disk before answering. `--servers`,
//! `--resp`, `--ctl`, `--shardkv-resp`, `--etcd` and `--redis` measure running servers
//! instead. A tool that is not
//! installed is reported as skipped. Everything started is stopped at the end, also on an
//! error or Ctrl-C. The load loop and the clients are the `synod-bench` crate.

mod local;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use synod_bench::{
    parse_duration, split_line, table, EtcdConn, KvStore, Limit, Marker, RespConn, Row,
    ShardKvStore, Store, Summary, Workload,
};
use synod_client::shardkv::ShardKvClient;
use synod_client::KvClient;

use crate::up_cmd::layout::Layout;
use local::{Local, SecureClient};

#[derive(Args)]
pub struct BenchArgs {
    /// What to measure, comma-separated, in this order; the first is the baseline of the
    /// ratios. `all` is synod-kv,synod-kv-resp,etcd,redis (those not installed are skipped);
    /// synod-shardkv and synod-shardkv-resp measure the sharded KV; synod-kv-resp-tls is
    /// synod-kv-resp on a cluster secured as `synod up` secures it (mutual TLS between
    /// replicas, clients over TLS with AUTH).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    targets: Vec<TargetArg>,
    /// Concurrent clients, each with one operation outstanding at a time.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to measure each run (a number and a unit: 500ms, 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Measure this many operations per run instead of a duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Measure each target this many times; the table shows the medians.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
    /// How long to run the load unmeasured first, per run.
    #[arg(long, default_value = "1s", value_parser = duration)]
    warmup: Duration,
    /// Bytes per key.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Number of distinct keys, picked uniformly (all are written once before a run with
    /// gets, so gets find values).
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Fill the store with this many distinct keys (of --value-size bytes each) before
    /// measuring, and pick the measured operations' keys among them (instead of --keys), so
    /// throughput and latency are measured at a state of N * --value-size bytes.
    #[arg(long, conflicts_with = "keys")]
    preload: Option<u64>,
    /// Fraction of operations that are gets, 0 to 1 (the rest are puts); several,
    /// comma-separated, measure every target at each (`0,1`: puts only, then gets only).
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    read_ratio: Vec<f64>,
    /// Use a running synod cluster for synod-kv: its replicas' peer addresses.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Use a running synod cluster for synod-kv-resp: its RESP addresses.
    #[arg(long, value_delimiter = ',')]
    resp: Vec<String>,
    /// Use a running sharded cluster for synod-shardkv: its shard controllers' addresses.
    #[arg(long, value_delimiter = ',')]
    ctl: Vec<String>,
    /// Use a running sharded cluster for synod-shardkv-resp: its servers' RESP addresses.
    #[arg(long, value_delimiter = ',')]
    shardkv_resp: Vec<String>,
    /// For the synod RESP targets: spread the clients' connections over the first N RESP
    /// fronts only, of a cluster started here or of those given (1: every connection on the
    /// front `synod up` prints, the one a user points redis-cli at). Default: every front.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    resp_fronts: Option<u16>,
    /// Use a running Redis (HOST:PORT) instead of starting one.
    #[arg(long)]
    redis: Option<String>,
    /// Use a running etcd cluster: its client URLs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// For synod-kv: also report the latencies of the operations during which some replica
    /// was writing a snapshot, apart from the others (every replica's status is polled every
    /// 50 ms).
    #[arg(long)]
    split_by_snapshot: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum TargetArg {
    SynodKv,
    SynodKvResp,
    SynodKvRespTls,
    SynodShardkv,
    SynodShardkvResp,
    Etcd,
    Redis,
    All,
}

/// The servers behind targets: synod-kv and synod-kv-resp share one synod cluster,
/// synod-shardkv and synod-shardkv-resp one sharded cluster.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Synod,
    SynodSecured,
    SynodSharded,
    Etcd,
    Redis,
}

impl TargetArg {
    /// Whether the target's clients are RESP connections to synod's fronts.
    fn speaks_resp_to_synod(self) -> bool {
        matches!(
            self,
            TargetArg::SynodKvResp | TargetArg::SynodKvRespTls | TargetArg::SynodShardkvResp
        )
    }

    fn name(self) -> &'static str {
        match self {
            TargetArg::SynodKv => "synod-kv",
            TargetArg::SynodKvResp => "synod-kv-resp",
            TargetArg::SynodKvRespTls => "synod-kv-resp-tls",
            TargetArg::SynodShardkv => "synod-shardkv",
            TargetArg::SynodShardkvResp => "synod-shardkv-resp",
            TargetArg::Etcd => "etcd",
            TargetArg::Redis => "redis",
            TargetArg::All => "all",
        }
    }

    fn service(self) -> Service {
        match self {
            TargetArg::Etcd => Service::Etcd,
            TargetArg::Redis => Service::Redis,
            TargetArg::SynodShardkv | TargetArg::SynodShardkvResp => Service::SynodSharded,
            TargetArg::SynodKvRespTls => Service::SynodSecured,
            _ => Service::Synod,
        }
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let workloads: Vec<Workload> = args
        .read_ratio
        .iter()
        .map(|&read_ratio| Workload {
            clients: args.clients,
            key_size: args.key_size,
            value_size: args.value_size,
            keys: args.preload.unwrap_or(args.keys),
            preload: args.preload.is_some(),
            read_ratio,
            limit: args.ops.map_or(Limit::Duration(args.duration), Limit::Ops),
            warmup: args.warmup,
        })
        .collect();
    for workload in &workloads {
        workload.validate()?;
    }
    let targets = expand(&args.targets);
    // The synod servers it starts would otherwise log every connection into the report.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    let exe = std::env::current_exe().context("finding the synod executable")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut running = Running::default();
        let shutdown = synod_net::shutdown_signal();
        let outcome = tokio::select! {
            () = shutdown => None,
            done = bench(&args, &workloads, &targets, &exe, &mut running) => Some(done),
        };
        running.stop_all().await;
        match outcome {
            None => {
                eprintln!("synod bench: interrupted; every server it started is stopped");
                Ok(ExitCode::from(130))
            }
            Some((rows, failed)) => {
                println!();
                print!("{}", table(&rows));
                Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
        }
    })
}

/// The targets in order, `all` expanded, each once.
fn expand(args: &[TargetArg]) -> Vec<TargetArg> {
    let every = [
        TargetArg::SynodKv,
        TargetArg::SynodKvResp,
        TargetArg::Etcd,
        TargetArg::Redis,
    ];
    let mut targets = Vec::new();
    for &arg in args {
        let items: &[TargetArg] = if arg == TargetArg::All {
            &every
        } else {
            &[arg]
        };
        for &t in items {
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
    }
    targets
}

/// The services started so far, kept outside the benchmark's future so that they are
/// stopped gracefully even when Ctrl-C cuts the benchmark short.
#[derive(Default)]
struct Running(Vec<(Service, Local)>);

impl Running {
    fn get(&mut self, service: Service) -> Option<&mut Local> {
        self.0
            .iter_mut()
            .find(|(s, _)| *s == service)
            .map(|(_, l)| l)
    }

    async fn stop(&mut self, service: Service) {
        if let Some(i) = self.0.iter().position(|(s, _)| *s == service) {
            self.0.remove(i).1.stop().await;
        }
    }

    async fn stop_all(&mut self) {
        for (_, local) in self.0.drain(..) {
            local.stop().await;
        }
    }
}

/// Runs every target in order, each at every read ratio in turn on the same servers;
/// returns the table's rows and whether one failed.
async fn bench(
    args: &BenchArgs,
    workloads: &[Workload],
    targets: &[TargetArg],
    exe: &Path,
    running: &mut Running,
) -> (Vec<Row>, bool) {
    let Some(workload) = workloads.first() else {
        return (Vec::new(), false);
    };
    let limit = match workload.limit {
        Limit::Duration(d) => format!("{d:?} measured"),
        Limit::Ops(n) => format!("{n} operations measured"),
    };
    let runs = match args.runs {
        1 => "one run per target".to_string(),
        n => format!("median of {n} runs per target"),
    };
    let ratios: Vec<String> = workloads.iter().map(|w| w.read_ratio.to_string()).collect();
    println!(
        "synod bench: {} clients, {}-byte keys, {}-byte values, {} keys, read ratio {}, {limit} after {:?} of warm-up, {}",
        workload.clients, workload.key_size, workload.value_size, workload.keys, ratios.join(","), workload.warmup, runs
    );
    let mut rows = Vec::new();
    let mut failed = false;
    for (i, &target) in targets.iter().enumerate() {
        for workload in workloads {
            let (outcome, setup) = match measure(args, workload, target, exe, running).await {
                Ok((summary, setup)) => (Ok(summary), setup),
                Err(Skip::NotInstalled(tool)) => (
                    Err("skipped (not installed)".to_string()),
                    format!("`{tool}` not found on PATH"),
                ),
                Err(Skip::Failed(e)) => {
                    failed = true;
                    (Err(format!("failed: {e:#}")), String::new())
                }
            };
            let name = match workloads.len() {
                1 => target.name().to_string(),
                _ => format!("{} (read ratio {})", target.name(), workload.read_ratio),
            };
            match &outcome {
                Ok(summary) => println!("{name}: {}", summary.line()),
                Err(why) => println!("{name}: {why}"),
            }
            rows.push(Row {
                target: target.name().into(),
                read_ratio: workload.read_ratio,
                outcome,
                setup,
            });
        }
        let later = &targets[i + 1..];
        if !later.iter().any(|t| t.service() == target.service()) {
            running.stop(target.service()).await;
        }
    }
    (rows, failed)
}

/// Why a target has no figures.
enum Skip {
    NotInstalled(&'static str),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Skip {
    fn from(e: anyhow::Error) -> Self {
        Skip::Failed(e)
    }
}

/// The first `--resp-fronts` of `addrs` for a target whose clients are RESP connections to
/// synod's fronts; `addrs` otherwise.
fn first_fronts(args: &BenchArgs, target: TargetArg, addrs: Vec<String>) -> Vec<String> {
    match args.resp_fronts.filter(|_| target.speaks_resp_to_synod()) {
        Some(n) => addrs.into_iter().take(n.into()).collect(),
        None => addrs,
    }
}

/// Starts (or finds) the target's servers and runs the workload on them `--runs` times;
/// returns the medians and how the target was set up.
async fn measure(
    args: &BenchArgs,
    workload: &Workload,
    target: TargetArg,
    exe: &Path,
    running: &mut Running,
) -> Result<(Summary, String), Skip> {
    let service = target.service();
    let external = match target {
        TargetArg::SynodKv => args.servers.clone(),
        TargetArg::SynodKvResp => args.resp.clone(),
        // A running cluster's CA and password are not known here: always a fresh one.
        TargetArg::SynodKvRespTls => Vec::new(),
        TargetArg::SynodShardkv => args.ctl.clone(),
        TargetArg::SynodShardkvResp => args.shardkv_resp.clone(),
        TargetArg::Etcd => args.etcd.clone(),
        _ => args.redis.iter().cloned().collect(),
    };
    let (addrs, setup) = if external.is_empty() {
        if running.get(service).is_none() {
            let local = match service {
                Service::Synod => local::synod(exe, Layout::Kv { replicas: 3 }).await,
                Service::SynodSecured => local::synod_secured(exe).await,
                Service::SynodSharded => local::synod(exe, Layout::Sharded).await,
                Service::Etcd => local::etcd(&program("etcd")?).await,
                Service::Redis => local::redis(&program("redis-server")?).await,
            };
            let local = local.with_context(|| format!("starting {}", target.name()))?;
            running.0.push((service, local));
        }
        let local = running.get(service).expect("started above");
        let children = &local.plan.children;
        let addrs: Vec<String> = match target {
            TargetArg::SynodShardkv => local
                .plan
                .sharded
                .iter()
                .flat_map(|s| &s.controllers)
                .map(|a| a.to_string())
                .collect(),
            _ if target.speaks_resp_to_synod() => local
                .plan
                .resp_addrs()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            _ => children.iter().map(|c| c.peer.to_string()).collect(),
        };
        let setup = match service {
            Service::Synod if target == TargetArg::SynodKv => "3 replicas, fsync on, native client",
            Service::Synod => "3 replicas, fsync on, Redis protocol",
            Service::SynodSecured => {
                "3 replicas, fsync on, mutual TLS between them, Redis protocol over TLS with AUTH"
            }
            Service::SynodSharded if target == TargetArg::SynodShardkv => {
                "3 controllers, 2 groups of 3, fsync on, native client"
            }
            Service::SynodSharded => "3 controllers, 2 groups of 3, fsync on, Redis protocol",
            Service::Etcd => "3 members, fsync on, gRPC",
            Service::Redis => "1 server, appendfsync always",
        };
        let addrs = first_fronts(args, target, addrs);
        let setup = match args.resp_fronts.filter(|_| target.speaks_resp_to_synod()) {
            None => setup.to_string(),
            Some(_) if addrs.len() == 1 => format!("{setup}, 1 front"),
            Some(_) => format!("{setup}, {} fronts", addrs.len()),
        };
        (addrs, setup)
    } else {
        let external = first_fronts(args, target, external);
        let setup = format!("running at {}", external.join(","));
        (external, setup)
    };
    let split = args.split_by_snapshot && target == TargetArg::SynodKv;
    let secure = running
        .get(service)
        .and_then(|local| local.secure_client.clone());
    let mut runs = Vec::with_capacity(args.runs.into());
    for run in 1..=args.runs {
        let measured = once(workload, target, &addrs, secure.as_ref(), split).await;
        if let Some(death) = running.get(service).and_then(Local::death) {
            return Err(Skip::Failed(anyhow::anyhow!("{death} during the run")));
        }
        let summary = measured?;
        if args.runs > 1 {
            println!(
                "{} run {run}/{}: {}",
                target.name(),
                args.runs,
                summary.line()
            );
        }
        runs.push(summary);
    }
    Ok((Summary::median(&runs), setup))
}

/// One measured run of `workload` on `target`'s servers at `addrs` (a secured cluster's
/// with `secure`; with the latencies during snapshots reported apart when
/// `split_by_snapshot`: synod-kv only).
async fn once(
    workload: &Workload,
    target: TargetArg,
    addrs: &[String],
    secure: Option<&SecureClient>,
    split_by_snapshot: bool,
) -> anyhow::Result<Summary> {
    let clients = workload.clients;
    match target {
        TargetArg::SynodKv if split_by_snapshot => {
            let kv = Arc::new(KvClient::connect(addrs.to_vec()).context("connecting to synod")?);
            let marker = Marker::default();
            let watcher = tokio::spawn(watch_snapshots(addrs.to_vec(), marker.clone()));
            let measured =
                synod_bench::run_marked(workload, vec![KvStore(kv); clients], Some(marker)).await;
            watcher.abort();
            let measurement = measured?;
            println!("synod-kv: {}", split_line(&measurement, "during snapshots"));
            Ok(Summary::of(&measurement))
        }
        TargetArg::SynodKv => {
            let kv = Arc::new(KvClient::connect(addrs.to_vec()).context("connecting to synod")?);
            run_load(workload, vec![KvStore(kv); clients]).await
        }
        TargetArg::SynodShardkv => {
            let kv = ShardKvClient::connect(addrs.to_vec()).context("connecting to synod")?;
            run_load(workload, vec![ShardKvStore(Arc::new(kv)); clients]).await
        }
        TargetArg::Etcd => {
            let mut conns = Vec::with_capacity(clients);
            for i in 0..clients {
                let addr = &addrs[i % addrs.len()];
                conns.push(EtcdConn::connect(addr).await?);
            }
            run_load(workload, conns).await
        }
        _ => {
            let mut conns = Vec::with_capacity(clients);
            for i in 0..clients {
                let addr = &addrs[i % addrs.len()];
                conns.push(match secure {
                    Some(s) => RespConn::connect_tls(addr, &s.tls, &s.password).await?,
                    None => RespConn::connect(addr).await?,
                });
            }
            run_load(workload, conns).await
        }
    }
}

/// Keeps `marker` set while some replica at `replicas` is writing a snapshot, as far as
/// polling their status every 50 ms tells (an unreachable replica counts as not writing).
async fn watch_snapshots(replicas: Vec<String>, marker: Marker) {
    const POLL: Duration = Duration::from_millis(50);
    loop {
        let mut writing = false;
        for addr in &replicas {
            if let Ok(report) = crate::status_cmd::ask(addr, Duration::from_secs(1), None).await {
                writing |= report.snapshots.writing_for_ms.is_some();
            }
        }
        marker.store(writing, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(POLL).await;
    }
}

async fn run_load<S: Store>(workload: &Workload, stores: Vec<S>) -> anyhow::Result<Summary> {
    let measurement = synod_bench::run(workload, stores).await?;
    Ok(Summary::of(&measurement))
}

/// The installed program `name`, or the reason to skip its target.
fn program(name: &'static str) -> Result<PathBuf, Skip> {
    local::installed(name).ok_or(Skip::NotInstalled(name))
}
