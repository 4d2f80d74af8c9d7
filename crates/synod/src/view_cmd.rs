//! `synod view`: the view service over TCP, and a look at its current view.
//!
//! The view service is always node `n0`: every KV server is configured with its address and
//! sends its pings there, and the service answers on a link to the address each ping
//! announces. It keeps nothing on disk (see `docs/pbservice.md`: it is the single point of
//! failure of the primary/backup service by design).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use synod_net::{run_node, shutdown_signal, Client, NodeConfig};
use synod_node::NodeId;
use synod_storage::MemStorage;
use synod_viewservice::{Msg, ViewMsg, ViewReply, ViewServer};
use tokio::net::TcpListener;

use crate::observe::{self, MetricsArgs};

/// The view service's node id in every primary/backup cluster.
pub const VIEW_SERVICE_ID: NodeId = NodeId(0);

/// The view service answers the messages of any service built on it the same way; it is run
/// with no service messages of its own (`Msg::View` encodes the same for every `S`).
type ViewWire = Msg<()>;

#[derive(Subcommand)]
pub enum ViewCommand {
    /// Serve the view service.
    Serve {
        /// Address to listen on (port 0 picks a free port; the real one is printed).
        #[arg(long, env = "SYNOD_LISTEN")]
        listen: SocketAddr,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// Print the current view: its number, whether the primary acknowledged it, and the
    /// primary and backup with their addresses.
    Get {
        /// The view service's address.
        #[arg(long, env = "SYNOD_VIEW")]
        view: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
}

pub fn run(cmd: ViewCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cmd {
            ViewCommand::Serve { listen, metrics } => serve(listen, metrics).await,
            ViewCommand::Get { view, timeout } => {
                if !(timeout.is_finite() && timeout > 0.0) {
                    bail!("--timeout must be a positive number of seconds");
                }
                let reply = get(&view, Duration::from_secs_f64(timeout))
                    .await
                    .with_context(|| format!("asking the view service at {view}"))?;
                print_view(&reply);
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Resolves `HOST:PORT` to one socket address (the TCP driver routes to addresses, not names).
pub async fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))
}

async fn serve(listen: SocketAddr, metrics: MetricsArgs) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let bound = listener.local_addr()?;
    let metrics_port = metrics.bind().await?;
    let shutdown = shutdown_signal();
    println!("view service listening on {bound}");
    tracing::info!(%bound, "view service serving");
    let observer = metrics_port.map(|port| tokio::spawn(observe::serve_metrics_port(port)));
    let served = run_node(
        ViewServer::<()>::new(),
        NodeConfig::new(VIEW_SERVICE_ID, listener),
        Box::new(MemStorage::default()),
        shutdown,
    )
    .await;
    if let Some(observer) = observer {
        observer.abort();
    }
    served?;
    tracing::info!("view service stopped");
    Ok(ExitCode::SUCCESS)
}

async fn get(view: &str, limit: Duration) -> anyhow::Result<ViewReply> {
    let mut client = Client::<ViewWire>::connect(view, limit).await?;
    match client.call(&Msg::View(ViewMsg::Get), limit).await? {
        Msg::View(ViewMsg::Reply(reply)) => Ok(reply),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// One line per fact, easy to read and to parse:
/// `view 3 acknowledged` / `primary n1 127.0.0.1:7001` / `backup none`.
fn print_view(reply: &ViewReply) {
    let state = if reply.acked {
        "acknowledged"
    } else {
        "unacknowledged"
    };
    println!("view {} {state}", reply.view.num);
    let member = |role: &str, id: Option<NodeId>, addr: &str| match id {
        Some(id) => println!("{role} {id} {addr}"),
        None => println!("{role} none"),
    };
    member("primary", reply.view.primary, &reply.primary_addr);
    member("backup", reply.view.backup, &reply.backup_addr);
}
