//! In-memory [`Storage`] for the simulator.
//!
//! The point of this implementation is to model a disk's failure modes exactly, not to be
//! fast: it keeps the snapshot, the *synced* records and the *pending* (appended but not yet
//! synced) records apart, so the simulator can apply what a power loss does ([`crash`]: the
//! pending tail is gone), what a disk that wrote part of its cache does
//! ([`crash_keeping`]), and what a replaced disk does ([`wipe`]: everything is gone).
//!
//! A background snapshot ([`Storage::begin_snapshot`]) is encoded at once but becomes
//! durable only at the next [`Storage::poll_snapshot`], so a crash in between (the
//! simulator's crash in the middle of a snapshot) loses it and keeps the whole log.
//!
//! [`crash`]: MemStorage::crash
//! [`crash_keeping`]: MemStorage::crash_keeping
//! [`wipe`]: MemStorage::wipe

use crate::{
    encode_snapshot, Recovered, Result, SnapshotJob, SnapshotProgress, Storage, StorageError,
    MAX_RECORD_BYTES,
};

/// Durable state held in memory, with synced and unsynced records kept apart.
///
/// [`Storage::recover`] returns the snapshot and the *synced* records only; pending records
/// are not returned, but they stay pending, so a later [`Storage::persist_before_send`] still
/// makes them durable. `persist_before_send` makes the pending records synced at once, which
/// keeps its promise (durable before anything sent after it) trivially. That is the view a node has of its own disk after a restart, which is the only
/// moment a core is meant to call `recover`.
#[derive(Debug, Clone, Default, Hash)]
pub struct MemStorage {
    snapshot: Option<Vec<u8>>,
    synced: Vec<Vec<u8>>,
    pending: Vec<Vec<u8>>,
    /// Bytes in `snapshot` plus `synced`, kept up to date so the simulator can poll it cheaply.
    durable_bytes: usize,
    /// A background snapshot not yet durable: its bytes, and how many records (synced, then
    /// pending) were appended before it began.
    writing: Option<(Vec<u8>, usize)>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// A power loss: every record appended since the last
    /// [`Storage::persist_before_send`] is lost.
    pub fn crash(&mut self) {
        self.pending.clear();
        self.writing = None;
    }

    /// A power loss on a disk that had already written the first `keep` pending records
    /// (clamped to how many there are) when the power went: those survive as if synced, the
    /// rest are lost. [`FileStorage`](crate::FileStorage) can behave like this, so a core must
    /// tolerate unsynced records reappearing after a restart.
    pub fn crash_keeping(&mut self, keep: usize) {
        let keep = keep.min(self.pending.len());
        self.pending.truncate(keep);
        self.writing = None;
        self.make_pending_durable();
    }

    /// A replaced disk: the snapshot and every record, synced or not, are gone.
    pub fn wipe(&mut self) {
        *self = Self::default();
    }

    /// Number of synced records in the log (not counting the snapshot).
    pub fn synced_len(&self) -> usize {
        self.synced.len()
    }

    /// Number of records appended but not yet synced.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether a background snapshot has begun and is not durable yet.
    pub fn snapshot_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Total durable payload bytes: the snapshot plus every synced record.
    pub fn bytes(&self) -> usize {
        self.durable_bytes
    }

    fn make_pending_durable(&mut self) {
        self.durable_bytes += self.pending.iter().map(Vec::len).sum::<usize>();
        self.synced.append(&mut self.pending);
    }
}

