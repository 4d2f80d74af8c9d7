//! Group commit for reads: concurrent single reads bound for one shard group leave as one
//! read batch (one request, one message each way, one read barrier at the group), so a front
//! serving many connections pays a group's round trip once per batch instead of once per
//! read.
//!
//! The reads of one group queue up while a batch of that group is in flight; the caller that
//! finds no batch in flight runs one with everything queued (itself included), hands every
//! read its answer, and passes the *runner* role to the first read still queued, if any, so
//! no caller runs batches on behalf of others after its own read is answered. Under light
//! load a read finds nothing in flight and leaves at once, alone: nothing waits for a timer.
//!
//! Reads need no order among each other (each comes from a different caller, or one
//! caller's reads come one after another), and a read batch is linearizable read by read:
//! every read in it was invoked before the batch was sent and is answered after the group's
//! barrier, which starts after the batch arrives.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use synod_shardctl::Gid;
use tokio::sync::oneshot;

/// Most reads one batch carries (well under `synod_rsm::MAX_BATCH_COMMANDS`).
pub(crate) const MAX_READS: usize = 256;

/// What a queued read is told.
pub(crate) enum Turn<A> {
    /// Its answer.
    Answer(A),
    /// Run it alone (the batch answered only a prefix, or failed in a way another try may
    /// not).
    Alone,
    /// Run the next batch of its group; its own answer then comes on the receiver given.
    Lead(oneshot::Receiver<Turn<A>>),
}

/// One queued read: its key and where its turn goes.
pub(crate) struct Waiter<A> {
    pub(crate) key: Vec<u8>,
    pub(crate) turn: oneshot::Sender<Turn<A>>,
}

struct GroupReads<A> {
    /// Whether some caller is the group's runner (it runs the next batch, or is running one).
    running: bool,
    queued: VecDeque<Waiter<A>>,
}

/// The queues of reads, by group.
pub(crate) struct Coalescer<A> {
    groups: Mutex<HashMap<Gid, GroupReads<A>>>,
}

impl<A> Coalescer<A> {
    pub(crate) fn new() -> Self {
        Coalescer {
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Queues a read of `key` for group `gid`. Returns its receiver and whether the caller is
    /// the group's runner now (then it must call [`Coalescer::take`] and answer the batch).
    pub(crate) fn enqueue(&self, gid: Gid, key: Vec<u8>) -> (oneshot::Receiver<Turn<A>>, bool) {
        let (turn, rx) = oneshot::channel();
        let mut groups = self.lock();
        let group = groups.entry(gid).or_insert_with(|| GroupReads {
            running: false,
            queued: VecDeque::new(),
        });
        group.queued.push_back(Waiter { key, turn });
        let lead = !std::mem::replace(&mut group.running, true);
        (rx, lead)
    }

    /// The next batch of group `gid`, for its runner: at most [`MAX_READS`] queued reads.
    pub(crate) fn take(&self, gid: Gid) -> Vec<Waiter<A>> {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(&gid) else {
            return Vec::new();
        };
        debug_assert!(group.running, "only the runner takes a batch");
        let n = group.queued.len().min(MAX_READS);
        group.queued.drain(..n).collect()
    }

    /// Ends the runner's turn: the role goes to the first read still queued (told through
    /// its sender, its answer to come on a new one), or, with nothing queued, to nobody.
    /// Called when the runner's batch is answered, and also if its caller went away
    /// mid-batch (see [`Runner`]), so a group is never left with a runner that is gone.
    fn hand_over(&self, gid: Gid) {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(&gid) else {
            return;
        };
        while let Some(first) = group.queued.pop_front() {
            let (turn, rx) = oneshot::channel();
            let Waiter { key, turn: old } = first;
            group.queued.push_front(Waiter { key, turn });
            if old.send(Turn::Lead(rx)).is_ok() {
                return;
            }
            // That caller went away: drop its read and try the next.
            group.queued.pop_front();
        }
        group.running = false;
    }

    /// The runner role of group `gid`, handed over when dropped.
    pub(crate) fn runner(&self, gid: Gid) -> Runner<'_, A> {
        Runner { reads: self, gid }
    }

    /// The lock is held only for queue operations that leave the queues whole, so a poisoned
    /// lock is recovered, as the session pool's is.
    fn lock(&self) -> MutexGuard<'_, HashMap<Gid, GroupReads<A>>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The caller that runs a group's batch; dropping it (when the batch is answered, or when
/// the caller's future is dropped mid-batch) hands the role over.
pub(crate) struct Runner<'a, A> {
    reads: &'a Coalescer<A>,
    gid: Gid,
}

impl<A> Drop for Runner<'_, A> {
    fn drop(&mut self) {
        self.reads.hand_over(self.gid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_read_runs_the_batch_and_hands_over_to_the_next_queued() {
        let reads: Coalescer<u32> = Coalescer::new();
        let (_first, lead) = reads.enqueue(7, "a".into());
        assert!(lead, "nothing in flight: the caller runs the batch");
        let runner = reads.runner(7);
        let batch = reads.take(7);
        assert_eq!(batch.len(), 1);
        let (mut second, lead) = reads.enqueue(7, "b".into());
        assert!(!lead, "a batch is in flight: queued");
        let (_other, lead) = reads.enqueue(8, "c".into());
        assert!(lead, "another group's reads do not wait for this one");
        drop(runner);
        let Ok(Turn::Lead(_own)) = second.try_recv() else {
            panic!("the queued read did not become the runner");
        };
        let batch = reads.take(7);
        assert_eq!(
            batch.iter().map(|w| w.key.as_slice()).collect::<Vec<_>>(),
            [b"b"]
        );
        drop(reads.runner(7));
        let (_third, lead) = reads.enqueue(7, "d".into());
        assert!(
            lead,
            "nothing queued at the hand-over: the next read runs at once"
        );
    }

    #[test]
    fn a_runner_that_goes_away_skips_readers_that_went_away_too() {
        let reads: Coalescer<u32> = Coalescer::new();
        let (_first, _) = reads.enqueue(1, "a".into());
        let runner = reads.runner(1);
        reads.take(1);
        let (gone, _) = reads.enqueue(1, "b".into());
        drop(gone);
        let (mut waiting, _) = reads.enqueue(1, "c".into());
        drop(runner);
        assert!(matches!(waiting.try_recv(), Ok(Turn::Lead(_))));
        let keys: Vec<Vec<u8>> = reads.take(1).into_iter().map(|w| w.key).collect();
        assert_eq!(keys, [b"c"]);
    }
}
