//! The search: Wing & Gong with Lowe's just-in-time linearization and a `(bitset, state)`
//! cache, run once per partition (see the crate documentation for the idea).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::bitset::Bitset;
use crate::model::{Model, Operation};
use crate::report::{Analysis, CheckResult, HistoryError, PartitionReport, Verdict};

/// Checks `history` against `model`, giving up with [`CheckResult::Unknown`] after `timeout`.
pub fn check_operations<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    timeout: Option<Duration>,
) -> Result<CheckResult, HistoryError> {
    Ok(analyze(model, history, timeout)?.into_result())
}

/// Like [`check_operations`], but returns the per-partition evidence whatever the verdict
/// (a linearization for every partition that has one), e.g. to draw it.
///
/// Once one partition is found illegal the whole history is, so every other search stops at
/// its next look at the clock and reports [`Verdict::Skipped`]: some illegal partitions take
/// exponential time to prove so (every order must be tried), and the first one found is
/// enough to decide. Searches shorter than one look at the clock (256 steps)
/// always finish, so small histories get every partition's verdict.
pub fn analyze<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    timeout: Option<Duration>,
) -> Result<Analysis, HistoryError> {
    for (index, op) in history.iter().enumerate() {
        if let Some(ret) = op.ret.filter(|&ret| ret < op.call) {
            return Err(HistoryError::ReturnBeforeCall {
                index,
                call: op.call,
                ret,
            });
        }
    }
    // A deadline too far away to represent is no deadline.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        groups
            .entry(model.partition(&op.input))
            .or_default()
            .push(index);
    }
    let groups: Vec<(String, Vec<usize>)> = groups.into_iter().collect();
    let limits = Limits {
        deadline,
        decided: AtomicBool::new(false),
    };
    let partitions = run_in_parallel(groups.len(), |i| {
        let (label, ops) = &groups[i];
        let report = check_partition(model, history, label, ops, &limits);
        if report.verdict == Verdict::Illegal {
            limits.decided.store(true, Ordering::Relaxed);
        }
        report
    });
    Ok(Analysis { partitions })
}

