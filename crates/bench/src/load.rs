//! The closed loop: every client does one operation at a time, back to back, for the
//! warm-up and then for the measured part; latencies go into an HDR histogram.
//!
//! Closed loop means throughput is what the store sustains at this concurrency, and latency
//! is what each of those clients saw — not what an open stream of arrivals would see.
//!
//! A [`Marker`] set by a watcher (while some replica writes a snapshot, say) splits the
//! latencies: the operations that overlapped a marked moment are also counted apart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::{BenchError, Limit, Store, Workload};

/// Latencies are recorded in microseconds, up to a minute, to 3 significant digits.
const MAX_MICROS: u64 = 60_000_000;

/// What the measured part of a run saw.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Operations completed while measuring.
    pub ops: u64,
    /// How long the measured part took.
    pub elapsed: Duration,
    /// Each measured operation's latency, in microseconds.
    pub latencies: Histogram<u64>,
    /// The latencies of the measured operations during which the run's [`Marker`] was set
    /// (at their start or at their end); empty without a marker.
    pub marked: Histogram<u64>,
}

/// A flag that a watcher sets while a condition holds, for [`run_marked`].
pub type Marker = Arc<AtomicBool>;

/// Shared by every client task of one run.
struct Shared {
    workload: Workload,
    /// Measuring starts here; operations that start earlier are warm-up.
    measure_from: Instant,
    /// For [`Limit::Duration`]: operations that end later are not counted, and no new one starts.
    measure_until: Option<Instant>,
    /// For [`Limit::Ops`]: measured operations not yet claimed by a client.
    ops_left: AtomicU64,
    /// Set when a client fails, so the others stop too.
    failed: AtomicBool,
    marker: Option<Marker>,
}

impl Shared {
    fn marked(&self) -> bool {
        self.marker
            .as_ref()
            .is_some_and(|m| m.load(Ordering::Relaxed))
    }
}

/// Runs `workload` with one client per connection in `stores` (there must be
/// `workload.clients` of them). When some operations are gets, or `workload.preload` asks
/// for it, every key is written once first, so gets find values.
pub async fn run<S: Store>(workload: &Workload, stores: Vec<S>) -> Result<Measurement, BenchError> {
    run_marked(workload, stores, None).await
}

