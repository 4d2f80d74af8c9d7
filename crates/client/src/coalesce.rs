//! Group commit across callers: concurrent single commands bound for one *group* (reads or
//! writes of the Paxos KV, the reads or writes of one shard group) leave as one batch: one request,
//! one message each way, one read barrier or one log entry, and one run of the client's
//! retry loop. A Redis-protocol front serving many connections, each with one command in
//! flight, so pays a round trip and the client's per-request work once per batch instead of
//! once per command.
//!
//! The commands of one group queue up while a batch of that group is in flight; the caller
//! that finds no batch in flight runs one with everything queued (itself included), hands
//! every command its answer, and passes the *runner* role to the first command still
//! queued, if any, so no caller runs batches on behalf of others after its own command is
//! answered. Under light load a command finds nothing in flight and leaves at once, alone:
//! nothing waits for a timer.
//!
//! Why a batch is linearizable command by command: every command in it was invoked before
//! the batch was sent and is answered after the batch took effect (its reads after the
//! group's barrier, which starts after the batch arrives; its writes at the batch's place
//! in the log), and the commands of one batch come from different callers, whose order
//! among each other is free (a caller has one command in flight at a time).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// Most commands one batch carries (the RESP front's bound on a connection's batch, well
/// under `synod_rsm::MAX_BATCH_COMMANDS`).
pub(crate) const MAX_TOGETHER: usize = synod_resp::MAX_BATCH_COMMANDS;

/// What a queued command is told.
enum Turn<A> {
    /// Its answer.
    Answer(A),
    /// Run the next batch of its group; its own answer then comes on the receiver given.
    Lead(oneshot::Receiver<Turn<A>>),
}

/// One queued command and where its turn goes.
struct Waiter<O, A> {
    op: O,
    turn: oneshot::Sender<Turn<A>>,
}

struct Queue<O, A> {
    /// Whether some caller is the group's runner (it runs the next batch, or is running one).
    running: bool,
    queued: VecDeque<Waiter<O, A>>,
}

/// The queues of commands `O` answered `A`, by group `G`.
pub(crate) struct Coalescer<G, O, A> {
    groups: Mutex<HashMap<G, Queue<O, A>>>,
}

