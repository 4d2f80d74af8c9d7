//! Group commit: one fsync for a burst of inputs instead of one per input.
//!
//! A core calls [`Storage::persist_before_send`] before it answers (a Paxos acceptor after
//! every promise or accept). That call is a barrier, not an fsync: the records appended before
//! it must be durable before any message sent after it leaves the process. When many messages
//! arrive together, an fsync per barrier makes the disk the bottleneck. The driver therefore
//! hands the core a [`GroupCommit`] wrapper: its `persist_before_send` only notes that an
//! fsync is owed, and the driver *holds every outgoing message* until the
//! end of the burst, then calls [`GroupCommit::commit`] (one real sync) and only then lets
//! the held messages go. Nothing leaves the node before the records it depends on are
//! durable, which is the contract cores rely on; a crash before the commit loses the
//! records and the unsent answers together, as if the inputs had never arrived.
//!
//! The sync itself runs on tokio's blocking pool, not on the driver's thread: a server runs
//! on one thread (a current-thread runtime, `serve --threads`), and while the disk syncs,
//! that thread keeps reading the next requests off the sockets and writing out the answers
//! of the previous burst. The driver awaits the sync before it handles anything else, so
//! nothing the core does overlaps it.

use std::path::PathBuf;

use synod_node::{Recovered, SnapshotJob, SnapshotProgress, Storage, StorageError};

/// A [`Storage`] whose persist barriers are deferred to [`commit`](GroupCommit::commit).
pub(crate) struct GroupCommit {
    /// Always present, except while [`commit`](GroupCommit::commit) has it on the blocking
    /// pool (and the driver awaits it, so no core can reach the storage then).
    inner: Option<Box<dyn Storage + Send>>,
    /// A sync was asked for since the last commit.
    owed: bool,
    /// A real sync failed: nothing written since can be made durable, so every later call
    /// fails too and the core stops.
    failed: bool,
}

fn failed_before() -> StorageError {
    StorageError::Io {
        path: PathBuf::from("<group commit>"),
        source: std::io::Error::other("an earlier sync failed"),
    }
}

impl GroupCommit {
    pub(crate) fn new(inner: Box<dyn Storage + Send>) -> Self {
        GroupCommit {
            inner: Some(inner),
            owed: false,
            failed: false,
        }
    }

    /// Makes every record appended so far durable, if a sync was asked for. On error the
    /// caller must drop the messages it held back.
    pub(crate) async fn commit(&mut self) -> Result<(), StorageError> {
        if self.failed {
            return Err(failed_before());
        }
        if !self.owed {
            return Ok(());
        }
        self.owed = false;
        let started = std::time::Instant::now();
        let mut inner = self
            .inner
            .take()
            .expect("storage is back after every commit");
        let (inner, synced) = tokio::task::spawn_blocking(move || {
            let synced = inner.persist_before_send();
            (inner, synced)
        })
        .await
        .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()));
        self.inner = Some(inner);
        let synced = synced.inspect_err(|_| self.failed = true);
        synod_metrics::global()
            .fsync_duration
            .observe(started.elapsed().as_secs_f64());
        synced
    }

    fn inner(&mut self) -> &mut (dyn Storage + Send) {
        self.inner
            .as_deref_mut()
            .expect("storage is back after every commit")
    }
}

impl Storage for GroupCommit {
    fn append(&mut self, record: &[u8]) -> Result<(), StorageError> {
        if self.failed {
            return Err(failed_before());
        }
        self.inner().append(record)
    }

    fn persist_before_send(&mut self) -> Result<(), StorageError> {
        if self.failed {
            return Err(failed_before());
        }
        self.owed = true;
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: &[u8]) -> Result<(), StorageError> {
        if self.failed {
            return Err(failed_before());
        }
        self.inner().install_snapshot(snapshot)
    }

    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.inner().recover()
    }

    fn begin_snapshot(&mut self, encode: SnapshotJob) -> Result<SnapshotProgress, StorageError> {
        if self.failed {
            return Err(failed_before());
        }
        self.inner().begin_snapshot(encode)
    }

    /// Installing makes the records after the snapshot's mark durable early, which only
    /// strengthens what the held messages wait for.
    fn poll_snapshot(&mut self) -> Result<SnapshotProgress, StorageError> {
        if self.failed {
            return Err(failed_before());
        }
        self.inner().poll_snapshot()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Counts the syncs that reach it; `fail` makes them fail.
    struct Counting {
        syncs: Arc<AtomicUsize>,
        fail: bool,
    }

    impl Storage for Counting {
        fn append(&mut self, _record: &[u8]) -> Result<(), StorageError> {
            Ok(())
        }
        fn persist_before_send(&mut self) -> Result<(), StorageError> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(failed_before());
            }
            Ok(())
        }
        fn install_snapshot(&mut self, _snapshot: &[u8]) -> Result<(), StorageError> {
            Ok(())
        }
        fn recover(&mut self) -> Result<Recovered, StorageError> {
            Ok(Recovered::default())
        }
    }

    fn wrapped(fail: bool) -> (GroupCommit, Arc<AtomicUsize>) {
        let syncs = Arc::new(AtomicUsize::new(0));
        let inner = Counting {
            syncs: syncs.clone(),
            fail,
        };
        (GroupCommit::new(Box::new(inner)), syncs)
    }

    #[tokio::test]
    async fn many_syncs_in_a_burst_cost_one() {
        let (mut g, syncs) = wrapped(false);
        for _ in 0..10 {
            g.append(b"r").unwrap();
            g.persist_before_send().unwrap();
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 0, "no sync before the commit");
        g.commit().await.unwrap();
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        g.commit().await.unwrap();
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            1,
            "nothing owed, nothing synced"
        );
    }

    #[tokio::test]
    async fn a_failed_commit_fails_everything_after_it() {
        let (mut g, _) = wrapped(true);
        g.append(b"r").unwrap();
        g.persist_before_send().unwrap();
        assert!(g.commit().await.is_err());
        assert!(g.append(b"r").is_err());
        assert!(g.persist_before_send().is_err());
        assert!(g.commit().await.is_err());
    }
}
