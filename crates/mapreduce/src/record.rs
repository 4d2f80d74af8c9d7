//! The on-disk format of intermediate data: a sequence of records, each
//! `u32 LE key length | key | u32 LE value length | value`. Map outputs, spilled runs and
//! fetched partitions all use it, so one reader and one writer serve them all.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{MrError, Result};

const BUF: usize = 64 * 1024;

/// Appends records to a file and counts the bytes written.
pub struct RecordWriter {
    out: BufWriter<File>,
    path: PathBuf,
    written: u64,
}

impl RecordWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let f = File::create(path).map_err(MrError::io("cannot create", path))?;
        Ok(RecordWriter {
            out: BufWriter::with_capacity(BUF, f),
            path: path.to_path_buf(),
            written: 0,
        })
    }

    pub fn write(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut put = |b: &[u8]| self.out.write_all(b);
        put(&(key.len() as u32).to_le_bytes())
            .and_then(|_| put(key))
            .and_then(|_| put(&(value.len() as u32).to_le_bytes()))
            .and_then(|_| put(value))
            .map_err(MrError::io("cannot write", &self.path))?;
        self.written += 8 + key.len() as u64 + value.len() as u64;
        Ok(())
    }

    /// Bytes written so far: the offset of the next record.
    pub fn position(&self) -> u64 {
        self.written
    }

    pub fn finish(mut self) -> Result<u64> {
        self.out
            .flush()
            .map_err(MrError::io("cannot write", &self.path))?;
        Ok(self.written)
    }
}

/// A sorted run: records in `[start, end)` of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub path: PathBuf,
    pub start: u64,
    pub end: u64,
}

impl Run {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn whole(path: PathBuf, len: u64) -> Self {
        Run {
            path,
            start: 0,
            end: len,
        }
    }
}

/// Reads the records of one [`Run`] in order.
pub struct RecordReader {
    input: BufReader<File>,
    path: PathBuf,
    left: u64,
}

impl RecordReader {
    pub fn open(run: &Run) -> Result<Self> {
        let mut f = File::open(&run.path).map_err(MrError::io("cannot open", &run.path))?;
        f.seek(SeekFrom::Start(run.start))
            .map_err(MrError::io("cannot seek in", &run.path))?;
        Ok(RecordReader {
            input: BufReader::with_capacity(BUF, f),
            path: run.path.clone(),
            left: run.end.saturating_sub(run.start),
        })
    }

    fn corrupt(&self, reason: &str) -> MrError {
        MrError::Corrupt {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    fn field(&mut self) -> Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(|_| self.corrupt("truncated length"))?;
        let len = u64::from(u32::from_le_bytes(len));
        if len + 4 > self.left {
            return Err(self.corrupt("record runs past the end of the run"));
        }
        let mut v = vec![0u8; len as usize];
        self.input
            .read_exact(&mut v)
            .map_err(|_| self.corrupt("truncated record"))?;
        self.left -= 4 + len;
        Ok(v)
    }

    /// The next record, or `None` at the end of the run.
    pub fn next_record(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.left == 0 {
            return Ok(None);
        }
        let key = self.field()?;
        if self.left == 0 {
            return Err(self.corrupt("key without a value"));
        }
        let value = self.field()?;
        Ok(Some((key, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncation_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r");
        let mut w = RecordWriter::create(&p).unwrap();
        w.write(b"k1", b"v1").unwrap();
        w.write(b"", b"").unwrap();
        let mid = w.position();
        w.write(b"k3", b"value three").unwrap();
        let len = w.finish().unwrap();
        let mut r = RecordReader::open(&Run::whole(p.clone(), len)).unwrap();
        assert_eq!(
            r.next_record().unwrap(),
            Some((b"k1".to_vec(), b"v1".to_vec()))
        );
        assert_eq!(r.next_record().unwrap(), Some((vec![], vec![])));
        assert_eq!(r.next_record().unwrap().unwrap().1, b"value three");
        assert_eq!(r.next_record().unwrap(), None);
        let tail = Run {
            path: p.clone(),
            start: mid,
            end: len,
        };
        assert!(RecordReader::open(&tail)
            .unwrap()
            .next_record()
            .unwrap()
            .is_some());
        let cut = Run {
            path: p,
            start: 0,
            end: len - 1,
        };
        let mut r = RecordReader::open(&cut).unwrap();
        r.next_record().unwrap();
        r.next_record().unwrap();
        assert!(matches!(r.next_record(), Err(MrError::Corrupt { .. })));
    }
}
