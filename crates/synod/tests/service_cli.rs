//! Every server as a service: configured by environment variables, logging JSON on request,
//! stopping cleanly on SIGTERM, and refusing a data directory another process holds.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::{path, run, stderr, Server};

/// A free loopback address (bound to port 0 and released).
fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local addr").to_string()
}

/// SIGTERM, exit 0, and every stderr line a JSON object with a level and a message.
fn stops_cleanly_with_json_logs(mut server: Server, what: &str) {
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0), "{what}");
    let logs = server.logs();
    assert!(!logs.trim().is_empty(), "{what} logged nothing");
    for line in logs.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what}: log line is not JSON ({e}): {line}"));
        assert!(value["level"].is_string(), "{what}: no level in {line}");
        assert!(
            value["fields"]["message"].is_string(),
            "{what}: no message in {line}"
        );
    }
}

#[test]
fn every_server_logs_json_when_asked_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let counter = Server::start_logged_env(
        &["--log-format", "json", "counter", "serve"],
        &[
            ("SYNOD_LISTEN", "127.0.0.1:0"),
            ("SYNOD_DATA", path(&dir.path().join("c"))),
        ],
        "counter listening on",
    );
    stops_cleanly_with_json_logs(counter, "counter");

    // A one-replica Paxos KV configured entirely by environment variables.
    let (peer, resp) = (free_addr(), free_addr());
    let kv = Server::start_logged_env(
        &["kv", "serve"],
        &[
            ("SYNOD_LOG_FORMAT", "json"),
            ("SYNOD_ID", "0"),
            ("SYNOD_PEERS", &peer),
            ("SYNOD_DATA", path(&dir.path().join("kv"))),
            ("SYNOD_RESP", &resp),
            ("SYNOD_BOOTSTRAP", "true"),
        ],
        "kv replica 0 listening on",
    );
    let out = support::synod()
        .args(["kv", "put", "k", "v"])
        .env("SYNOD_SERVERS", &peer)
        .output()
        .expect("running synod kv put");
    assert!(out.status.success(), "{}", stderr(&out));
    stops_cleanly_with_json_logs(kv, "kv");

    let view = Server::start_logged_env(
        &[
            "--log-format",
            "json",
            "view",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
        "view service listening on",
    );
    let pb = Server::start_logged_env(
        &[
            "--log-format",
            "json",
            "pb",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--id",
            "1",
        ],
        &[("SYNOD_VIEW", &view.addr)],
        "pb listening on",
    );
    stops_cleanly_with_json_logs(pb, "pb");
    stops_cleanly_with_json_logs(view, "view");

    // `up` hands the format to every child.
    let up = Server::start_logged_env(
        &[
            "--log-format",
            "json",
            "up",
            "--dir",
            path(&dir.path().join("up")),
        ],
        &[],
        "ready",
    );
    stops_cleanly_with_json_logs(up, "up and its replicas");
}

#[test]
fn a_second_server_on_a_data_directory_in_use_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("counter");
    let counter = Server::start(
        &[
            "counter",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            path(&data),
        ],
        "counter listening on",
    );
    let out = run(&[
        "counter",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        path(&data),
    ]);
    assert!(!out.status.success());
    let want = format!(
        "data directory {} is in use by another synod process (pid {})",
        data.display(),
        counter.pid()
    );
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));

    let (peer, data) = (free_addr(), dir.path().join("kv"));
    let kv = Server::start(
        &[
            "kv",
            "serve",
            "--id",
            "0",
            "--peers",
            &peer,
            "--data",
            path(&data),
            "--bootstrap",
        ],
        "kv replica 0 listening on",
    );
    let other = free_addr();
    let out = run(&[
        "kv",
        "serve",
        "--id",
        "0",
        "--peers",
        &other,
        "--data",
        path(&data),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "is in use by another synod process (pid {})",
            kv.pid()
        )),
        "{}",
        stderr(&out)
    );
}
