//! Running one map or reduce task on local files. The sequential runner and every worker use
//! exactly these functions, which is what makes the sequential run a valid reference.
//!
//! A map task writes one file: its records sorted by (partition, key), with the byte offset
//! where each partition starts, so partition `r` is the [`Run`] between `offsets[r]` and
//! `offsets[r + 1]`. A reduce task merges those runs from every map task and writes its part
//! file through a temporary name.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::app::{App, MapInput};
use crate::error::{MrError, Result};
use crate::job::JobSpec;
use crate::output::{part_name, temp_part};
use crate::record::{RecordWriter, Run};
use crate::sort::{fan_in, for_each_group, merge_down, Merger, Sorter};
use crate::split::{for_each_chunk, Split};

/// Where a finished map task left its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapOutput {
    pub path: PathBuf,
    /// `reduces + 1` offsets: partition `r` spans `offsets[r]..offsets[r + 1]`.
    pub offsets: Vec<u64>,
}

impl MapOutput {
    pub fn run(&self, partition: u32) -> Option<Run> {
        let r = partition as usize;
        Some(Run {
            path: self.path.clone(),
            start: *self.offsets.get(r)?,
            end: *self.offsets.get(r + 1)?,
        })
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Runs `f`, turning a panic in application code into an error naming `what`.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(MrError::App(format!(
            "application panicked in {what}: {}",
            panic_message(p)
        )))
    })
}

/// Runs map task `index` over `split`, writing its output to `out`. `scratch` is an empty
/// directory for spills, which the caller removes afterwards.
pub fn run_map(
    app: &dyn App,
    job: &JobSpec,
    index: u32,
    split: &Split,
    scratch: &Path,
    out: &Path,
) -> Result<MapOutput> {
    guarded(&format!("map task {index}"), || {
        let budget = job.memory_budget as usize;
        // Sort keys carry the partition as a big-endian prefix, so byte order groups
        // partitions first; the combiner sees the key without it.
        let combine =
            |k: &[u8], vals: &mut dyn Iterator<Item = Vec<u8>>| app.combine(&k[4..], vals);
        let combiner: Option<crate::sort::Combine<'_>> = app.has_combiner().then_some(&combine);
        let mut sorter = Sorter::new(scratch, budget / 2, combiner);
        let mut failed: Option<MrError> = None;
        let mut key_buf = Vec::new();
        for piece in &split.pieces {
            let file = job.inputs.get(piece.file as usize).ok_or_else(|| {
                MrError::InvalidJob(format!(
                    "map task {index} names input {} of {}",
                    piece.file,
                    job.inputs.len()
                ))
            })?;
            // One chunk per default-sized split: fewer, larger in-mapper combines and sorts.
            let chunk = (budget / 2).clamp(1 << 16, 32 << 20);
            for_each_chunk(file, piece, chunk, |contents, first_line| {
                let input = MapInput {
                    name: &file.name,
                    contents,
                    first_line,
                };
                app.map(&input, &mut |k, v| {
                    if failed.is_some() {
                        return;
                    }
                    key_buf.clear();
                    key_buf.extend_from_slice(&app.partition(k, job.reduces).to_be_bytes());
                    key_buf.extend_from_slice(k);
                    if let Err(e) = sorter.push(&key_buf, v) {
                        failed = Some(e);
                    }
                });
                failed.take().map_or(Ok(()), Err)
            })?;
        }
        let mut merger = sorter.finish()?;
        let mut w = RecordWriter::create(out)?;
        let mut offsets = vec![0u64];
        let mut write = |key: &[u8], value: &[u8]| -> Result<()> {
            let p = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
            while offsets.len() <= p as usize {
                offsets.push(w.position());
            }
            w.write(&key[4..], value)
        };
        if let Some(c) = combiner {
            for_each_group(&mut merger, |k, vals| write(k, &c(k, vals)))?;
        } else {
            while let Some((k, v)) = merger.pop()? {
                write(&k, &v)?;
            }
        }
        while offsets.len() <= job.reduces as usize {
            offsets.push(w.position());
        }
        w.finish()?;
        Ok(MapOutput {
            path: out.to_path_buf(),
            offsets,
        })
    })
}

/// Runs reduce task `partition` over `runs` (one per map task, in map order) and atomically
/// publishes `part-NNNNN` in the job's output directory. `tag` makes the temporary name
/// unique to this attempt; `scratch` is an empty directory for merge passes.
pub fn run_reduce(
    app: &dyn App,
    job: &JobSpec,
    partition: u32,
    runs: Vec<Run>,
    scratch: &Path,
    tag: &str,
) -> Result<()> {
    guarded(&format!("reduce task {partition}"), || {
        let runs = merge_down(runs, scratch, fan_in(job.memory_budget as usize), None)?;
        let mut merger = Merger::from_runs(&runs)?;
        let tmp = temp_part(&job.output, partition, tag);
        let file = std::fs::File::create(&tmp).map_err(MrError::io("cannot create", &tmp))?;
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
        for_each_group(&mut merger, |k, vals| {
            let v = app.reduce(k, vals);
            out.write_all(k)
                .and_then(|_| out.write_all(b"\t"))
                .and_then(|_| out.write_all(&v))
                .and_then(|_| out.write_all(b"\n"))
                .map_err(MrError::io("cannot write", &tmp))
        })?;
        let file = out
            .into_inner()
            .map_err(|e| MrError::io("cannot write", &tmp)(e.into_error()))?;
        file.sync_all().map_err(MrError::io("cannot sync", &tmp))?;
        let dest = job.output.join(part_name(partition));
        std::fs::rename(&tmp, &dest).map_err(MrError::io("cannot rename into place", &dest))
    })
}
