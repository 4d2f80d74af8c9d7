//! Batches of operations, as a pipelined RESP connection sends them: one request, one log
//! entry, applied in order with nothing in between, at most once as a whole, and every
//! operation's reply comes back, also when the batch is retried at another replica after
//! the leader that decided it went away and its reply was lost.

use std::time::Duration;

use synod_kvpaxos::{KvMsg, KvOp, KvReplica, KvReply};
use synod_paxos::PaxosConfig;
use synod_sim::{Context, Node, NodeId, Simulator, TimerToken};

/// A client gives up on a replica after this long and sends the same batch to the next.
const RETRY: Duration = Duration::from_millis(200);

const REPLICAS: usize = 3;

/// A client that sends one batch at a time under one session, retrying it (same client id,
/// same sequence number) at the next replica until one answers.
struct Batcher {
    client: u64,
    seq: u64,
    ops: Vec<KvOp>,
    /// The replica the batch goes to next.
    target: usize,
    reply: Option<KvReply>,
    /// Replicas the batch was sent to, in order.
    sent_to: Vec<usize>,
}

impl Batcher {
    fn start(&mut self, ctx: &mut dyn Context<KvMsg>, target: usize, ops: Vec<KvOp>) {
        self.seq += 1;
        self.ops = ops;
        self.target = target;
        self.reply = None;
        self.sent_to.clear();
        self.send(ctx);
    }

    fn send(&mut self, ctx: &mut dyn Context<KvMsg>) {
        let msg = KvMsg::Batch {
            client: self.client,
            seq: self.seq,
            ops: self.ops.clone(),
        };
        self.sent_to.push(self.target);
        ctx.send(NodeId(self.target as u64), msg);
        ctx.set_timer(RETRY, self.seq);
    }
}

impl Node for Batcher {
    type Msg = KvMsg;

    fn on_start(&mut self, _ctx: &mut dyn Context<KvMsg>) {}

