//! Security as users meet it, with real processes: `synod up` is secured by default, and
//! `redis-cli --tls` and redis-py with `ssl=True` work against it while a client without
//! `AUTH`, a wrong password and a plain native client are refused and logged; a replica with
//! an ACL file holds a read-only user and a user limited to a key pattern to their
//! permissions, on its RESP port and on its native port alike (`synod kv` with `--user`
//! and `--password-file`, or `SYNOD_USER` and `SYNOD_PASSWORD`); and no secret (password, private key) appears in any log of the run, nor in
//! `synod status`.
//!
//! The peer-link refusals (a plain peer, another CA's certificate, a member impersonating
//! another, an altered record) are tested where they are decided, in synod-net's
//! `tests/tls.rs`; the kill -9 fault test of `up_cli.rs` runs on the secured cluster.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{
    assert_no_secret, free_ports, key_lines, kv_replica_args, member_tls_flags, path, run, stderr,
    stdout, Server,
};

/// Debian's Python, which has redis-py (`python3-redis`).
const PYTHON: &str = "/usr/bin/python3";

/// Runs `redis-cli ARGS` and returns its stdout and stderr together, trimmed.
fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .output()
        .expect("running redis-cli (Debian's redis-tools, which has TLS)");
    format!(
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// Runs `redis-cli` over TLS to `port`, trusting the CA `ca`, with `auth` flags.
fn redis_cli_tls(port: &str, ca: &Path, auth: &[&str], command: &[&str]) -> String {
    let mut all = vec![
        "-p",
        port,
        "--tls",
        "--cacert",
        path(ca),
        "--no-auth-warning",
    ];
    all.extend(auth);
    all.extend(command);
    redis_cli(&all)
}

/// Runs a Python script with redis-py and returns what it printed (its errors on failure).
fn redis_py(script: &str) -> String {
    let out = Command::new(PYTHON)
        .args(["-c", script])
        .output()
        .expect("running python3");
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    stdout(&out)
}

/// The RESP port of the first front `up` announced.
fn first_resp_port(up: &Server) -> String {
    let line = &up.earlier[0];
    let resp = line.split_whitespace().skip_while(|w| *w != "resp").nth(1);
    let resp = resp.unwrap_or_else(|| panic!("no resp address in {line:?}"));
    resp.rsplit(':').next().unwrap().to_owned()
}

#[test]
fn a_secured_up_serves_redis_cli_and_redis_py_over_tls_and_refuses_and_logs_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Server::start_logged_env(
        &["up", "--dir", path(dir.path())],
        &[("RUST_LOG", "info")],
        "ready",
    );
    let tls = dir.path().join("tls");
    let ca = tls.join("ca.pem");
    let password = std::fs::read_to_string(tls.join("resp-password")).expect("password");
    let password = password.trim();
    let port = first_resp_port(&up);

    // redis-cli over TLS, trusting the cluster CA, with the password.
    let tls_cli = |command: &[&str]| redis_cli_tls(&port, &ca, &["-a", password], command);
    assert_eq!(tls_cli(&["SET", "greeting", "hello"]), "OK");
    assert_eq!(tls_cli(&["GET", "greeting"]), "hello");
    // Without the CA, the server's certificate is not trusted.
    let untrusted = redis_cli(&["-p", &port, "--tls", "GET", "greeting"]);
    assert!(
        untrusted.contains("certificate verify failed"),
        "{untrusted}"
    );
    // Without AUTH, nothing is answered but the refusal.
    assert_eq!(
        redis_cli(&["-p", &port, "GET", "greeting"]),
        "NOAUTH Authentication required."
    );
    let wrong = redis_cli(&["-p", &port, "--no-auth-warning", "-a", "not-it", "GET", "x"]);
    assert!(wrong.contains("WRONGPASS"), "{wrong}");

    // redis-py with ssl=True.
    let py = format!(
        "import redis\n\
         r = redis.Redis(port={port}, ssl=True, ssl_ca_certs={ca:?}, password={password:?})\n\
         r.set('py', 'ssl')\n\
         print(r.get('py').decode(), r.get('greeting').decode())\n\
         try:\n    redis.Redis(port={port}, ssl=True, ssl_ca_certs={ca:?}, password='no').get('py')\n\
         except redis.exceptions.ResponseError as e:\n    print(str(e).split()[0])\n",
        ca = path(&ca),
    );
    assert_eq!(redis_py(&py), "ssl hello\nWRONGPASS");

    // The native port wants TLS: a plain client is refused, one trusting the CA answered.
    let peer = up.earlier[0].split_whitespace().nth(3).unwrap().to_owned();
    let plain = run(&["status", "--servers", &peer]);
    assert!(stdout(&plain).contains("unreachable"), "{}", stdout(&plain));
    let status = run(&["status", "--servers", &peer, "--tls-ca", path(&ca)]);
    assert!(
        stdout(&status).contains("authentication required"),
        "{}",
        stdout(&status)
    );
    let password_file = tls.join("resp-password");
    let status = run(&[
        "status",
        "--servers",
        &peer,
        "--tls-ca",
        path(&ca),
        "--password-file",
        path(&password_file),
    ]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains("voting"), "{}", stdout(&status));

    let mut secrets = key_lines(&tls);
    secrets.push(password.to_owned());
    assert_no_secret(&secrets, &stdout(&status), "synod status");
    let logs = up.logs();
    for refusal in [
        "RESP command refused: not authenticated (NOAUTH)",
        "RESP authentication failed",
        "refused a plain connection from a client: this server requires TLS",
        "native client refused: no credentials",
    ] {
        assert!(
            logs.contains(refusal),
            "no log line says {refusal:?}:\n{logs}"
        );
    }
    let mut up = up;
    up.signal("TERM");
    assert_eq!(up.wait_exit(Duration::from_secs(15)), Some(0));
    assert_no_secret(&secrets, &up.logs(), "the logs of up and its replicas");
}

