//! On-disk byte formats of [`FileStorage`](crate::FileStorage), as pure functions over byte
//! slices so every decision recovery makes can be tested without touching a disk.
//!
//! Both files start with the same 24-byte header:
//!
//! ```text
//! [magic: 8 bytes][format version: u32 LE][generation: u64 LE][crc32 of the previous 20 bytes: u32 LE]
//! ```
//!
//! The *generation* counts installed snapshots. The snapshot file carries the generation it
//! was installed as, and the log carries the generation of the snapshot its records follow,
//! so a log left over from before a snapshot (a crash between the two renames) is recognised
//! as stale instead of being replayed on top of a snapshot that already contains it.
//!
//! The log header is followed by records, each framed as
//!
//! ```text
//! [payload length: u32 LE][crc32 of the length bytes and the payload: u32 LE][payload]
//! ```
//!
//! The checksum covers the length as well as the payload because a zero-filled tail (what a
//! file system can expose after a crash that extended the file but never wrote its blocks)
//! would otherwise read as an endless run of valid empty records: crc32 of nothing is 0.
//!
//! The snapshot header is followed by `[payload length: u64 LE][crc32 of payload: u32 LE]`
//! and the payload. A snapshot is only ever renamed into place complete, so any damage to it
//! is corruption; there is no torn-tail case.

use std::ops::Range;
use std::path::Path;

use crate::{StorageError, MAX_RECORD_BYTES};

pub(crate) const LOG_MAGIC: [u8; 8] = *b"SYNODLOG";
pub(crate) const SNAPSHOT_MAGIC: [u8; 8] = *b"SYNODSNP";
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 8;
pub(crate) const SNAPSHOT_PREFIX_LEN: usize = HEADER_LEN + 12;

/// Why bytes could not be decoded; turned into a [`StorageError`] once the path is known.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bad {
    Foreign(String),
    Corrupt { offset: u64, reason: String },
}

impl Bad {
    fn corrupt(offset: usize, reason: impl Into<String>) -> Self {
        Bad::Corrupt {
            offset: offset as u64,
            reason: reason.into(),
        }
    }

    pub(crate) fn at(self, path: &Path) -> StorageError {
        let path = path.to_path_buf();
        match self {
            Bad::Foreign(reason) => StorageError::Unsupported { path, reason },
            Bad::Corrupt { offset, reason } => StorageError::Corrupt {
                path,
                offset,
                reason,
            },
        }
    }
}

/// The common file header for `magic` at `generation`.
pub(crate) fn header(magic: [u8; 8], generation: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&magic);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks the header of a file expected to start with `magic` and returns its generation.
pub(crate) fn parse_header(bytes: &[u8], magic: [u8; 8]) -> Result<u64, Bad> {
    let seen = &bytes[..bytes.len().min(8)];
    if seen != &magic[..seen.len()] {
        return Err(Bad::Foreign(format!(
            "bad magic {seen:02x?}, expected {:?}",
            String::from_utf8_lossy(&magic)
        )));
    }
    if bytes.len() < HEADER_LEN {
        return Err(Bad::corrupt(bytes.len(), "file ends inside its header"));
    }
    // The version is checked before the checksum: a newer format may lay the header out
    // differently, and "newer version" is the useful message then, not "bad checksum".
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(Bad::Foreign(format!(
            "format version {version}, this build reads version {FORMAT_VERSION}"
        )));
    }
    if crc32fast::hash(&bytes[..20]) != u32_at(bytes, 20) {
        return Err(Bad::corrupt(20, "header checksum mismatch"));
    }
    Ok(u64::from_le_bytes(
        bytes[12..20].try_into().expect("8 bytes"),
    ))
}

/// Appends one framed record to `out`. The caller has checked the size limit.
pub(crate) fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len())
        .expect("caller enforces MAX_RECORD_BYTES")
        .to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&record_crc(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn record_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// The records of a log whose header has been checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LogScan {
    /// Byte ranges of the record payloads, in order.
    pub records: Vec<Range<usize>>,
    /// Where the last valid record ends. Anything after it is a torn tail to cut off.
    pub end: usize,
}

