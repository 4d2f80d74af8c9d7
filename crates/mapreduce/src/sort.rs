//! External sorting under a memory budget.
//!
//! [`Sorter`] buffers records in one arena; when the buffer passes the budget it is sorted
//! (stably, by key bytes), optionally combined, and spilled to a run file. [`Merger`] merges
//! sorted runs k ways; when there are more runs than the fan-in allows, [`merge_down`]
//! first merges consecutive groups of them into longer runs. Ties between runs go to the
//! earlier run, so the order of values for a key is deterministic: by run, then by arrival.
//! Memory use is the budget plus one read buffer per merged run, whatever the input size.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::record::{RecordReader, RecordWriter, Run};

/// Folds values for one key into one (an application's combiner).
pub type Combine<'a> = &'a dyn Fn(&[u8], &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8>;

/// Bytes of bookkeeping charged per buffered record on top of its key and value.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>();
/// Read buffer per run while merging; the fan-in is the budget divided by twice this.
const MERGE_BUF: usize = 64 * 1024;

/// How many runs to merge at once under `budget` bytes.
pub fn fan_in(budget: usize) -> usize {
    (budget / (2 * MERGE_BUF)).clamp(2, 256)
}

#[derive(Clone, Copy)]
struct Entry {
    off: usize,
    klen: u32,
    vlen: u32,
}

/// An in-memory buffer of records, spilled as sorted runs when it outgrows its budget.
pub struct Sorter<'a> {
    dir: PathBuf,
    budget: usize,
    combine: Option<Combine<'a>>,
    data: Vec<u8>,
    entries: Vec<Entry>,
    runs: Vec<Run>,
}

impl<'a> Sorter<'a> {
    /// Spills go to fresh files in `dir`.
    pub fn new(dir: &Path, budget: usize, combine: Option<Combine<'a>>) -> Self {
        Sorter {
            dir: dir.to_path_buf(),
            budget: budget.max(1),
            combine,
            data: Vec::new(),
            entries: Vec::new(),
            runs: Vec::new(),
        }
    }

    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.entries.push(Entry {
            off: self.data.len(),
            klen: key.len() as u32,
            vlen: value.len() as u32,
        });
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
        if self.data.len() + self.entries.len() * ENTRY_OVERHEAD >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// How many runs have been spilled to disk so far.
    pub fn spilled_runs(&self) -> usize {
        self.runs.len()
    }

    fn sort_buffer(&mut self) {
        let data = &self.data;
        let key = |e: &Entry| &data[e.off..e.off + e.klen as usize];
        self.entries.sort_by(|a, b| key(a).cmp(key(b)));
    }

    fn spill(&mut self) -> Result<()> {
        self.sort_buffer();
        let path = self.dir.join(format!("spill-{}", self.runs.len()));
        let mut w = RecordWriter::create(&path)?;
        let source = Source::Mem {
            data: std::mem::take(&mut self.data),
            entries: std::mem::take(&mut self.entries),
            pos: 0,
        };
        let mut merger = Merger::from_sources(vec![source])?;
        write_merged(&mut merger, self.combine, &mut w)?;
        let len = w.finish()?;
        self.runs.push(Run::whole(path, len));
        Ok(())
    }

    /// Sorts what is left and returns a merger over everything pushed, in key order.
    pub fn finish(mut self) -> Result<Merger> {
        self.sort_buffer();
        let mem = Source::Mem {
            data: std::mem::take(&mut self.data),
            entries: std::mem::take(&mut self.entries),
            pos: 0,
        };
        let fan = fan_in(self.budget);
        let runs = merge_down(std::mem::take(&mut self.runs), &self.dir, fan, self.combine)?;
        let mut sources = runs
            .iter()
            .map(|r| RecordReader::open(r).map(Source::File))
            .collect::<Result<Vec<_>>>()?;
        // The in-memory remainder was pushed last, so it is the last source.
        sources.push(mem);
        Merger::from_sources(sources)
    }
}

/// Writes a merger's records to `w`, folding each key's values with `combine` if given.
pub fn write_merged(
    merger: &mut Merger,
    combine: Option<Combine<'_>>,
    w: &mut RecordWriter,
) -> Result<()> {
    match combine {
        None => {
            while let Some((k, v)) = merger.pop()? {
                w.write(&k, &v)?;
            }
            Ok(())
        }
        Some(c) => for_each_group(merger, |k, vals| w.write(k, &c(k, vals))),
    }
}

/// Merges consecutive groups of `runs` into new runs in `dir` until at most `fan` remain.
pub fn merge_down(
    mut runs: Vec<Run>,
    dir: &Path,
    fan: usize,
    combine: Option<Combine<'_>>,
) -> Result<Vec<Run>> {
    let mut pass = 0;
    while runs.len() > fan {
        let mut next = Vec::new();
        for (i, group) in runs.chunks(fan).enumerate() {
            let path = dir.join(format!("merge-{pass}-{i}"));
            let mut w = RecordWriter::create(&path)?;
            let sources = group
                .iter()
                .map(|r| RecordReader::open(r).map(Source::File))
                .collect::<Result<Vec<_>>>()?;
            write_merged(&mut Merger::from_sources(sources)?, combine, &mut w)?;
            let len = w.finish()?;
            next.push(Run::whole(path, len));
        }
        for r in &runs {
            // Inputs of this pass are no longer needed; failing to delete only costs disk.
            if r.path.starts_with(dir) {
                let _ = std::fs::remove_file(&r.path);
            }
        }
        runs = next;
        pass += 1;
    }
    Ok(runs)
}

