//! The identity of a Paxos replica's data directory: which cluster it belongs to and which
//! replica of that cluster it is, recorded in `identity.json` the first time a replica is
//! bootstrapped or rejoined on the directory and checked on every later start. A directory
//! is never run as another replica, with another peer list, or in another cluster: each of
//! those would let it vote with promises made for someone else.
//!
//! The cluster id is a hash of the sorted peer addresses and a token (`--cluster-token`,
//! default "synod"), like etcd's `--initial-cluster-token`: two clusters formed one after
//! the other on the same addresses differ by their token. The peer list itself is kept in
//! its order too, because a replica's index in it is its node id.
//!
//! A replica that joined a running cluster (`kv serve --join ADDR`) has an id beyond the
//! peer list; its identity records the peer list the cluster was formed with (so the same
//! cluster id) and the address it joined at, which it keeps for life: the group's
//! configuration tells the other replicas that address (docs/running.md, "Membership").

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use synod_mapreduce::partition::fnv1a;

use crate::data_dir;

/// The identity file's name inside a data directory.
pub const IDENTITY_FILE: &str = "identity.json";

/// The cluster token when none is given.
pub const DEFAULT_CLUSTER_TOKEN: &str = "synod";

/// Who a data directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The cluster's id: 16 hex digits of a hash of the sorted peers and the token.
    pub cluster: String,
    /// This replica's index in `peers`.
    pub replica: usize,
    /// Every replica's address, in the order of `--peers`.
    pub peers: Vec<SocketAddr>,
    /// For a replica that joined the running cluster, the address it joined at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<SocketAddr>,
}

/// A start whose flags disagree with the directory's identity, or flags no identity can have.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("--peers lists {0} twice: every replica needs an address of its own")]
    DuplicatePeer(SocketAddr),
    #[error(
        "data directory {dir} was started with --peers {recorded}, but --peers is now \
         {given}: a cluster keeps its peer list, in its order, for life ({IDENTITY_FILE})"
    )]
    OtherPeers {
        dir: PathBuf,
        recorded: PeerList,
        given: PeerList,
    },
    #[error(
        "data directory {dir} belongs to cluster {recorded}, but --peers and --cluster-token \
         name cluster {given}: start it with the --cluster-token it was formed with \
         ({IDENTITY_FILE})"
    )]
    OtherCluster {
        dir: PathBuf,
        recorded: String,
        given: String,
    },
    #[error(
        "data directory {dir} belongs to replica {recorded} of its cluster, but --id is \
         {given}: a directory keeps its replica index for life ({IDENTITY_FILE})"
    )]
    OtherReplica {
        dir: PathBuf,
        recorded: usize,
        given: usize,
    },
    #[error(
        "data directory {dir} belongs to replica {replica}, {recorded}, but it is now started \
         {given}: a replica keeps how it entered the cluster, and the address it joined at, \
         for life ({IDENTITY_FILE})"
    )]
    OtherJoin {
        dir: PathBuf,
        replica: usize,
        recorded: JoinedAt,
        given: JoinedAt,
    },
}

/// How a replica entered its cluster, for error messages: formed with it (`--bootstrap`)
/// or joined later (`--join ADDR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedAt(pub Option<SocketAddr>);

impl fmt::Display for JoinedAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "with --join {addr}"),
            None => f.write_str("without --join (one of --peers)"),
        }
    }
}

/// A peer list as `--peers` spells it, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerList(pub Vec<SocketAddr>);

impl fmt::Display for PeerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

impl Identity {
    /// Replica `replica` of the cluster of `peers` named with `token`. Refuses a peer list
    /// that names an address twice.
    pub fn new(replica: usize, peers: &[SocketAddr], token: &str) -> Result<Self, IdentityError> {
        let mut sorted = peers.to_vec();
        sorted.sort();
        if let Some(twice) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(IdentityError::DuplicatePeer(twice[0]));
        }
        // One address per line, then the token: no address contains a newline, so two
        // different inputs never hash the same text.
        let mut text = String::new();
        for addr in &sorted {
            text.push_str(&format!("{addr}\n"));
        }
        text.push_str(token);
        Ok(Identity {
            cluster: format!("{:016x}", fnv1a(text.as_bytes())),
            replica,
            peers: peers.to_vec(),
            joined: None,
        })
    }

    /// The same replica, joining the running cluster at `addr` (`kv serve --join`).
    pub fn joined_at(self, addr: SocketAddr) -> Self {
        Identity {
            joined: Some(addr),
            ..self
        }
    }

    /// Refuses to run the directory `dir`, which records `self`, as `given`. The peer list
    /// is compared first: it decides the cluster id and what the index means.
    pub fn check(&self, dir: &Path, given: &Identity) -> Result<(), IdentityError> {
        let dir = dir.to_path_buf();
        if self.peers != given.peers {
            return Err(IdentityError::OtherPeers {
                dir,
                recorded: PeerList(self.peers.clone()),
                given: PeerList(given.peers.clone()),
            });
        }
        if self.cluster != given.cluster {
            return Err(IdentityError::OtherCluster {
                dir,
                recorded: self.cluster.clone(),
                given: given.cluster.clone(),
            });
        }
        if self.replica != given.replica {
            return Err(IdentityError::OtherReplica {
                dir,
                recorded: self.replica,
                given: given.replica,
            });
        }
        if self.joined != given.joined {
            return Err(IdentityError::OtherJoin {
                dir,
                replica: self.replica,
                recorded: JoinedAt(self.joined),
                given: JoinedAt(given.joined),
            });
        }
        Ok(())
    }
}

