//! [`FileStorage`]: the snapshot and the log as two files in one directory.
//!
//! The directory layout, how a snapshot is installed crash-safely and what recovery does are
//! documented on [`FileStorage`] itself, where the public docs show them; the byte formats
//! are in the `format` module.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::format::{self, HEADER_LEN, LOG_MAGIC};
use crate::{
    Recovered, Result, SnapshotJob, SnapshotProgress, Storage, StorageError, MAX_RECORD_BYTES,
};

const LOG: &str = "log";
const LOG_TMP: &str = "log.tmp";
const LOG_NEXT: &str = "log.next";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const SNAPSHOT_NEXT: &str = "snapshot.next";

/// Appended records are handed to the OS once this many bytes are buffered, so memory stays
/// bounded between syncs; the write does not make them durable, only the fsync in
/// `persist_before_send` does.
const WRITE_OUT_BYTES: usize = 256 << 10;

/// Durable storage in a directory. One process at a time: locking the directory is the
/// caller's job.
///
/// # Files
///
/// - `log`: a header carrying a generation, then checksummed records, appended in place.
/// - `snapshot`: a header carrying a generation, then the snapshot bytes. Absent until the
///   first [`install_snapshot`](Storage::install_snapshot); the log's generation is then 0.
/// - `snapshot.tmp`, `log.tmp`, `snapshot.next`: files being written; never part of the
///   durable state, and deleted by [`FileStorage::open`].
/// - `log.next`: the log that goes with a background snapshot, written just before that
///   snapshot is renamed into place (below).
///
/// Both headers start with a magic and a format version, so a foreign file or one from a
/// newer build is refused with [`StorageError::Unsupported`].
///
/// # Installing a snapshot, and why the order is crash-safe
///
/// With the current generation `g`:
/// 1. write `snapshot.tmp` at generation `g + 1`, fsync it, rename it to `snapshot`, fsync
///    the directory;
/// 2. write `log.tmp`, an empty log at generation `g + 1`, fsync it, rename it to `log`,
///    fsync the directory.
///
/// A crash before the first rename is durable leaves the old snapshot and the old log (plus
/// a leftover `snapshot.tmp`, which `open` deletes). A crash after it leaves the new snapshot
/// next to a log of generation `g`: `open` sees that the log is older than the snapshot,
/// which means its records were folded into the snapshot, and replaces it with an empty log.
/// The directory fsync between the renames matters: without it the second rename could
/// reach the disk before the first, leaving a new empty log next to the old snapshot, which
/// would lose the old log's records. `open` reports that state (a log newer than the
/// snapshot) as corruption rather than guessing.
///
/// # A background snapshot, and why it is crash-safe too
///
/// [`begin_snapshot`](Storage::begin_snapshot) notes the log's length (the mark) and hands the
/// job to a thread, which encodes the state and writes `snapshot.next` at generation `g + 1`
/// and fsyncs it; the caller goes on appending. The first
/// [`poll_snapshot`](Storage::poll_snapshot) after the thread is done finishes on the
/// caller's thread, in time proportional to the records appended since the mark:
/// 1. write `log.next`: a log at generation `g + 1` holding the records after the mark,
///    fsynced, its directory entry fsynced;
/// 2. rename `snapshot.next` to `snapshot`, fsync the directory;
/// 3. rename `log.next` to `log`, fsync the directory.
///
/// A crash before step 2 is durable leaves the old snapshot and the whole old log; `open`
/// deletes `snapshot.next` and a `log.next` of a generation the snapshot does not have. A
/// crash between steps 2 and 3 leaves the new snapshot, an old log and a `log.next` of the
/// snapshot's generation: `open` renames `log.next` into place, which is the state after
/// step 3.
///
/// # Recovery
///
/// [`FileStorage::open`] validates everything, cuts a torn final record off the log, and
/// fsyncs the log so that what it reports cannot vanish in a later power loss.
/// [`Storage::recover`] then reads the snapshot and the synced part of the log back from
/// disk (cheap right after `open`, when the bytes are in the page cache); it holds the
/// whole log in memory while decoding it, which snapshots keep small.
///
/// After any I/O error the instance refuses further use: once an fsync has failed, the
/// kernel may have dropped the dirty pages, and a retried fsync can report success for data
/// that is gone. Reopen the directory to find out what is really on disk.
pub struct FileStorage {
    dir: PathBuf,
    log: File,
    generation: u64,
    /// Encoded records not yet written to `log`.
    buf: Vec<u8>,
    /// Length of the log file as written to the OS.
    written: u64,
    /// Length of the log file known to be durable.
    synced: u64,
    failed: bool,
    /// A background snapshot being written.
    writing: Option<Writing>,
}

