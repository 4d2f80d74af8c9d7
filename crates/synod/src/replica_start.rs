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
//! Every start also checks the directory's identity (see [`crate::identity`]).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::bail;
use clap::Args;
use synod_paxos::PaxosConfig;
use synod_storage::FileStorage;

use crate::identity::{self, Identity, DEFAULT_CLUSTER_TOKEN};

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
}

/// Prepares the locked data directory `data` of replica `index` of `peers` to start, and
/// returns the Paxos configuration to start it with. Refuses an empty directory without
/// `--bootstrap` or `--rejoin`, and a directory whose identity disagrees with the flags;
/// records the identity of a directory that has none.
pub fn prepare(
    data: &Path,
    index: usize,
    peers: &[SocketAddr],
    args: &StartArgs,
) -> anyhow::Result<PaxosConfig> {
    let given = Identity::new(index, peers, &args.cluster_token)?;
    let recorded = identity::read(data)?;
    if let Some(recorded) = &recorded {
        recorded.check(data, &given)?;
    }
    // Damaged state counts as state: opening the storage refuses it with the reason.
    let holds_state = FileStorage::holds_state(data).unwrap_or(true);
    let rejoin = if holds_state {
        if args.bootstrap || args.rejoin {
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
        let err = prepare(dir.path(), 0, &peers(), &args(false, false)).unwrap_err();
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

        let new = prepare(dir.path(), 0, &peers(), &args(true, false)).unwrap();
        assert!(!new.rejoin);
        let recorded = Identity::new(0, &peers(), DEFAULT_CLUSTER_TOKEN).unwrap();
        assert_eq!(identity::read(dir.path()).unwrap(), Some(recorded));

        let lost = tempfile::tempdir().unwrap();
        assert!(
            prepare(lost.path(), 1, &peers(), &args(false, true))
                .unwrap()
                .rejoin
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
            let config = prepare(dir.path(), 2, &peers(), &args(bootstrap, rejoin)).unwrap();
            assert!(!config.rejoin, "a restart never rejoins");
        }
    }
}
