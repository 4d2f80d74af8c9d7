//! Durable state for protocol cores.
//!
//! Everything a core must remember across a crash (a Paxos acceptor's promises and accepts, a
//! replica's log, a KV snapshot) goes through one small interface, [`Storage`]: an opaque
//! *snapshot* plus an append-only *log* of records written after it. A core appends records,
//! calls [`Storage::persist_before_send`] before it sends any message that depends on them,
//! and on restart reads back exactly what was persisted with [`Storage::recover`].
//!
//! `persist_before_send` is a *barrier*, not an fsync: it promises that the records appended
//! before it are durable before any message the core sends after it leaves the process. When
//! the disk write happens is the driver's business. The TCP driver defers it to the end of a
//! burst of inputs and holds every outgoing message until then (group commit,
//! `synod-net`'s `commit` module); used directly, [`FileStorage`] and [`MemStorage`] make the
//! records durable at once, which keeps the promise trivially.
//!
//! Two implementations share the same contract:
//! - [`MemStorage`], used by the simulator. It keeps *pending* (appended, not persisted) and
//!   *persisted* records apart, so a simulated crash loses exactly the unpersisted tail.
//! - [`FileStorage`], used by real servers: checksummed records, `fsync` before
//!   `persist_before_send` returns, snapshots written to a temporary file, fsynced and renamed into place. Recovery
//!   drops a torn final record (a crash in the middle of a write) and refuses, with
//!   [`StorageError::Corrupt`], to load a log whose damage is anywhere else.
//!
//! Both refuse records larger than [`MAX_RECORD_BYTES`], so a core that runs in the
//! simulator cannot hit a limit only on a server.
//!
//! # Recovery rules of [`FileStorage`]
//!
//! - The log's final record, if incomplete, failing its checksum or claiming a length above
//!   the limit, *with no valid record anywhere after it*, is a torn write: it is dropped and
//!   the file truncated to the last good record. That record cannot have been synced
//!   unless the disk itself lost data after acknowledging an fsync.
//! - The same damage *followed by* a valid record is corruption in the middle of the log:
//!   [`StorageError::Corrupt`] with the byte offset, and the file is left untouched.
//! - A file with a foreign magic or a newer format version is [`StorageError::Unsupported`].
//! - A crash at any point of `install_snapshot` recovers either the old snapshot and old
//!   log, or the new snapshot and an empty log; the [`FileStorage`] docs say how.
//! - A crash at any point of a background snapshot ([`Storage::begin_snapshot`]) recovers
//!   either the old snapshot and the whole log, or the new snapshot and the records appended
//!   after it began.
//!
//! A length field is never trusted for an allocation: records are decoded from the bytes
//! actually read, and no file content makes recovery panic.

mod file;
mod format;
pub mod limits;
mod mem;

pub use file::FileStorage;
pub use mem::MemStorage;

/// What survived: the last installed snapshot (if any) and every persisted record appended
/// after it, in append order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub snapshot: Option<Vec<u8>>,
    pub records: Vec<Vec<u8>>,
}

/// Errors from durable storage. Callers treat all of them as fatal for the node: a replica
/// that cannot persist must stop rather than answer without durability.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Damage that is not a torn tail: a record in the middle of the log fails its checksum,
    /// or a header is impossible. Loading such a log would silently lose or invent state.
    #[error("corrupt storage in {path} at byte {offset}: {reason}")]
    Corrupt {
        path: std::path::PathBuf,
        offset: u64,
        reason: String,
    },
    /// The state handed to [`Storage::begin_snapshot`] could not be encoded.
    #[error("cannot encode a snapshot: {0}")]
    Encode(String),
    /// [`Storage::begin_snapshot`] while an earlier snapshot is still being written: a core
    /// must wait for [`SnapshotProgress::Installed`] (or [`SnapshotProgress::Idle`]) first.
    #[error("a snapshot is already being written")]
    SnapshotBusy,
    /// A single record larger than [`MAX_RECORD_BYTES`], refused by `append`.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
    /// A file that is not ours, or written in a newer format version than this build reads.
    /// Distinct from [`StorageError::Corrupt`] because the fix is different: point the node
    /// at the right directory, or run a newer build.
    #[error("{path} is not a storage file this build can read: {reason}")]
    Unsupported {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// The largest record `append` accepts, in both implementations ([`limits`] says how it is
/// derived). Recovery never allocates on the strength of a length field: a length above
/// this limit is treated as damage.
pub use limits::MAX_RECORD_BYTES;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Writes a snapshot's bytes into the writer it is given. It owns an immutable view of the
/// state (a persistent map's O(1) clone, say), so it may run on another thread while the core
/// goes on applying, and its cost is paid off the apply path. The writer may be the snapshot
/// file itself, so a snapshot never needs a second, encoded copy of the state in memory.
pub type SnapshotJob =
    Box<dyn FnOnce(&mut dyn std::io::Write) -> std::result::Result<(), String> + Send>;

/// Runs `job` into memory: the snapshot's bytes.
pub fn encode_snapshot(job: SnapshotJob) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    job(&mut bytes).map_err(StorageError::Encode)?;
    Ok(bytes)
}