/// A background snapshot: the log length it covers, and the thread writing `snapshot.next`,
/// which returns the snapshot's payload length.
struct Writing {
    mark: u64,
    thread: std::thread::JoinHandle<Result<usize>>,
}

/// Waits for a background snapshot's thread, so that no thread of a dropped storage writes
/// into the directory after it is released (a restart in the same process reopens it, and
/// its recovery deletes a stray `snapshot.next` that must not then reappear). The snapshot
/// is not installed: dropping is a crash as far as the files are concerned.
impl Drop for FileStorage {
    fn drop(&mut self) {
        if let Some(writing) = self.writing.take() {
            // Its outcome does not matter: recovery deletes an uninstalled `snapshot.next`.
            let _outcome = writing.thread.join();
        }
    }
}

impl fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStorage")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("synced", &self.synced)
            .field(
                "unsynced",
                &(self.written - self.synced + self.buf.len() as u64),
            )
            .field("failed", &self.failed)
            .field("snapshot_writing", &self.writing.is_some())
            .finish()
    }
}

impl FileStorage {
    /// Opens the storage in `dir`, creating the directory and an empty log if needed, and
    /// repairs what a crash can leave behind (see the type docs). Fails with
    /// [`StorageError::Corrupt`] or [`StorageError::Unsupported`] rather than load damaged
    /// or foreign state.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // If the directory was just created, its own entry must be durable too, or a power
        // loss could take the whole directory, synced records included, with it.
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
        for tmp in [SNAPSHOT_TMP, LOG_TMP, SNAPSHOT_NEXT] {
            let path = dir.join(tmp);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
                _ => {}
            }
        }

        let snapshot_path = dir.join(SNAPSHOT);
        let snapshot_generation = match read_optional(&snapshot_path)? {
            None => 0,
            Some(bytes) => {
                format::parse_snapshot(&bytes)
                    .map_err(|b| b.at(&snapshot_path))?
                    .0
            }
        };

        let log_path = dir.join(LOG);
        Self::settle_next_log(&dir, snapshot_generation)?;
        let Some(bytes) = read_optional(&log_path)? else {
            if snapshot_generation != 0 {
                let reason =
                    format!("log is missing next to snapshot generation {snapshot_generation}");
                return Err(corrupt(&log_path, 0, reason));
            }
            return Self::with_fresh_log(dir, 0);
        };
        let log_generation =
            format::parse_header(&bytes, LOG_MAGIC).map_err(|b| b.at(&log_path))?;
        if log_generation < snapshot_generation {
            // Crash between the two renames of install_snapshot: the snapshot includes this log.
            return Self::with_fresh_log(dir, snapshot_generation);
        }
        if log_generation > snapshot_generation {
            let reason = format!(
                "log generation {log_generation} is newer than snapshot generation \
                 {snapshot_generation}: the snapshot is missing or was replaced"
            );
            return Err(corrupt(&log_path, 12, reason));
        }
        let end = format::scan_records(&bytes)
            .map_err(|b| b.at(&log_path))?
            .end as u64;

        let mut log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        (|| {
            if end < bytes.len() as u64 {
                log.set_len(end)?;
            }
            log.sync_all()?;
            log.seek(SeekFrom::Start(end))
        })()
        .map_err(io_err(&log_path))?;
        Ok(Self::new(dir, log, log_generation, end))
    }

    /// Puts a `log.next` left by a crash in the middle of a background snapshot where it
    /// belongs: in place of `log` if the snapshot it goes with was installed, else nowhere.
    fn settle_next_log(dir: &Path, snapshot_generation: u64) -> Result<()> {
        let next_path = dir.join(LOG_NEXT);
        let Some(bytes) = read_optional(&next_path)? else {
            return Ok(());
        };
        let installed = format::parse_header(&bytes, LOG_MAGIC)
            .is_ok_and(|generation| generation == snapshot_generation && generation > 0);
        if installed {
            let log_path = dir.join(LOG);
            fs::rename(&next_path, &log_path).map_err(io_err(&log_path))?;
        } else {
            fs::remove_file(&next_path).map_err(io_err(&next_path))?;
        }
        sync_dir(dir)
    }

    fn with_fresh_log(dir: PathBuf, generation: u64) -> Result<Self> {
        let log = write_atomically(
            &dir,
            LOG_TMP,
            LOG,
            &[&format::header(LOG_MAGIC, generation)],
        )?;
        Ok(Self::new(dir, log, generation, HEADER_LEN as u64))
    }

    fn new(dir: PathBuf, log: File, generation: u64, len: u64) -> Self {
        Self {
            dir,
            log,
            generation,
            buf: Vec::new(),
            written: len,
            synced: len,
            failed: false,
            writing: None,
        }
    }

    /// Whether `dir` holds durable state: a snapshot, or a log with at least one complete
    /// record. It only reads, creates nothing, and may run while another process appends
    /// there (a record still being written is not complete, so it does not count). A
    /// missing directory, or one with only an empty log, holds none.
    pub fn holds_state(dir: impl AsRef<Path>) -> Result<bool> {
        let dir = dir.as_ref();
        let snapshot = dir.join(SNAPSHOT);
        if snapshot.try_exists().map_err(io_err(&snapshot))? {
            return Ok(true);
        }
        let log = dir.join(LOG);
        let Some(bytes) = read_optional(&log)? else {
            return Ok(false);
        };
        format::parse_header(&bytes, LOG_MAGIC).map_err(|b| b.at(&log))?;
        let scan = format::scan_records(&bytes).map_err(|b| b.at(&log))?;
        Ok(!scan.records.is_empty())
    }

    /// The directory this storage lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs a mutating step, and marks the instance failed if it fails (see the type docs).
    fn guarded<T>(&mut self, step: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.failed {
            return Err(StorageError::Io {
                path: self.dir.clone(),
                source: io::Error::other(
                    "an earlier storage operation failed; reopen the directory",
                ),
            });
        }
        let out = step(self);
        self.failed = out.is_err();
        out
    }

    fn write_out(&mut self) -> Result<()> {
        self.log
            .write_all(&self.buf)
            .map_err(io_err(&self.dir.join(LOG)))?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Waits for a background snapshot's thread, if any, and forgets that snapshot.
    fn abandon_snapshot(&mut self) -> Result<()> {
        let Some(writing) = self.writing.take() else {
            return Ok(());
        };
        // Its outcome does not matter: `snapshot.next` is deleted either way.
        let _outcome = writing.thread.join();
        let path = self.dir.join(SNAPSHOT_NEXT);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Steps 1–3 of a background snapshot (type docs), once `snapshot.next` is durable.
    fn finish_snapshot(&mut self, mark: u64, generation: u64) -> Result<()> {
        self.write_out()?;
        let log_path = self.dir.join(LOG);
        let mut tail = Vec::with_capacity((self.written - mark) as usize);
        (|| {
            let mut log = File::open(&log_path)?;
            log.seek(SeekFrom::Start(mark))?;
            log.take(self.written - mark).read_to_end(&mut tail)
        })()
        .map_err(io_err(&log_path))?;
        let header = format::header(LOG_MAGIC, generation);
        let log = write_atomically(&self.dir, LOG_TMP, LOG_NEXT, &[&header, &tail])?;
        let snapshot_path = self.dir.join(SNAPSHOT);
        fs::rename(self.dir.join(SNAPSHOT_NEXT), &snapshot_path).map_err(io_err(&snapshot_path))?;
        sync_dir(&self.dir)?;
        // From here a crash recovers the new snapshot with `log.next` (type docs).
        fs::rename(self.dir.join(LOG_NEXT), &log_path).map_err(io_err(&log_path))?;
        sync_dir(&self.dir)?;
        self.log = log;
        self.generation = generation;
        self.written = (HEADER_LEN + tail.len()) as u64;
        self.synced = self.written;
        Ok(())
    }

    fn read_snapshot(&self) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(SNAPSHOT);
        let Some(mut bytes) = read_optional(&path)? else {
            return match self.generation {
                0 => Ok(None),
                g => Err(corrupt(
                    &path,
                    0,
                    format!("snapshot generation {g} has disappeared"),
                )),
            };
        };
        let (generation, payload) = format::parse_snapshot(&bytes).map_err(|b| b.at(&path))?;
        if generation != self.generation {
            let reason = format!(
                "snapshot generation {generation}, expected {}",
                self.generation
            );
            return Err(corrupt(&path, 12, reason));
        }
        bytes.truncate(payload.end);
        bytes.drain(..payload.start);
        Ok(Some(bytes))
    }

    fn read_synced_records(&self) -> Result<Vec<Vec<u8>>> {
        let path = self.dir.join(LOG);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(self.synced).read_to_end(&mut bytes))
            .map_err(io_err(&path))?;
        let generation = format::parse_header(&bytes, LOG_MAGIC).map_err(|b| b.at(&path))?;
        let scan = format::scan_records(&bytes).map_err(|b| b.at(&path))?;
        if generation != self.generation || scan.end as u64 != self.synced {
            let reason = "synced records changed on disk while the storage was open";
            return Err(corrupt(&path, scan.end as u64, reason));
        }
        Ok(scan
            .records
            .into_iter()
            .map(|r| bytes[r].to_vec())
            .collect())
    }
}

