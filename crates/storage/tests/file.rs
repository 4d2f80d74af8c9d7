//! `FileStorage` behaviour on real files: round trips, torn tails, corruption, foreign
//! files, and every crash point of `install_snapshot`.

mod common;

use std::fs;

use common::{records, reopen, tempdir, write_synced};
use synod_storage::{FileStorage, Recovered, Storage, StorageError, MAX_RECORD_BYTES};

#[test]
fn round_trip_and_reopen_after_drop() {
    let dir = tempdir();
    let recs = records(50);
    let mut s = FileStorage::open(dir.path()).unwrap();
    assert_eq!(s.recover().unwrap(), Recovered::default());
    for r in &recs[..30] {
        s.append(r).unwrap();
    }
    s.persist_before_send().unwrap();
    assert_eq!(s.recover().unwrap().records, recs[..30]);
    drop(s);

    let mut s = FileStorage::open(dir.path()).unwrap();
    assert_eq!(s.recover().unwrap().records, recs[..30]);
    for r in &recs[30..] {
        s.append(r).unwrap();
    }
    s.persist_before_send().unwrap();
    drop(s);
    assert_eq!(reopen(dir.path()).unwrap().records, recs);
}

#[test]
fn recover_returns_only_synced_records() {
    let dir = tempdir();
    let mut s = FileStorage::open(dir.path()).unwrap();
    s.append(b"synced").unwrap();
    s.persist_before_send().unwrap();
    s.append(b"pending").unwrap();
    assert_eq!(s.recover().unwrap().records, [b"synced".to_vec()]);
    s.persist_before_send().unwrap();
    assert_eq!(s.recover().unwrap().records.len(), 2);
}

#[test]
fn large_records_and_write_out_between_syncs() {
    let dir = tempdir();
    // Bigger than the write-out buffer, so appends reach the file before any sync.
    let recs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 300 << 10]).collect();
    let mut s = FileStorage::open(dir.path()).unwrap();
    for r in &recs {
        s.append(r).unwrap();
    }
    s.persist_before_send().unwrap();
    drop(s);
    assert_eq!(reopen(dir.path()).unwrap().records, recs);
}

#[test]
fn oversized_record_is_refused_and_storage_stays_usable() {
    let dir = tempdir();
    let mut s = FileStorage::open(dir.path()).unwrap();
    let err = s.append(&vec![0; MAX_RECORD_BYTES + 1]).unwrap_err();
    assert!(
        matches!(err, StorageError::RecordTooLarge { size, .. } if size == MAX_RECORD_BYTES + 1)
    );
    s.append(b"ok").unwrap();
    s.persist_before_send().unwrap();
    assert_eq!(s.recover().unwrap().records, [b"ok".to_vec()]);
}

#[test]
fn torn_last_record_at_every_offset_is_dropped() {
    let dir = tempdir();
    let recs = records(6);
    let log = write_synced(dir.path(), &recs);
    let full = fs::read(&log).unwrap();
    let last_len = recs.last().unwrap().len() + 8;
    for cut in full.len() - last_len..full.len() {
        fs::write(&log, &full[..cut]).unwrap();
        let got = reopen(dir.path()).unwrap();
        assert_eq!(got.records, recs[..5], "cut at {cut}");
        // The torn bytes were cut off, so a new append lands right after the good records.
        assert_eq!(
            fs::metadata(&log).unwrap().len() as usize,
            full.len() - last_len
        );
    }
}

#[test]
fn flipped_bit_in_last_record_is_torn_in_a_middle_record_is_corrupt() {
    let dir = tempdir();
    let recs = vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()];
    let log = write_synced(dir.path(), &recs);
    let full = fs::read(&log).unwrap();

    let mut last = full.clone();
    *last.last_mut().unwrap() ^= 0x10;
    fs::write(&log, &last).unwrap();
    assert_eq!(reopen(dir.path()).unwrap().records, recs[..2]);

    let second_payload = 24 + 8 + 5 + 8;
    let mut middle = full.clone();
    middle[second_payload] ^= 0x01;
    fs::write(&log, &middle).unwrap();
    match reopen(dir.path()) {
        Err(StorageError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, 24 + 8 + 5);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Refusing must not have modified the file: an operator can still inspect it.
    assert_eq!(fs::read(&log).unwrap(), middle);
}

