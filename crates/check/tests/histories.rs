//! Hand-written classic histories with known verdicts, checked by both the real search and the
//! brute-force reference.

mod support;

use std::time::{Duration, Instant};

use synod_check::kv::{KvInput, KvModel};
use synod_check::register::{RegisterInput, RegisterModel};
use synod_check::{
    analyze, check_operations, Analysis, CheckResult, HistoryError, Operation, Verdict,
};

type KvOp = Operation<KvInput, String>;

fn done(client: u64, input: KvInput, call: u64, output: &str, ret: u64) -> KvOp {
    Operation::new(client, input, call, output.to_string(), ret)
}

fn put(client: u64, key: &str, value: &str, call: u64, ret: u64) -> KvOp {
    done(client, KvInput::put(key, value), call, "", ret)
}

fn append(client: u64, key: &str, value: &str, call: u64, ret: u64) -> KvOp {
    done(client, KvInput::append(key, value), call, "", ret)
}

fn get(client: u64, key: &str, output: &str, call: u64, ret: u64) -> KvOp {
    done(client, KvInput::get(key), call, output, ret)
}

/// Checks `history`, asserts the brute force agrees, and returns the verdict.
fn verdict(history: &[KvOp]) -> Verdict {
    let analysis = analyze(&KvModel, history, None).unwrap();
    let verdict = analysis.verdict();
    let expected = if support::brute_force(&KvModel, history) {
        Verdict::Ok
    } else {
        Verdict::Illegal
    };
    assert_eq!(
        verdict, expected,
        "checker and brute force disagree on {history:?}"
    );
    verdict
}

/// Each partition's label and verdict, in label order.
fn per_partition(analysis: &Analysis) -> Vec<(&str, Verdict)> {
    analysis
        .partitions
        .iter()
        .map(|p| (p.label.as_str(), p.verdict))
        .collect()
}

/// The single failing partition's (longest prefix, stuck operation).
fn failure(history: &[KvOp]) -> (String, Vec<usize>, usize) {
    let CheckResult::Illegal(analysis) = check_operations(&KvModel, history, None).unwrap() else {
        panic!("expected an illegal history");
    };
    let failed: Vec<_> = analysis
        .partitions
        .iter()
        .filter(|p| p.verdict == Verdict::Illegal)
        .collect();
    assert_eq!(failed.len(), 1);
    let p = failed[0];
    support::assert_valid_order(&KvModel, history, &p.linearization);
    (
        p.label.clone(),
        p.linearization.clone(),
        p.stuck.expect("a stuck operation"),
    )
}

#[test]
fn stale_read_after_a_completed_write_is_illegal() {
    let h = [put(1, "x", "1", 0, 10), get(2, "x", "", 20, 30)];
    assert_eq!(verdict(&h), Verdict::Illegal);
    assert_eq!(failure(&h), ("x".to_string(), vec![0], 1));
}