enum Source {
    Mem {
        data: Vec<u8>,
        entries: Vec<Entry>,
        pos: usize,
    },
    File(RecordReader),
}

impl Source {
    fn next(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        match self {
            Source::Mem { data, entries, pos } => {
                let Some(e) = entries.get(*pos) else {
                    return Ok(None);
                };
                *pos += 1;
                let k = e.off + e.klen as usize;
                Ok(Some((
                    data[e.off..k].to_vec(),
                    data[k..k + e.vlen as usize].to_vec(),
                )))
            }
            Source::File(r) => r.next_record(),
        }
    }
}

struct Head {
    key: Vec<u8>,
    value: Vec<u8>,
    src: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse so the smallest (key, source) comes out first.
        (&other.key, other.src).cmp(&(&self.key, self.src))
    }
}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}

/// A k-way merge of sorted sources.
pub struct Merger {
    sources: Vec<Source>,
    heap: BinaryHeap<Head>,
}

impl Merger {
    /// Merges the given sorted runs (at most a fan-in's worth; see [`merge_down`]).
    pub fn from_runs(runs: &[Run]) -> Result<Self> {
        let sources = runs
            .iter()
            .map(|r| RecordReader::open(r).map(Source::File))
            .collect::<Result<Vec<_>>>()?;
        Self::from_sources(sources)
    }

    fn from_sources(mut sources: Vec<Source>) -> Result<Self> {
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (src, s) in sources.iter_mut().enumerate() {
            if let Some((key, value)) = s.next()? {
                heap.push(Head { key, value, src });
            }
        }
        Ok(Merger { sources, heap })
    }

    pub fn peek_key(&self) -> Option<&[u8]> {
        self.heap.peek().map(|h| h.key.as_slice())
    }

    pub fn pop(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some(Head { key, value, src }) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some((k, v)) = self.sources[src].next()? {
            self.heap.push(Head {
                key: k,
                value: v,
                src,
            });
        }
        Ok(Some((key, value)))
    }
}

/// The values of one key, pulled from the merger as the consumer asks for them, so a key
/// with more values than fit in memory can still be reduced.
struct GroupValues<'m> {
    merger: &'m mut Merger,
    key: &'m [u8],
    first: Option<Vec<u8>>,
    err: Option<crate::error::MrError>,
}

impl Iterator for GroupValues<'_> {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        if let Some(v) = self.first.take() {
            return Some(v);
        }
        if self.err.is_some() || self.merger.peek_key() != Some(self.key) {
            return None;
        }
        match self.merger.pop() {
            Ok(rec) => rec.map(|(_, v)| v),
            Err(e) => {
                self.err = Some(e);
                None
            }
        }
    }
}

/// Calls `f(key, values)` once per distinct key, in key order.
pub fn for_each_group(
    merger: &mut Merger,
    mut f: impl FnMut(&[u8], &mut dyn Iterator<Item = Vec<u8>>) -> Result<()>,
) -> Result<()> {
    while let Some((key, first)) = merger.pop()? {
        let mut vals = GroupValues {
            merger: &mut *merger,
            key: &key,
            first: Some(first),
            err: None,
        };
        f(&key, &mut vals)?;
        // Skip whatever the consumer did not read.
        vals.by_ref().for_each(drop);
        if let Some(e) = vals.err {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(merger: &mut Merger) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(r) = merger.pop().unwrap() {
            out.push(r);
        }
        out
    }

    #[test]
    fn small_budget_spills_and_merges_in_order_stably() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::new(dir.path(), 200, None);
        let mut expect = Vec::new();
        for i in 0..2000u32 {
            let k = format!("k{:03}", (i * 7919) % 500).into_bytes();
            let v = i.to_string().into_bytes();
            s.push(&k, &v).unwrap();
            expect.push((k, v));
        }
        assert!(s.spilled_runs() > 100, "{} runs", s.spilled_runs());
        // Stable: equal keys keep push order, even across spills and merge passes.
        expect.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(collect(&mut s.finish().unwrap()), expect);
    }

    #[test]
    fn combiner_folds_values_and_groups_stream() {
        let dir = tempfile::tempdir().unwrap();
        let sum = |_: &[u8], vals: &mut dyn Iterator<Item = Vec<u8>>| {
            vals.map(|v| String::from_utf8(v).unwrap().parse::<u64>().unwrap())
                .sum::<u64>()
                .to_string()
                .into_bytes()
        };
        let mut s = Sorter::new(dir.path(), 100, Some(&sum));
        for i in 0..1000u64 {
            s.push(format!("w{}", i % 3).as_bytes(), b"1").unwrap();
        }
        let mut m = s.finish().unwrap();
        let mut groups = Vec::new();
        for_each_group(&mut m, |k, vals| {
            groups.push((k.to_vec(), sum(k, vals)));
            Ok(())
        })
        .unwrap();
        let got: Vec<(String, String)> = groups
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("w0".into(), "334".into()),
                ("w1".into(), "333".into()),
                ("w2".into(), "333".into())
            ]
        );
    }

    #[test]
    fn unread_values_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::new(dir.path(), 1 << 20, None);
        for k in ["a", "a", "a", "b"] {
            s.push(k.as_bytes(), b"v").unwrap();
        }
        let mut keys = Vec::new();
        for_each_group(&mut s.finish().unwrap(), |k, _| {
            keys.push(k.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
    }
}
