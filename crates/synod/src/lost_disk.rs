//! Telling a replica that lost its disk from a new one, where its peers can tell.
//!
//! On disk the two look the same: an empty data directory. But the peer set is fixed, so a
//! new replica only ever joins a cluster whose log is still empty. If a peer already knows of
//! a Paxos instance, this replica has been part of the cluster before and lost what it
//! promised; it must rejoin (docs/paxos.md, "Rejoining after a lost disk") instead of voting
//! as a blank acceptor. When no peer answers nothing can be learned, and the replica starts
//! as new, as it would have anyway: `--rejoin` stays the operator's safe choice then.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use synod_storage::FileStorage;

use crate::status_cmd;

/// How long to wait for each peer's status.
const ASK_LIMIT: Duration = Duration::from_secs(1);

/// Whether the replica `me` of `peers`, whose state lives in `data`, must rejoin: its
/// directory holds no state while some peer knows of an instance. Logs why when it must.
pub async fn must_rejoin(data: &Path, peers: &[SocketAddr], me: usize) -> bool {
    // Damaged state is not a lost disk: opening the storage reports it with the reason.
    if FileStorage::holds_state(data).unwrap_or(true) {
        return false;
    }
    for (index, addr) in peers.iter().enumerate().filter(|&(i, _)| i != me) {
        let Ok(report) = status_cmd::ask(&addr.to_string(), ASK_LIMIT).await else {
            continue;
        };
        if let Some(max) = report.max {
            tracing::warn!(
                data = %data.display(),
                peer = index,
                %addr,
                max,
                "the data directory is empty but the cluster already has a log: this replica \
                 lost its disk, so it rejoins instead of voting blank"
            );
            return true;
        }
    }
    false
}