#[test]
fn old_value_read_concurrently_with_the_write_is_fine() {
    let h = [
        put(1, "x", "1", 0, 10),
        get(2, "x", "", 5, 15),
        get(3, "x", "1", 12, 20),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
}

#[test]
fn a_read_called_at_the_instant_the_write_returned_is_concurrent_with_it() {
    let h = [put(1, "x", "1", 0, 10), get(2, "x", "", 10, 15)];
    assert_eq!(verdict(&h), Verdict::Ok);
}

#[test]
fn concurrent_appends_seen_in_two_orders_are_illegal() {
    let h = [
        append(1, "x", "a", 0, 10),
        append(2, "x", "b", 0, 10),
        get(3, "x", "ab", 20, 30),
        get(4, "x", "ba", 40, 50),
    ];
    assert_eq!(verdict(&h), Verdict::Illegal);
    let (_, prefix, stuck) = failure(&h);
    assert_eq!((prefix.len(), stuck), (3, 3));
}

#[test]
fn concurrent_appends_seen_in_one_order_are_fine() {
    let h = [
        append(1, "x", "a", 0, 10),
        append(2, "x", "b", 0, 10),
        get(3, "x", "ba", 20, 30),
        get(4, "x", "ba", 40, 50),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
}

#[test]
fn lost_write_is_illegal() {
    let h = [
        put(1, "x", "1", 0, 10),
        put(2, "x", "2", 20, 30),
        get(3, "x", "1", 40, 50),
    ];
    assert_eq!(verdict(&h), Verdict::Illegal);
    assert_eq!(failure(&h), ("x".to_string(), vec![0, 1], 2));
}

#[test]
fn lost_append_is_illegal() {
    let h = [
        append(1, "x", "a", 0, 10),
        append(1, "x", "b", 20, 30),
        get(2, "x", "a", 40, 50),
    ];
    assert_eq!(verdict(&h), Verdict::Illegal);
}

#[test]
fn write_visible_before_its_call_is_illegal() {
    let h = [get(1, "x", "1", 0, 10), put(2, "x", "1", 20, 30)];
    assert_eq!(verdict(&h), Verdict::Illegal);
    assert_eq!(failure(&h), ("x".to_string(), vec![], 0));
}

#[test]
fn only_the_broken_key_fails() {
    let h = [
        put(1, "x", "1", 0, 10),
        put(1, "y", "1", 0, 10),
        get(2, "x", "1", 20, 30),
        get(2, "y", "", 20, 30),
    ];
    let analysis = analyze(&KvModel, &h, None).unwrap();
    let verdicts = per_partition(&analysis);
    assert_eq!(verdicts, [("x", Verdict::Ok), ("y", Verdict::Illegal)]);
    assert_eq!(failure(&h), ("y".to_string(), vec![1], 3));
}

#[test]
fn timed_out_put_that_later_becomes_visible_is_fine() {
    let h = [
        Operation::unknown(1, KvInput::put("x", "1"), 0),
        get(2, "x", "", 5, 10),
        get(2, "x", "1", 20, 30),
        get(3, "x", "1", 40, 50),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
}

#[test]
fn timed_out_put_that_never_shows_is_fine() {
    let h = [
        Operation::unknown(1, KvInput::put("x", "1"), 0),
        get(2, "x", "", 20, 30),
        put(3, "x", "2", 40, 50),
        get(2, "x", "2", 60, 70),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
}

#[test]
fn timed_out_put_visible_before_its_call_is_illegal() {
    let h = [
        get(2, "x", "1", 0, 10),
        Operation::unknown(1, KvInput::put("x", "1"), 20),
    ];
    assert_eq!(verdict(&h), Verdict::Illegal);
}

#[test]
fn timed_out_put_cannot_vanish_once_seen() {
    let h = [
        Operation::unknown(1, KvInput::put("x", "1"), 0),
        get(2, "x", "1", 20, 30),
        get(2, "x", "", 40, 50),
    ];
    assert_eq!(verdict(&h), Verdict::Illegal);
}

#[test]
fn a_get_with_unknown_outcome_is_dropped() {
    let h = [
        put(1, "x", "1", 0, 10),
        Operation::unknown(2, KvInput::get("x"), 20),
        get(3, "x", "1", 30, 40),
    ];
    let analysis = analyze(&KvModel, &h, None).unwrap();
    assert_eq!(analysis.verdict(), Verdict::Ok);
    assert_eq!(analysis.partitions[0].dropped, vec![1]);
    assert_eq!(analysis.partitions[0].linearization, vec![0, 2]);
}

#[test]
fn a_return_before_the_call_is_rejected() {
    let h = [put(1, "x", "1", 10, 5)];
    assert_eq!(
        check_operations(&KvModel, &h, None),
        Err(HistoryError::ReturnBeforeCall {
            index: 0,
            call: 10,
            ret: 5
        })
    );
}

#[test]
fn an_empty_history_is_linearizable() {
    assert_eq!(check_operations(&KvModel, &[], None), Ok(CheckResult::Ok));
}

/// Many mutually concurrent appends and a read no order explains: the search has to try
/// every order, far more than fits in the budget.
#[test]
fn an_exhausted_time_budget_gives_unknown() {
    let mut h: Vec<KvOp> = (0..14)
        .map(|c| append(c, "x", &format!("{c},"), 0, 100))
        .collect();
    h.push(get(99, "x", "impossible", 200, 300));
    let started = Instant::now();
    let result = check_operations(&KvModel, &h, Some(Duration::from_millis(100))).unwrap();
    assert_eq!(result, CheckResult::Unknown);
    // Not a speed assertion: a budget that was ignored would take hours, not seconds.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn register_stale_read_is_illegal_and_fresh_read_fine() {
    let write = Operation::new(1, RegisterInput::write("a"), 0, String::new(), 10);
    let stale = Operation::new(2, RegisterInput::Read, 20, String::new(), 30);
    let fresh = Operation::new(2, RegisterInput::Read, 20, "a".to_string(), 30);
    let bad = [write.clone(), stale];
    let good = [write, fresh];
    assert!(matches!(
        check_operations(&RegisterModel, &bad, None),
        Ok(CheckResult::Illegal(_))
    ));
    assert!(!support::brute_force(&RegisterModel, &bad));
    assert_eq!(
        check_operations(&RegisterModel, &good, None),
        Ok(CheckResult::Ok)
    );
}

#[test]
fn one_illegal_key_stops_the_search_of_a_hard_one() {
    // Key "a" is plainly illegal. Key "b" is illegal too, but proving it means trying every
    // subset of 24 concurrent puts before the read: far beyond the 5 s budget. The first
    // verdict decides the history, so the search of "b" stops instead of running out.
    let mut h = vec![put(1, "a", "1", 0, 10), get(2, "a", "2", 20, 30)];
    for client in 0..24 {
        h.push(put(10 + client, "b", &client.to_string(), 100, 200));
    }
    h.push(get(99, "b", "never written", 300, 310));
    let analysis = analyze(&KvModel, &h, Some(Duration::from_secs(5))).unwrap();
    let verdicts = per_partition(&analysis);
    assert_eq!(verdicts, [("a", Verdict::Illegal), ("b", Verdict::Skipped)]);
    assert_eq!(analysis.verdict(), Verdict::Illegal);
}
