//! `FileStorage`'s background snapshot on real files: the log is cut only once the snapshot
//! is durable, records appended meanwhile survive, and a crash at each step recovers the
//! same state.

mod common;

use std::fs;

use common::{records, reopen, tempdir};
use synod_storage::{FileStorage, Recovered, SnapshotJob, SnapshotProgress, Storage};

fn job(bytes: &[u8]) -> SnapshotJob {
    let bytes = bytes.to_vec();
    Box::new(move |out| out.write_all(&bytes).map_err(|e| e.to_string()))
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

/// A snapshot bigger than the flush interval, written in small pieces as an encoder writes
/// it (postcard writes a byte at a time for integers), reads back whole with its checksum.
#[test]
fn a_snapshot_streamed_in_small_writes_across_many_flushes_reads_back_whole() {
    let dir = tempdir();
    let payload: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected_payload = payload.clone();
    let mut s = FileStorage::open(dir.path()).unwrap();
    s.append(b"a").unwrap();
    s.persist_before_send().unwrap();
    let streamed: SnapshotJob = Box::new(move |out| {
        for piece in payload.chunks(1000) {
            out.write_all(&piece[..1]).map_err(|e| e.to_string())?;
            out.write_all(&piece[1..]).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    s.begin_snapshot(streamed).unwrap();
    assert_eq!(wait_installed(&mut s), expected_payload.len());
    drop(s);
    let recovered = reopen(dir.path()).unwrap();
    assert!(
        recovered.snapshot == Some(expected_payload),
        "snapshot differs"
    );
    assert!(recovered.records.is_empty());
}

/// An encoder that fails half-way (as a crash in the middle of writing would leave it):
/// storage reports the failure, nothing is installed, and the old snapshot and the whole
/// log are what a restart sees; the next snapshot then succeeds.
#[test]
fn a_snapshot_that_fails_half_way_keeps_the_old_snapshot_and_the_whole_log() {
    let dir = tempdir();
    let recs = records(3);
    let mut s = FileStorage::open(dir.path()).unwrap();
    s.install_snapshot(b"old").unwrap();
    for r in &recs {
        s.append(r).unwrap();
    }
    s.persist_before_send().unwrap();
    let failing: SnapshotJob = Box::new(|out| {
        out.write_all(&[7; 100_000]).map_err(|e| e.to_string())?;
        Err("the encoder stopped half-way".to_string())
    });
    s.begin_snapshot(failing).unwrap();
    let failed = loop {
        match s.poll_snapshot() {
            Ok(SnapshotProgress::Writing) => std::thread::yield_now(),
            other => break other,
        }
    };
    assert!(
        failed.is_err_and(|e| e.to_string().contains("half-way")),
        "the failure is reported"
    );
    let expected = Recovered {
        snapshot: Some(b"old".to_vec()),
        records: recs.clone(),
    };
    assert_eq!(s.recover().unwrap(), expected);
    drop(s);
    assert_eq!(reopen(dir.path()).unwrap(), expected);
    assert!(!dir.path().join("snapshot.next").exists());
}
