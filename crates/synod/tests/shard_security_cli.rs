//! A sharded cluster's native ports hold clients to the same users as its RESP fronts, with
//! real processes: a shard controller and a group server, both with TLS and an ACL file,
//! refuse an anonymous client, a read-only user's write (nothing applied), a user's request
//! outside its key pattern, and a change of the controller's configuration by any user not
//! allowed everything; they serve an allowed user (`synod shardkv` and `synod shardctl`
//! with `--user` and `--password-file`, or `SYNOD_USER` and `SYNOD_PASSWORD`). Every refusal
//! is logged, and no password or private key appears in the logs. Users without TLS are
//! refused at start.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{
    assert_no_secret, free_ports, key_lines, member_tls_flags, path, run, stderr, stdout, Server,
};
use synod_shardkv::server_id;

const ACL: &str = "user default on >root-secret-1 ~* +@all\n\
                   user reader on >reader-secret-2 ~* +@read\n\
                   user cache on >cache-secret-3 ~cache:* +@all\n";

const GID: u64 = 100;

/// A secured cluster of one controller and one group of one server.
struct Cluster {
    dir: tempfile::TempDir,
    ctl: String,
    group: String,
    controller: Server,
    server: Server,
}

impl Cluster {
    fn tls(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    fn ca(&self) -> PathBuf {
        self.tls().join("ca.pem")
    }

    /// A file holding `password`, for `--password-file`.
    fn password_file(&self, password: &str) -> PathBuf {
        let file = self.dir.path().join(format!("{password}.pw"));
        std::fs::write(&file, format!("{password}\n")).expect("password file");
        file
    }

    /// Runs `synod ARGS --ctl CTL --tls-ca CA`, as `user` (with a password file) if given,
    /// with `env`; returns its stdout and stderr together, and whether it succeeded.
    fn client(&self, args: &[&str], user: Option<(&str, &Path)>, env: &[(&str, &str)]) -> Output {
        let mut cmd = support::synod();
        cmd.args(args)
            .args(["--ctl", &self.ctl, "--tls-ca", path(&self.ca())])
            .args(["--timeout", "20"]);
        if let Some((user, file)) = user {
            cmd.args(["--user", user, "--password-file", path(file)]);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("running synod");
        Output {
            ok: out.status.success(),
            text: format!("{}{}", stdout(&out), stderr(&out)),
        }
    }
}

struct Output {
    ok: bool,
    text: String,
}

/// Issues the certificates, writes the ACL file, and starts the controller (member 0) and
/// the group's server (member `server_id(GID, 0)`), both with TLS and the ACL file.
fn start() -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let acl = dir.path().join("users.acl");
    std::fs::write(&acl, ACL).expect("acl file");
    let ports = free_ports(2);
    let (ctl, group) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    let tls_flags = |member: u64| {
        let mut flags = member_tls_flags(&tls, member);
        flags.extend(["--acl-file".to_owned(), path(&acl).to_owned()]);
        flags.push("--bootstrap".to_owned());
        flags
    };
    let ctl_data = dir.path().join("ctl");
    let mut args: Vec<String> = ["shardctl", "serve", "--id", "0", "--peers", &ctl, "--data"]
        .map(str::to_owned)
        .to_vec();
    args.push(path(&ctl_data).to_owned());
    args.extend(tls_flags(0));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let controller = Server::start_logged(
        &args,
        "shardctl replica 0 listening on",
        Duration::from_secs(20),
    );
    let group_data = dir.path().join("g100");
    let gid = GID.to_string();
    let mut args: Vec<String> = [
        "shardkv", "serve", "--gid", &gid, "--id", "0", "--peers", &group, "--ctl", &ctl, "--data",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(path(&group_data).to_owned());
    args.extend(tls_flags(server_id(GID, 0).0));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_logged(
        &args,
        "shardkv 100 replica 0 listening on",
        Duration::from_secs(20),
    );
    Cluster {
        dir,
        ctl,
        group,
        controller,
        server,
    }
}

/// Asserts that a client failed, saying `wanted`.
fn assert_refused(out: &Output, wanted: &str) {
    assert!(!out.ok, "{}", out.text);
    assert!(
        out.text.contains(wanted),
        "{wanted:?} not in {:?}",
        out.text
    );
}

/// Asserts that a client succeeded, printing `wanted` and nothing else.
fn assert_answer(out: &Output, wanted: &str) {
    assert!(out.ok, "{}", out.text);
    assert_eq!(out.text, wanted);
}

#[test]
fn a_secured_sharded_cluster_holds_native_clients_to_their_users() {
    let cluster = start();
    let root = cluster.password_file("root-secret-1");
    let reader = cluster.password_file("reader-secret-2");
    let cache = cluster.password_file("cache-secret-3");
    let join = [
        "shardctl",
        "join",
        "--gid",
        "100",
        "--servers",
        &cluster.group,
    ];
    let join: Vec<&str> = join.to_vec();

    // The controller: a change needs a user allowed everything; a query, any user.
    let anonymous = cluster.client(&join, None, &[]);
    assert_refused(&anonymous, "authentication required");
    let refused = cluster.client(&join, Some(("reader", &reader)), &[]);
    assert_refused(
        &refused,
        "refused: user reader may not change the cluster's configuration; the operation was \
         not applied",
    );
    let refused = cluster.client(&join, Some(("cache", &cache)), &[]);
    assert_refused(
        &refused,
        "user cache may not change the cluster's configuration",
    );
    let query = ["shardctl", "query"];
    let before = cluster.client(&query, Some(("reader", &reader)), &[]);
    assert!(
        before.ok && before.text.starts_with("{\"num\":0,"),
        "{}",
        before.text
    );
    let joined = cluster.client(&join, Some(("default", &root)), &[]);
    assert!(
        joined.ok && joined.text.starts_with("{\"num\":1,"),
        "{}",
        joined.text
    );
    let moved = cluster.client(
        &["shardctl", "move", "--shard", "0", "--gid", "100"],
        Some(("cache", &cache)),
        &[],
    );
    assert_refused(&moved, "user cache may not change");
    let after = cluster.client(&query, Some(("cache", &cache)), &[]);
    assert!(
        after.text.starts_with("{\"num\":1,"),
        "no change: {}",
        after.text
    );

    // The group: requests need their keys read or written.
    let put = |key, value, user| cluster.client(&["shardkv", "put", key, value], user, &[]);
    let get = |key, user| cluster.client(&["shardkv", "get", key], user, &[]);
    assert_refused(&get("k", None), "authentication required");
    assert_answer(&put("k", "v", Some(("default", &root))), "1");
    let as_reader_by_env = cluster.client(
        &["shardkv", "get", "k"],
        None,
        &[
            ("SYNOD_USER", "reader"),
            ("SYNOD_PASSWORD", "reader-secret-2"),
        ],
    );
    assert_answer(&as_reader_by_env, "v");
    assert_refused(
        &put("k", "w", Some(("reader", &reader))),
        "refused: user reader may not write; the operation was not applied",
    );
    assert_refused(
        &put("k", "w", Some(("cache", &cache))),
        "user cache may not touch a key",
    );
    assert_refused(&get("k", Some(("cache", &cache))), "may not touch a key");
    assert_answer(&put("cache:1", "x", Some(("cache", &cache))), "1");
    assert_answer(&get("cache:1", Some(("cache", &cache))), "x");
    // Nothing of the refused writes was applied.
    assert_answer(&get("k", Some(("default", &root))), "v");

    // `synod status` on both, as a user.
    let status = run(&[
        "status",
        "--servers",
        &format!("{},{}", cluster.ctl, cluster.group),
        "--tls-ca",
        path(&cluster.ca()),
        "--user",
        "reader",
        "--password-file",
        path(&reader),
    ]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert_eq!(
        stdout(&status).matches("voting leader").count(),
        2,
        "{}",
        stdout(&status)
    );

    let Cluster {
        dir,
        controller,
        server,
        ..
    } = cluster;
    let mut logs = String::new();
    for mut process in [controller, server] {
        process.signal("TERM");
        assert_eq!(process.wait_exit(Duration::from_secs(15)), Some(0));
        logs += &process.logs();
    }
    for refusal in [
        "native client refused: no credentials",
        "reason=user reader may not change the cluster's configuration",
        "reason=user cache may not change the cluster's configuration",
        "reason=user reader may not write",
        "reason=user cache may not touch a key",
    ] {
        assert!(
            logs.contains(refusal),
            "no log line says {refusal:?}:\n{logs}"
        );
    }
    let mut secrets = key_lines(&dir.path().join("tls"));
    secrets.extend(["root-secret-1", "reader-secret-2", "cache-secret-3"].map(str::to_owned));
    assert_no_secret(&secrets, &logs, "the servers' logs");
}

#[test]
fn users_without_tls_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let acl = dir.path().join("users.acl");
    std::fs::write(&acl, ACL).expect("acl file");
    let ports = free_ports(2);
    let (ctl, group) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    let data = |name: &str| path(&dir.path().join(name)).to_owned();
    let (ctl_data, group_data) = (data("ctl"), data("g"));
    let commands: [&[&str]; 2] = [
        &[
            "shardctl", "serve", "--id", "0", "--peers", &ctl, "--data", &ctl_data,
        ],
        &[
            "shardkv",
            "serve",
            "--gid",
            "100",
            "--id",
            "0",
            "--peers",
            &group,
            "--ctl",
            &ctl,
            "--data",
            &group_data,
        ],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.extend(["--bootstrap", "--acl-file", path(&acl)]);
        let out = run(&args);
        assert!(!out.status.success(), "{command:?} started");
        assert!(
            stderr(&out).contains("guard the native port too, which takes --tls-cert"),
            "{}",
            stderr(&out)
        );
    }
}
