//! Group commit on `FileStorage`: 100-byte appends with one fsync per append (the baseline)
//! against one fsync per 16 and per 64 appends. Prints the median of several runs in
//! records/s and the ratio to the baseline measured in the same run.
//!
//! Runs in Cargo's target tmpdir, on the project disk: a tmpfs would make fsync free.

use std::time::Instant;

use synod_storage::{FileStorage, Storage};

const RUNS: usize = 7;
/// fsyncs per run: the cost being measured, so every mode pays the same number.
const SYNCS_PER_RUN: usize = 300;
const RECORD: [u8; 100] = [0xab; 100];

/// One run: `SYNCS_PER_RUN` groups of `batch` appends, each group followed by a sync.
fn records_per_second(batch: usize) -> f64 {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut s = FileStorage::open(dir.path()).expect("open");
    let start = Instant::now();
    for _ in 0..SYNCS_PER_RUN {
        for _ in 0..batch {
            s.append(&RECORD).expect("append");
        }
        s.persist_before_send().expect("sync");
    }
    (SYNCS_PER_RUN * batch) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    const BATCHES: [usize; 3] = [1, 16, 64];
    println!(
        "FileStorage group commit: {}-byte records, {SYNCS_PER_RUN} syncs per run, median of {RUNS} runs",
        RECORD.len()
    );
    // Modes take turns within each round, so drift in disk load hits them all alike.
    let mut rates = vec![Vec::new(); BATCHES.len()];
    for _ in 0..RUNS {
        for (batch, rate) in BATCHES.iter().zip(&mut rates) {
            rate.push(records_per_second(*batch));
        }
    }
    let rates: Vec<f64> = rates.into_iter().map(median).collect();
    for (batch, rate) in BATCHES.iter().zip(&rates) {
        println!(
            "  {batch:>3} appends per sync: {rate:>10.0} records/s, {:>7.1} us per sync ({:.1}x vs 1 per sync)",
            1e6 * *batch as f64 / rate,
            rate / rates[0]
        );
    }
}