#[test]
fn impossible_length_in_the_middle_is_corrupt() {
    let dir = tempdir();
    let log = write_synced(dir.path(), &[b"a".to_vec(), b"b".to_vec()]);
    let mut bytes = fs::read(&log).unwrap();
    bytes[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&log, &bytes).unwrap();
    assert!(matches!(
        reopen(dir.path()),
        Err(StorageError::Corrupt { offset: 24, .. })
    ));
}

#[test]
fn foreign_and_newer_files_are_refused_clearly() {
    let dir = tempdir();
    let log = write_synced(dir.path(), &[b"a".to_vec()]);
    let good = fs::read(&log).unwrap();

    fs::write(&log, b"#!/bin/sh\necho not a log\n").unwrap();
    let err = reopen(dir.path()).unwrap_err();
    assert!(matches!(err, StorageError::Unsupported { .. }), "{err}");

    let mut newer = good.clone();
    newer[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(&log, &newer).unwrap();
    let err = reopen(dir.path()).unwrap_err();
    assert!(err.to_string().contains("format version 2"), "{err}");

    fs::write(&log, &good[..10]).unwrap();
    assert!(matches!(
        reopen(dir.path()),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn snapshot_replaces_log_and_survives_reopen() {
    let dir = tempdir();
    let mut s = FileStorage::open(dir.path()).unwrap();
    s.append(b"old").unwrap();
    s.persist_before_send().unwrap();
    s.append(b"unsynced").unwrap();
    s.install_snapshot(b"snap-1").unwrap();
    s.append(b"after").unwrap();
    s.persist_before_send().unwrap();
    let want = Recovered {
        snapshot: Some(b"snap-1".to_vec()),
        records: vec![b"after".to_vec()],
    };
    assert_eq!(s.recover().unwrap(), want);
    s.install_snapshot(b"snap-2").unwrap();
    drop(s);
    let got = reopen(dir.path()).unwrap();
    assert_eq!(
        (got.snapshot.as_deref(), got.records.len()),
        (Some(&b"snap-2"[..]), 0)
    );
}

/// The directory's files right before and right after an `install_snapshot`, to build
/// every state a crash in the middle of it can leave.
struct SnapshotStates {
    old_log: Vec<u8>,
    old_snapshot: Vec<u8>,
    new_log: Vec<u8>,
    new_snapshot: Vec<u8>,
}

fn snapshot_states() -> SnapshotStates {
    let dir = tempdir();
    let mut s = FileStorage::open(dir.path()).unwrap();
    s.install_snapshot(b"old-snap").unwrap();
    s.append(b"r1").unwrap();
    s.append(b"r2").unwrap();
    s.persist_before_send().unwrap();
    let old_log = fs::read(dir.path().join("log")).unwrap();
    let old_snapshot = fs::read(dir.path().join("snapshot")).unwrap();
    s.install_snapshot(b"new-snap").unwrap();
    SnapshotStates {
        old_log,
        old_snapshot,
        new_log: fs::read(dir.path().join("log")).unwrap(),
        new_snapshot: fs::read(dir.path().join("snapshot")).unwrap(),
    }
}

/// Files of a directory: (name, contents).
type Files<'a> = Vec<(&'static str, &'a [u8])>;

fn recover_files(files: &Files) -> synod_storage::Result<Recovered> {
    let dir = tempdir();
    for (name, bytes) in files {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    let got = reopen(dir.path())?;
    assert!(!dir.path().join("snapshot.tmp").exists());
    assert!(!dir.path().join("log.tmp").exists());
    // Whatever state was recovered must be stable: appending and reopening keeps it.
    let mut s = FileStorage::open(dir.path())?;
    s.append(b"next")?;
    s.persist_before_send()?;
    drop(s);
    let mut again = reopen(dir.path())?;
    assert_eq!(again.records.pop().as_deref(), Some(&b"next"[..]));
    assert_eq!(again, got);
    Ok(got)
}

#[test]
fn every_snapshot_crash_point_recovers_old_or_new_state() {
    let st = snapshot_states();
    let old = Recovered {
        snapshot: Some(b"old-snap".to_vec()),
        records: vec![b"r1".to_vec(), b"r2".to_vec()],
    };
    let new = Recovered {
        snapshot: Some(b"new-snap".to_vec()),
        records: vec![],
    };
    let half_tmp = &st.new_snapshot[..st.new_snapshot.len() / 2];
    let cases: Vec<(&str, Files, &Recovered)> = vec![
        (
            "crash while writing snapshot.tmp",
            vec![
                ("snapshot", &st.old_snapshot),
                ("log", &st.old_log),
                ("snapshot.tmp", half_tmp),
            ],
            &old,
        ),
        (
            "crash before the snapshot rename",
            vec![
                ("snapshot", &st.old_snapshot),
                ("log", &st.old_log),
                ("snapshot.tmp", &st.new_snapshot),
            ],
            &old,
        ),
        (
            "crash after the snapshot rename, before the log reset",
            vec![("snapshot", &st.new_snapshot), ("log", &st.old_log)],
            &new,
        ),
        (
            "crash before the log rename",
            vec![
                ("snapshot", &st.new_snapshot),
                ("log", &st.old_log),
                ("log.tmp", &st.new_log),
            ],
            &new,
        ),
        (
            "crash after everything",
            vec![("snapshot", &st.new_snapshot), ("log", &st.new_log)],
            &new,
        ),
    ];
    for (name, files, want) in cases {
        assert_eq!(&recover_files(&files).unwrap(), want, "{name}");
    }
}

#[test]
fn impossible_snapshot_states_are_corrupt() {
    let st = snapshot_states();
    let cases: Vec<(&str, Files)> = vec![
        // The second rename reached the disk but the first did not: the old log is gone.
        (
            "log newer than snapshot",
            vec![("snapshot", &st.old_snapshot), ("log", &st.new_log)],
        ),
        ("snapshot deleted", vec![("log", &st.old_log)]),
        ("log deleted", vec![("snapshot", &st.new_snapshot)]),
        (
            "snapshot truncated",
            vec![("snapshot", &st.new_snapshot[..40]), ("log", &st.new_log)],
        ),
    ];
    for (name, files) in cases {
        let err = recover_files(&files).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{name}: {err}");
    }
}

#[test]
fn holds_state_only_after_a_complete_record_or_a_snapshot() {
    let dir = tempdir();
    let path = dir.path().join("replica");
    assert!(
        !FileStorage::holds_state(&path).unwrap(),
        "missing directory"
    );
    let mut s = FileStorage::open(&path).unwrap();
    assert!(!FileStorage::holds_state(&path).unwrap(), "empty log");
    s.append(b"first").unwrap();
    assert!(
        !FileStorage::holds_state(&path).unwrap(),
        "an unwritten record is not state"
    );
    s.persist_before_send().unwrap();
    assert!(FileStorage::holds_state(&path).unwrap(), "a synced record");
    s.install_snapshot(b"state").unwrap();
    assert!(
        FileStorage::holds_state(&path).unwrap(),
        "a snapshot with an empty log"
    );
    drop(s);
    fs::write(path.join("log"), b"not a synod log at all").unwrap();
    fs::remove_file(path.join("snapshot")).unwrap();
    assert!(matches!(
        FileStorage::holds_state(&path),
        Err(StorageError::Unsupported { .. } | StorageError::Corrupt { .. })
    ));
}
