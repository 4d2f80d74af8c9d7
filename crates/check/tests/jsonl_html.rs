//! The JSON-lines reader and the HTML timeline.

use synod_check::html::render;
use synod_check::jsonl::{parse_kv, parse_register, summarize, JsonlError};
use synod_check::kv::{KvInput, KvModel};
use synod_check::register::RegisterInput;
use synod_check::{analyze, Operation, Verdict};

fn line_error(text: &str) -> (usize, String) {
    match parse_kv(text) {
        Err(JsonlError::Line { line, message }) => (line, message),
        other => panic!("expected a line error, got {other:?}"),
    }
}

#[test]
fn parses_completed_and_unknown_operations_skipping_blank_lines() {
    let text = r#"
{"client": 3, "op": "put", "key": "k", "value": "v", "call": 1234, "return": 1240, "extra": 1}

{"client": 4, "op": "get", "key": "k", "output": "v", "call": 1235, "return": 1250}
{"client": 5, "op": "append", "key": "k", "value": "w", "call": 1300, "return": null}
{"client": 6, "op": "get", "key": "k", "call": 1300}
"#;
    let ops = parse_kv(text).unwrap();
    assert_eq!(
        ops,
        vec![
            Operation::new(3, KvInput::put("k", "v"), 1234, String::new(), 1240),
            Operation::new(4, KvInput::get("k"), 1235, "v".to_string(), 1250),
            Operation::unknown(5, KvInput::append("k", "w"), 1300),
            Operation::unknown(6, KvInput::get("k"), 1300),
        ]
    );
}

#[test]
fn malformed_lines_are_reported_with_their_number() {
    let good = r#"{"client": 1, "op": "put", "key": "k", "value": "v", "call": 1, "return": 2}"#;
    let cases = [
        ("not json", "expected"),
        (
            r#"{"client": 1, "op": "put", "key": "k", "value": "v"}"#,
            "missing field `call`",
        ),
        (
            r#"{"client": -1, "op": "get", "key": "k", "output": "", "call": 1, "return": 2}"#,
            "invalid value",
        ),
        (
            r#"{"client": 1, "op": "get", "key": "k", "call": 1, "return": 2}"#,
            "needs an `output`",
        ),
        (
            r#"{"client": 1, "op": "put", "key": "k", "call": 1, "return": 2}"#,
            "put needs a `value`",
        ),
        (
            r#"{"client": 1, "op": "get", "output": "", "call": 1, "return": 2}"#,
            "missing field `key`",
        ),
        (
            r#"{"client": 1, "op": "read", "key": "k", "output": "", "call": 1, "return": 2}"#,
            "unknown op \"read\"",
        ),
        (
            r#"{"client": 1, "op": "put", "key": "k", "value": "v", "call": 9, "return": 2}"#,
            "before its call",
        ),
        (
            r#"{"client": 1, "op": "put", "key": "k", "value": "v", "call": 1.5, "return": 2}"#,
            "invalid type",
        ),
    ];
    for (bad, expected) in cases {
        let (line, message) = line_error(&format!("{good}\n\n{bad}\n{good}"));
        assert_eq!(line, 3, "{bad}");
        assert!(message.contains(expected), "{bad}: {message}");
    }
}

#[test]
fn register_histories_use_read_and_write() {
    let text = r#"{"client": 1, "op": "write", "value": "a", "call": 0, "return": 5}
{"client": 2, "op": "read", "output": "a", "call": 6, "return": 9}"#;
    let ops = parse_register(text).unwrap();
    assert_eq!(ops[0].input, RegisterInput::write("a"));
    assert_eq!(ops[1].output.as_deref(), Some("a"));
    assert!(parse_register(r#"{"client": 1, "op": "get", "call": 0}"#).is_err());
}

fn failing_history() -> Vec<Operation<KvInput, String>> {
    vec![
        Operation::new(1, KvInput::put("x", "<b>1</b>"), 0, String::new(), 10),
        Operation::new(2, KvInput::put("x", "2"), 20, String::new(), 30),
        Operation::new(3, KvInput::get("x"), 40, "<b>1</b>".to_string(), 50),
        Operation::new(1, KvInput::put("y", "1"), 0, String::new(), 10),
        Operation::unknown(2, KvInput::append("y", "z"), 15),
        Operation::unknown(3, KvInput::get("y"), 15),
    ]
}

#[test]
fn summary_names_the_operation_that_cannot_be_placed() {
    let history = failing_history();
    let analysis = analyze(&KvModel, &history, None).unwrap();
    assert_eq!(analysis.verdict(), Verdict::Illegal);
    let summary = summarize(&KvModel, &history, &analysis);
    assert!(summary.starts_with("NOT linearizable: 6 operations in 2 partition(s)"));
    assert!(
        summary.contains(r#"partition "x": after 2 of 3 operations linearized (state "2"), cannot place get("x") → "<b>1</b>" (client 3, called at 40)"#),
        "{summary}"
    );
}

#[test]
fn timeline_is_self_contained_and_marks_the_failure() {
    let history = failing_history();
    let analysis = analyze(&KvModel, &history, None).unwrap();
    let page = render(&KvModel, &history, &analysis);
    // Opens offline: nothing is fetched.
    for fetch in ["src=", "href=", "@import", "url("] {
        assert!(!page.contains(fetch), "page contains {fetch}");
    }
    // Values are escaped, never injected as markup.
    assert!(!page.contains("<b>1</b>"));
    assert!(page.contains("&lt;b&gt;1&lt;/b&gt;"));
    // The failing key comes first and open, with numbered steps and the stuck operation.
    let x = page.find("key &quot;x&quot;").unwrap();
    let y = page.find("key &quot;y&quot;").unwrap();
    assert!(x < y);
    assert!(page.contains(
        "<details open class=\"part\"><summary><b>key &quot;x&quot;</b> — NOT linearizable"
    ));
    assert!(page.contains("#1 put(&quot;x&quot;, &quot;&lt;b&gt;1&lt;/b&gt;&quot;)"));
    assert!(page.contains("#2 put(&quot;x&quot;, &quot;2&quot;)"));
    assert_eq!(
        page.matches("stuckbar").count(),
        2,
        "one stuck bar plus the scroll script"
    );
    assert!(page.contains("step #2: state &quot;&lt;b&gt;1&lt;/b&gt;&quot; → &quot;2&quot;"));
    assert!(page.contains("CANNOT BE PLACED: after step #2 the state is &quot;2&quot;"));
    // Unknown outcomes: the append is an open-ended bar, the read is shown as dropped.
    assert!(page.contains("class=\"bar lin open\""));
    assert!(page.contains("class=\"bar dropped open\""));
}