    fn on_message(&mut self, _ctx: &mut dyn Context<KvMsg>, _from: NodeId, msg: KvMsg) {
        if let KvMsg::Reply { seq, reply } = msg {
            if seq == self.seq {
                self.reply = Some(reply);
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<KvMsg>, token: TimerToken) {
        if token == self.seq && self.reply.is_none() {
            self.target = (self.target + 1) % REPLICAS;
            self.send(ctx);
        }
    }
}

const CLIENT: NodeId = NodeId(NodeId::FIRST_CLIENT);

fn cluster(seed: u64) -> Simulator<KvMsg> {
    let mut sim = Simulator::new(seed);
    let peers: Vec<NodeId> = (0..REPLICAS as u64).map(NodeId).collect();
    for i in 0..REPLICAS {
        let peers = peers.clone();
        sim.add_node(NodeId(i as u64), move || {
            KvReplica::new(peers.clone(), i, PaxosConfig::default())
        });
    }
    sim.add_node(CLIENT, || Batcher {
        client: 7,
        seq: 0,
        ops: Vec::new(),
        target: 0,
        reply: None,
        sent_to: Vec::new(),
    });
    sim
}

fn leader(sim: &Simulator<KvMsg>) -> Option<usize> {
    (0..REPLICAS).find(|&i| {
        sim.node::<KvReplica>(NodeId(i as u64))
            .is_some_and(|r| r.paxos().leading())
    })
}

fn value(sim: &Simulator<KvMsg>, replica: usize, key: &str) -> Option<String> {
    let replica = sim.node::<KvReplica>(NodeId(replica as u64))?;
    let value = replica.kv().data.get(key)?;
    Some(String::from_utf8(value.clone()).expect("the tests store text"))
}

/// Sends `ops` as one batch to replica `target` and waits for the reply.
fn run(sim: &mut Simulator<KvMsg>, target: usize, ops: Vec<KvOp>) -> KvReply {
    sim.call(CLIENT, |b: &mut Batcher, ctx| b.start(ctx, target, ops));
    sim.require(Duration::from_secs(10), "the batch is answered", |s| {
        s.node::<Batcher>(CLIENT).is_some_and(|b| b.reply.is_some())
    });
    let batcher = sim.node::<Batcher>(CLIENT).expect("the client runs");
    batcher.reply.clone().expect("answered")
}

fn put(key: &str, value: &str) -> KvOp {
    KvOp::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn append(key: &str, value: &str) -> KvOp {
    KvOp::Append {
        key: key.into(),
        value: value.into(),
    }
}

fn get(key: &str) -> KvOp {
    KvOp::Get { key: key.into() }
}

fn written(len: u64) -> KvReply {
    KvReply::Written { len }
}

#[test]
fn a_batch_applies_in_order_and_answers_every_operation() {
    let mut sim = cluster(1);
    // A follower takes the batch too: it forwards it to the leader.
    let reply = run(
        &mut sim,
        0,
        vec![
            put("k", "1"),
            get("k"),
            append("k", "2"),
            get("k"),
            get("none"),
        ],
    );
    assert_eq!(
        reply,
        KvReply::Batch(vec![
            written(1),
            KvReply::Value("1".into()),
            written(2),
            KvReply::Value("12".into()),
            KvReply::Value(Vec::new()),
        ])
    );
    // Reads only: answered after a read barrier, with the session already known.
    let reply = run(&mut sim, 1, vec![get("k"), get("none")]);
    assert_eq!(
        reply,
        KvReply::Batch(vec![
            KvReply::Value("12".into()),
            KvReply::Value(Vec::new())
        ])
    );
}

#[test]
fn a_batch_retried_after_its_leader_crashed_is_applied_once_with_every_reply() {
    for seed in 0..5 {
        let mut sim = cluster(seed);
        sim.require(Duration::from_secs(5), "a leader is elected", |s| {
            leader(s).is_some()
        });
        let first = leader(&sim).expect("elected");
        // A first batch opens the client's session.
        assert_eq!(
            run(&mut sim, first, vec![put("k", "a")]),
            KvReply::Batch(vec![written(1)])
        );

        // The leader decides the next batch, but its reply never reaches the client, and the
        // leader crashes: the client retries at the other replicas.
        sim.block_link(NodeId(first as u64), CLIENT);
        let ops = vec![append("k", "b"), get("k"), append("k", "c")];
        sim.call(CLIENT, |b: &mut Batcher, ctx| b.start(ctx, first, ops));
        sim.require(
            Duration::from_secs(5),
            "the leader applied the batch",
            |s| value(s, first, "k").as_deref() == Some("abc"),
        );
        sim.crash(NodeId(first as u64));
        sim.require(
            Duration::from_secs(10),
            "the retried batch is answered",
            |s| s.node::<Batcher>(CLIENT).is_some_and(|b| b.reply.is_some()),
        );
        let batcher = sim.node::<Batcher>(CLIENT).expect("the client runs");
        assert!(batcher.sent_to.len() > 1, "seed {seed}: never retried");
        assert_eq!(
            batcher.reply,
            Some(KvReply::Batch(vec![
                written(2),
                KvReply::Value("ab".into()),
                written(3),
            ])),
            "seed {seed}"
        );
        // Applied once: the next batch sees "abc", not the appends twice.
        let other = (first + 1) % REPLICAS;
        assert_eq!(
            run(&mut sim, other, vec![get("k"), append("k", "d")]),
            KvReply::Batch(vec![KvReply::Value("abc".into()), written(4)]),
            "seed {seed}"
        );
    }
}

#[test]
fn a_batch_above_the_size_policy_is_refused_whole() {
    let mut sim = cluster(3);
    let big = "x".repeat(600 << 10);
    let reply = run(&mut sim, 0, vec![put("a", &big), put("b", &big)]);
    assert!(
        matches!(reply, KvReply::TooLarge(_)),
        "a 1.2 MiB batch: {reply:?}"
    );
    // A refusal at the edge is in no session table, so the client starts a new session,
    // as it does after any refusal.
    sim.call(CLIENT, |b: &mut Batcher, _| (b.client, b.seq) = (8, 0));
    let reply = run(&mut sim, 0, vec![get("a"), get("b")]);
    assert_eq!(
        reply,
        KvReply::Batch(vec![KvReply::Value(Vec::new()), KvReply::Value(Vec::new())]),
        "nothing of the refused batch was applied"
    );
}

#[test]
fn a_batch_stops_before_a_get_that_would_make_its_reply_too_big() {
    let mut sim = cluster(4);
    let (a, b) = ("a".repeat(600 << 10), "b".repeat(600 << 10));
    assert_eq!(
        run(&mut sim, 0, vec![put("a", &a)]),
        KvReply::Batch(vec![written(a.len() as u64)])
    );
    assert_eq!(
        run(&mut sim, 0, vec![put("b", &b)]),
        KvReply::Batch(vec![written(b.len() as u64)])
    );
    // Logged (it writes): the first Get always runs, the second would pass the budget, so
    // the batch stops there and the Append after it is not applied.
    let reply = run(
        &mut sim,
        1,
        vec![get("a"), get("b"), append("c", "x"), get("a")],
    );
    assert_eq!(
        reply,
        KvReply::Batch(vec![KvReply::Value(a.clone().into_bytes())])
    );
    // The client sends the rest again, as its next request.
    let reply = run(&mut sim, 1, vec![get("b"), append("c", "x"), get("a")]);
    assert_eq!(
        reply,
        KvReply::Batch(vec![KvReply::Value(b.clone().into_bytes()), written(1)])
    );
    // Reads only (no log entry): the same budget.
    let reply = run(&mut sim, 2, vec![get("c"), get("a"), get("b")]);
    assert_eq!(
        reply,
        KvReply::Batch(vec![
            KvReply::Value("x".into()),
            KvReply::Value(a.into_bytes())
        ])
    );
}

#[test]
fn an_empty_or_overlong_batch_is_ignored() {
    let mut sim = cluster(5);
    let too_many = vec![get("k"); synod_rsm::MAX_BATCH_COMMANDS + 1];
    for ops in [Vec::new(), too_many] {
        sim.call(CLIENT, |b: &mut Batcher, ctx| b.start(ctx, 0, ops));
        sim.run_for(Duration::from_secs(2));
        let batcher = sim.node::<Batcher>(CLIENT).expect("the client runs");
        assert_eq!(
            batcher.reply,
            None,
            "answered {} operations",
            batcher.ops.len()
        );
        assert!(
            batcher.sent_to.len() > 3,
            "the client kept asking every replica"
        );
    }
    // Unanswered requests leave the session's outcome unknown: a new session, as after a
    // timeout, and a batch at the limit is answered.
    sim.call(CLIENT, |b: &mut Batcher, _| (b.client, b.seq) = (9, 0));
    let full = vec![get("k"); synod_rsm::MAX_BATCH_COMMANDS];
    let reply = run(&mut sim, 0, full);
    let empty = KvReply::Value(Vec::new());
    assert!(
        reply == KvReply::Batch(vec![empty; synod_rsm::MAX_BATCH_COMMANDS]),
        "a batch of {} Gets: {reply:.100?}",
        synod_rsm::MAX_BATCH_COMMANDS
    );
}
