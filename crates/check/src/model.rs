//! The sequential specification a history is checked against, and the operations themselves.

use std::fmt::Debug;
use std::hash::Hash;

/// A sequential object: what a single, non-replicated copy of a service would do.
///
/// `step` must be pure: the checker calls it many times on the same state while it searches.
pub trait Model: Sync {
    /// The object's state (for a partitioned model, the state of one partition).
    type State: Clone + Eq + Hash + Debug + Send;
    /// What a client asks for.
    type Input: Debug + Sync;
    /// What the client got back.
    type Output: Debug + Sync;

    /// The state every partition starts in.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`. Returns the next state if the object could have answered
    /// `output`, or `None` if that output is impossible here.
    ///
    /// `output: None` means the outcome is unknown (the client timed out): any output must be
    /// accepted, so for a total operation this always returns `Some`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// The name of the partition `input` belongs to. Operations in different partitions never
    /// constrain one another, so each partition is checked independently. The default puts
    /// everything in one partition.
    fn partition(&self, _input: &Self::Input) -> String {
        String::new()
    }

    /// True if `input` never changes the state. A read-only operation with unknown outcome
    /// constrains nothing and is dropped before the search.
    fn is_read_only(&self, _input: &Self::Input) -> bool {
        false
    }

    /// A short human-readable description of an operation, e.g. `get("x") → "1"`.
    fn describe_operation(&self, input: &Self::Input, output: Option<&Self::Output>) -> String;

    /// A short human-readable description of a state.
    fn describe_state(&self, state: &Self::State) -> String;
}

/// One operation in a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Who issued it; used for display only.
    pub client: u64,
    /// What was asked.
    pub input: I,
    /// When it was called.
    pub call: u64,
    /// What came back; `None` if the client never learned the outcome.
    pub output: Option<O>,
    /// When it returned; `None` if it never did (it may take effect at any time after `call`,
    /// or never).
    pub ret: Option<u64>,
}

impl<I, O> Operation<I, O> {
    /// A completed operation.
    pub fn new(client: u64, input: I, call: u64, output: O, ret: u64) -> Self {
        Operation {
            client,
            input,
            call,
            output: Some(output),
            ret: Some(ret),
        }
    }

    /// An operation whose client timed out or lost its connection.
    pub fn unknown(client: u64, input: I, call: u64) -> Self {
        Operation {
            client,
            input,
            call,
            output: None,
            ret: None,
        }
    }
}
