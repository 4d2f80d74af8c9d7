//! Durable state for protocol cores.
//!
//! Everything a core must remember across a crash (a Paxos acceptor's promises and accepts, a
//! replica's log, a KV snapshot) goes through one small interface, [`Storage`]: an opaque
//! *snapshot* plus an append-only *log* of records written after it. A core appends records,
//! calls [`Storage::sync`] before it tells anyone about them, and on restart reads back exactly
//! what was synced with [`Storage::recover`].
//!
//! Two implementations share the same contract:
//! - [`MemStorage`], used by the simulator. It keeps *pending* (appended, not synced) and
//!   *synced* records apart, so a simulated crash loses exactly the unsynced tail.
//! - [`FileStorage`], used by real servers: checksummed records, `fsync` before `sync`
//!   returns, snapshots written to a temporary file, fsynced and renamed into place. Recovery
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
//!
//! A length field is never trusted for an allocation: records are decoded from the bytes
//! actually read, and no file content makes recovery panic.

mod file;
mod format;
pub mod limits;
mod mem;

pub use file::FileStorage;
pub use mem::MemStorage;

/// What survived: the last installed snapshot (if any) and every synced record appended after
/// it, in append order.
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

/// The durable-state interface every protocol core uses.
///
/// Contract:
/// - [`append`](Storage::append) buffers a record; it is *not* durable yet.
/// - [`sync`](Storage::sync) makes every record appended so far durable before it returns.
///   Calling it once after many appends is group commit.
/// - [`install_snapshot`](Storage::install_snapshot) atomically replaces the snapshot and
///   empties the log (including unsynced records); it is durable when it returns. Records
///   appended afterwards belong to the new snapshot.
/// - [`recover`](Storage::recover) returns the snapshot and the synced records; records
///   appended but not yet synced are not returned (and stay pending). After a crash,
///   records that were appended but never synced may or may not survive on disk for
///   [`FileStorage`], and never survive for [`MemStorage`]; a core must only rely on synced ones.
pub trait Storage {
    fn append(&mut self, record: &[u8]) -> Result<()>;
    fn sync(&mut self) -> Result<()>;
    fn install_snapshot(&mut self, snapshot: &[u8]) -> Result<()>;
    fn recover(&mut self) -> Result<Recovered>;
}
