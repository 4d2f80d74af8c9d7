//! `FileStorage`'s background snapshot on real files: the log is cut only once the snapshot
//! is durable, records appended meanwhile survive, and a crash at each step recovers the
//! same state.

mod common;

use std::fs;

use common::{records, reopen, tempdir};
use synod_storage::{FileStorage, Recovered, SnapshotJob, SnapshotProgress, Storage};

fn job(bytes: &[u8]) -> SnapshotJob {
    let bytes = bytes.to_vec();
    Box::new(move || Ok(bytes))
}

/// Polls until the snapshot is installed (the thread writes a few bytes; this returns fast).
fn wait_installed(s: &mut FileStorage) -> usize {
    loop {
        match s.poll_snapshot().unwrap() {
            SnapshotProgress::Installed { bytes } => return bytes,
            SnapshotProgress::Writing => std::thread::yield_now(),
            SnapshotProgress::Idle => panic!("no snapshot was being written"),
        }
    }
}

#[test]
fn records_appended_during_a_snapshot_stay_in_the_log() {
    let dir = tempdir();
    let recs = records(6);
    let mut s = FileStorage::open(dir.path()).unwrap();
    for r in &recs[..3] {
        s.append(r).unwrap();
    }
    s.persist_before_send().unwrap();
    assert_eq!(
        s.begin_snapshot(job(b"first three")).unwrap(),
        SnapshotProgress::Writing
    );
    for r in &recs[3..5] {
        s.append(r).unwrap();
    }
    s.persist_before_send().unwrap();
    assert_eq!(wait_installed(&mut s), b"first three".len());
    assert_eq!(s.poll_snapshot().unwrap(), SnapshotProgress::Idle);
    s.append(&recs[5]).unwrap();
    s.persist_before_send().unwrap();
    let expected = Recovered {
        snapshot: Some(b"first three".to_vec()),
        records: recs[3..].to_vec(),
    };
    assert_eq!(s.recover().unwrap(), expected);
    drop(s);
    assert_eq!(reopen(dir.path()).unwrap(), expected);
}

#[test]
fn a_crash_before_the_snapshot_is_installed_keeps_the_old_snapshot_and_the_whole_log() {
    let dir = tempdir();
    let recs = records(4);
    let mut s = FileStorage::open(dir.path()).unwrap();
    s.install_snapshot(b"old").unwrap();
    for r in &recs[..2] {
        s.append(r).unwrap();
    }
    s.persist_before_send().unwrap();
    s.begin_snapshot(job(b"new")).unwrap();
    for r in &recs[2..] {
        s.append(r).unwrap();
    }
    s.persist_before_send().unwrap();
    // The process dies without polling: `snapshot.next` may be complete on disk, but it was
    // never installed.
    drop(s);
    let expected = Recovered {
        snapshot: Some(b"old".to_vec()),
        records: recs.clone(),
    };
    assert_eq!(reopen(dir.path()).unwrap(), expected);
    assert!(!dir.path().join("snapshot.next").exists());
}

#[test]
fn a_crash_between_the_two_renames_recovers_the_new_snapshot_with_its_log() {
    let dir = tempdir();
    let recs = records(4);
    let mut s = FileStorage::open(dir.path()).unwrap();
    for r in &recs[..2] {
        s.append(r).unwrap();
    }
    s.persist_before_send().unwrap();
    s.begin_snapshot(job(b"two")).unwrap();
    for r in &recs[2..] {
        s.append(r).unwrap();
    }
    s.persist_before_send().unwrap();
    let old_log = fs::read(dir.path().join("log")).unwrap();
    wait_installed(&mut s);
    drop(s);
    // Undo step 3: the new log back to `log.next`, the old log in place.
    fs::rename(dir.path().join("log"), dir.path().join("log.next")).unwrap();
    fs::write(dir.path().join("log"), old_log).unwrap();
    let expected = Recovered {
        snapshot: Some(b"two".to_vec()),
        records: recs[2..].to_vec(),
    };
    assert_eq!(reopen(dir.path()).unwrap(), expected);
    assert!(!dir.path().join("log.next").exists());
}

#[test]
fn install_snapshot_abandons_a_background_one() {
    let dir = tempdir();
    let mut s = FileStorage::open(dir.path()).unwrap();
    s.append(b"a").unwrap();
    s.persist_before_send().unwrap();
    s.begin_snapshot(job(b"background")).unwrap();
    s.install_snapshot(b"from a peer").unwrap();
    assert_eq!(s.poll_snapshot().unwrap(), SnapshotProgress::Idle);
    drop(s);
    assert_eq!(
        reopen(dir.path()).unwrap(),
        Recovered {
            snapshot: Some(b"from a peer".to_vec()),
            records: vec![],
        }
    );
}
