//! A recorded client load through Redis-protocol fronts, for the black-box linearizability
//! tests: client threads, final reads, and the check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use synod_check::kv::{KvInput, KvModel};
use synod_check::{check_operations, CheckResult, Operation};

use super::resp::{Reply, Resp};

pub type History = Arc<Mutex<Vec<Operation<KvInput, String>>>>;

/// A client thread: random SET/GET/APPEND on a few keys through one front after another,
/// recording every operation; an operation whose answer never came has an unknown outcome.
pub fn client(
    me: u64,
    fronts: Vec<u16>,
    password: Option<String>,
    start: Instant,
    stop: Arc<AtomicBool>,
    history: History,
) {
    let now = || start.elapsed().as_nanos() as u64;
    let mut front = me as usize % fronts.len();
    let mut conn: Option<Resp> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        // SET and GET on shared keys; APPEND on a key of this client's own, so the checker
        // never has to order concurrent appends (whose every order is a candidate).
        let shared = format!("s{}", n % 2);
        let own = format!("a{me}");
        let value = format!("{me}.{n};");
        let (input, args): (KvInput, Vec<&str>) = match n % 4 {
            0 => (KvInput::get(shared.as_str()), vec!["GET", shared.as_str()]),
            1 => (
                KvInput::put(shared.as_str(), value.as_str()),
                vec!["SET", shared.as_str(), value.as_str()],
            ),
            2 => (
                KvInput::append(own.as_str(), value.as_str()),
                vec!["APPEND", own.as_str(), value.as_str()],
            ),
            _ => (KvInput::get(own.as_str()), vec!["GET", own.as_str()]),
        };
        if conn.is_none() {
            let addr = format!("127.0.0.1:{}", fronts[front]);
            conn = Resp::connect_as(&addr, password.as_deref()).ok();
        }
        let call = now();
        let answer = conn.as_mut().map(|c| c.call(&args));
        let output = match answer {
            Some(Ok(Reply::Bulk(v))) => Some(v.unwrap_or_default()),
            Some(Ok(Reply::Simple(_) | Reply::Integer(_))) => Some(String::new()),
            // An error answer or a broken connection: the outcome is unknown.
            _ => None,
        };
        let op = match output {
            Some(out) => Operation::new(me, input, call, out, now()),
            None => {
                conn = None;
                front = (front + 1) % fronts.len();
                Operation::unknown(me, input, call)
            }
        };
        history.lock().unwrap().push(op);
    }
}

/// Runs `clients` client threads through `fronts` (which require `password`, if any) while
/// `faults` runs, then stops them.
pub fn run_while(
    clients: u64,
    fronts: &[u16],
    password: Option<&str>,
    start: Instant,
    faults: impl FnOnce(),
) -> Vec<Operation<KvInput, String>> {
    let stop = Arc::new(AtomicBool::new(false));
    let history: History = Arc::default();
    let threads: Vec<_> = (0..clients)
        .map(|me| {
            let (fronts, stop, history) = (fronts.to_vec(), stop.clone(), history.clone());
            let password = password.map(str::to_owned);
            std::thread::spawn(move || client(me, fronts, password, start, stop, history))
        })
        .collect();
    faults();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread");
    }
    let mut history = history.lock().unwrap();
    std::mem::take(&mut *history)
}

/// How long one final read may keep failing before the test gives up. A front answers an
/// error when its own per-command limit passes (a loaded machine, a replica still catching
/// up); such a read carries no information, so it is simply tried again.
const FINAL_READ_PATIENCE: Duration = Duration::from_secs(30);

/// Reads every key the clients use through every front and records the reads: every
/// acknowledged write must be reflected.
pub fn final_reads(
    history: &mut Vec<Operation<KvInput, String>>,
    fronts: &[u16],
    password: Option<&str>,
    clients: u64,
    start: Instant,
) {
    let mut keys = vec!["s0".to_string(), "s1".to_string()];
    keys.extend((0..clients).map(|c| format!("a{c}")));
    for (i, &port) in fronts.iter().enumerate() {
        let addr = format!("127.0.0.1:{port}");
        let mut conn: Option<Resp> = None;
        for key in &keys {
            let deadline = Instant::now() + FINAL_READ_PATIENCE;
            let (call, value) = loop {
                let call = start.elapsed().as_nanos() as u64;
                let reply = match conn.as_mut() {
                    Some(c) => c.call(&["GET", key]),
                    None => Resp::connect_as(&addr, password)
                        .and_then(|c| conn.insert(c).call(&["GET", key])),
                };
                match reply {
                    Ok(Reply::Bulk(v)) => break (call, v.unwrap_or_default()),
                    Ok(_) => {}
                    Err(_) => conn = None,
                }
                assert!(
                    Instant::now() < deadline,
                    "final GET {key} through front {i} kept failing: {reply:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            let ret = start.elapsed().as_nanos() as u64;
            history.push(Operation::new(
                100,
                KvInput::get(key.as_str()),
                call,
                value,
                ret,
            ));
        }
    }
}

/// At least `min_acknowledged` operations were answered, and the history is linearizable.
pub fn assert_linearizable(history: &[Operation<KvInput, String>], min_acknowledged: usize) {
    let acknowledged = history.iter().filter(|op| op.ret.is_some()).count();
    assert!(
        acknowledged > min_acknowledged,
        "only {acknowledged} operations acknowledged"
    );
    let result = check_operations(&KvModel, history, Some(Duration::from_secs(60)))
        .expect("well-formed history");
    assert!(
        matches!(result, CheckResult::Ok),
        "not linearizable ({} operations): {result:?}",
        history.len()
    );
}

/// The longest time within `from..to` (nanoseconds since the load's start) without an
/// acknowledged operation: the unavailability a fault or a change caused.
pub fn longest_gap(history: &[Operation<KvInput, String>], from: u64, to: u64) -> Duration {
    let mut ends: Vec<u64> = history
        .iter()
        .filter_map(|op| op.ret)
        .filter(|&ret| (from..to).contains(&ret))
        .collect();
    ends.push(from);
    ends.push(to);
    ends.sort_unstable();
    let gap = ends.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Duration::from_nanos(gap)
}
