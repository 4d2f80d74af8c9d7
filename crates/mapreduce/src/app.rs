//! The application interface: what a MapReduce job computes.
//!
//! An application is a value implementing [`App`]. The machinery (sequential runner,
//! coordinator, workers) only ever sees keys and values as bytes, so an application decides its
//! own encodings; the built-in ones use UTF-8 text. Output files hold `key<TAB>value` lines, so
//! keys and values should not contain newlines.

use serde::{Deserialize, Serialize};

/// One piece of input handed to [`App::map`]: whole lines of one input file.
#[derive(Debug, Clone, Copy)]
pub struct MapInput<'a> {
    /// The input file's name as the user gave it.
    pub name: &'a str,
    /// Whole lines (the last one may lack its newline at the end of the file). Bytes, not
    /// text: input need not be valid UTF-8.
    pub contents: &'a [u8],
    /// The 1-based number of the first line in `contents` within its file, when the
    /// application asked for line numbers with [`App::needs_line_numbers`].
    pub first_line: Option<u64>,
}

/// A MapReduce application.
///
/// `map` and `reduce` must be deterministic functions of their arguments: a task re-run after
/// a failure or as a backup must produce the same bytes, which is what makes the final output
/// identical to a failure-free run. They may panic; the machinery catches the panic and fails
/// the task (and, if it keeps failing, the job) with the panic message.
pub trait App: Send + Sync + 'static {
    /// Calls `emit(key, value)` for each intermediate pair produced by `input`.
    fn map(&self, input: &MapInput<'_>, emit: &mut dyn FnMut(&[u8], &[u8]));

    /// Folds every value emitted for `key` into the output value. Values arrive in a
    /// deterministic order (by map task, then emission order).
    fn reduce(&self, key: &[u8], values: &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8>;

    /// Whether [`App::combine`] may be applied to partial groups of values on the map side.
    fn has_combiner(&self) -> bool {
        false
    }

    /// Folds some of the values for `key` into one value of the same kind (only called when
    /// [`App::has_combiner`] is true). The default is `reduce`, right for counts and sums.
    fn combine(&self, key: &[u8], values: &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8> {
        self.reduce(key, values)
    }

    /// Which of the `reduces` partitions `key` belongs to. The default is a stable hash
    /// (FNV-1a) of the key, the same on every machine and in every run.
    fn partition(&self, key: &[u8], reduces: u32) -> u32 {
        crate::partition::hash_partition(key, reduces)
    }

    /// Whether `map` needs [`MapInput::first_line`]. Computing it costs a pass over the input
    /// when the job is planned, so only applications that use it ask.
    fn needs_line_numbers(&self) -> bool {
        false
    }
}

/// Names an application and its arguments, so that a coordinator can tell workers, possibly
/// in other processes, which application to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    /// For `grep`: the regular expression.
    pub pattern: Option<String>,
}

impl AppSpec {
    pub fn new(name: impl Into<String>) -> Self {
        AppSpec {
            name: name.into(),
            pattern: None,
        }
    }
}