/// Reads the records after the header.
///
/// The first record that does not decode ends the scan. If no valid record starts anywhere
/// after it, the damage is a torn tail (a crash during an unsynced write) and is dropped. If
/// one does, the damage is in the middle of the log and loading it would lose records that
/// may have been synced, so it is reported as corruption.
///
/// Two limits of this rule, both accepted in favour of never silently dropping a synced
/// record: a torn tail whose payload happens to contain a complete framed record is reported
/// as corrupt, and so is a multi-record unsynced write whose blocks reached the disk out of
/// order. Both need an operator to truncate the log by hand.
pub(crate) fn scan_records(bytes: &[u8]) -> Result<LogScan, Bad> {
    let mut records = Vec::new();
    let mut pos = HEADER_LEN.min(bytes.len());
    while pos < bytes.len() {
        match record_at(bytes, pos) {
            Ok(payload) => {
                pos = payload.end;
                records.push(payload);
            }
            Err(reason) => {
                let last_start = bytes.len().saturating_sub(RECORD_HEADER_LEN);
                if (pos + 1..=last_start).any(|q| record_at(bytes, q).is_ok()) {
                    return Err(Bad::corrupt(
                        pos,
                        format!("{reason}, and valid records follow it"),
                    ));
                }
                break;
            }
        }
    }
    Ok(LogScan { records, end: pos })
}

