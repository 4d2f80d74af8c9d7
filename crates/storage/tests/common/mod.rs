//! Helpers shared by the `FileStorage` integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use synod_storage::{FileStorage, Recovered, Result, Storage};

/// A fresh directory under Cargo's target tmpdir, which lives on the project disk: fsync
/// on a tmpfs would not exercise anything.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("create tempdir")
}

/// `n` distinct records of varying length (some empty), so framing mistakes show up.
pub fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("record-{i}-{}", "x".repeat(i % 7)).into_bytes())
        .map(|r| if r.len() % 5 == 0 { Vec::new() } else { r })
        .collect()
}

/// Opens `dir`, appends and syncs `records`, and returns the path of the log file.
pub fn write_synced(dir: &Path, records: &[Vec<u8>]) -> PathBuf {
    let mut s = FileStorage::open(dir).expect("open");
    for r in records {
        s.append(r).expect("append");
    }
    s.persist_before_send().expect("sync");
    dir.join("log")
}

/// What a restarted node would see in `dir`.
pub fn reopen(dir: &Path) -> Result<Recovered> {
    FileStorage::open(dir)?.recover()
}