impl<G: Hash + Eq + Clone, O, A> Coalescer<G, O, A> {
    pub(crate) fn new() -> Self {
        Coalescer {
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `op` in one batch with the other commands of `group` in flight at the same
    /// time. The caller that finds no batch of the group in flight runs `batch` with the
    /// queued commands (its own first), which answers each of them, in order. Should the
    /// runner go away before it answered (its caller's future dropped), or answer too few,
    /// the commands left unanswered are told `abandoned()`: their outcome is unknown, so
    /// they are not sent again.
    pub(crate) async fn run<Batch>(
        &self,
        group: G,
        op: O,
        batch: impl FnOnce(Vec<O>) -> Batch,
        abandoned: impl FnOnce() -> A,
    ) -> A
    where
        Batch: Future<Output = Vec<A>>,
    {
        let (mut turn, mut lead) = self.enqueue(group.clone(), op);
        let mut batch = Some(batch);
        loop {
            if lead {
                let _runner = Runner {
                    together: self,
                    group: group.clone(),
                };
                let waiting = self.take(&group);
                // A runner's own command is the first queued (it found the queue empty, or
                // was handed the role as its first), so it runs one batch at most.
                let run = batch.take().expect("a caller runs one batch at most");
                let (ops, turns): (Vec<O>, Vec<_>) =
                    waiting.into_iter().map(|w| (w.op, w.turn)).unzip();
                let answers = run(ops).await;
                for (turn, answer) in turns.into_iter().zip(answers) {
                    // A caller that went away no longer needs its answer.
                    let _ = turn.send(Turn::Answer(answer));
                }
            }
            match turn.await {
                Ok(Turn::Answer(answer)) => return answer,
                Ok(Turn::Lead(next)) => (turn, lead) = (next, true),
                // The runner went away, or answered too few, and dropped our sender.
                Err(_) => return abandoned(),
            }
        }
    }

    /// Queues `op` for group `group`. Returns its receiver and whether the caller is the
    /// group's runner now.
    fn enqueue(&self, group: G, op: O) -> (oneshot::Receiver<Turn<A>>, bool) {
        let (turn, rx) = oneshot::channel();
        let mut groups = self.lock();
        let queue = groups.entry(group).or_insert_with(|| Queue {
            running: false,
            queued: VecDeque::new(),
        });
        queue.queued.push_back(Waiter { op, turn });
        let lead = !std::mem::replace(&mut queue.running, true);
        (rx, lead)
    }

    /// The next batch of `group`, for its runner: at most [`MAX_TOGETHER`] queued commands.
    fn take(&self, group: &G) -> Vec<Waiter<O, A>> {
        let mut groups = self.lock();
        let Some(queue) = groups.get_mut(group) else {
            return Vec::new();
        };
        assert!(queue.running, "only the runner takes a batch");
        let n = queue.queued.len().min(MAX_TOGETHER);
        queue.queued.drain(..n).collect()
    }

    /// Ends the runner's turn: the role goes to the first command still queued (told through
    /// its sender, its answer to come on a new one), or, with nothing queued, to nobody.
    /// Called when the runner's batch is answered, and also if its caller went away
    /// mid-batch (see [`Runner`]), so a group is never left with a runner that is gone.
    fn hand_over(&self, group: &G) {
        let mut groups = self.lock();
        let Some(queue) = groups.get_mut(group) else {
            return;
        };
        while let Some(first) = queue.queued.pop_front() {
            let (turn, rx) = oneshot::channel();
            let Waiter { op, turn: old } = first;
            queue.queued.push_front(Waiter { op, turn });
            if old.send(Turn::Lead(rx)).is_ok() {
                return;
            }
            // That caller went away: drop its command, never sent, and try the next.
            queue.queued.pop_front();
        }
        queue.running = false;
    }

    /// The lock is held only for queue operations that leave the queues whole, so a poisoned
    /// lock is recovered, as the session pool's is.
    fn lock(&self) -> MutexGuard<'_, HashMap<G, Queue<O, A>>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The caller that runs a group's batch; dropping it (when the batch is answered, or when
/// the caller's future is dropped mid-batch) hands the role over.
struct Runner<'a, G: Hash + Eq + Clone, O, A> {
    together: &'a Coalescer<G, O, A>,
    group: G,
}

impl<G: Hash + Eq + Clone, O, A> Drop for Runner<'_, G, O, A> {
    fn drop(&mut self) {
        self.together.hand_over(&self.group);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Notify;

    use super::*;

    type Batches = Arc<Mutex<Vec<Vec<&'static str>>>>;

    /// Runs `op` in `group` with a batch that records itself in `batches`, waits for
    /// `release` if it is the first batch, and answers each command `batch:OP`, all but the
    /// commands named `short` (the batch answers only up to the first of them).
    fn spawn_op(
        together: &Arc<Coalescer<u8, &'static str, String>>,
        batches: &Batches,
        release: &Arc<Notify>,
        group: u8,
        op: &'static str,
    ) -> tokio::task::JoinHandle<String> {
        let (together, batches, release) = (together.clone(), batches.clone(), release.clone());
        tokio::spawn(async move {
            let batch = |ops: Vec<&'static str>| async move {
                let first = {
                    let mut batches = batches.lock().unwrap();
                    batches.push(ops.clone());
                    batches.len() == 1
                };
                if first {
                    release.notified().await;
                }
                ops.iter()
                    .take_while(|&&op| op != "short")
                    .map(|op| format!("batch:{op}"))
                    .collect()
            };
            together
                .run(group, op, batch, || "abandoned".to_string())
                .await
        })
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Commands that arrive while a first one's batch is in flight leave together as the
    /// next batch, in arrival order, each answered its own answer; a command of another
    /// group does not wait; one the batch left unanswered is told it was abandoned.
    #[tokio::test]
    async fn commands_queued_behind_a_batch_leave_together_and_each_gets_its_answer() {
        let together = Arc::new(Coalescer::new());
        let batches = Batches::default();
        let release = Arc::new(Notify::new());
        let first = spawn_op(&together, &batches, &release, 0, "a");
        settle().await;
        assert_eq!(
            *batches.lock().unwrap(),
            [vec!["a"]],
            "nothing in flight: sent at once"
        );
        let queued = [
            spawn_op(&together, &batches, &release, 0, "b"),
            spawn_op(&together, &batches, &release, 0, "c"),
            spawn_op(&together, &batches, &release, 0, "short"),
        ];
        let other_group = spawn_op(&together, &batches, &release, 1, "x");
        settle().await;
        assert_eq!(other_group.await.unwrap(), "batch:x");
        release.notify_one();
        assert_eq!(first.await.unwrap(), "batch:a");
        let mut answers = Vec::new();
        for op in queued {
            answers.push(op.await.unwrap());
        }
        assert_eq!(answers, ["batch:b", "batch:c", "abandoned"]);
        assert_eq!(
            *batches.lock().unwrap(),
            [vec!["a"], vec!["x"], vec!["b", "c", "short"]]
        );
        let after = spawn_op(&together, &batches, &release, 0, "d");
        assert_eq!(
            after.await.unwrap(),
            "batch:d",
            "nothing queued: runs at once"
        );
    }

    /// A runner whose caller goes away mid-batch hands the role on, skipping callers that
    /// went away too: the next live one runs the next batch, without the dropped command.
    #[tokio::test]
    async fn a_runner_that_goes_away_hands_over_to_the_next_live_caller() {
        let together = Arc::new(Coalescer::new());
        let batches = Batches::default();
        let release = Arc::new(Notify::new());
        let first = spawn_op(&together, &batches, &release, 0, "a");
        settle().await;
        let gone = spawn_op(&together, &batches, &release, 0, "gone");
        let waiting = spawn_op(&together, &batches, &release, 0, "b");
        settle().await;
        gone.abort();
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(waiting.await.unwrap(), "batch:b");
        assert_eq!(*batches.lock().unwrap(), [vec!["a"], vec!["b"]]);
    }
}
