//! How long the checker takes on histories shaped like the course's KV tests, and how much
//! memory its search uses.
//!
//! Histories come from a simulated linearizable execution (deterministic seed): each client
//! issues operations back to back with random latencies; every operation takes effect at a
//! random instant inside its interval, which is what makes intervals overlap. Reported per
//! scenario: the median check time over several runs, the ratio to a baseline measured in the
//! same run (replaying the true order through the model once: the cost of any check that
//! already knew the answer), and the peak heap the check allocated (a counting allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_check::kv::{KvInput, KvModel};
use synod_check::{check_operations, CheckResult, Model, Operation};

/// Counts live heap bytes and the high-water mark since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// splitmix64: enough randomness for workload shapes, and reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type KvOp = Operation<KvInput, String>;

/// A linearizable history, and its operations (indices) in the order they took effect.
fn simulate(
    seed: u64,
    clients: u64,
    ops_per_client: u64,
    keys: u64,
    unknown_pct: u64,
) -> (Vec<KvOp>, Vec<usize>) {
    let mut rng = Rng(seed);
    let mut planned = Vec::new();
    for client in 0..clients {
        let mut now = rng.below(10);
        for n in 0..ops_per_client {
            let call = now + rng.below(5);
            let ret = call + 1 + rng.below(50);
            let point = call + rng.below(ret - call + 1);
            let key = format!("k{}", rng.below(keys));
            let input = match rng.below(4) {
                0 => KvInput::put(key, format!("{client}.{n};")),
                1 => KvInput::append(key, format!("{client}.{n};")),
                _ => KvInput::get(key),
            };
            let unknown = input != KvInput::get(input.key()) && rng.below(100) < unknown_pct;
            planned.push((point, client, input, call, ret, unknown));
            now = ret;
        }
    }
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| (planned[i].0, i));
    let mut store: BTreeMap<String, String> = BTreeMap::new();
    let mut outputs = vec![String::new(); planned.len()];
    for &i in &order {
        let value = store.entry(planned[i].2.key().to_string()).or_default();
        match &planned[i].2 {
            KvInput::Get { .. } => outputs[i] = value.clone(),
            KvInput::Put { value: v, .. } => *value = v.clone(),
            KvInput::Append { value: v, .. } => value.push_str(v),
        }
    }
    let history = planned
        .into_iter()
        .zip(outputs)
        .map(|((_, client, input, call, ret, unknown), output)| {
            if unknown {
                Operation::unknown(client, input, call)
            } else {
                Operation::new(client, input, call, output, ret)
            }
        })
        .collect();
    (history, order)
}

/// The baseline: one pass of the model over the true order, one state per key.
fn replay(history: &[KvOp], order: &[usize]) {
    let mut states: BTreeMap<&str, Arc<str>> = BTreeMap::new();
    for &i in order {
        let op = &history[i];
        let state = states.entry(op.input.key()).or_default();
        // A corrupted output is rejected; the state then simply stays.
        if let Some(next) = black_box(KvModel.step(state, &op.input, op.output.as_ref())) {
            *state = next;
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn scenario(name: &str, history: &[KvOp], order: &[usize], runs: usize) {
    let baseline = median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                replay(history, order);
                start.elapsed()
            })
            .collect(),
    );
    let mut peak = 0;
    let mut verdict = String::new();
    let times = (0..runs)
        .map(|_| {
            let before = LIVE.load(Ordering::Relaxed);
            PEAK.store(before, Ordering::Relaxed);
            let start = Instant::now();
            let result = check_operations(&KvModel, history, Some(Duration::from_secs(60)));
            let elapsed = start.elapsed();
            peak = peak.max(PEAK.load(Ordering::Relaxed) - before);
            verdict = match result {
                Ok(CheckResult::Ok) => "Ok".into(),
                Ok(CheckResult::Illegal(_)) => "Illegal".into(),
                Ok(CheckResult::Unknown) => "Unknown".into(),
                Err(e) => format!("error: {e}"),
            };
            elapsed
        })
        .collect();
    let check = median(times);
    println!(
        "{name:<50} {:>6} ops  {verdict:<7}  median {:>9.2} ms  baseline replay {:>7.3} ms  \
         ratio {:>7.0}x  peak heap {:>7.2} MiB",
        history.len(),
        check.as_secs_f64() * 1e3,
        baseline.as_secs_f64() * 1e3,
        check.as_secs_f64() / baseline.as_secs_f64().max(1e-9),
        peak as f64 / (1024.0 * 1024.0)
    );
}

fn main() {
    let runs = 7;
    println!("synod-check benchmark: median of {runs} runs (release build)");
    // Shaped like porcupine's kv fixture c10-ok (10 clients, 10 keys, ~350 operations), for a
    // rough comparison with its published timings.
    let (h, o) = simulate(6, 10, 35, 10, 0);
    scenario(
        "porcupine c10-like: 10 clients x 35 ops, 10 keys",
        &h,
        &o,
        runs,
    );
    let (h, o) = simulate(1, 10, 1000, 10, 0);
    scenario("10 clients x 1000 ops, 10 keys", &h, &o, runs);
    let (h, o) = simulate(2, 10, 50, 1, 0);
    scenario("hot key: 10 clients, 500 ops, 1 key", &h, &o, runs);
    let (h, o) = simulate(3, 10, 1000, 10, 5);
    scenario("10 clients x 1000 ops, 10 keys, 5% timeouts", &h, &o, runs);
    let (h, o) = simulate(4, 10, 50, 1, 5);
    scenario("hot key, 5% timeouts", &h, &o, runs);
    // A violation near the end: the search must exhaust the alternatives before saying so.
    let (mut h, o) = simulate(5, 10, 50, 1, 0);
    if let Some(&last_get) = o
        .iter()
        .rev()
        .find(|&&i| matches!(h[i].input, KvInput::Get { .. }))
    {
        h[last_get].output = Some("corrupted".to_string());
    }
    scenario("hot key, last read corrupted", &h, &o, runs);
}