const ACL: &str = "user default on >root-secret-1 ~* +@all\n\
                   user reader on >reader-secret-2 ~* +@read\n\
                   user cache on >cache-secret-3 ~cache:* +@all\n";

#[test]
fn acl_users_are_held_to_their_permissions_and_each_refusal_is_logged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let member_0 = member_tls_flags(&tls, 0);
    let acl = dir.path().join("users.acl");
    std::fs::write(&acl, ACL).expect("acl file");
    let ports = free_ports(3);
    let peers = format!("127.0.0.1:{}", ports[0]);
    let mut args = kv_replica_args(0, &peers, dir.path(), ports[1], Some("--bootstrap"));
    let tls_path = |name: &str| path(&tls.join(name)).to_owned();
    args.extend([
        "--acl-file".into(),
        path(&acl).to_owned(),
        "--resp-tls".into(),
    ]);
    args.extend(member_0);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut replica =
        Server::start_logged(&args, "kv replica 0 listening on", Duration::from_secs(20));
    let port = ports[1].to_string();
    let ca = tls.join("ca.pem");
    let as_user = |user: &str, password: &str, command: &[&str]| {
        redis_cli_tls(&port, &ca, &["--user", user, "--pass", password], command)
    };
    // The leader may still be being elected: the first write is retried until it lands.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while as_user("default", "root-secret-1", &["SET", "k", "v"]) != "OK" {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never took a write"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(as_user("reader", "reader-secret-2", &["GET", "k"]), "v");
    assert_eq!(
        as_user("reader", "reader-secret-2", &["SET", "k", "w"]),
        "NOPERM User reader has no permissions to run the 'set' command"
    );
    assert_eq!(
        as_user("cache", "cache-secret-3", &["SET", "cache:1", "x"]),
        "OK"
    );
    assert_eq!(
        as_user("cache", "cache-secret-3", &["GET", "k"]),
        "NOPERM No permissions to access a key"
    );
    assert!(as_user("cache", "reader-secret-2", &["GET", "k"]).contains("WRONGPASS"));
    // The port speaks TLS only: a plain client gets a TLS alert, not an answer.
    let plain = redis_cli(&[
        "-p",
        &port,
        "--no-auth-warning",
        "-a",
        "root-secret-1",
        "GET",
        "k",
    ]);
    assert!(plain.contains("Protocol error"), "{plain}");

    // The native port holds the same users to the same permissions.
    let peer = format!("127.0.0.1:{}", ports[0]);
    let password_file = |name: &str, password: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, format!("{password}\n")).expect("password file");
        file
    };
    let root = password_file("root.pw", "root-secret-1");
    let reader = password_file("reader.pw", "reader-secret-2");
    let cache = password_file("cache.pw", "cache-secret-3");
    let native = |user: Option<(&str, &Path)>, env: &[(&str, &str)], op: &[&str]| {
        let mut cmd = support::synod();
        cmd.args(["kv"])
            .args(op)
            .args(["--servers", &peer, "--timeout", "5"]);
        cmd.args(["--tls-ca", &tls_path("ca.pem")]);
        if let Some((user, file)) = user {
            cmd.args(["--user", user, "--password-file", path(file)]);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("running synod kv");
        format!("{}{}", stdout(&out), stderr(&out))
    };
    assert_eq!(native(Some(("default", &root)), &[], &["get", "k"]), "v");
    assert_eq!(
        native(
            None,
            &[
                ("SYNOD_USER", "reader"),
                ("SYNOD_PASSWORD", "reader-secret-2")
            ],
            &["get", "k"]
        ),
        "v"
    );
    let anonymous = native(None, &[], &["get", "k"]);
    assert!(anonymous.contains("authentication required"), "{anonymous}");
    let wrong = native(Some(("cache", &reader)), &[], &["get", "cache:1"]);
    assert!(wrong.contains("invalid user name or password"), "{wrong}");
    let read_only = native(Some(("reader", &reader)), &[], &["put", "k", "w"]);
    assert!(
        read_only.contains("refused: user reader may not write"),
        "{read_only}"
    );
    assert_eq!(
        native(Some(("cache", &cache)), &[], &["get", "cache:1"]),
        "x"
    );
    let outside = native(Some(("cache", &cache)), &[], &["put", "k", "w"]);
    assert!(
        outside.contains("user cache may not touch a key"),
        "{outside}"
    );
    assert_eq!(
        native(Some(("default", &root)), &[], &["get", "k"]),
        "v",
        "nothing was written"
    );
    let status = run(&[
        "status",
        "--servers",
        &peer,
        "--tls-ca",
        &tls_path("ca.pem"),
    ]);
    assert!(
        stdout(&status).contains("unreachable"),
        "{}",
        stdout(&status)
    );

    // A membership change needs a user allowed everything: a new replica, with a member
    // certificate of its own id, is added by the default user and refused to the reader.
    let member_1 = member_tls_flags(&tls, 1);
    let joined_at = format!("127.0.0.1:{}", ports[2]);
    let data = dir.path().join("r1");
    let joining_args = [
        "kv",
        "serve",
        "--id",
        "1",
        "--peers",
        &peers,
        "--join",
        &joined_at,
        "--data",
        path(&data),
        "--acl-file",
        path(&acl),
    ];
    let joining_args: Vec<&str> = joining_args
        .into_iter()
        .chain(member_1.iter().map(String::as_str))
        .collect();
    let joining = Server::start_logged(
        &joining_args,
        "kv replica 1 listening on",
        Duration::from_secs(20),
    );
    let refused = native(
        Some(("reader", &reader)),
        &[],
        &["member", "add", "n1", &joined_at],
    );
    assert!(
        refused.contains("refused: user reader may not change the cluster's configuration"),
        "{refused}"
    );
    let added = native(
        Some(("default", &root)),
        &[],
        &["member", "add", "n1", &joined_at],
    );
    assert!(added.contains("promoted n1 to voter"), "{added}");
    drop(joining);

    replica.signal("TERM");
    assert_eq!(replica.wait_exit(Duration::from_secs(15)), Some(0));
    let logs = replica.logs();
    for refusal in [
        "RESP command refused: no permission peer=127.0.0.1",
        "user=reader command=set",
        "user=cache command=get",
        "RESP authentication failed",
        "TLS handshake failed",
        "native client refused: no credentials",
        "native authentication failed",
        "native request refused",
        "reason=user reader may not write",
        "reason=user cache may not touch a key",
    ] {
        assert!(
            logs.contains(refusal),
            "no log line says {refusal:?}:\n{logs}"
        );
    }
    for secret in ["root-secret-1", "reader-secret-2", "cache-secret-3"] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
    assert_no_secret(&key_lines(&tls), &logs, "the replica's logs");
}
