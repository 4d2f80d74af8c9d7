//! The client logic of every replicated state machine as a sans-I/O core ([`RsmClerk`]): the
//! Paxos KV's clerk (`synod_kvpaxos::KvClerk`) and the shard controller's
//! (`synod_shardctl::CtlClerk`) are this one, run by the simulator's test harnesses and by
//! `synod-client` alike.
//!
//! An operation runs under a *session* (client id, sequence number) and goes to one replica
//! after another with the same number, *hedged*: the request goes to the first server of an
//! order; if no answer came within a step ([`STEP`](synod_node::clerk::STEP) for a small request,
//! longer for a big one, [`ClerkOp::hedge_step`]), it also goes to the next one, while the earlier tries keep waiting. The
//! first answer wins. A server the driver reports unreachable gives way to the next server at
//! once, and is tried again at the next step. Once every server was tried, each step sends the
//! request again to the next server in turn, because a simulated network (unlike a TCP
//! connection, whose driver skips a re-send that is still in flight) may have lost it.
//!
//! The order is: the server that answered the session's last operation, then the preferred
//! one (a RESP front prefers the replica in its own process), then the others.
//!
//! Why overlap instead of move on: a server that does not answer quickly is often only slow,
//! not gone. A follower holds a request while its leader fails over (0.3-0.9 s) and answers
//! once a new leader decides it; a replica back from a partition answers once it has caught
//! up. Sending the same request twice is safe: it carries the same (client, sequence number),
//! and the replicated session table applies it at most once.

use std::time::Duration;

use synod_node::clerk::{Clerk, ClerkOp, ClerkOutput, STEP};
use synod_node::TimerToken;
use tracing::trace;

use crate::RsmMsg;

/// What an [`RsmClerk`] asks of its driver. Servers are indices into the driver's list.
pub type RsmOutput<C, I, R> = ClerkOutput<usize, RsmMsg<C, I, R>, R>;

/// One operation in progress.
#[derive(Debug, Clone)]
struct Attempt<M> {
    request: M,
    /// The servers in the order they are tried.
    order: Vec<usize>,
    /// The position in `order` of the latest try.
    latest: usize,
    step: Duration,
    /// The timer of the latest try; any other is stale.
    timer: TimerToken,
    /// Servers reported unreachable since the latest step began: not tried again before it.
    unreachable: Vec<usize>,
}

/// A client session of a replicated state machine of `servers` replicas, whose operations
/// are `C` and answers `R` (`I` is the machine's internal log entry, never sent by a client):
/// one operation at a time.
#[derive(Debug, Clone)]
pub struct RsmClerk<C, I, R> {
    client: u64,
    seq: u64,
    servers: usize,
    preferred: Option<usize>,
    last_answered: Option<usize>,
    attempt: Option<Attempt<RsmMsg<C, I, R>>>,
    timers: TimerToken,
}

