//! A server's observability port (`--metrics ADDR`): Prometheus metrics at `/metrics`, and,
//! on a Paxos replica, `/status.json` (its status report and request totals) for the
//! dashboard of `synod up`.
//!
//! The replica's status is read the way `synod status` reads it, by asking the replica
//! ([`POLL_EVERY`]), so the protocol core knows nothing of metrics: this poller turns each
//! report into gauges, and counts leader changes and snapshots between two reports.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use synod_client::shardkv::CtlClient;
use synod_metrics::http::{self, Response};
use synod_metrics::{Metrics, ShardLabel};
use synod_net::Client;
use synod_rsm::{StatusMsg, StatusReport};
use synod_shardctl::{Config, CtlOp, CtlReply};
use tokio::net::TcpListener;

/// How often a replica's status is read into its gauges.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// Where a server serves its metrics.
#[derive(Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (and, on a replica, its status as JSON
    /// at /status.json). [default: none]
    #[arg(long = "metrics", env = "SYNOD_METRICS")]
    pub addr: Option<SocketAddr>,
}

impl MetricsArgs {
    /// Binds the port, if one was asked for: before the server's readiness line, so a port in
    /// use is an error at start.
    pub async fn bind(&self) -> anyhow::Result<Option<TcpListener>> {
        let Some(addr) = self.addr else {
            return Ok(None);
        };
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
        Ok(Some(listener))
    }
}

/// What `/status.json` holds: the last status report (none before the first answer) and the
/// totals of the client commands this process served.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    pub report: Option<StatusReport>,
    pub requests: u64,
    pub request_errors: u64,
    pub request_micros: u64,
}

/// Serves the metrics of a process without a status report to poll (the view service and the
/// primary/backup servers: their links, connections and RESP commands), until dropped.
pub async fn serve_metrics_port(listener: TcpListener) {
    http::serve(listener, |path| match path {
        "/metrics" => Response::metrics(),
        _ => Response::not_found(),
    })
    .await;
}

/// Serves a replica's port, polling the replica at `replica` for its status, until dropped.
pub async fn serve_replica_port(listener: TcpListener, replica: SocketAddr) {
    let last: Arc<Mutex<Option<StatusReport>>> = Arc::default();
    let port = {
        let last = last.clone();
        http::serve(listener, move |path| match path {
            "/metrics" => Response::metrics(),
            "/status.json" => {
                let totals = &synod_metrics::global().request_totals;
                let load =
                    |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                let status = ReplicaStatus {
                    report: last.lock().map(|r| r.clone()).unwrap_or_default(),
                    requests: load(&totals.count),
                    request_errors: load(&totals.errors),
                    request_micros: load(&totals.micros),
                };
                let body = serde_json::to_vec(&status).unwrap_or_default();
                Response::ok("application/json", body)
            }
            _ => Response::not_found(),
        })
    };
    tokio::join!(port, poll(replica, last));
}

/// Asks the replica for its status every [`POLL_EVERY`] and records each answer.
async fn poll(replica: SocketAddr, last: Arc<Mutex<Option<StatusReport>>>) {
    let addr = replica.to_string();
    let mut client: Option<Client<StatusMsg>> = None;
    let mut interval = tokio::time::interval(POLL_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if client.is_none() {
            client = Client::connect(&addr, POLL_EVERY).await.ok();
        }
        let Some(c) = client.as_mut() else { continue };
        match c.call(&StatusMsg::Query, POLL_EVERY * 2).await {
            Ok(StatusMsg::Report(report)) => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                record(synod_metrics::global(), last.as_ref(), &report);
                *last = Some(report);
            }
            // A query back is no answer; a failed call gets a fresh connection next time.
            Ok(StatusMsg::Query) | Err(_) => client = None,
        }
    }
}

/// Sets the gauges from `report`, and counts what changed since `before`.
fn record(m: &Metrics, before: Option<&StatusReport>, report: &StatusReport) {
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    m.log_end.set(report.max.map_or(-1, gauge));
    m.applied.set(report.applied.map_or(-1, gauge));
    m.forgotten_below.set(gauge(report.min));
    m.leader.set(i64::from(report.leader));
    m.behind.set(i64::from(report.catch_up.is_some()));
    m.broken.set(i64::from(report.broken));
    m.durable_bytes.set(gauge(report.durable_bytes));
    m.state_bytes.set(gauge(report.state_bytes));
    let snapshots = &report.snapshots;
    m.snapshot_writing
        .set(i64::from(snapshots.writing_for_ms.is_some()));
    if let Some(taken) = &snapshots.last {
        m.snapshot_last_bytes.set(gauge(taken.bytes));
        m.snapshot_last_duration.set(taken.millis as f64 / 1000.0);
    }
    if let Some(before) = before {
        if before.leader != report.leader {
            m.leader_changes.inc();
        }
        if before.snapshots.last != snapshots.last && snapshots.last.is_some() {
            m.snapshots.inc();
        }
    }
}

/// How often a controller replica reads the latest shard configuration into its gauges.
pub const SHARDS_EVERY: Duration = Duration::from_secs(1);

/// Reads the latest configuration from the controllers at `controllers` every
/// [`SHARDS_EVERY`] into the shard gauges, counting the shards whose owner changed between two
/// configurations seen, until dropped. A query is a log entry of the controllers: once a
/// second is little next to what they apply.
pub async fn watch_shards(controllers: Vec<SocketAddr>) {
    let Ok(client) = CtlClient::connect(controllers.iter().map(ToString::to_string)) else {
        return;
    };
    let mut client = client.with_timeout(SHARDS_EVERY * 2);
    let mut before: Option<Config> = None;
    // The first query waits a period too: the watcher starts before its replica installs
    // the TLS of the process's clients, and a query sent before that would come plain and
    // be refused (and logged) by a secured controller.
    let first = tokio::time::Instant::now() + SHARDS_EVERY;
    let mut interval = tokio::time::interval_at(first, SHARDS_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Ok(CtlReply::Config(config)) = client.call(CtlOp::Query { num: -1 }).await else {
            continue;
        };
        let m = synod_metrics::global();
        m.shard_config
            .set(i64::try_from(config.num).unwrap_or(i64::MAX));
        for (shard, &gid) in config.shards.iter().enumerate() {
            let label = ShardLabel {
                shard: shard.to_string(),
            };
            m.shard_owner
                .get_or_create(&label)
                .set(i64::try_from(gid).unwrap_or(i64::MAX));
        }
        if let Some(before) = &before {
            let moved = config
                .shards
                .iter()
                .zip(&before.shards)
                .filter(|(now, then)| now != then)
                .count();
            m.shard_moves.inc_by(moved as u64);
        }
        before = Some(config);
    }
}