impl Storage for MemStorage {
    fn append(&mut self, record: &[u8]) -> Result<()> {
        // Same limit as on disk, so a core that works in the simulator cannot fail on a server.
        if record.len() > MAX_RECORD_BYTES {
            return Err(StorageError::RecordTooLarge {
                size: record.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        self.pending.push(record.to_vec());
        Ok(())
    }

    fn persist_before_send(&mut self) -> Result<()> {
        self.make_pending_durable();
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: &[u8]) -> Result<()> {
        self.writing = None;
        self.synced.clear();
        self.pending.clear();
        self.snapshot = Some(snapshot.to_vec());
        self.durable_bytes = snapshot.len();
        Ok(())
    }

    fn recover(&mut self) -> Result<Recovered> {
        Ok(Recovered {
            snapshot: self.snapshot.clone(),
            records: self.synced.clone(),
        })
    }

    fn begin_snapshot(&mut self, encode: SnapshotJob) -> Result<SnapshotProgress> {
        if self.writing.is_some() {
            return Err(StorageError::SnapshotBusy);
        }
        let bytes = encode_snapshot(encode)?;
        self.writing = Some((bytes, self.synced.len() + self.pending.len()));
        Ok(SnapshotProgress::Writing)
    }

    fn poll_snapshot(&mut self) -> Result<SnapshotProgress> {
        let Some((bytes, mark)) = self.writing.take() else {
            return Ok(SnapshotProgress::Idle);
        };
        // The records before the mark are in the snapshot, synced or not; the rest keep
        // their state.
        let from_synced = mark.min(self.synced.len());
        self.synced.drain(..from_synced);
        self.pending.drain(..mark - from_synced);
        let len = bytes.len();
        self.snapshot = Some(bytes);
        self.durable_bytes = len + self.synced.iter().map(Vec::len).sum::<usize>();
        Ok(SnapshotProgress::Installed { bytes: len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn append_is_pending_until_sync() {
        let mut s = MemStorage::new();
        s.append(b"a").unwrap();
        s.append(b"bc").unwrap();
        assert_eq!((s.synced_len(), s.pending_len(), s.bytes()), (0, 2, 0));
        assert_eq!(s.recover().unwrap(), Recovered::default());
        s.persist_before_send().unwrap();
        assert_eq!((s.synced_len(), s.pending_len(), s.bytes()), (2, 0, 3));
        assert_eq!(s.recover().unwrap().records, recs(&["a", "bc"]));
    }

    #[test]
    fn recover_leaves_pending_records_pending() {
        let mut s = MemStorage::new();
        s.append(b"a").unwrap();
        s.persist_before_send().unwrap();
        s.append(b"b").unwrap();
        assert_eq!(s.recover().unwrap().records, recs(&["a"]));
        s.persist_before_send().unwrap();
        assert_eq!(s.recover().unwrap().records, recs(&["a", "b"]));
    }

    #[test]
    fn crash_drops_only_pending() {
        let mut s = MemStorage::new();
        s.append(b"a").unwrap();
        s.persist_before_send().unwrap();
        s.append(b"lost").unwrap();
        s.crash();
        assert_eq!((s.synced_len(), s.pending_len(), s.bytes()), (1, 0, 1));
        assert_eq!(s.recover().unwrap().records, recs(&["a"]));
    }

    #[test]
    fn crash_keeping_keeps_a_prefix_of_pending() {
        let mut s = MemStorage::new();
        s.append(b"a").unwrap();
        s.persist_before_send().unwrap();
        for r in ["b", "c", "d"] {
            s.append(r.as_bytes()).unwrap();
        }
        s.crash_keeping(2);
        assert_eq!(s.recover().unwrap().records, recs(&["a", "b", "c"]));
        assert_eq!((s.pending_len(), s.bytes()), (0, 3));
        s.append(b"e").unwrap();
        s.crash_keeping(10);
        assert_eq!(s.synced_len(), 4);
    }

    #[test]
    fn wipe_loses_everything() {
        let mut s = MemStorage::new();
        s.install_snapshot(b"snap").unwrap();
        s.append(b"a").unwrap();
        s.persist_before_send().unwrap();
        s.append(b"b").unwrap();
        s.wipe();
        assert_eq!((s.synced_len(), s.pending_len(), s.bytes()), (0, 0, 0));
        assert_eq!(s.recover().unwrap(), Recovered::default());
    }

    #[test]
    fn install_snapshot_replaces_log_and_is_durable_at_once() {
        let mut s = MemStorage::new();
        s.append(b"old").unwrap();
        s.persist_before_send().unwrap();
        s.append(b"unsynced").unwrap();
        s.install_snapshot(b"snap").unwrap();
        s.crash();
        assert_eq!((s.synced_len(), s.pending_len(), s.bytes()), (0, 0, 4));
        s.append(b"new").unwrap();
        s.persist_before_send().unwrap();
        assert_eq!(
            s.recover().unwrap(),
            Recovered {
                snapshot: Some(b"snap".to_vec()),
                records: recs(&["new"]),
            }
        );
        assert_eq!(s.bytes(), 7);
    }

    fn job(bytes: &'static [u8]) -> SnapshotJob {
        Box::new(move |out| out.write_all(bytes).map_err(|e| e.to_string()))
    }

    #[test]
    fn a_background_snapshot_keeps_the_records_after_its_mark() {
        let mut s = MemStorage::new();
        s.append(b"a").unwrap();
        s.persist_before_send().unwrap();
        s.append(b"b").unwrap();
        assert_eq!(
            s.begin_snapshot(job(b"ab")).unwrap(),
            SnapshotProgress::Writing
        );
        assert!(matches!(
            s.begin_snapshot(job(b"x")),
            Err(StorageError::SnapshotBusy)
        ));
        s.append(b"c").unwrap();
        s.persist_before_send().unwrap();
        s.append(b"d").unwrap();
        assert_eq!(s.recover().unwrap().records, recs(&["a", "b", "c"]));
        assert_eq!(
            s.poll_snapshot().unwrap(),
            SnapshotProgress::Installed { bytes: 2 }
        );
        assert_eq!(s.poll_snapshot().unwrap(), SnapshotProgress::Idle);
        assert_eq!((s.synced_len(), s.pending_len(), s.bytes()), (1, 1, 3));
        s.crash();
        assert_eq!(
            s.recover().unwrap(),
            Recovered {
                snapshot: Some(b"ab".to_vec()),
                records: recs(&["c"]),
            }
        );
    }

    #[test]
    fn a_crash_before_the_snapshot_is_durable_keeps_the_old_snapshot_and_the_whole_log() {
        let mut s = MemStorage::new();
        s.install_snapshot(b"old").unwrap();
        s.append(b"a").unwrap();
        s.persist_before_send().unwrap();
        s.begin_snapshot(job(b"new")).unwrap();
        s.append(b"b").unwrap();
        s.persist_before_send().unwrap();
        s.crash();
        assert!(!s.snapshot_writing());
        assert_eq!(s.poll_snapshot().unwrap(), SnapshotProgress::Idle);
        assert_eq!(
            s.recover().unwrap(),
            Recovered {
                snapshot: Some(b"old".to_vec()),
                records: recs(&["a", "b"]),
            }
        );
    }

    #[test]
    fn oversized_record_is_refused() {
        let mut s = MemStorage::new();
        let big = vec![0u8; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            s.append(&big),
            Err(StorageError::RecordTooLarge { size, limit })
                if size == MAX_RECORD_BYTES + 1 && limit == MAX_RECORD_BYTES
        ));
        assert_eq!(s.pending_len(), 0);
    }
}
