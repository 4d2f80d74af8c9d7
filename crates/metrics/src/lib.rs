//! synod's metrics: one Prometheus registry per process ([`global`]), recorded by the parts
//! that do I/O — the TCP driver (`synod-net`), the Redis-protocol front, the status poller of
//! a replica process, the MapReduce coordinator's service — and never by a protocol core,
//! which stays deterministic. [`http::serve`] answers `/metrics` (and whatever else a server
//! adds) on a port of its own.
//!
//! One registry per process, as Prometheus client libraries keep by default: a process runs
//! one server, and every driver in it can reach the registry without each configuration
//! carrying it. Tests that run several nodes in one process add their counts together, which
//! no test reads. Every metric is documented in docs/running.md, "Metrics".

pub mod http;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use synod_node::NodeId;

/// A client command (`get`, `set`, `append`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    pub command: &'static str,
}

/// The other end of a connection: a server's node id (`n1`), or `client` for every client.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: Peer,
}

/// A link's other end as a label value, written out only when the metrics are read: a
/// label is built for every frame, so it must not allocate.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Peer(pub Option<NodeId>);

impl EncodeLabelValue for Peer {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write as _;
        match self.0 {
            Some(server) => write!(encoder, "{server}"),
            None => encoder.write_str("client"),
        }
    }
}

/// One shard of the sharded KV.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    pub shard: String,
}

/// MapReduce tasks of one phase (`map`, `reduce`) in one state (`idle`, `running`, `done`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    pub phase: &'static str,
    pub state: &'static str,
}

/// Plain totals of the client requests, for the dashboard's throughput and latency charts
/// (a histogram's sum is not readable back from the registry).
#[derive(Debug, Default)]
pub struct RequestTotals {
    pub count: AtomicU64,
    pub errors: AtomicU64,
    pub micros: AtomicU64,
}

/// Every metric synod records. Field docs name the metric as scraped.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `synod_requests_total{command}`.
    pub requests: Family<CommandLabel, Counter>,
    /// `synod_request_errors_total{command}`.
    pub request_errors: Family<CommandLabel, Counter>,
    /// `synod_request_duration_seconds{command}`.
    pub request_duration: Family<CommandLabel, Histogram>,
    /// `synod_request_batch_commands`: commands per pipelined batch of a RESP connection.
    pub request_batch: Histogram,
    pub request_totals: RequestTotals,
    /// `synod_driver_burst_inputs`: inputs handled between two group commits.
    pub driver_burst: Histogram,
    /// `synod_fsync_duration_seconds`: one group commit's sync.
    pub fsync_duration: Histogram,
    /// `synod_link_sent_bytes_total{peer}` and `synod_link_received_bytes_total{peer}`.
    pub sent_bytes: Family<PeerLabel, Counter>,
    pub received_bytes: Family<PeerLabel, Counter>,
    /// `synod_connections`, `synod_connections_accepted_total`, `synod_connections_refused_total`.
    pub connections: Gauge,
    pub connections_accepted: Counter,
    pub connections_refused: Counter,
    /// `synod_paxos_log_end_instance`, `synod_rsm_applied_instance`,
    /// `synod_paxos_forgotten_below_instance`.
    pub log_end: Gauge,
    pub applied: Gauge,
    pub forgotten_below: Gauge,
    /// `synod_rsm_leader` (1 on the stable leader), `synod_rsm_leader_changes_total`.
    pub leader: Gauge,
    pub leader_changes: Counter,
    /// `synod_rsm_behind` (1 while catching up from a snapshot), `synod_rsm_broken`.
    pub behind: Gauge,
    pub broken: Gauge,
    /// `synod_durable_size_bytes`, `synod_state_size_bytes`.
    pub durable_bytes: Gauge,
    pub state_bytes: Gauge,
    /// `synod_snapshot_writing`, `synod_snapshot_last_size_bytes`,
    /// `synod_snapshot_last_duration_seconds`, `synod_snapshots_total`.
    pub snapshot_writing: Gauge,
    pub snapshot_last_bytes: Gauge,
    pub snapshot_last_duration: Gauge<f64, AtomicU64>,
    pub snapshots: Counter,
    /// `synod_shard_config`, `synod_shard_owner_group{shard}`, `synod_shard_moves_total`.
    pub shard_config: Gauge,
    pub shard_owner: Family<ShardLabel, Gauge>,
    pub shard_moves: Counter,
    /// `synod_mapreduce_tasks{phase,state}`, `synod_mapreduce_reexecutions_total`,
    /// `synod_mapreduce_task_failures_total`, `synod_mapreduce_lost_workers_total`,
    /// `synod_mapreduce_workers_alive`.
    pub mr_tasks: Family<TaskLabel, Gauge>,
    pub mr_reexecutions: Counter,
    pub mr_task_failures: Counter,
    pub mr_lost_workers: Counter,
    pub mr_workers_alive: Gauge,
}

