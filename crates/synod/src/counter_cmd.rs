//! `synod counter`: the example service over TCP — a durable, at-most-once counter.
//!
//! It exists to show the foundation end to end: the same `CounterServer` core that the
//! simulator tests drive runs here under the TCP driver with a file-backed storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use synod_counter::{CounterMsg, CounterServer};
use synod_net::{run_node, shutdown_signal, Client, NodeConfig};
use synod_node::NodeId;
use synod_storage::FileStorage;
use tokio::net::TcpListener;

use crate::data_dir;

#[derive(Subcommand)]
pub enum CounterCommand {
    /// Serve a counter, keeping its durable state in DIR.
    Serve {
        /// Address to listen on (port 0 picks a free port; the real one is printed).
        #[arg(long, env = "SYNOD_LISTEN")]
        listen: SocketAddr,
        /// Directory for the counter's durable state; created if missing and locked while
        /// the server runs.
        #[arg(long, env = "SYNOD_DATA")]
        data: PathBuf,
    },
    /// Add AMOUNT to the counter and print the new value. Retries until the server answers
    /// or the timeout passes; a retried add is applied at most once.
    Add {
        #[command(flatten)]
        target: Target,
        #[arg(allow_negative_numbers = true)]
        amount: i64,
    },
    /// Print the counter's value.
    Get {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
pub struct Target {
    /// The counter server's address.
    #[arg(long)]
    server: String,
    /// Give up after this many seconds without an answer.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

pub fn run(cmd: CounterCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cmd {
            CounterCommand::Serve { listen, data } => serve(listen, data).await,
            CounterCommand::Add { target, amount } => {
                // A fresh client id per invocation: its retries share one sequence number.
                let client = rand::random::<u64>();
                let value = request(
                    &target,
                    CounterMsg::Add {
                        client,
                        seq: 1,
                        amount,
                    },
                )
                .await?;
                println!("{value}");
                Ok(ExitCode::SUCCESS)
            }
            CounterCommand::Get { target } => {
                let value = request(&target, CounterMsg::Get { seq: 1 }).await?;
                println!("{value}");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn serve(listen: SocketAddr, data: PathBuf) -> anyhow::Result<ExitCode> {
    let _lock = data_dir::lock(&data)?;
    let storage = FileStorage::open(&data)
        .with_context(|| format!("opening counter state in {}", data.display()))?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let bound = listener.local_addr()?;
    let shutdown = shutdown_signal();
    println!("counter listening on {bound}");
    tracing::info!(%bound, data = %data.display(), "counter serving");
    run_node(
        CounterServer::new(),
        NodeConfig::new(NodeId(0), listener),
        Box::new(storage),
        shutdown,
    )
    .await?;
    tracing::info!("counter stopped");
    Ok(ExitCode::SUCCESS)
}

/// Sends `msg` until a matching answer arrives, reconnecting after failures, within the
/// target's timeout.
async fn request(target: &Target, msg: CounterMsg) -> anyhow::Result<i64> {
    if !(target.timeout.is_finite() && target.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let limit = Duration::from_secs_f64(target.timeout);
    let deadline = Instant::now() + limit;
    let seq = match msg {
        CounterMsg::Add { seq, .. } | CounterMsg::Get { seq } | CounterMsg::Value { seq, .. } => {
            seq
        }
    };
    let mut last_error = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        // Short attempts, so a server that comes back is found again before the deadline.
        let attempt = left.min(Duration::from_secs(1));
        match call(&target.server, &msg, attempt).await {
            Ok(CounterMsg::Value { seq: got, value }) if got == seq => return Ok(value),
            Ok(other) => last_error = Some(anyhow::anyhow!("unexpected answer {other:?}")),
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50).min(left)).await;
    }
    let why = last_error.map_or_else(String::new, |e| format!(": {e:#}"));
    bail!(
        "no answer from counter at {} within {limit:?}{why}",
        target.server
    )
}

async fn call(server: &str, msg: &CounterMsg, limit: Duration) -> anyhow::Result<CounterMsg> {
    let mut client = Client::connect(server, limit).await?;
    Ok(client.call(msg, limit).await?)
}
