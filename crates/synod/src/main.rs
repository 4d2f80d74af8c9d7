//! The `synod` binary: one command line for every synod service.
//!
//! Each subcommand lives in its own `*_cmd` module with a clap definition and a `run`
//! function; this file only parses, sets up logging and reports errors.

mod bench_cmd;
mod check_cmd;
mod counter_cmd;
mod credential_args;
mod data_dir;
mod explore_cmd;
mod identity;
mod kv_cmd;
mod limit_args;
mod member_cmd;
mod mr_cmd;
mod observe;
mod pb_cmd;
mod replica_start;
mod resp_front;
mod resp_security_args;
mod shardctl_cmd;
mod shardkv_cmd;
mod sim_cmd;
mod status_cmd;
mod tls_args;
mod up_cmd;
mod view_cmd;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "synod",
    version,
    about = "Fault-tolerant distributed systems: MapReduce, primary/backup, Paxos and sharded KV"
)]
struct Cli {
    /// Log line format (logs go to stderr; RUST_LOG sets the level, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SYNOD_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The flag's value, for passing the choice on to child processes.
    fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start a whole cluster on this machine (a 3-replica Paxos KV, or --pb) and supervise it.
    Up(up_cmd::UpArgs),
    /// Check a recorded history for linearizability.
    Check(check_cmd::CheckArgs),
    /// Run a course scenario on the deterministic simulator and write the protocol viewer, a
    /// self-contained page to step through (`synod sim --list` lists the scenarios).
    Sim(sim_cmd::SimArgs),
    /// Model-check a protocol's real cores: every interleaving of messages and faults up to
    /// a bound.
    Explore(explore_cmd::ExploreArgs),
    /// The example service: a durable counter with at-most-once increments.
    #[command(subcommand)]
    Counter(counter_cmd::CounterCommand),
    /// MapReduce: run jobs locally, or a coordinator and workers over TCP.
    #[command(subcommand)]
    Mr(mr_cmd::MrCommand),
    /// The Paxos-replicated key/value store: replicas, a client, a Redis-protocol front.
    #[command(subcommand)]
    Kv(kv_cmd::KvCommand),
    /// The view service: decides which primary/backup server is primary and which is backup.
    #[command(subcommand)]
    View(view_cmd::ViewCommand),
    /// The primary/backup key/value store: servers, a client, a Redis-protocol front.
    #[command(subcommand)]
    Pb(pb_cmd::PbCommand),
    /// Ask every replica of a replicated service (kv, shardctl, shardkv) for its status.
    Status(status_cmd::StatusArgs),
    /// Measure throughput and latency of synod's KV against etcd and Redis, closed loop.
    Bench(bench_cmd::BenchArgs),
    /// The shard controller: replicas, and join/leave/move/query for operators.
    #[command(subcommand)]
    Shardctl(shardctl_cmd::ShardctlCommand),
    /// The sharded key/value store: group replicas, a client, a Redis-protocol front.
    #[command(subcommand)]
    Shardkv(shardkv_cmd::ShardkvCommand),
    /// Issue a cluster's TLS certificates (a CA, and one per member) for replicas on
    /// several hosts; `synod up` makes its own.
    #[command(subcommand)]
    Certs(tls_args::CertsCommand),
}

/// Logs at `default` level unless `RUST_LOG` says otherwise.
fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Prints an error with its chain of causes, the way every subcommand reports failure.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The model checker and the simulator run the cores many times over: their routine logs
    // would drown the report, so these show only errors unless asked.
    let default_level = match cli.command {
        Command::Explore(_) | Command::Sim(_) => "error",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    match cli.command {
        Command::Up(args) => report(up_cmd::run(args, cli.log_format.name())),
        Command::Check(args) => check_cmd::run(args),
        Command::Sim(args) => report(sim_cmd::run(args)),
        Command::Explore(args) => explore_cmd::run(args),
        Command::Counter(cmd) => report(counter_cmd::run(cmd)),
        Command::Mr(cmd) => report(mr_cmd::run(cmd)),
        Command::Kv(cmd) => report(kv_cmd::run(cmd)),
        Command::View(cmd) => report(view_cmd::run(cmd)),
        Command::Pb(cmd) => report(pb_cmd::run(cmd)),
        Command::Status(args) => report(status_cmd::run(args)),
        Command::Bench(args) => report(bench_cmd::run(args)),
        Command::Shardctl(cmd) => report(shardctl_cmd::run(cmd)),
        Command::Shardkv(cmd) => report(shardkv_cmd::run(cmd)),
        Command::Certs(cmd) => report(tls_args::run(cmd)),
    }
}