impl Storage for FileStorage {
    fn append(&mut self, record: &[u8]) -> Result<()> {
        if record.len() > MAX_RECORD_BYTES {
            return Err(StorageError::RecordTooLarge {
                size: record.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        self.guarded(|s| {
            format::encode_record(&mut s.buf, record);
            if s.buf.len() >= WRITE_OUT_BYTES {
                s.write_out()?;
            }
            Ok(())
        })
    }

    /// Keeps the barrier's promise the simplest way: the records are fsynced before it
    /// returns, so they are durable before anything is sent after it.
    fn persist_before_send(&mut self) -> Result<()> {
        self.guarded(|s| {
            if s.buf.is_empty() && s.written == s.synced {
                return Ok(());
            }
            s.write_out()?;
            s.log.sync_data().map_err(io_err(&s.dir.join(LOG)))?;
            s.synced = s.written;
            Ok(())
        })
    }

    fn install_snapshot(&mut self, snapshot: &[u8]) -> Result<()> {
        self.guarded(|s| {
            s.abandon_snapshot()?;
            let generation = s.next_generation()?;
            let prefix = format::snapshot_prefix(generation, snapshot);
            write_atomically(&s.dir, SNAPSHOT_TMP, SNAPSHOT, &[&prefix, snapshot])?;
            // From here a crash recovers the new snapshot with an empty log (type docs).
            let header = format::header(LOG_MAGIC, generation);
            s.log = write_atomically(&s.dir, LOG_TMP, LOG, &[&header])?;
            s.generation = generation;
            s.buf.clear();
            s.written = HEADER_LEN as u64;
            s.synced = HEADER_LEN as u64;
            Ok(())
        })
    }

    fn recover(&mut self) -> Result<Recovered> {
        Ok(Recovered {
            snapshot: self.read_snapshot()?,
            records: self.read_synced_records()?,
        })
    }

    fn begin_snapshot(&mut self, encode: SnapshotJob) -> Result<SnapshotProgress> {
        if self.writing.is_some() {
            return Err(StorageError::SnapshotBusy);
        }
        self.guarded(|s| {
            let generation = s.next_generation()?;
            let dir = s.dir.clone();
            let thread = std::thread::Builder::new()
                .name("snapshot".into())
                .spawn(move || {
                    lower_this_threads_priority();
                    write_snapshot_file(&dir.join(SNAPSHOT_NEXT), generation, encode)
                })
                .map_err(io_err(&s.dir))?;
            s.writing = Some(Writing {
                mark: s.written + s.buf.len() as u64,
                thread,
            });
            Ok(SnapshotProgress::Writing)
        })
    }

    fn poll_snapshot(&mut self) -> Result<SnapshotProgress> {
        match &self.writing {
            None => return Ok(SnapshotProgress::Idle),
            Some(w) if !w.thread.is_finished() => return Ok(SnapshotProgress::Writing),
            Some(_) => {}
        }
        self.guarded(|s| {
            let Some(writing) = s.writing.take() else {
                return Ok(SnapshotProgress::Idle);
            };
            let written = writing
                .thread
                .join()
                .map_err(|_| StorageError::Encode("the snapshot thread panicked".to_string()))?;
            let bytes = written?;
            let generation = s.next_generation()?;
            s.finish_snapshot(writing.mark, generation)?;
            Ok(SnapshotProgress::Installed { bytes })
        })
    }
}

impl FileStorage {
    fn next_generation(&self) -> Result<u64> {
        self.generation.checked_add(1).ok_or_else(|| {
            corrupt(
                &self.dir.join(SNAPSHOT),
                12,
                "snapshot generation counter exhausted",
            )
        })
    }
}

/// How many bytes of a background snapshot may be written before they are flushed to the
/// device. A snapshot of a big state written in one go and synced at its end leaves gigabytes
/// of dirty pages, and the log's fsyncs (every client write waits for one) queue behind their
/// writeback; flushing as it goes keeps that queue short.
const SNAPSHOT_SYNC_BYTES: usize = 2 << 20;

/// Streams `encode`'s bytes into a new snapshot file at `path` and makes it durable; returns
/// the payload's length. The prefix (length and checksum) is written last, over a
/// placeholder: until then the file does not parse, and a crash leaves it to be removed at
/// the next open like any unfinished `snapshot.next`.
fn write_snapshot_file(path: &Path, generation: u64, encode: SnapshotJob) -> Result<usize> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut sink = SnapshotSink {
        out: io::BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
        len: 0,
        unsynced: 0,
    };
    sink.out
        .write_all(&[0; format::SNAPSHOT_PREFIX_LEN])
        .map_err(io_err(path))?;
    encode(&mut sink).map_err(StorageError::Encode)?;
    let SnapshotSink { out, crc, len, .. } = sink;
    let prefix = format::snapshot_prefix_of(generation, len as u64, crc.finalize());
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|mut file| {
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&prefix)?;
            file.sync_all()
        })
        .map_err(io_err(path))?;
    Ok(len)
}

