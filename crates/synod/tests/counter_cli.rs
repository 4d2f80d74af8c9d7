//! The example counter as real processes over TCP: the same core the simulator tests drive,
//! here surviving SIGKILL (durability), SIGSTOP (timeouts, then recovery) and bad arguments.

mod support;

use std::time::Duration;

use support::{path, run, stderr, stdout, Server};

const READY: &str = "counter listening on";

fn serve(data: &std::path::Path) -> Server {
    Server::start(
        &[
            "counter",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            path(data),
        ],
        READY,
    )
}

fn add(server: &Server, amount: i64, timeout: &str) -> std::process::Output {
    run(&[
        "counter",
        "add",
        "--server",
        &server.addr,
        "--timeout",
        timeout,
        &amount.to_string(),
    ])
}

fn get(server: &Server) -> String {
    let out = run(&["counter", "get", "--server", &server.addr]);
    assert!(out.status.success(), "get failed: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn acknowledged_adds_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let mut total = 0;
    for amount in 1..=5 {
        total += amount;
        let out = add(&server, amount, "5");
        assert!(out.status.success(), "add failed: {}", stderr(&out));
        assert_eq!(stdout(&out), total.to_string());
    }
    server.kill9();

    let server = serve(dir.path());
    assert_eq!(get(&server), "15");
    let out = add(&server, -20, "5");
    assert_eq!(stdout(&out), "-5");
}

#[test]
fn dead_server_gives_a_clear_error_and_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let addr = server.addr.clone();
    server.kill9();
    let out = support::run(&["counter", "add", "--server", &addr, "--timeout", "0.5", "1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no answer from counter"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stopped_server_times_out_then_serves_after_sigcont() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    assert!(add(&server, 7, "5").status.success());
    server.signal("STOP");
    let out = add(&server, 1, "0.5");
    assert!(!out.status.success(), "a stopped server cannot answer");
    // Continue it while a patient client is waiting: the client's retries reach it.
    let addr = server.addr.clone();
    let waiting = std::thread::spawn(move || {
        support::run(&[
            "counter",
            "add",
            "--server",
            &addr,
            "--timeout",
            "10",
            "100",
        ])
    });
    std::thread::sleep(Duration::from_millis(300));
    server.signal("CONT");
    let out = waiting.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The add that timed out may or may not have been applied (its outcome is unknown);
    // the patient add was applied exactly once.
    let value: i64 = stdout(&out).parse().unwrap();
    assert!(value == 107 || value == 108, "value {value}");
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn bad_arguments_get_clear_errors() {
    let out = run(&["counter", "add", "--server", "127.0.0.1:1", "lots"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(
        stderr(&out).contains("invalid value 'lots'"),
        "{}",
        stderr(&out)
    );

    let out = run(&[
        "counter",
        "add",
        "--server",
        "127.0.0.1:1",
        "--timeout",
        "-1",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--timeout must be a positive"),
        "{}",
        stderr(&out)
    );

    let file = tempfile::NamedTempFile::new().unwrap();
    let out = run(&[
        "counter",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        path(file.path()),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("creating data directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert!(stdout(&out).starts_with("synod "), "{}", stdout(&out));
    let out = run(&["--help"]);
    for word in ["check", "counter"] {
        assert!(stdout(&out).contains(word), "--help lists {word}");
    }
}
