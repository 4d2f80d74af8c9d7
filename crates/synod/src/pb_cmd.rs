//! `synod pb`: the primary/backup key/value service over TCP — a server (optionally with a
//! Redis-protocol front) and one-shot get/put/append commands.
//!
//! The server runs the same `PbServer` core the simulator tests drive. The view service is
//! always node `n0` (see `view_cmd`); a KV server's id comes from `--id`, which the operator
//! chooses unique per cluster (see `docs/pbservice.md`). The client side is
//! `synod_client::PbClient`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use synod_client::PbClient;
use synod_net::{run_node, NodeConfig};
use synod_node::NodeId;
use synod_pbservice::{Op, PbServer, Reply};
use synod_storage::MemStorage;
use tokio::net::TcpListener;

use crate::limit_args::LimitArgs;
use crate::observe::{self, MetricsArgs};
use crate::resp_front::{self, Front, Stop};
use crate::view_cmd::{resolve, VIEW_SERVICE_ID};

#[derive(Subcommand)]
pub enum PbCommand {
    /// Serve as one primary/backup KV server (state in memory; a restarted server is empty).
    Serve(ServeArgs),
    /// Print the value of KEY (empty if it has none).
    Get {
        #[command(flatten)]
        target: ClientArgs,
        key: String,
    },
    /// Set KEY to VALUE. A retried put is applied at most once.
    Put {
        #[command(flatten)]
        target: ClientArgs,
        key: String,
        value: String,
    },
    /// Append VALUE to KEY's value. A retried append is applied at most once.
    Append {
        #[command(flatten)]
        target: ClientArgs,
        key: String,
        value: String,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on, for clients and the other servers (port 0 picks a free port;
    /// the real one is printed).
    #[arg(long, env = "SYNOD_LISTEN")]
    listen: SocketAddr,
    /// The view service's address.
    #[arg(long, env = "SYNOD_VIEW")]
    view: String,
    /// This server's id, unique in the cluster: 1 to 4294967295 (0 is the view service).
    #[arg(long, env = "SYNOD_ID")]
    id: u64,
    /// The address announced to clients and servers (default: the bound listen address;
    /// needed when listening on 0.0.0.0).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// Also accept the Redis protocol here (GET, SET, APPEND, PING), as a client of the service.
    #[arg(long, env = "SYNOD_RESP")]
    resp: Option<SocketAddr>,
    /// Seconds a RESP command may wait for the service before answering an error.
    #[arg(long, default_value_t = 5.0)]
    resp_timeout: f64,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
}

#[derive(Args)]
pub struct ClientArgs {
    /// The view service's address.
    #[arg(long, env = "SYNOD_VIEW")]
    view: String,
    /// Give up after this many seconds without an answer from a primary.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

pub fn run(cmd: PbCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let (target, what, op) = match cmd {
            PbCommand::Serve(args) => return serve(args).await,
            PbCommand::Get { target, key } => {
                (target, format!("get {key}"), Op::Get { key: key.into() })
            }
            PbCommand::Put { target, key, value } => {
                let what = format!("put {key}");
                (
                    target,
                    what,
                    Op::Put {
                        key: key.into(),
                        value: value.into(),
                    },
                )
            }
            PbCommand::Append { target, key, value } => {
                let what = format!("append {key}");
                (
                    target,
                    what,
                    Op::Append {
                        key: key.into(),
                        value: value.into(),
                    },
                )
            }
        };
        let is_get = matches!(op, Op::Get { .. });
        let limit = seconds("--timeout", target.timeout)?;
        let value = PbClient::connect(target.view.clone())?
            .with_timeout(limit)
            .call(op)
            .await
            .with_context(|| format!("{what} via the view service at {}", target.view))?;
        if let (true, Reply::Bulk(value)) = (is_get, value) {
            crate::kv_cmd::print_value(&value.unwrap_or_default())?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A positive, finite number of seconds given on the command line.
fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{flag} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.id == VIEW_SERVICE_ID.0 || NodeId(args.id).is_client() {
        bail!("--id must be between 1 and {}", NodeId::FIRST_CLIENT - 1);
    }
    let resp_timeout = seconds("--resp-timeout", args.resp_timeout)?;
    let view = resolve(&args.view).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let bound = listener.local_addr()?;
    let advertised = args.advertise.unwrap_or(bound);
    let resp_limits = args.limits.resp()?;
    let front = match args.resp {
        Some(addr) => Some(
            Front::bind(addr, resp_limits, || {
                Ok(PbClient::connect(args.view.clone())?.with_timeout(resp_timeout))
            })
            .await?,
        ),
        None => None,
    };
    let metrics_port = args.metrics.bind().await?;

    // One stop signal, installed before the readiness line, stops both servers.
    let stop = Stop::on_signal();
    match front.as_ref().map(Front::addr) {
        Some(resp) => println!("pb listening on {advertised} resp {resp}"),
        None => println!("pb listening on {advertised}"),
    }
    tracing::info!(id = args.id, %advertised, view = %args.view, "pb server serving");

    let mut config = NodeConfig::new(NodeId(args.id), listener);
    let limits = args.limits.limits()?;
    config.net.max_frame = limits.max_frame();
    config.peers.insert(VIEW_SERVICE_ID, view);
    let node = PbServer::new(VIEW_SERVICE_ID, advertised.to_string()).with_limits(limits);
    let observer = metrics_port.map(|port| tokio::spawn(observe::serve_metrics_port(port)));
    let kv = run_node(node, config, Box::new(MemStorage::default()), stop.wait());
    let kv = stop.ending_all(kv);
    let front = resp_front::serve(front, stop.clone());
    let (served, ()) = tokio::join!(kv, front);
    if let Some(observer) = observer {
        observer.abort();
    }
    served?;
    tracing::info!("pb server stopped");
    Ok(ExitCode::SUCCESS)
}
