//! `synod check` end to end: exit codes, error messages naming the line, the HTML file.

use std::path::Path;
use std::process::{Command, Output};

fn synod_check(dir: &Path, history: &str, extra: &[&str]) -> Output {
    let path = dir.join("history.jsonl");
    std::fs::write(&path, history).unwrap();
    Command::new(env!("CARGO_BIN_EXE_synod"))
        .arg("check")
        .args(extra)
        .arg(&path)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const GOOD: &str = r#"{"client": 1, "op": "put", "key": "k", "value": "v", "call": 10, "return": 20}

{"client": 2, "op": "get", "key": "k", "output": "v", "call": 30, "return": 40}
{"client": 3, "op": "append", "key": "k", "value": "w", "call": 35, "return": null}
{"client": 2, "op": "get", "key": "missing", "output": "", "call": 50, "return": 60}
"#;

const STALE: &str = r#"{"client": 1, "op": "put", "key": "k", "value": "v", "call": 10, "return": 20}
{"client": 2, "op": "get", "key": "k", "output": "", "call": 30, "return": 40}
"#;

#[test]
fn linearizable_history_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let out = synod_check(dir.path(), GOOD, &["--model", "kv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("linearizable"));
}

#[test]
fn stale_read_exits_1_and_writes_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("out.html");
    let out = synod_check(
        dir.path(),
        STALE,
        &["--model", "kv", "--html", html.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("NOT linearizable"), "{stdout}");
    assert!(stdout.contains(r#"get("k") → """#), "{stdout}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("stuckbar"));
}

#[test]
fn exhausted_budget_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut history: String = (0..14)
        .map(|c| {
            format!(
                "{{\"client\": {c}, \"op\": \"append\", \"key\": \"k\", \"value\": \"{c},\", \
                 \"call\": 0, \"return\": 100}}\n"
            )
        })
        .collect();
    history.push_str(
        r#"{"client": 99, "op": "get", "key": "k", "output": "x", "call": 200, "return": 300}"#,
    );
    let out = synod_check(dir.path(), &history, &["--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("unknown"));
}

#[test]
fn malformed_line_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let history = format!("{GOOD}{{\"client\": 1, \"op\": \"put\", \"key\": \"k\"\n");
    let out = synod_check(dir.path(), &history, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 6"),
        "{}",
        text(&out.stderr)
    );

    let out = synod_check(
        dir.path(),
        r#"{"client": 1, "op": "cas", "key": "k", "call": 1}"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 1: unknown op \"cas\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn register_model_uses_read_and_write() {
    let dir = tempfile::tempdir().unwrap();
    let ok = r#"{"client": 1, "op": "write", "value": "a", "call": 0, "return": 5}
{"client": 2, "op": "read", "output": "a", "call": 6, "return": 9}"#;
    let out = synod_check(dir.path(), ok, &["--model", "register"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stale = r#"{"client": 1, "op": "write", "value": "a", "call": 0, "return": 5}
{"client": 2, "op": "read", "output": "", "call": 6, "return": 9}"#;
    let out = synod_check(dir.path(), stale, &["--model", "register"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn missing_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(["check", "/nonexistent/history.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read"));
}
