//! Property tests: histories recorded from a real sequential execution must check `Ok`; with
//! one output corrupted, or made up entirely, the checker must agree with the brute force.

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use synod_check::kv::{KvInput, KvModel};
use synod_check::{analyze, Operation, Verdict};

type KvOp = Operation<KvInput, String>;

const VALUES: [&str; 3] = ["a", "b", "c"];
const KEYS: [&str; 2] = ["x", "y"];

/// One planned operation: what it does, how far its call and return stray from its
/// linearization point, and whether the client learns the outcome.
#[derive(Clone, Debug)]
struct Plan {
    client: u64,
    kind: u8,
    key: usize,
    value: usize,
    before: u64,
    after: u64,
    /// 0: outcome unknown but applied; 1: outcome unknown and never applied; else known.
    fate: u8,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        0..4u64,
        0..3u8,
        0..KEYS.len(),
        0..VALUES.len(),
        0..25u64,
        0..25u64,
        0..8u8,
    )
        .prop_map(|(client, kind, key, value, before, after, fate)| Plan {
            client,
            kind,
            key,
            value,
            before,
            after,
            fate,
        })
}

/// Runs the plans one after another against a map; operation `i` takes effect at time
/// `10 (i + 3)`, inside an interval that overlaps its neighbours'.
fn execute(plans: &[Plan]) -> Vec<KvOp> {
    let mut store: BTreeMap<&str, String> = BTreeMap::new();
    plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let key = KEYS[p.key];
            let value = VALUES[p.value];
            let point = 10 * (i as u64 + 3);
            let call = point - p.before;
            let input = match p.kind {
                0 => KvInput::get(key),
                1 => KvInput::put(key, value),
                _ => KvInput::append(key, value),
            };
            let current = store.entry(key).or_default();
            let output = match (&input, p.fate) {
                (_, 1) => return Operation::unknown(p.client, input, call),
                (KvInput::Get { .. }, _) => current.clone(),
                (KvInput::Put { .. }, _) => {
                    *current = value.to_string();
                    String::new()
                }
                (KvInput::Append { .. }, _) => {
                    current.push_str(value);
                    String::new()
                }
            };
            if p.fate == 0 {
                Operation::unknown(p.client, input, call)
            } else {
                Operation::new(p.client, input, call, output, point + p.after)
            }
        })
        .collect()
}

fn checker_verdict(history: &[KvOp]) -> Verdict {
    let analysis = analyze(&KvModel, history, None).unwrap();
    for p in &analysis.partitions {
        support::assert_valid_order(&KvModel, history, &p.linearization);
    }
    analysis.verdict()
}

fn reference_verdict(history: &[KvOp]) -> Verdict {
    if support::brute_force(&KvModel, history) {
        Verdict::Ok
    } else {
        Verdict::Illegal
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn recorded_executions_are_linearizable(plans in prop::collection::vec(plan(), 0..40)) {
        let history = execute(&plans);
        prop_assert_eq!(checker_verdict(&history), Verdict::Ok);
    }

    #[test]
    fn one_corrupted_read_is_caught_unless_explainable(
        plans in prop::collection::vec(plan(), 1..9),
        which in any::<prop::sample::Index>(),
        read in prop::sample::select(vec!["", "a", "b", "c", "ab", "ba", "aa", "cab"]),
    ) {
        let mut history = execute(&plans);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].input, KvInput::Get { .. }) && history[i].ret.is_some())
            .collect();
        prop_assume!(!reads.is_empty());
        history[reads[which.index(reads.len())]].output = Some(read.to_string());
        prop_assert_eq!(checker_verdict(&history), reference_verdict(&history));
    }

    /// Arbitrary intervals and arbitrary outputs: mostly illegal, sometimes not, and the two
    /// checkers must agree every time.
    #[test]
    fn made_up_histories_agree_with_brute_force(
        ops in prop::collection::vec(
            (plan(), 0..60u64, 0..30u64, prop::sample::select(vec!["", "a", "b", "ab", "ba"])),
            0..8,
        ),
    ) {
        let history: Vec<KvOp> = ops
            .into_iter()
            .map(|(p, call, len, read)| {
                let input = match p.kind {
                    0 => KvInput::get(KEYS[p.key]),
                    1 => KvInput::put(KEYS[p.key], VALUES[p.value]),
                    _ => KvInput::append(KEYS[p.key], VALUES[p.value]),
                };
                if p.fate == 0 {
                    Operation::unknown(p.client, input, call)
                } else {
                    Operation::new(p.client, input, call, read.to_string(), call + len)
                }
            })
            .collect();
        prop_assert_eq!(checker_verdict(&history), reference_verdict(&history));
    }
}