/// The writer a background snapshot is encoded into: the file, through a buffer, with the
/// payload's length and checksum kept as it passes and its pages flushed every
/// [`SNAPSHOT_SYNC_BYTES`].
struct SnapshotSink {
    out: io::BufWriter<File>,
    crc: crc32fast::Hasher,
    len: usize,
    unsynced: usize,
}

impl Write for SnapshotSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n;
        self.unsynced += n;
        if self.unsynced >= SNAPSHOT_SYNC_BYTES {
            self.out.flush()?;
            self.out.get_ref().sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Gives the calling thread (a snapshot writer) a lower CPU priority than the threads that
/// serve clients, so that encoding a big state takes the CPU the apply path leaves over
/// instead of competing with it. Linux schedules threads separately, so this touches only
/// the calling thread; elsewhere it does nothing, since it would lower the whole process.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        /// `nice` 10: half-way to the lowest priority.
        const SNAPSHOT_NICE: libc::c_int = 10;
        // SAFETY: gettid and setpriority take no pointers; a failure leaves the priority
        // as it was, which is only slower.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, SNAPSHOT_NICE);
        }
    }
}

/// Writes `parts` to `dir/tmp`, fsyncs it, renames it to `dir/name` and fsyncs the
/// directory, so `name` is either wholly old or wholly new after a crash. Returns the file,
/// positioned at its end.
fn write_atomically(dir: &Path, tmp: &str, name: &str, parts: &[&[u8]]) -> Result<File> {
    let tmp_path = dir.join(tmp);
    let mut file = File::create(&tmp_path)
        .and_then(|mut f| {
            parts.iter().try_for_each(|p| f.write_all(p))?;
            f.sync_all()?;
            Ok(f)
        })
        .map_err(io_err(&tmp_path))?;
    let path = dir.join(name);
    fs::rename(&tmp_path, &path).map_err(io_err(&path))?;
    sync_dir(dir)?;
    file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
    Ok(file)
}

/// Makes renames and creations inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}