/// [`run`], with the latencies of operations that overlap a moment when `marker` is set
/// also counted apart ([`Measurement::marked`]).
pub async fn run_marked<S: Store>(
    workload: &Workload,
    stores: Vec<S>,
    marker: Option<Marker>,
) -> Result<Measurement, BenchError> {
    workload.validate()?;
    let stores = if workload.read_ratio > 0.0 || workload.preload {
        preload(workload, stores).await?
    } else {
        stores
    };
    let measure_from = Instant::now() + workload.warmup;
    let (measure_until, ops_left) = match workload.limit {
        Limit::Duration(d) => (Some(measure_from + d), 0),
        Limit::Ops(n) => (None, n),
    };
    let shared = Arc::new(Shared {
        workload: workload.clone(),
        measure_from,
        measure_until,
        ops_left: AtomicU64::new(ops_left),
        failed: AtomicBool::new(false),
        marker,
    });
    let mut tasks = JoinSet::new();
    for store in stores {
        tasks.spawn(client(store, shared.clone()));
    }
    let mut latencies = histogram();
    let mut marked = histogram();
    let mut last_end = measure_from;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(BenchError::from).and_then(|r| r) {
            Ok(seen) => {
                // Same bounds everywhere, so adding cannot fail.
                let _ = latencies.add(&seen.latencies);
                let _ = marked.add(&seen.marked);
                last_end = last_end.max(seen.last_end);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = match measure_until {
        Some(until) => until - measure_from,
        None => last_end - measure_from,
    };
    Ok(Measurement {
        ops: latencies.len(),
        elapsed,
        latencies,
        marked,
    })
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant, valid histogram bounds")
}

/// Writes every key once, the keys dealt out among the clients; gives the stores back.
async fn preload<S: Store>(workload: &Workload, stores: Vec<S>) -> Result<Vec<S>, BenchError> {
    let clients = stores.len() as u64;
    let mut tasks = JoinSet::new();
    for (me, mut store) in stores.into_iter().enumerate() {
        let workload = workload.clone();
        tasks.spawn(async move {
            let mut rng = StdRng::from_entropy();
            let mut index = me as u64;
            while index < workload.keys {
                store
                    .put(&workload.key(index), &workload.value(&mut rng))
                    .await?;
                index += clients;
            }
            Ok::<_, BenchError>(store)
        });
    }
    let mut stores = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        stores.push(joined??);
    }
    Ok(stores)
}

/// What one client measured.
struct ClientSaw {
    latencies: Histogram<u64>,
    marked: Histogram<u64>,
    /// When its last measured operation ended.
    last_end: Instant,
}

/// One client: operations back to back until the run ends.
async fn client<S: Store>(mut store: S, shared: Arc<Shared>) -> Result<ClientSaw, BenchError> {
    let mut rng = StdRng::from_entropy();
    let mut latencies = histogram();
    let mut marked = histogram();
    let mut last_end = shared.measure_from;
    let workload = &shared.workload;
    loop {
        let start = Instant::now();
        if shared.failed.load(Ordering::Relaxed)
            || shared.measure_until.is_some_and(|until| start >= until)
        {
            break;
        }
        let measured = start >= shared.measure_from;
        if measured && shared.measure_until.is_none() && !claim(&shared.ops_left) {
            break;
        }
        let marked_at_start = shared.marked();
        let key = workload.random_key(&mut rng);
        let result = if rng.gen_bool(workload.read_ratio) {
            store.get(&key).await
        } else {
            store.put(&key, &workload.value(&mut rng)).await
        };
        if let Err(e) = result {
            shared.failed.store(true, Ordering::Relaxed);
            return Err(e);
        }
        let end = Instant::now();
        if measured && shared.measure_until.is_none_or(|until| end <= until) {
            let micros = (end - start).as_micros().max(1) as u64;
            latencies.saturating_record(micros);
            if marked_at_start || shared.marked() {
                marked.saturating_record(micros);
            }
            last_end = end;
        }
    }
    Ok(ClientSaw {
        latencies,
        marked,
        last_end,
    })
}

/// Takes one operation from the budget; false when it is spent.
fn claim(ops_left: &AtomicU64) -> bool {
    ops_left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// An in-memory store shared by all clients, which counts what it was asked.
    #[derive(Clone, Default)]
    struct Memory {
        map: Arc<Mutex<HashMap<String, String>>>,
        gets: Arc<AtomicU64>,
        missing: Arc<AtomicU64>,
    }

    impl Store for Memory {
        async fn get(&mut self, key: &str) -> Result<(), BenchError> {
            self.gets.fetch_add(1, Ordering::Relaxed);
            if !self.map.lock().unwrap().contains_key(key) {
                self.missing.fetch_add(1, Ordering::Relaxed);
            }
            tokio::task::yield_now().await;
            Ok(())
        }

        async fn put(&mut self, key: &str, value: &str) -> Result<(), BenchError> {
            self.map.lock().unwrap().insert(key.into(), value.into());
            tokio::task::yield_now().await;
            Ok(())
        }
    }

    fn workload(read_ratio: f64, limit: Limit) -> Workload {
        Workload {
            clients: 4,
            key_size: 8,
            value_size: 10,
            keys: 50,
            preload: false,
            read_ratio,
            limit,
            warmup: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn an_operation_budget_is_spent_exactly_and_gets_find_preloaded_keys() {
        let memory = Memory::default();
        let w = workload(1.0, Limit::Ops(1000));
        let m = run(&w, vec![memory.clone(); 4]).await.unwrap();
        assert_eq!(m.ops, 1000);
        assert_eq!(m.latencies.len(), 1000);
        assert_eq!(memory.gets.load(Ordering::Relaxed), 1000);
        assert_eq!(memory.missing.load(Ordering::Relaxed), 0);
        assert_eq!(memory.map.lock().unwrap().len(), 50);
    }

    #[tokio::test]
    async fn a_preload_fills_every_key_before_a_run_of_puts_only() {
        let memory = Memory::default();
        let w = Workload {
            preload: true,
            ..workload(0.0, Limit::Ops(5))
        };
        run(&w, vec![memory.clone(); 4]).await.unwrap();
        assert_eq!(memory.map.lock().unwrap().len(), 50);
        assert_eq!(memory.gets.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn operations_that_overlap_a_marked_moment_are_counted_apart() {
        /// Sets the marker as its 100th put begins and clears it as its 200th ends.
        struct Marking {
            puts: u64,
            marker: Marker,
        }
        impl Store for Marking {
            async fn get(&mut self, _: &str) -> Result<(), BenchError> {
                unreachable!("a run of puts only")
            }
            async fn put(&mut self, _: &str, _: &str) -> Result<(), BenchError> {
                match self.puts {
                    100 => self.marker.store(true, Ordering::Relaxed),
                    200 => self.marker.store(false, Ordering::Relaxed),
                    _ => {}
                }
                self.puts += 1;
                Ok(())
            }
        }
        let marker = Marker::default();
        let store = Marking {
            puts: 0,
            marker: marker.clone(),
        };
        let w = Workload {
            clients: 1,
            ..workload(0.0, Limit::Ops(300))
        };
        let m = run_marked(&w, vec![store], Some(marker)).await.unwrap();
        assert_eq!(m.latencies.len(), 300);
        // Puts 100 (marked at its end) through 200 (marked at its start).
        assert_eq!(m.marked.len(), 101);
    }

    #[tokio::test]
    async fn a_failing_store_fails_the_run() {
        struct Broken;
        impl Store for Broken {
            async fn get(&mut self, _: &str) -> Result<(), BenchError> {
                Err(BenchError::Resp("down".into()))
            }
            async fn put(&mut self, _: &str, _: &str) -> Result<(), BenchError> {
                Err(BenchError::Resp("down".into()))
            }
        }
        let w = workload(0.0, Limit::Duration(Duration::from_secs(1)));
        let stores = (0..4).map(|_| Broken).collect();
        let error = run(&w, stores).await.unwrap_err();
        assert!(error.to_string().contains("down"));
    }
}
