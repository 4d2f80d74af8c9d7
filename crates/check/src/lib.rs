//! A linearizability checker for the histories synod's services produce.
//!
//! # What linearizability is
//!
//! A *history* is what the clients of a service saw: for each operation, who issued it, what it
//! asked for (the input), what came back (the output), when it was called and when it returned.
//! The service is *linearizable* when there is one sequential order of all the operations that
//!
//! 1. a single copy of the object (the *model*: a key/value map, a register) would accept, each
//!    operation producing exactly the output the client saw, and
//! 2. respects real time: if operation A returned before operation B was called, A comes first.
//!
//! Equivalently, each operation appears to take effect atomically at one instant, its
//! *linearization point*, somewhere between its call and its return. Replication, retries,
//! failover and caching must all stay invisible behind that illusion; a stale read, a lost
//! write or a write that shows up before it was issued breaks it, and this crate finds out.
//!
//! # The algorithm
//!
//! Deciding linearizability is NP-complete in general, but real histories are mostly
//! sequential with short bursts of concurrency, and the classic search handles them well.
//! [`check_operations`] does what porcupine (the Go checker used by the course's labs) does:
//!
//! - **Partition.** Linearizability is *local*: a history is linearizable if and only if each
//!   object's sub-history is. The [`Model`] names the partition of every operation (the key,
//!   for the KV model), and each partition is searched on its own, in parallel threads.
//! - **Wing & Gong search.** Calls and returns become entries of one list sorted by time. The
//!   search walks the list, trying to linearize a pending call next: if the model accepts the
//!   operation in the current state, it is *lifted* out of the list (its call and its return
//!   both unlinked, dancing-links style) and pushed on a stack; reaching a return entry means
//!   that operation had to be linearized already, so the search backtracks: it pops, *unlifts*
//!   the operation back into place and tries the next candidate.
//! - **Lowe's just-in-time linearization.** Only calls *before the first return entry* are
//!   candidates, so an operation is never placed earlier than it must be, which prunes the
//!   search to the operations that really are concurrent.
//! - **Memoisation.** The set of linearized operations (a bitset) together with the model
//!   state after them determines everything that can follow, so a `(bitset, state)` pair seen
//!   before is never explored twice.
//! - **A time budget.** A search that runs out of time gives [`CheckResult::Unknown`] rather
//!   than hanging.
//! - **Stop at the first failure.** One illegal partition makes the whole history illegal,
//!   and proving a partition illegal can take exponential time (every order must fail), so
//!   once one partition is found illegal the others' searches stop (`Verdict::Skipped`).
//!   On porcupine's own 50-client bad history this is the difference between 75 ms and
//!   minutes.
//!
//! A failed partition reports the longest linearizable prefix the search found and the
//! operation that could not be placed after it; [`html::write_html`] draws that as a timeline.
//!
//! # Operations with unknown outcome
//!
//! A client that timed out or lost its connection does not know whether its request took
//! effect, and never will. Such an [`Operation`] has `output: None` and `ret: None`: it may
//! have taken effect at any point after its call, or never. The checker gives it a return time
//! of +infinity and lets the model accept any output for it. "Never" needs no special case:
//! linearizing the operation after everything else is indistinguishable from it never having
//! happened, since nobody observed the state afterwards. A read with unknown outcome carries
//! no information and is dropped before the search (see [`Model::is_read_only`]).
//!
//! # Time
//!
//! Call and return times are integers in any unit, but all from **one clock**: virtual time
//! for histories recorded by the simulator, one monotonic clock per recording process for
//! real runs. A return and a call at the same instant count as concurrent, so a coarse clock
//! can only make the checker more lenient, never report a violation that did not happen.
//!
//! # Using it
//!
//! ```
//! use synod_check::{check_operations, kv::{KvInput, KvModel}, CheckResult, Operation};
//!
//! let history = vec![
//!     Operation::new(1, KvInput::put("x", "1"), 0, String::new(), 10),
//!     // A read that starts after the put returned must see it; this one did not.
//!     Operation::new(2, KvInput::get("x"), 20, String::new(), 30),
//! ];
//! let result = check_operations(&KvModel, &history, None).unwrap();
//! assert!(matches!(result, CheckResult::Illegal(_)));
//! ```
//!
//! The command line `synod check --model kv HISTORY.jsonl` reads histories in the JSON-lines
//! format of [`jsonl`].

mod bitset;
mod checker;
pub mod html;
pub mod jsonl;
pub mod kv;
mod model;
pub mod register;
mod report;

pub use checker::{analyze, check_operations};
pub use model::{Model, Operation};
pub use report::{Analysis, CheckResult, HistoryError, PartitionReport, Verdict};
