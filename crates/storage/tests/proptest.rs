//! Recovery never panics on arbitrary file contents, and never returns anything but a
//! prefix of what was written or an error.

mod common;

use std::fs;

use common::{reopen, tempdir, write_synced};
use proptest::prelude::*;
use synod_storage::{FileStorage, Storage, StorageError};

fn written() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..12)
}

/// Recovering `bytes` as the log next to no snapshot gives a prefix of `recs` or an error
/// that names the damage; never a panic, never an invented or reordered record.
fn assert_prefix_or_error(bytes: &[u8], recs: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let dir = tempdir();
    fs::write(dir.path().join("log"), bytes).unwrap();
    match reopen(dir.path()) {
        Ok(got) => {
            prop_assert!(got.snapshot.is_none());
            prop_assert!(got.records.len() <= recs.len());
            prop_assert_eq!(&got.records[..], &recs[..got.records.len()]);
        }
        Err(StorageError::Corrupt { .. } | StorageError::Unsupported { .. }) => {}
        Err(e) => prop_assert!(false, "unexpected error {e}"),
    }
    Ok(())
}

fn valid_log(recs: &[Vec<u8>]) -> Vec<u8> {
    let dir = tempdir();
    fs::read(write_synced(dir.path(), recs)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        assert_prefix_or_error(&bytes, &[])?;
    }

    #[test]
    fn junk_after_valid_records(
        recs in written(),
        junk in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = valid_log(&recs);
        bytes.extend_from_slice(&junk);
        assert_prefix_or_error(&bytes, &recs)?;
    }

    #[test]
    fn random_truncation(recs in written(), cut in any::<prop::sample::Index>()) {
        let bytes = valid_log(&recs);
        let cut = cut.index(bytes.len() + 1);
        assert_prefix_or_error(&bytes[..cut], &recs)?;
    }

    #[test]
    fn random_bit_flips(recs in written(), flips in prop::collection::vec((any::<prop::sample::Index>(), 0..8u8), 1..4)) {
        let mut bytes = valid_log(&recs);
        for (at, bit) in &flips {
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        assert_prefix_or_error(&bytes, &recs)?;
    }

    /// One flipped bit is always caught by the checksum, so the outcome is exact: a flip in
    /// the last record drops just that record, a flip anywhere else is an error.
    #[test]
    fn single_bit_flip_outcome_is_exact(recs in written(), at in any::<prop::sample::Index>(), bit in 0..8u8) {
        let mut bytes = valid_log(&recs);
        let at = at.index(bytes.len());
        bytes[at] ^= 1 << bit;
        let last_start = bytes.len() - recs.last().map_or(0, |r| r.len() + 8);
        let dir = tempdir();
        fs::write(dir.path().join("log"), &bytes).unwrap();
        let got = reopen(dir.path());
        if at >= last_start && !recs.is_empty() {
            prop_assert_eq!(got.unwrap().records, &recs[..recs.len() - 1]);
        } else {
            prop_assert!(got.is_err(), "flip at {} of {} loaded", at, bytes.len());
        }
    }

    /// A damaged snapshot file is never loaded: it is renamed into place whole, so any
    /// change to its bytes is an error, whatever the log says.
    #[test]
    fn damaged_snapshot_is_refused(
        payload in prop::collection::vec(any::<u8>(), 0..64),
        at in any::<prop::sample::Index>(),
        bit in 0..8u8,
        cut in any::<bool>(),
    ) {
        let dir = tempdir();
        FileStorage::open(dir.path()).unwrap().install_snapshot(&payload).unwrap();
        let path = dir.path().join("snapshot");
        let mut bytes = fs::read(&path).unwrap();
        let at = at.index(bytes.len());
        if cut {
            bytes.truncate(at);
        } else {
            bytes[at] ^= 1 << bit;
        }
        fs::write(&path, &bytes).unwrap();
        let got = reopen(dir.path());
        prop_assert!(
            matches!(got, Err(StorageError::Corrupt { .. } | StorageError::Unsupported { .. })),
            "{:?}", got
        );
    }
}
