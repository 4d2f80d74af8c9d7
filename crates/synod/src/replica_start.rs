//! How a Paxos replica (`kv`, `shardctl` and `shardkv serve`) starts on its data directory.
//!
//! A directory that holds state is a restart: the replica recovers from it, whatever the
//! flags say. An empty one looks the same whether the replica is new or lost its disk, and
//! the two must start differently (a replica that lost its disk forgot its promises and
//! must rejoin before it votes; docs/paxos.md, "Rejoining after a lost disk"). So the
//! operator declares which: `--bootstrap` (a new replica of a cluster being formed) or
//! `--rejoin` (the disk was lost). Without either, the replica refuses to start. It never
//! infers its history from its peers: a peer that already has a log may just have started
//! first, and a replica of a new cluster that took that for a lost disk would wedge it.
//!
//! A third way in is `--join ADDR` (`kv`, `shardctl` and `shardkv serve`): a new replica of
//! a running cluster, under an id of its own beyond `--peers`, that starts as nothing but a
//! learner in waiting and votes only once the group made it a voter (docs/paxos.md,
//! "Membership changes").
//!
//! Every start also checks the directory's identity (see [`crate::identity`]).
//!
//! [`serve_replica`] is the one way the three replicated servers run: lock the directory,
//! prepare it (the above), open its storage, bind, print the readiness line, serve (with the
//! RESP front, if any) until SIGTERM or Ctrl-C, and stop gracefully.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;
use synod_net::{run_guarded_node, ClientGuard, NodeConfig};
use synod_node::{Node, NodeId};
use synod_paxos::PaxosConfig;
use synod_storage::FileStorage;
use tokio::net::TcpListener;

use crate::data_dir;
use crate::identity::{self, Identity, DEFAULT_CLUSTER_TOKEN};
use crate::observe::{self, MetricsArgs};
use crate::resp_front::{self, Front, Stop};
use crate::tls_args::ServerTlsArgs;

/// Where replica I of a cluster whose node ids are the indexes into `--peers` (the KV store,
/// the shard controller) listens, and where it keeps its state.
#[derive(Args, Debug)]
pub struct ReplicaArgs {
    /// This replica's index (0-based) in --peers; it listens on that address.
    #[arg(long, env = "SYNOD_ID")]
    pub id: usize,
    /// Every replica's address, comma-separated, the same list on every replica.
    #[arg(long, env = "SYNOD_PEERS", value_delimiter = ',', required = true)]
    pub peers: Vec<SocketAddr>,
    /// Directory for the replica's durable state; created if missing and locked while
    /// the replica runs. A replica restarted on the same directory recovers from it.
    #[arg(long, env = "SYNOD_DATA")]
    pub data: PathBuf,
    #[command(flatten)]
    pub start: StartArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// One replica of a replicated server, as [`serve_replica`] runs it.
pub struct Replica<'a> {
    /// What its readiness line calls it: it prints "NAME listening on ADDR".
    pub name: String,
    /// Its data directory, its index in `peers` (whose address it listens on), and how an
    /// empty directory starts.
    pub data: &'a Path,
    pub index: usize,
    pub peers: &'a [SocketAddr],
    /// For a replica joining the running cluster of `peers` (`--join`): the address it
    /// listens on; its `index` is then beyond `peers`.
    pub join: Option<SocketAddr>,
    pub start: &'a StartArgs,
    /// Its node id, and the node ids and addresses of the servers it talks to.
    pub me: NodeId,
    pub links: BTreeMap<NodeId, SocketAddr>,
    /// Its frame limit (`Limits::max_frame`).
    pub max_frame: usize,
    /// Its metrics port, if any.
    pub metrics: &'a MetricsArgs,
}

impl<'a> Replica<'a> {
    /// The replica `args` describe, called `name`.
    pub fn numbered(name: String, args: &'a ReplicaArgs, max_frame: usize) -> Self {
        let ids = (0..args.peers.len() as u64).map(NodeId);
        Replica {
            name,
            data: &args.data,
            index: args.id,
            peers: &args.peers,
            join: None,
            start: &args.start,
            me: NodeId(args.id as u64),
            links: ids.zip(args.peers.iter().copied()).collect(),
            max_frame,
            metrics: &args.metrics,
        }
    }
}

