//! Crash between write and fsync, with real processes: this test binary re-executes itself
//! as a child that appends and syncs records, keeps appending without syncing, and dies
//! (by `abort`, or by the parent's SIGKILL). The parent then recovers the directory.
//!
//! A process crash keeps what reached the OS, so this checks the parts a process can get
//! wrong (framing, buffering, truncating the tail, generation handling); losing the page
//! cache as well is covered by the torn-tail tests.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{reopen, tempdir};
use synod_storage::{FileStorage, Storage};

const CHILD_DIR: &str = "SYNOD_STORAGE_CRASH_DIR";
const CHILD_MODE: &str = "SYNOD_STORAGE_CRASH_MODE";
const SYNCED: usize = 200;
const SYNCED_MARK: &str = "SYNOD-CHILD-SYNCED";
/// Enough unsynced bytes that several write-outs reach the file before the crash.
const UNSYNCED: usize = 3000;

/// Record `i` of the child's sequence: distinct, with a length that varies.
fn record(i: usize) -> Vec<u8> {
    format!("{i:06}:{}", "p".repeat(i % 300)).into_bytes()
}

/// The child's body. A no-op in a normal test run, where the env var is unset.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else {
        return;
    };
    let mut s = FileStorage::open(&dir).unwrap();
    if mode == "snapshot" {
        s.install_snapshot(b"snap").unwrap();
    }
    for i in 0..SYNCED {
        s.append(&record(i)).unwrap();
    }
    s.persist_before_send().unwrap();
    println!("{SYNCED_MARK}");
    // In "kill" mode, keep appending until the parent's SIGKILL lands, at a moment this
    // process does not choose; bounded so an orphaned child cannot fill the disk.
    let unsynced = if mode == "kill" { 200_000 } else { UNSYNCED };
    for i in SYNCED..SYNCED + unsynced {
        s.append(&record(i)).unwrap();
    }
    std::process::abort();
}

fn run_child(dir: &Path, mode: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let synced = stdout
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains(SYNCED_MARK));
    if mode == "kill" {
        child.kill().unwrap();
    }
    let status = child.wait().unwrap();
    assert!(synced, "child exited without syncing: {status}");
    assert!(!status.success(), "child was meant to die: {status}");
}

/// All synced records are there in order, and anything beyond them is a prefix of what
/// the child went on to append.
fn check_recovered(dir: &Path, want_snapshot: Option<&[u8]>) {
    let got = reopen(dir).unwrap();
    eprintln!("recovered {} records, {SYNCED} synced", got.records.len());
    assert_eq!(got.snapshot.as_deref(), want_snapshot);
    assert!(
        got.records.len() >= SYNCED,
        "lost synced records: {}",
        got.records.len()
    );
    for (i, r) in got.records.iter().enumerate() {
        assert_eq!(r, &record(i), "record {i}");
    }
}

#[test]
fn abort_after_unsynced_appends_keeps_synced_records() {
    let dir = tempdir();
    run_child(dir.path(), "abort");
    check_recovered(dir.path(), None);
}

#[test]
fn sigkill_during_unsynced_appends_keeps_synced_records() {
    let dir = tempdir();
    run_child(dir.path(), "kill");
    check_recovered(dir.path(), None);
}

#[test]
fn crash_after_a_snapshot_keeps_snapshot_and_synced_records() {
    let dir = tempdir();
    let mut s = FileStorage::open(dir.path()).unwrap();
    s.append(b"before the snapshot").unwrap();
    s.persist_before_send().unwrap();
    drop(s);
    run_child(dir.path(), "snapshot");
    check_recovered(dir.path(), Some(b"snap"));
}