impl<C, I, R> RsmClerk<C, I, R>
where
    C: ClerkOp,
    I: Clone,
    R: Clone,
{
    /// A session with client id `client` (unique among every session the cluster ever sees:
    /// draw it at random) over `servers` replicas.
    ///
    /// # Panics
    /// If `servers` is 0: a request needs a server to go to.
    pub fn new(client: u64, servers: usize) -> Self {
        assert!(servers > 0, "a clerk needs a server to go to");
        RsmClerk {
            client,
            seq: 0,
            servers,
            preferred: None,
            last_answered: None,
            attempt: None,
            timers: 0,
        }
    }

    /// Makes later operations try server `preferred` right after the one that answered the
    /// session last (first, for a new session). Out-of-range indices are ignored.
    pub fn prefer(&mut self, preferred: Option<usize>) {
        self.preferred = preferred.filter(|&i| i < self.servers);
    }

    pub fn client_id(&self) -> u64 {
        self.client
    }

    /// How many servers the clerk sends to.
    pub fn servers(&self) -> usize {
        self.servers
    }

    /// The sequence number of the latest operation (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn order(&self) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.servers);
        for i in self
            .last_answered
            .into_iter()
            .chain(self.preferred)
            .chain(0..self.servers)
        {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        order
    }

    /// Starts several operations as one request ([`RsmMsg::Batch`]: one log entry, applied in
    /// order with nothing in between, at most once as a whole), hedged like one operation
    /// with a step for all their bytes. Its reply is the state machine's batch reply.
    pub fn start_batch(&mut self, ops: Vec<C>) -> Vec<RsmOutput<C, I, R>> {
        let extra: Duration = ops
            .iter()
            .map(|op| op.hedge_step().saturating_sub(STEP))
            .sum();
        self.begin(STEP + extra, |client, seq| RsmMsg::Batch {
            client,
            seq,
            ops,
        })
    }

    /// Starts the session's next operation: the request `build` makes for (client, the next
    /// sequence number), sent to the first server of the order.
    fn begin(
        &mut self,
        step: Duration,
        build: impl FnOnce(u64, u64) -> RsmMsg<C, I, R>,
    ) -> Vec<RsmOutput<C, I, R>> {
        self.seq += 1;
        self.attempt = Some(Attempt {
            request: build(self.client, self.seq),
            order: self.order(),
            latest: 0,
            step,
            timer: 0,
            unreachable: Vec::new(),
        });
        self.try_at(0)
    }

    /// Sends the request to the server at position `at` of the order and starts its step.
    fn try_at(&mut self, at: usize) -> Vec<RsmOutput<C, I, R>> {
        self.timers += 1;
        let token = self.timers;
        let Some(attempt) = &mut self.attempt else {
            return Vec::new();
        };
        attempt.latest = at;
        attempt.timer = token;
        vec![
            ClerkOutput::Send {
                to: attempt.order[at],
                msg: attempt.request.clone(),
            },
            ClerkOutput::Timer {
                after: attempt.step,
                token,
            },
        ]
    }
}

impl<C, I, R> Clerk for RsmClerk<C, I, R>
where
    C: ClerkOp + std::fmt::Debug,
    I: Clone + std::fmt::Debug,
    R: Clone + std::fmt::Debug,
{
    type Server = usize;
    type Msg = RsmMsg<C, I, R>;
    type Op = C;
    type Reply = R;

    fn start(&mut self, op: C) -> Vec<RsmOutput<C, I, R>> {
        let step = op.hedge_step();
        self.begin(step, |client, seq| RsmMsg::Request { client, seq, op })
    }

    fn on_message(&mut self, from: &usize, msg: RsmMsg<C, I, R>) -> Vec<RsmOutput<C, I, R>> {
        match msg {
            RsmMsg::Reply { seq, reply } if seq == self.seq && self.attempt.is_some() => {
                self.attempt = None;
                self.last_answered = Some(*from);
                vec![ClerkOutput::Done(reply)]
            }
            RsmMsg::Reply { seq, .. } => {
                trace!(
                    seq,
                    current = self.seq,
                    "ignoring a reply to another operation"
                );
                Vec::new()
            }
            other => {
                trace!(?other, "ignoring a message that is not a reply");
                Vec::new()
            }
        }
    }

    fn on_timeout(&mut self, token: TimerToken) -> Vec<RsmOutput<C, I, R>> {
        let Some(attempt) = &mut self.attempt else {
            trace!(token, "ignoring a timer: no operation in progress");
            return Vec::new();
        };
        if attempt.timer != token {
            trace!(token, "ignoring the timer of an earlier step");
            return Vec::new();
        }
        attempt.unreachable.clear();
        let next = (attempt.latest + 1) % attempt.order.len();
        self.try_at(next)
    }

    fn on_unreachable(&mut self, server: &usize) -> Vec<RsmOutput<C, I, R>> {
        let Some(attempt) = &mut self.attempt else {
            return Vec::new();
        };
        if !attempt.unreachable.contains(server) {
            attempt.unreachable.push(*server);
        }
        if attempt.order[attempt.latest] != *server {
            // An earlier try failed: its server's turn comes again with the steps.
            return Vec::new();
        }
        // The latest try failed: the next server that did not fail in this step, at once.
        let len = attempt.order.len();
        let next = (1..len)
            .map(|k| (attempt.latest + k) % len)
            .find(|&at| !attempt.unreachable.contains(&attempt.order[at]));
        match next {
            Some(at) => self.try_at(at),
            None => Vec::new(),
        }
    }

    fn busy(&self) -> bool {
        self.attempt.is_some()
    }
}

