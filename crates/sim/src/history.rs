//! Recording client operations for a linearizability check.
//!
//! Simulated clients are ordinary nodes. To record *when* an operation was invoked and when it
//! completed they need the simulator's global clock, not their own (possibly drifting) one, so
//! the simulator hands out a [`SimClock`] and clients write into a shared [`Recorder`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// A read-only view of the simulator's global virtual time.
#[derive(Debug, Clone, Default)]
pub struct SimClock(pub(crate) Rc<Cell<u64>>);

impl SimClock {
    /// Global virtual time, in nanoseconds since the simulation began.
    pub fn nanos(&self) -> u64 {
        self.0.get()
    }

    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos())
    }
}

/// One recorded operation. `output` and `ret` are `None` when the client never learned the
/// outcome (it gave up, or the run ended first): such an operation may or may not have taken
/// effect, and a checker must allow both.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedOp<I, O> {
    pub client: u64,
    pub input: I,
    /// Invocation time, global virtual nanoseconds.
    pub call: u64,
    pub output: Option<O>,
    /// Completion time, global virtual nanoseconds.
    pub ret: Option<u64>,
}

/// A shared, append-only history of client operations. Cloning gives another handle to the same
/// history, so every simulated client can hold one.
#[derive(Debug)]
pub struct Recorder<I, O> {
    clock: SimClock,
    ops: Rc<RefCell<Vec<RecordedOp<I, O>>>>,
}

impl<I, O> Clone for Recorder<I, O> {
    fn clone(&self) -> Self {
        Recorder {
            clock: self.clock.clone(),
            ops: Rc::clone(&self.ops),
        }
    }
}

/// Identifies an invoked operation within its [`Recorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId(usize);

impl<I, O> Recorder<I, O> {
    pub fn new(clock: SimClock) -> Self {
        Recorder {
            clock,
            ops: Rc::default(),
        }
    }

    /// Records that `client` invoked `input` now.
    pub fn invoke(&self, client: u64, input: I) -> OpId {
        let mut ops = self.ops.borrow_mut();
        ops.push(RecordedOp {
            client,
            input,
            call: self.clock.nanos(),
            output: None,
            ret: None,
        });
        OpId(ops.len() - 1)
    }

    /// Records that the operation completed now with `output`.
    ///
    /// # Panics
    /// If the operation already completed: a client that reports one operation twice is a bug
    /// in the test harness, and letting it pass would corrupt the history.
    pub fn complete(&self, op: OpId, output: O) {
        let mut ops = self.ops.borrow_mut();
        let entry = &mut ops[op.0];
        assert!(entry.ret.is_none(), "operation {op:?} completed twice");
        entry.output = Some(output);
        entry.ret = Some(self.clock.nanos());
    }

    /// A copy of the history so far.
    pub fn operations(&self) -> Vec<RecordedOp<I, O>>
    where
        I: Clone,
        O: Clone,
    {
        self.ops.borrow().clone()
    }

    /// Number of operations that completed.
    pub fn completed(&self) -> usize {
        self.ops
            .borrow()
            .iter()
            .filter(|op| op.ret.is_some())
            .count()
    }
}
