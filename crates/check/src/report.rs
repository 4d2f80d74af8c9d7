//! What a check finds: a verdict, and per partition the evidence behind it.

use thiserror::Error;

/// The verdict on a history or one of its partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some sequential order explains every output.
    Ok,
    /// No sequential order does.
    Illegal,
    /// The time budget ran out before the search finished.
    Unknown,
    /// Not searched to the end: another partition was found illegal first, which decides
    /// the whole history (a partition's own verdict only).
    Skipped,
}

/// The result of [`crate::check_operations`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The history is linearizable.
    Ok,
    /// The history is not linearizable; the analysis says where it breaks.
    Illegal(Analysis),
    /// The time budget ran out and no partition was found illegal.
    Unknown,
}

/// A history that cannot be checked at all.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HistoryError {
    /// An operation claims to have returned before it was called.
    #[error("operation {index} returns at {ret}, before its call at {call}")]
    ReturnBeforeCall { index: usize, call: u64, ret: u64 },
}

/// How one partition (one key, for the KV model) fared.
///
/// All indices point into the history slice that was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReport {
    /// The partition's name, from [`crate::Model::partition`].
    pub label: String,
    /// Every operation of the partition, in history order, including dropped ones.
    pub ops: Vec<usize>,
    /// Read-only operations with unknown outcome, left out of the search.
    pub dropped: Vec<usize>,
    /// The partition's own verdict.
    pub verdict: Verdict,
    /// For `Ok`, a full linearization; otherwise the longest linearizable prefix found.
    pub linearization: Vec<usize>,
    /// For `Illegal`: the operation that must come next after the longest prefix (its return
    /// is due) but that the model rejects there.
    pub stuck: Option<usize>,
}

/// Per-partition results of a check, in partition-name order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Analysis {
    pub partitions: Vec<PartitionReport>,
}

impl Analysis {
    /// The verdict on the whole history: illegal if any partition is (linearizability is
    /// local), otherwise unknown if any search ran out of time, otherwise ok. It is never
    /// [`Verdict::Skipped`].
    pub fn verdict(&self) -> Verdict {
        let any = |v| self.partitions.iter().any(|p| p.verdict == v);
        if any(Verdict::Illegal) {
            Verdict::Illegal
        } else if any(Verdict::Unknown) || any(Verdict::Skipped) {
            Verdict::Unknown
        } else {
            Verdict::Ok
        }
    }

    /// Folds the analysis into a [`CheckResult`].
    pub fn into_result(self) -> CheckResult {
        match self.verdict() {
            Verdict::Ok => CheckResult::Ok,
            Verdict::Illegal => CheckResult::Illegal(self),
            Verdict::Unknown | Verdict::Skipped => CheckResult::Unknown,
        }
    }
}