/// The identity `dir` records, if it records one.
pub fn read(dir: &Path) -> anyhow::Result<Option<Identity>> {
    let path = dir.join(IDENTITY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let identity = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a replica identity", path.display()))?;
    Ok(Some(identity))
}

/// Records `identity` in `dir`, replacing nothing half-written should this crash.
pub fn record(dir: &Path, identity: &Identity) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(identity)?;
    data_dir::write_atomically(&dir.join(IDENTITY_FILE), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ports: &[u16]) -> Vec<SocketAddr> {
        ports
            .iter()
            .map(|&p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect()
    }

    #[test]
    fn the_cluster_id_depends_on_the_peer_set_and_the_token_not_the_order() {
        let id = |ports: &[u16], token| Identity::new(0, &addrs(ports), token).unwrap().cluster;
        assert_eq!(id(&[1, 2, 3], "synod"), id(&[3, 1, 2], "synod"));
        assert_ne!(id(&[1, 2, 3], "synod"), id(&[1, 2, 4], "synod"));
        assert_ne!(id(&[1, 2, 3], "synod"), id(&[1, 2, 3], "other"));
        assert_eq!(id(&[1, 2, 3], "synod").len(), 16);
    }

    #[test]
    fn a_duplicate_peer_is_refused() {
        let err = Identity::new(0, &addrs(&[1, 2, 1]), "synod").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--peers lists 127.0.0.1:1 twice: every replica needs an address of its own"
        );
    }

    #[test]
    fn a_directory_refuses_another_peer_list_cluster_or_index() {
        let dir = Path::new("/data/r0");
        let recorded = Identity::new(0, &addrs(&[1, 2, 3]), "synod").unwrap();
        assert_eq!(recorded.check(dir, &recorded.clone()), Ok(()));

        let reordered = Identity::new(0, &addrs(&[2, 1, 3]), "synod").unwrap();
        assert!(matches!(
            recorded.check(dir, &reordered),
            Err(IdentityError::OtherPeers { .. })
        ));
        let token = Identity::new(0, &addrs(&[1, 2, 3]), "other").unwrap();
        assert!(matches!(
            recorded.check(dir, &token),
            Err(IdentityError::OtherCluster { .. })
        ));
        let joined = Identity::new(3, &addrs(&[1, 2, 3]), "synod")
            .unwrap()
            .joined_at(addrs(&[4])[0]);
        assert_eq!(joined.check(dir, &joined.clone()), Ok(()));
        let elsewhere = joined.clone().joined_at(addrs(&[5])[0]);
        assert_eq!(
            joined.check(dir, &elsewhere).unwrap_err().to_string(),
            "data directory /data/r0 belongs to replica 3, with --join 127.0.0.1:4, but it is \
             now started with --join 127.0.0.1:5: a replica keeps how it entered the cluster, \
             and the address it joined at, for life (identity.json)"
        );
        let formed = Identity::new(3, &addrs(&[1, 2, 3]), "synod").unwrap();
        assert!(matches!(
            joined.check(dir, &formed),
            Err(IdentityError::OtherJoin { .. })
        ));
        let index = Identity::new(2, &addrs(&[1, 2, 3]), "synod").unwrap();
        assert_eq!(
            recorded.check(dir, &index).unwrap_err().to_string(),
            "data directory /data/r0 belongs to replica 0 of its cluster, but --id is 2: a \
             directory keeps its replica index for life (identity.json)"
        );
    }

    #[test]
    fn an_identity_reads_back_as_recorded() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let identity = Identity::new(1, &addrs(&[1, 2, 3]), "synod").unwrap();
        record(dir.path(), &identity).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(identity));
    }
}