/// The payload range of the record starting at `pos`, or why there is no valid one there.
fn record_at(bytes: &[u8], pos: usize) -> Result<Range<usize>, String> {
    let start = pos + RECORD_HEADER_LEN;
    let head = bytes
        .get(pos..start)
        .ok_or("file ends inside a record header")?;
    let len_bytes: [u8; 4] = head[..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_RECORD_BYTES {
        return Err(format!(
            "record length {len} exceeds the limit of {MAX_RECORD_BYTES} bytes"
        ));
    }
    let payload = bytes
        .get(start..start + len)
        .ok_or_else(|| format!("record of {len} bytes runs past the end of the file"))?;
    if record_crc(len_bytes, payload) != u32_at(head, 4) {
        return Err("record checksum mismatch".into());
    }
    Ok(start..start + len)
}

/// The parts of a snapshot file for `payload` at `generation`, to be written in order.
pub(crate) fn snapshot_prefix(generation: u64, payload: &[u8]) -> [u8; SNAPSHOT_PREFIX_LEN] {
    snapshot_prefix_of(generation, payload.len() as u64, crc32fast::hash(payload))
}

/// The prefix of a snapshot whose payload is `len` bytes with checksum `crc` (for a payload
/// written as it is encoded, whose length and checksum are known only at its end).
pub(crate) fn snapshot_prefix_of(generation: u64, len: u64, crc: u32) -> [u8; SNAPSHOT_PREFIX_LEN] {
    let mut p = [0u8; SNAPSHOT_PREFIX_LEN];
    p[..HEADER_LEN].copy_from_slice(&header(SNAPSHOT_MAGIC, generation));
    p[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&len.to_le_bytes());
    p[HEADER_LEN + 8..].copy_from_slice(&crc.to_le_bytes());
    p
}

/// Checks a whole snapshot file; returns its generation and the payload's byte range.
pub(crate) fn parse_snapshot(bytes: &[u8]) -> Result<(u64, Range<usize>), Bad> {
    let generation = parse_header(bytes, SNAPSHOT_MAGIC)?;
    let Some(prefix) = bytes.get(HEADER_LEN..SNAPSHOT_PREFIX_LEN) else {
        return Err(Bad::corrupt(
            bytes.len(),
            "file ends inside the snapshot header",
        ));
    };
    let len = u64::from_le_bytes(prefix[..8].try_into().expect("8 bytes"));
    let actual = (bytes.len() - SNAPSHOT_PREFIX_LEN) as u64;
    if len != actual {
        return Err(Bad::corrupt(
            HEADER_LEN,
            format!("snapshot says {len} payload bytes, file holds {actual}"),
        ));
    }
    let payload = SNAPSHOT_PREFIX_LEN..bytes.len();
    if crc32fast::hash(&bytes[payload.clone()]) != u32_at(prefix, 8) {
        return Err(Bad::corrupt(
            SNAPSHOT_PREFIX_LEN,
            "snapshot checksum mismatch",
        ));
    }
    Ok((generation, payload))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(records: &[&[u8]]) -> Vec<u8> {
        let mut out = header(LOG_MAGIC, 3).to_vec();
        for r in records {
            encode_record(&mut out, r);
        }
        out
    }

    fn payloads<'a>(bytes: &'a [u8], scan: &LogScan) -> Vec<&'a [u8]> {
        scan.records.iter().map(|r| &bytes[r.clone()]).collect()
    }

    #[test]
    fn header_round_trip_and_errors() {
        let h = header(LOG_MAGIC, 42);
        assert_eq!(parse_header(&h, LOG_MAGIC), Ok(42));
        assert!(matches!(
            parse_header(&h, SNAPSHOT_MAGIC),
            Err(Bad::Foreign(_))
        ));
        assert!(matches!(
            parse_header(b"SYNO", LOG_MAGIC),
            Err(Bad::Corrupt { offset: 4, .. })
        ));
        let mut newer = h;
        newer[8] = 2;
        assert!(
            matches!(parse_header(&newer, LOG_MAGIC), Err(Bad::Foreign(m)) if m.contains("version 2"))
        );
        let mut flipped = h;
        flipped[13] ^= 1;
        assert!(matches!(
            parse_header(&flipped, LOG_MAGIC),
            Err(Bad::Corrupt { offset: 20, .. })
        ));
    }

    #[test]
    fn records_round_trip_including_empty() {
        let bytes = log(&[b"one", b"", b"three"]);
        let scan = scan_records(&bytes).unwrap();
        assert_eq!(scan.end, bytes.len());
        assert_eq!(payloads(&bytes, &scan), [&b"one"[..], b"", b"three"]);
    }

    #[test]
    fn zero_filled_tail_is_torn_not_empty_records() {
        let mut bytes = log(&[b"one"]);
        let end = bytes.len();
        bytes.resize(end + 64, 0);
        let scan = scan_records(&bytes).unwrap();
        assert_eq!((scan.records.len(), scan.end), (1, end));
    }

    #[test]
    fn length_beyond_limit_is_torn_at_the_end_and_corrupt_in_the_middle() {
        let mut bytes = log(&[b"one", b"two"]);
        let second = HEADER_LEN + 8 + 3;
        bytes[second..second + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(scan_records(&bytes).unwrap().end, second);
        let mut bytes = log(&[b"one", b"two"]);
        bytes[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            scan_records(&bytes),
            Err(Bad::Corrupt { offset, reason }) if offset == HEADER_LEN as u64 && reason.contains("limit")
        ));
    }

    #[test]
    fn snapshot_round_trip_and_damage() {
        let payload = b"state".as_slice();
        let mut bytes = snapshot_prefix(7, payload).to_vec();
        bytes.extend_from_slice(payload);
        let (generation, range) = parse_snapshot(&bytes).unwrap();
        assert_eq!((generation, &bytes[range]), (7, payload));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 0x80;
        assert!(matches!(parse_snapshot(&flipped), Err(Bad::Corrupt { .. })));
        assert!(matches!(
            parse_snapshot(&bytes[..bytes.len() - 1]),
            Err(Bad::Corrupt { .. })
        ));
        assert!(matches!(
            parse_snapshot(&bytes[..30]),
            Err(Bad::Corrupt { .. })
        ));
    }
}