/// Latency buckets from 50 µs to about 3.3 s, doubling.
fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("synod");
        let requests = Family::<CommandLabel, Counter>::default();
        registry.register("requests", "Client commands served", requests.clone());
        let request_errors = Family::<CommandLabel, Counter>::default();
        registry.register(
            "request_errors",
            "Client commands answered with an error",
            request_errors.clone(),
        );
        let request_duration =
            Family::<CommandLabel, Histogram>::new_with_constructor(seconds_buckets as fn() -> _);
        registry.register_with_unit(
            "request_duration",
            "Time from a command's batch being handed to the store to its answer",
            Unit::Seconds,
            request_duration.clone(),
        );
        let request_batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "request_batch_commands",
            "Commands per pipelined batch of one client connection",
            request_batch.clone(),
        );
        let driver_burst = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "driver_burst_inputs",
            "Messages and timers handled between two group commits",
            driver_burst.clone(),
        );
        let fsync_duration = seconds_buckets();
        registry.register_with_unit(
            "fsync_duration",
            "Time one group commit's sync of the log took",
            Unit::Seconds,
            fsync_duration.clone(),
        );
        let sent_bytes = Family::<PeerLabel, Counter>::default();
        registry.register_with_unit(
            "link_sent",
            "Bytes of frames queued to a peer or a client",
            Unit::Bytes,
            sent_bytes.clone(),
        );
        let received_bytes = Family::<PeerLabel, Counter>::default();
        registry.register_with_unit(
            "link_received",
            "Bytes of frames received from a peer or a client",
            Unit::Bytes,
            received_bytes.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Inbound connections open (peers and clients)",
            connections.clone(),
        );
        let connections_accepted = Counter::default();
        registry.register(
            "connections_accepted",
            "Inbound connections accepted",
            connections_accepted.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Inbound connections closed at once: the connection limit was reached",
            connections_refused.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let log_end = gauge(
            &mut registry,
            "paxos_log_end_instance",
            "Highest Paxos instance this replica knows of",
        );
        let applied = gauge(
            &mut registry,
            "rsm_applied_instance",
            "Last instance applied to the state machine",
        );
        let forgotten_below = gauge(
            &mut registry,
            "paxos_forgotten_below_instance",
            "Paxos min(): instances below it are forgotten",
        );
        let leader = gauge(
            &mut registry,
            "rsm_leader",
            "1 while this replica is the stable leader",
        );
        let leader_changes = Counter::default();
        registry.register(
            "rsm_leader_changes",
            "Times this replica became or stopped being the leader",
            leader_changes.clone(),
        );
        let behind = gauge(
            &mut registry,
            "rsm_behind",
            "1 while this replica catches up from a peer's snapshot",
        );
        let broken = gauge(
            &mut registry,
            "rsm_broken",
            "1 once this replica stopped serving because its storage failed",
        );
        let durable_bytes = Gauge::default();
        registry.register_with_unit(
            "durable_size",
            "Durable state: the last snapshot plus the log since",
            Unit::Bytes,
            durable_bytes.clone(),
        );
        let state_bytes = Gauge::default();
        registry.register_with_unit(
            "state_size",
            "Serialized size of the state machine",
            Unit::Bytes,
            state_bytes.clone(),
        );
        let snapshot_writing = gauge(
            &mut registry,
            "snapshot_writing",
            "1 while a snapshot is being written in the background",
        );
        let snapshot_last_bytes = Gauge::default();
        registry.register_with_unit(
            "snapshot_last_size",
            "Size of the last snapshot written",
            Unit::Bytes,
            snapshot_last_bytes.clone(),
        );
        let snapshot_last_duration = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "snapshot_last_duration",
            "Time the last snapshot took, from begun to durable with the log cut",
            Unit::Seconds,
            snapshot_last_duration.clone(),
        );
        let snapshots = Counter::default();
        registry.register(
            "snapshots",
            "Snapshots seen written since this process started",
            snapshots.clone(),
        );
        let shard_config = gauge(
            &mut registry,
            "shard_config",
            "Number of the latest shard configuration",
        );
        let shard_owner = Family::<ShardLabel, Gauge>::default();
        registry.register(
            "shard_owner_group",
            "The group (gid) that owns each shard in the latest configuration, 0 for none",
            shard_owner.clone(),
        );
        let shard_moves = Counter::default();
        registry.register(
            "shard_moves",
            "Shards that changed owner between configurations seen",
            shard_moves.clone(),
        );
        let mr_tasks = Family::<TaskLabel, Gauge>::default();
        registry.register(
            "mapreduce_tasks",
            "MapReduce tasks by phase and state",
            mr_tasks.clone(),
        );
        let mr_reexecutions = Counter::default();
        registry.register(
            "mapreduce_reexecutions",
            "Tasks put back to idle after having run",
            mr_reexecutions.clone(),
        );
        let mr_task_failures = Counter::default();
        registry.register(
            "mapreduce_task_failures",
            "Task attempts that failed",
            mr_task_failures.clone(),
        );
        let mr_lost_workers = Counter::default();
        registry.register(
            "mapreduce_lost_workers",
            "Workers declared lost",
            mr_lost_workers.clone(),
        );
        let mr_workers_alive = gauge(
            &mut registry,
            "mapreduce_workers_alive",
            "Workers currently alive",
        );
        Metrics {
            registry,
            requests,
            request_errors,
            request_duration,
            request_batch,
            request_totals: RequestTotals::default(),
            driver_burst,
            fsync_duration,
            sent_bytes,
            received_bytes,
            connections,
            connections_accepted,
            connections_refused,
            log_end,
            applied,
            forgotten_below,
            leader,
            leader_changes,
            behind,
            broken,
            durable_bytes,
            state_bytes,
            snapshot_writing,
            snapshot_last_bytes,
            snapshot_last_duration,
            snapshots,
            shard_config,
            shard_owner,
            shard_moves,
            mr_tasks,
            mr_reexecutions,
            mr_task_failures,
            mr_lost_workers,
            mr_workers_alive,
        }
    }

    /// Records one client command that took `took` and succeeded or not.
    pub fn record_request(&self, command: &'static str, took: Duration, ok: bool) {
        let label = CommandLabel { command };
        self.requests.get_or_create(&label).inc();
        self.request_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        let totals = &self.request_totals;
        totals.count.fetch_add(1, Ordering::Relaxed);
        totals
            .micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if !ok {
            self.request_errors.get_or_create(&label).inc();
            totals.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bytes of one frame to or from `peer` (`None`: a client).
    pub fn record_link(&self, sent: bool, peer: Option<NodeId>, bytes: usize) {
        let label = PeerLabel { peer: Peer(peer) };
        let family = if sent {
            &self.sent_bytes
        } else {
            &self.received_bytes
        };
        family.get_or_create(&label).inc_by(bytes as u64);
    }

    /// The registry in the text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Moves a counter that mirrors a total kept elsewhere (a coordinator's count) up to `total`;
/// a total below it (the source restarted) leaves it where it is, as counters never go down.
pub fn advance(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus
/// scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// This process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_bytes_are_labelled_by_node_id_or_client() {
        let metrics = Metrics::new();
        metrics.record_link(true, Some(NodeId(3)), 10);
        metrics.record_link(true, Some(NodeId(3)), 5);
        metrics.record_link(false, None, 7);
        let text = metrics.encode();
        assert!(
            text.contains(r#"synod_link_sent_bytes_total{peer="n3"} 15"#),
            "{text}"
        );
        assert!(
            text.contains(r#"synod_link_received_bytes_total{peer="client"} 7"#),
            "{text}"
        );
    }
}