/// Runs `job(0..count)` on up to as many threads as there are cores, returning results in
/// index order. Partitions vary wildly in cost, so threads take the next index from a shared
/// counter instead of a fixed share.
fn run_in_parallel<T: Send>(count: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count);
    if threads <= 1 {
        return (0..count).map(job).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return done;
                        }
                        done.push((i, job(i)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(done) => done,
                // A panic in a model's code is a bug in that model: pass it on unchanged.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// When every search must stop.
struct Limits {
    /// The time budget's end, if there is one.
    deadline: Option<Instant>,
    /// Set once some partition was found illegal, which decides the whole history.
    decided: AtomicBool,
}

fn check_partition<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    label: &str,
    ops: &[usize],
    limits: &Limits,
) -> PartitionReport {
    let (dropped, kept): (Vec<usize>, Vec<usize>) = ops.iter().partition(|&&i| {
        let op = &history[i];
        op.output.is_none() && model.is_read_only(&op.input)
    });
    let outcome = Search::new(model, history, &kept).run(limits);
    let to_history = |js: Vec<usize>| js.into_iter().map(|j| kept[j]).collect();
    let (verdict, linearization, stuck) = match outcome {
        Outcome::Linearized(order) => (Verdict::Ok, to_history(order), None),
        Outcome::Stuck { prefix, stuck } => {
            (Verdict::Illegal, to_history(prefix), Some(kept[stuck]))
        }
        Outcome::OutOfTime { prefix } => (Verdict::Unknown, to_history(prefix), None),
        Outcome::Stopped { prefix } => (Verdict::Skipped, to_history(prefix), None),
    };
    PartitionReport {
        label: label.to_string(),
        ops: ops.to_vec(),
        dropped,
        verdict,
        linearization,
        stuck,
    }
}

/// How a search ended; operations are numbered by their position in the partition.
enum Outcome {
    Linearized(Vec<usize>),
    Stuck {
        prefix: Vec<usize>,
        stuck: usize,
    },
    OutOfTime {
        prefix: Vec<usize>,
    },
    /// Another partition was found illegal first.
    Stopped {
        prefix: Vec<usize>,
    },
}

/// "No node" in the linked list.
const NIL: usize = usize::MAX;
/// The list's sentinel head; operation `j`'s call is node `2j + 1` and its return `2j + 2`.
const HEAD: usize = 0;
/// How many search steps run between looks at the clock and at the other partitions.
const CLOCK_EVERY: u64 = 256;

fn call_node(op: usize) -> usize {
    2 * op + 1
}

fn return_node(op: usize) -> usize {
    2 * op + 2
}

/// One partition's search state: the doubly linked list of call and return entries in time
/// order, from which linearized operations are lifted.
struct Search<'a, M: Model> {
    model: &'a M,
    ops: Vec<&'a Operation<M::Input, M::Output>>,
    prev: Vec<usize>,
    next: Vec<usize>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, history: &'a [Operation<M::Input, M::Output>], kept: &[usize]) -> Self {
        let ops: Vec<_> = kept.iter().map(|&i| &history[i]).collect();
        // (time, calls before returns, op): a call and a return at the same instant are
        // concurrent. An unknown outcome returns at +infinity.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (j, op) in ops.iter().enumerate() {
            events.push((op.call, false, j));
            events.push((op.ret.unwrap_or(u64::MAX), true, j));
        }
        events.sort_unstable();
        let nodes = 2 * ops.len() + 1;
        let (mut prev, mut next) = (vec![NIL; nodes], vec![NIL; nodes]);
        let mut last = HEAD;
        for (_, is_return, j) in events {
            let node = if is_return {
                return_node(j)
            } else {
                call_node(j)
            };
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        Search {
            model,
            ops,
            prev,
            next,
        }
    }

    /// Unlinks operation `op`'s call and return entries.
    fn lift(&mut self, op: usize) {
        for node in [call_node(op), return_node(op)] {
            let (p, n) = (self.prev[node], self.next[node]);
            self.next[p] = n;
            if n != NIL {
                self.prev[n] = p;
            }
        }
    }

    /// Relinks what `lift` unlinked; lifts are undone in reverse order, so each node's own
    /// `prev`/`next` still name its old neighbours.
    fn unlift(&mut self, op: usize) {
        for node in [return_node(op), call_node(op)] {
            let (p, n) = (self.prev[node], self.next[node]);
            self.next[p] = node;
            if n != NIL {
                self.prev[n] = node;
            }
        }
    }

    fn run(mut self, limits: &Limits) -> Outcome {
        let mut state = self.model.init();
        let mut linearized = Bitset::new(self.ops.len());
        let mut seen: HashMap<Bitset, Vec<M::State>> = HashMap::new();
        // Linearized operations, each with the state before it.
        let mut stack: Vec<(usize, M::State)> = Vec::new();
        // The longest prefix found, and the operation that was due after it.
        let mut best: Option<(Vec<usize>, usize)> = None;
        let mut steps: u64 = 0;
        let mut entry = self.next[HEAD];
        loop {
            if self.next[HEAD] == NIL {
                return Outcome::Linearized(stack.into_iter().map(|(j, _)| j).collect());
            }
            steps += 1;
            if steps.is_multiple_of(CLOCK_EVERY) {
                let out_of_time = limits.deadline.is_some_and(|d| Instant::now() >= d);
                let decided = limits.decided.load(Ordering::Relaxed);
                if out_of_time || decided {
                    let prefix = match best {
                        Some((prefix, _)) if prefix.len() > stack.len() => prefix,
                        _ => stack.into_iter().map(|(j, _)| j).collect(),
                    };
                    return if decided {
                        Outcome::Stopped { prefix }
                    } else {
                        Outcome::OutOfTime { prefix }
                    };
                }
            }
            // The list always ends with the return of a pending operation, so the scan meets
            // a return entry before running off the end.
            let op = (entry - 1) / 2;
            if entry == call_node(op) {
                let o = self.ops[op];
                if let Some(after) = self.model.step(&state, &o.input, o.output.as_ref()) {
                    linearized.insert(op);
                    if remember(&mut seen, &linearized, &after) {
                        stack.push((op, std::mem::replace(&mut state, after)));
                        self.lift(op);
                        entry = self.next[HEAD];
                        continue;
                    }
                    linearized.remove(op);
                }
                entry = self.next[entry];
            } else {
                // `op` returns here, so it had to be linearized by now: backtrack.
                if best.as_ref().is_none_or(|(b, _)| stack.len() > b.len()) {
                    best = Some((stack.iter().map(|(j, _)| *j).collect(), op));
                }
                let Some((undo, before)) = stack.pop() else {
                    let (prefix, stuck) = best.unwrap_or((Vec::new(), op));
                    return Outcome::Stuck { prefix, stuck };
                };
                state = before;
                linearized.remove(undo);
                self.unlift(undo);
                entry = self.next[call_node(undo)];
            }
        }
    }
}

/// Records `(linearized, state)` as seen; false if it already was.
fn remember<S: Clone + Eq + std::hash::Hash>(
    seen: &mut HashMap<Bitset, Vec<S>>,
    linearized: &Bitset,
    state: &S,
) -> bool {
    match seen.get_mut(linearized) {
        Some(states) if states.contains(state) => false,
        Some(states) => {
            states.push(state.clone());
            true
        }
        None => {
            seen.insert(linearized.clone(), vec![state.clone()]);
            true
        }
    }
}

/// The states a linearization passes through: the initial state, then the state after each
/// operation of `order` (indices into `history`). Stops early at an operation the model
/// rejects, which does not happen for an order the search produced.
pub(crate) fn states_along<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    order: &[usize],
) -> Vec<M::State> {
    let mut states = vec![model.init()];
    for &i in order {
        let op = &history[i];
        match states
            .last()
            .and_then(|s| model.step(s, &op.input, op.output.as_ref()))
        {
            Some(next) => states.push(next),
            None => break,
        }
    }
    states
}