/// Runs `replica` until SIGTERM or Ctrl-C: locks and prepares its data directory, opens its
/// storage, builds the node with `node` from the Paxos configuration the directory calls
/// for, binds, binds the RESP front `front` makes (if any; its client reaches this replica
/// in-process), prints the readiness line, and serves both until the stop signal. With
/// `guard`, native clients are admitted and screened by it.
pub async fn serve_replica<N, F>(
    replica: Replica<'_>,
    node: impl FnOnce(PaxosConfig) -> anyhow::Result<N>,
    front: impl FnOnce() -> F,
    guard: Option<ClientGuard<N::Msg>>,
) -> anyhow::Result<ExitCode>
where
    N: Node + Send,
    N::Msg: Serialize + DeserializeOwned + Send + 'static,
    F: std::future::Future<Output = anyhow::Result<Option<Front>>>,
{
    let Replica {
        name,
        data,
        index,
        peers,
        join,
        start,
        me,
        links,
        max_frame,
        metrics,
    } = replica;
    let listen = match (join, peers.get(index)) {
        (None, Some(&listen)) => listen,
        (None, None) => {
            // A directory that joined, started without its --join: say so, naming both.
            let given = Identity::new(index, peers, &start.cluster_token)?;
            if let Some(recorded) = identity::read(data)?.filter(|r| r.joined.is_some()) {
                recorded.check(data, &given)?;
            }
            bail!(
                "--id {index} is not an index into --peers ({} addresses); a replica new to a \
                 running cluster starts with --join ADDR",
                peers.len()
            )
        }
        (Some(_), Some(_)) => bail!(
            "--id {index} is replica {index} of --peers: a joining replica takes a new id, \
             {} or more, never a former replica's (a replica that lost its disk returns under \
             a new id)",
            peers.len()
        ),
        (Some(listen), None) => listen,
    };
    let _lock = data_dir::lock(data)?;
    let paxos = prepare(data, index, peers, join, start)?;
    let storage = FileStorage::open(data)
        .with_context(|| format!("opening replica state in {}", data.display()))?;
    let node = node(paxos)?;
    // Before the front is built: its clerk connects to the other replicas with this TLS.
    let tls = start.tls.peer_tls(&start.cluster_token)?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let mut config = NodeConfig::new(me, listener);
    config.net.max_frame = max_frame;
    config.peers = links.into_iter().filter(|&(peer, _)| peer != me).collect();
    config.net.tls = tls;
    let front = front().await?;
    let metrics_port = metrics.bind().await?;
    // The front's client reaches this replica through its inbox, not TCP.
    config.net.in_process = front.is_some();
    // Installed before the readiness line, so a signal right after it stops us gracefully.
    let stop = Stop::on_signal();
    println!("{name} listening on {listen}");
    tracing::info!(%name, %listen, data = %data.display(), "serving");
    let observer = metrics_port.map(|port| {
        tracing::info!(addr = ?port.local_addr(), "metrics port listening");
        tokio::spawn(observe::serve_replica_port(port, listen))
    });
    let node = run_guarded_node(node, config, Box::new(storage), stop.wait(), guard);
    let (served, ()) = tokio::join!(
        stop.ending_all(node),
        resp_front::serve(front, stop.clone())
    );
    if let Some(observer) = observer {
        observer.abort();
    }
    served?;
    tracing::info!(%name, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// The flags that say how an empty data directory starts, and which cluster it is part of.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// This empty data directory is a new replica of a cluster being formed: start it as a
    /// blank voter. Ignored (with a log line) when the directory already holds state.
    #[arg(long, env = "SYNOD_BOOTSTRAP", conflicts_with = "rejoin")]
    pub bootstrap: bool,
    /// This directory is empty because the replica lost its disk: learn how far the log got
    /// before voting again (docs/paxos.md). Ignored when the directory holds state.
    #[arg(long)]
    pub rejoin: bool,
    /// Names the cluster, together with --peers, the same on every replica; a directory
    /// refuses to run in a cluster of another name.
    #[arg(long, env = "SYNOD_CLUSTER_TOKEN", default_value = DEFAULT_CLUSTER_TOKEN)]
    pub cluster_token: String,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    /// Threads that run this server: its sockets, TLS, RESP front and protocol core. 1, the
    /// default, runs them all on one thread, the fastest choice when several servers share
    /// the machine's cores (as `synod up` starts them: docs/bench.md, "One thread per
    /// server"); more spreads the connections' work over that many threads. The protocol
    /// core is one task either way, and disk syncs run beside it, not on it.
    #[arg(long, env = "SYNOD_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
}

impl StartArgs {
    /// The async runtime this server runs on (see [`threads`](Self::threads)).
    pub fn runtime(&self) -> anyhow::Result<tokio::runtime::Runtime> {
        let mut builder = if self.threads == 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(usize::from(self.threads));
            builder
        };
        builder
            .enable_all()
            .build()
            .context("starting the async runtime")
    }
}

