//! What synod's simulator suites share, so that each suite states an invariant or checks a
//! history the same way (a dev-dependency only; never part of a server or a client):
//!
//! - [`add_agreement_invariant`]: after every simulator step, no Paxos instance has two
//!   decided values, across every peer and every life of each peer;
//! - [`kv_input`] and [`assert_linearizable`]: a recorded history of key/value operations,
//!   handed to the linearizability checker;
//! - [`carry_out`]: a production clerk's outputs done by a simulator node;
//! - [`START_ORDERS`]: every order in which three replicas can start, for the simulated and
//!   the real-process bootstrap tests.
//!
//! The clients the suites run are the production clerks (`synod_rsm::clerk`,
//! `synod_pbservice::Clerk`), not test copies.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;
use synod_check::kv::{KvInput, KvModel};
use synod_check::{check_operations, CheckResult, Operation};
use synod_kvpaxos::KvOp;
use synod_node::clerk::ClerkOutput;
use synod_node::{Context, NodeId, TimerToken};
use synod_paxos::{Paxos, Value};
use synod_sim::{Recorder, Simulator};

/// How long the checker may search a suite's history before the suite fails.
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Adds the invariant "one value decided per instance" over `peers`: every decision any peer
/// ever learned, in any of its lives, is remembered, and a different value for the same
/// instance fails the run. `paxos_of` finds a running peer's Paxos state.
pub fn add_agreement_invariant<M, V>(
    sim: &mut Simulator<M>,
    peers: Vec<NodeId>,
    paxos_of: for<'a> fn(&'a Simulator<M>, NodeId) -> Option<&'a Paxos<V>>,
) where
    M: Clone + Debug + Serialize + 'static,
    V: Value,
{
    let seen: Rc<RefCell<BTreeMap<u64, V>>> = Rc::default();
    // Per peer, (lives, decisions learned) at the last look: unchanged means nothing new.
    let looked: Rc<RefCell<Vec<(u64, u64)>>> = Rc::new(RefCell::new(vec![(0, 0); peers.len()]));
    sim.add_invariant("one value decided per instance", move |sim| {
        let mut seen = seen.borrow_mut();
        let mut looked = looked.borrow_mut();
        for (i, &id) in peers.iter().enumerate() {
            let Some(paxos) = paxos_of(sim, id) else {
                continue;
            };
            let now = (sim.stats(id).starts, paxos.decisions_learned());
            if std::mem::replace(&mut looked[i], now) == now {
                continue;
            }
            for (seq, value) in paxos.decided() {
                match seen.get(&seq) {
                    Some(first) if first != value => {
                        return Err(format!(
                            "instance {seq}: {id} decided {value:?}, earlier {first:?} was decided"
                        ))
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(seq, value.clone());
                    }
                }
            }
        }
        Ok(())
    });
}

/// The checker's input for a course key/value operation (the checker's model is over text:
/// the histories the tests record hold UTF-8 keys and values).
///
/// # Panics
/// On a Redis command, which the checker's model does not describe.
pub fn kv_input(op: &KvOp) -> KvInput {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match op {
        KvOp::Get { key } => KvInput::get(text(key)),
        KvOp::Put { key, value } => KvInput::put(text(key), text(value)),
        KvOp::Append { key, value } => KvInput::append(text(key), text(value)),
        KvOp::Redis(command) => panic!("no checker model for {command:?}"),
    }
}

/// Asserts that the operations of `history` that `keep` selects are linearizable. An
/// operation without a reply may or may not have taken effect, and is checked as such.
pub fn assert_linearizable(history: &Recorder<KvInput, String>, keep: impl Fn(&KvInput) -> bool) {
    let ops: Vec<Operation<KvInput, String>> = history
        .operations()
        .into_iter()
        .filter(|op| keep(&op.input))
        .map(|op| match (op.output, op.ret) {
            (Some(out), Some(ret)) => Operation::new(op.client, op.input, op.call, out, ret),
            _ => Operation::unknown(op.client, op.input, op.call),
        })
        .collect();
    let result = check_operations(&KvModel, &ops, Some(CHECK_LIMIT)).expect("well-formed history");
    assert!(
        matches!(result, CheckResult::Ok),
        "history of {} operations is not linearizable: {result:?}",
        ops.len()
    );
}

/// The six orders in which three replicas (0, 1 and 2) can start.
pub const START_ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// Does what a clerk run as a simulator node asked: sends each message to the node
/// `node_of` names, sets each timer under the token `timer` maps it to (a node running two
/// clerks keeps their tokens apart), and returns the completed operations' replies.
pub fn carry_out<S, M, R>(
    ctx: &mut dyn Context<M>,
    outputs: Vec<ClerkOutput<S, M, R>>,
    node_of: impl Fn(&S) -> NodeId,
    timer: impl Fn(TimerToken) -> TimerToken,
) -> Vec<R> {
    let mut done = Vec::new();
    for output in outputs {
        match output {
            ClerkOutput::Send { to, msg } => ctx.send(node_of(&to), msg),
            ClerkOutput::Timer { after, token } => ctx.set_timer(after, timer(token)),
            ClerkOutput::Done(reply) => done.push(reply),
        }
    }
    done
}