#[cfg(test)]
mod tests {
    use synod_node::clerk::step_for;

    use super::*;

    /// A request `0` bytes long, answered with a string.
    #[derive(Debug, Clone, PartialEq)]
    struct Op(usize);

    impl ClerkOp for Op {
        fn hedge_step(&self) -> Duration {
            step_for(self.0)
        }
    }

    type TestClerk = RsmClerk<Op, (), String>;
    type KvOutput = RsmOutput<Op, (), String>;
    type KvMsg = RsmMsg<Op, (), String>;

    fn sends(out: &[KvOutput]) -> Vec<usize> {
        out.iter()
            .filter_map(|o| match o {
                ClerkOutput::Send { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }

    fn timer(out: &[KvOutput]) -> TimerToken {
        out.iter()
            .find_map(|o| match o {
                ClerkOutput::Timer { token, .. } => Some(*token),
                _ => None,
            })
            .expect("a timer")
    }

    fn reply(seq: u64) -> KvMsg {
        RsmMsg::Reply {
            seq,
            reply: "v".into(),
        }
    }

    fn get() -> Op {
        Op(1)
    }

    #[test]
    fn each_step_adds_the_next_server_and_the_first_answer_wins() {
        let mut clerk = TestClerk::new(7, 3);
        let out = clerk.start(get());
        assert_eq!(sends(&out), [0]);
        let out = clerk.on_timeout(timer(&out));
        assert_eq!(sends(&out), [1]);
        let second = timer(&out);
        let out = clerk.on_timeout(second);
        assert_eq!(sends(&out), [2]);
        // After every server, round again: a simulated network may have lost the first.
        let out = clerk.on_timeout(timer(&out));
        assert_eq!(sends(&out), [0]);
        assert!(clerk.on_timeout(second).is_empty(), "a stale timer");
        assert!(clerk.on_message(&1, reply(0)).is_empty(), "another seq");
        assert_eq!(
            clerk.on_message(&1, reply(1)),
            [ClerkOutput::Done("v".to_string())]
        );
        assert!(!clerk.busy());
        // The next operation starts at the server that answered, then the rest in order.
        let out = clerk.start(get());
        assert_eq!(sends(&out), [1]);
        assert_eq!(sends(&clerk.on_timeout(timer(&out))), [0]);
    }

    #[test]
    fn the_preferred_server_comes_first_for_a_new_session() {
        let mut clerk = TestClerk::new(7, 3);
        clerk.prefer(Some(2));
        let out = clerk.start(get());
        assert_eq!(sends(&out), [2]);
        assert_eq!(sends(&clerk.on_timeout(timer(&out))), [0]);
    }

    #[test]
    fn an_unreachable_server_gives_way_at_once_but_not_in_a_loop() {
        let mut clerk = TestClerk::new(7, 2);
        let out = clerk.start(get());
        let first = timer(&out);
        let out = clerk.on_unreachable(&0);
        assert_eq!(sends(&out), [1], "the next server at once");
        let second = timer(&out);
        assert!(
            clerk.on_unreachable(&1).is_empty(),
            "both failed in this step: wait for it"
        );
        assert!(clerk.on_timeout(first).is_empty(), "a stale timer");
        assert_eq!(
            sends(&clerk.on_timeout(second)),
            [0],
            "the next step tries again"
        );
    }

    #[test]
    fn a_retry_keeps_the_sequence_number() {
        let mut clerk = TestClerk::new(7, 2);
        let out = clerk.start(get());
        let again = clerk.on_timeout(timer(&out));
        let seqs: Vec<u64> = [&out, &again]
            .iter()
            .flat_map(|o| o.iter())
            .filter_map(|o| match o {
                ClerkOutput::Send {
                    msg: RsmMsg::Request { seq, client, .. },
                    ..
                } => Some(*seq + *client),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, [8, 8]);
    }
}