/// Prepares the locked data directory `data` of replica `index` of `peers` (or joining
/// their cluster at `join`) to start, and returns the Paxos configuration to start it with.
/// Refuses an empty directory without `--bootstrap`, `--rejoin` or `--join`, and a
/// directory whose identity disagrees with the flags; records the identity of a directory
/// that has none.
pub fn prepare(
    data: &Path,
    index: usize,
    peers: &[SocketAddr],
    join: Option<SocketAddr>,
    args: &StartArgs,
) -> anyhow::Result<PaxosConfig> {
    let mut given = Identity::new(index, peers, &args.cluster_token)?;
    if let Some(addr) = join {
        given = given.joined_at(addr);
    }
    let recorded = identity::read(data)?;
    if let Some(recorded) = &recorded {
        recorded.check(data, &given)?;
    }
    // Damaged state counts as state: opening the storage refuses it with the reason.
    let holds_state = FileStorage::holds_state(data).unwrap_or(true);
    let rejoin = if holds_state {
        if (args.bootstrap || args.rejoin) && join.is_none() {
            let flag = if args.bootstrap {
                "--bootstrap"
            } else {
                "--rejoin"
            };
            tracing::info!(
                data = %data.display(),
                "the data directory holds state, so this is a restart: {flag} is ignored"
            );
        }
        false
    } else if join.is_some() {
        // A new id: it has made no promise anywhere, and votes only once a change names it.
        tracing::info!(data = %data.display(), "joining the running cluster as a new replica");
        false
    } else if args.bootstrap {
        tracing::info!(data = %data.display(), "bootstrapping a new replica");
        false
    } else if args.rejoin {
        tracing::info!(
            data = %data.display(),
            "this replica lost its disk: it rejoins before it votes"
        );
        true
    } else {
        bail!(
            "data directory {} holds no state: start it with --bootstrap if this replica is \
             new and the cluster is being formed, or with --rejoin if it lost its disk \
             (docs/running.md, \"Bootstrap and disk loss\")",
            data.display()
        );
    };
    if recorded.is_none() {
        identity::record(data, &given)?;
    }
    Ok(PaxosConfig {
        rejoin,
        ..PaxosConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use synod_storage::Storage as _;

    use super::*;

    fn args(bootstrap: bool, rejoin: bool) -> StartArgs {
        StartArgs {
            bootstrap,
            rejoin,
            cluster_token: DEFAULT_CLUSTER_TOKEN.into(),
            tls: ServerTlsArgs::default(),
            threads: 1,
        }
    }

    fn peers() -> Vec<SocketAddr> {
        (1..=3)
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .collect()
    }

    #[test]
    fn an_empty_directory_needs_a_declaration() {
        let dir = tempfile::tempdir().unwrap();
        let err = prepare(dir.path(), 0, &peers(), None, &args(false, false)).unwrap_err();
        assert!(err.to_string().ends_with(
            "holds no state: start it with --bootstrap if this replica is new and the cluster \
             is being formed, or with --rejoin if it lost its disk (docs/running.md, \
             \"Bootstrap and disk loss\")"
        ));
        assert_eq!(
            identity::read(dir.path()).unwrap(),
            None,
            "nothing recorded"
        );

        let new = prepare(dir.path(), 0, &peers(), None, &args(true, false)).unwrap();
        assert!(!new.rejoin);
        let recorded = Identity::new(0, &peers(), DEFAULT_CLUSTER_TOKEN).unwrap();
        assert_eq!(identity::read(dir.path()).unwrap(), Some(recorded));

        let lost = tempfile::tempdir().unwrap();
        assert!(
            prepare(lost.path(), 1, &peers(), None, &args(false, true))
                .unwrap()
                .rejoin
        );
    }

    #[test]
    fn a_joining_replica_records_where_it_joined_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let at = SocketAddr::from(([127, 0, 0, 1], 9));
        let joined = prepare(dir.path(), 3, &peers(), Some(at), &args(false, false)).unwrap();
        assert!(!joined.rejoin, "a new id has no promises to relearn");
        let recorded = identity::read(dir.path()).unwrap().unwrap();
        assert_eq!(recorded.joined, Some(at));
        assert_eq!(recorded.peers, peers(), "the cluster's id and peer list");
        let err = prepare(dir.path(), 3, &peers(), None, &args(false, false)).unwrap_err();
        assert!(
            err.to_string()
                .contains("with --join 127.0.0.1:9, but it is now started without --join"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_with_state_restarts_whatever_the_flags_say() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = FileStorage::open(dir.path()).unwrap();
        storage.append(b"a promise").unwrap();
        storage.persist_before_send().unwrap();
        drop(storage);
        for (bootstrap, rejoin) in [(false, false), (true, false), (false, true)] {
            let config = prepare(dir.path(), 2, &peers(), None, &args(bootstrap, rejoin)).unwrap();
            assert!(!config.rejoin, "a restart never rejoins");
        }
    }
}