/// Where the snapshot begun with [`Storage::begin_snapshot`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotProgress {
    /// No snapshot is being written.
    Idle,
    /// The snapshot is being encoded or written; nothing of it is durable yet, and the log
    /// still holds every record.
    Writing,
    /// The snapshot, `bytes` long, is durable and the log now holds only the records
    /// appended after it began. Reported once; the storage is then idle.
    Installed { bytes: usize },
}

/// The durable-state interface every protocol core uses.
///
/// Contract:
/// - [`append`](Storage::append) buffers a record; it is *not* durable yet.
/// - [`persist_before_send`](Storage::persist_before_send) is a barrier between the disk and
///   the network: every record appended before it is durable before any message the core
///   sends after it leaves the process. It does *not* promise that the records are durable
///   when it returns: a driver may defer the write (the TCP driver does, to the end of a
///   burst of inputs, holding the outgoing messages until then), and a crash before that
///   loses the records and the messages together, as if the inputs had never arrived.
///   Calling it once after many appends is group commit. A core must therefore never act
///   on durability other than by sending: answers and promises go out as messages, which
///   the barrier orders after the records.
/// - [`install_snapshot`](Storage::install_snapshot) atomically replaces the snapshot and
///   empties the log (including unsynced records); it is durable when it returns. Records
///   appended afterwards belong to the new snapshot. It abandons a background snapshot
///   being written.
/// - [`begin_snapshot`](Storage::begin_snapshot) starts a *background* snapshot of the state
///   as of every record appended so far (*the mark*) and returns at once: the encoding and
///   writing happen off the caller's path (a thread for [`FileStorage`]; at the next
///   [`poll_snapshot`](Storage::poll_snapshot) for [`MemStorage`], which models that delay).
///   The core keeps appending meanwhile. Nothing changes durably until
///   [`poll_snapshot`](Storage::poll_snapshot) reports [`SnapshotProgress::Installed`]: the
///   new snapshot is then durable, and only then is the log cut to the records appended
///   after the mark. A crash before that report recovers the old snapshot and the whole log
///   (or, for [`FileStorage`], possibly the new snapshot and the records after the mark:
///   the same state). One background snapshot at a time ([`StorageError::SnapshotBusy`]).
/// - [`recover`](Storage::recover) returns the snapshot and the persisted records; records
///   appended but not yet persisted are not returned (and stay pending). After a crash,
///   records that were appended but never persisted may or may not survive on disk for
///   [`FileStorage`], and never survive for [`MemStorage`]; a core must only rely on
///   persisted ones.
pub trait Storage {
    fn append(&mut self, record: &[u8]) -> Result<()>;
    /// The barrier described in the trait docs: records appended before it are durable
    /// before any message sent after it leaves the process.
    fn persist_before_send(&mut self) -> Result<()>;
    fn install_snapshot(&mut self, snapshot: &[u8]) -> Result<()>;
    fn recover(&mut self) -> Result<Recovered>;

    /// Starts a background snapshot (see the trait docs). This default does the work
    /// synchronously, which the contract allows: the snapshot is durable when it returns,
    /// and nothing was appended after the mark.
    fn begin_snapshot(&mut self, encode: SnapshotJob) -> Result<SnapshotProgress> {
        let bytes = encode_snapshot(encode)?;
        self.install_snapshot(&bytes)?;
        Ok(SnapshotProgress::Installed { bytes: bytes.len() })
    }

    /// Finishes the background snapshot if its bytes are written (see the trait docs).
    fn poll_snapshot(&mut self) -> Result<SnapshotProgress> {
        Ok(SnapshotProgress::Idle)
    }
}
