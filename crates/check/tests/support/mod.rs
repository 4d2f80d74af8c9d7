//! Test support: an exhaustive checker that shares nothing with the real search but the model,
//! and a validator for the linearizations the real search reports.

use std::collections::BTreeMap;

use synod_check::{Model, Operation};

type Op<M> = Operation<<M as Model>::Input, <M as Model>::Output>;

/// True if some order of each partition's operations respects real time, is accepted by the
/// model, and leaves out only operations with unknown return (the "never happened" case,
/// handled here directly rather than by the checker's return-at-infinity trick). Exponential:
/// small histories only.
pub fn brute_force<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>]) -> bool {
    let mut groups: BTreeMap<String, Vec<&Op<M>>> = BTreeMap::new();
    for op in history {
        groups
            .entry(model.partition(&op.input))
            .or_default()
            .push(op);
    }
    groups.values().all(|ops| {
        let mut done = vec![false; ops.len()];
        search(model, ops, &mut done, &model.init())
    })
}

fn search<M: Model>(model: &M, ops: &[&Op<M>], done: &mut [bool], state: &M::State) -> bool {
    if (0..ops.len()).all(|i| done[i] || ops[i].ret.is_none()) {
        return true;
    }
    for i in 0..ops.len() {
        if done[i] {
            continue;
        }
        // Some pending operation returned strictly before this one was called: it must go first.
        let blocked = (0..ops.len())
            .any(|j| j != i && !done[j] && ops[j].ret.is_some_and(|r| r < ops[i].call));
        if blocked {
            continue;
        }
        if let Some(next) = model.step(state, &ops[i].input, ops[i].output.as_ref()) {
            done[i] = true;
            if search(model, ops, done, &next) {
                return true;
            }
            done[i] = false;
        }
    }
    false
}

/// Asserts that `order` (indices into `history`) is accepted by the model step by step and
/// never puts an operation before one that returned before it was called.
pub fn assert_valid_order<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    order: &[usize],
) {
    let mut state = model.init();
    for (k, &i) in order.iter().enumerate() {
        let op = &history[i];
        state = model
            .step(&state, &op.input, op.output.as_ref())
            .unwrap_or_else(|| panic!("step {k} (op {i}) rejected by the model"));
        for &later in &order[k + 1..] {
            assert!(
                history[later].ret.is_none_or(|r| r >= op.call),
                "op {later} returned before op {i} was called but is ordered after it"
            );
        }
    }
}
