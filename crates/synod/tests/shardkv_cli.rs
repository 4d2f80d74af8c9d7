//! A sharded cluster as real processes: three `synod shardctl serve` and two groups of three
//! `synod shardkv serve`, loaded through the Redis-protocol fronts of all six group servers
//! while shards move (`shardctl move`, a leave and a re-join) and one replica of each group
//! is killed with SIGKILL and restarted from its data directory. The recorded history, with
//! final reads through every front, must be linearizable, and writes acknowledged to the
//! command-line client while a replica was down must survive. Under the same load, a group
//! grows by a replica (`shardkv serve --join`, `shardkv member add`), replaces one whose
//! directory was deleted and loses its first replicas, and a controller that lost its
//! directory is replaced (`shardctl member replace`); a client started afterwards, and
//! shard moves into and out of the group, reach its new replicas through the controller.

mod support;

use std::time::{Duration, Instant};

use support::resp::{Reply, Resp};
use support::{free_ports, load, path, run, stderr, stdout, Server};
use synod_shardctl::{Config, Gid};
use synod_shardkv::{key2shard, server_id};

const SHARDS: usize = 10;
const GIDS: [Gid; 2] = [100, 101];

struct Cluster {
    dir: tempfile::TempDir,
    ctl: String,
    /// Each group's `--peers` list.
    groups: Vec<String>,
    /// RESP front ports, group by group.
    fronts: Vec<u16>,
    servers: Vec<Option<Server>>,
    controllers: Vec<Option<Server>>,
}

impl Cluster {
    fn start() -> Cluster {
        let ports = free_ports(15);
        let ctl = support::loopback_list(&ports[..3]);
        let groups = vec![
            support::loopback_list(&ports[3..6]),
            support::loopback_list(&ports[6..9]),
        ];
        let dir = tempfile::tempdir().expect("temp dir");
        let controllers = (0..3)
            .map(|i| {
                let data = dir.path().join(format!("ctl{i}"));
                let id = i.to_string();
                let args = [
                    "shardctl",
                    "serve",
                    "--id",
                    &id,
                    "--peers",
                    &ctl,
                    "--data",
                    path(&data),
                    "--bootstrap",
                ];
                Some(Server::start(
                    &args,
                    &format!("shardctl replica {i} listening on "),
                ))
            })
            .collect();
        let mut cluster = Cluster {
            dir,
            ctl,
            groups,
            fronts: ports[9..].to_vec(),
            servers: Vec::new(),
            controllers,
        };
        cluster.servers = (0..6)
            .map(|n| Some(cluster.start_server(n, Some("--bootstrap"))))
            .collect();
        cluster
    }

    /// Starts server `n`: replica `n % 3` of group `GIDS[n / 3]`, with `flag` if given
    /// (`--bootstrap` the first time).
    fn start_server(&self, n: usize, flag: Option<&str>) -> Server {
        let resp = format!("127.0.0.1:{}", self.fronts[n]);
        self.start_replica(GIDS[n / 3], n % 3, &resp, &[], flag)
    }

    /// Starts replica `i` of group `GIDS[g]`, new to the running group, listening on `addr`
    /// with its RESP front on `resp` (`shardkv serve --join`).
    fn start_joining(&self, g: usize, i: usize, addr: &str, resp: &str) -> Server {
        self.start_replica(GIDS[g], i, resp, &["--join", addr], None)
    }

    fn start_replica(
        &self,
        gid: Gid,
        i: usize,
        resp: &str,
        more: &[&str],
        flag: Option<&str>,
    ) -> Server {
        let data = self.dir.path().join(format!("g{gid}-{i}"));
        let g = GIDS
            .iter()
            .position(|&g| g == gid)
            .expect("a group of the test");
        let (gid_text, id) = (gid.to_string(), i.to_string());
        let mut args = vec![
            "shardkv",
            "serve",
            "--gid",
            &gid_text,
            "--id",
            &id,
            "--peers",
            &self.groups[g],
            "--ctl",
            &self.ctl,
            "--data",
            path(&data),
            "--resp",
            resp,
        ];
        args.extend(flag);
        args.extend_from_slice(more);
        Server::start(&args, &format!("shardkv {gid} replica {i} listening on "))
    }

    /// SIGKILLs server `n` and returns once it is gone.
    fn kill(&mut self, n: usize) {
        self.servers[n].take().expect("running").kill9();
    }

    /// Restarts server `n` from its data directory and waits (polling `synod status`, up to
    /// 10 s) until it has applied everything a live peer had applied before.
    fn restart(&mut self, n: usize) {
        let group: Vec<&str> = self.groups[n / 3].split(',').collect();
        let peer = group[(n + 1) % 3];
        let target = applied(peer).expect("a live peer answers status");
        self.servers[n] = Some(self.start_server(n, None));
        let deadline = Instant::now() + Duration::from_secs(10);
        while applied(group[n % 3]) < Some(target) {
            assert!(
                Instant::now() < deadline,
                "server {n} did not catch up to {target}"
            );
        }
    }

    /// `synod shardctl OP ARGS --ctl ...`, which must succeed; the configuration it prints.
    fn shardctl(&self, op: &str, args: &[&str]) -> Config {
        let mut all = vec!["shardctl", op, "--ctl", &self.ctl];
        all.extend_from_slice(args);
        let out = run(&all);
        assert!(out.status.success(), "{all:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).expect("a configuration as JSON")
    }

    fn join(&self, g: usize) -> Config {
        let gid = GIDS[g].to_string();
        self.shardctl("join", &["--gid", &gid, "--servers", &self.groups[g]])
    }

    /// `synod shardkv OP ARGS --ctl ...`, which must succeed; what it prints.
    fn shardkv(&self, op: &str, args: &[&str]) -> String {
        let mut all = vec!["shardkv", op, "--ctl", &self.ctl];
        all.extend_from_slice(args);
        let out = run(&all);
        assert!(out.status.success(), "{all:?}: {}", stderr(&out));
        stdout(&out)
    }
}

/// The last log instance server `addr` applied, from `synod status`.
fn applied(addr: &str) -> Option<u64> {
    let out = run(&["status", "--servers", addr, "--timeout", "1"]);
    support::applied(&stdout(&out))
}

fn shard_of(key: &str) -> usize {
    key2shard(key, SHARDS)
}

/// A key starting with `prefix` (which the load does not use) whose shard `gid` serves in
/// `config`.
fn key_served_by(config: &Config, gid: Gid, prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|k| config.shards[shard_of(k)] == gid)
        .expect("the group serves some shard")
}

/// Moves the shard of `key` to the other group and returns how long it took until the key
/// was served there (the new owner answers only once the shard's data has arrived).
fn move_shard_of(cluster: &Cluster, key: &str) -> Duration {
    let latest = cluster.shardctl("query", &[]);
    let shard = shard_of(key);
    let to = if latest.shards[shard] == GIDS[0] {
        GIDS[1]
    } else {
        GIDS[0]
    };
    let started = Instant::now();
    let moved = cluster.shardctl(
        "move",
        &["--shard", &shard.to_string(), "--gid", &to.to_string()],
    );
    assert_eq!(moved.shards[shard], to);
    cluster.shardkv("get", &[key]);
    started.elapsed()
}

/// A pipeline through one front, on keys of both groups: sent as batch requests (each
/// group's run of commands one request), its commands take effect in the order sent and are
/// answered in that order.
fn pipeline_across_groups(cluster: &Cluster) {
    let latest = cluster.shardctl("query", &[]);
    let a = key_served_by(&latest, GIDS[0], "pipe-a");
    let b = key_served_by(&latest, GIDS[1], "pipe-b");
    let mut resp = Resp::connect(&format!("127.0.0.1:{}", cluster.fronts[0])).expect("front");
    let replies = resp
        .pipeline(&[
            &["SET", &a, "x"],
            &["SET", &b, "y"],
            &["GET", &a],
            &["GET", &b],
            &["APPEND", &a, "1"],
            &["APPEND", &a, "2"],
            &["GET", &a],
            &["APPEND", &b, "z"],
            &["GET", &b],
            &["GET", &a],
        ])
        .expect("answered");
    let bulk = |v: &str| Reply::Bulk(Some(v.into()));
    assert_eq!(
        replies,
        [
            Reply::Simple("OK".into()),
            Reply::Simple("OK".into()),
            bulk("x"),
            bulk("y"),
            Reply::Integer(2),
            Reply::Integer(3),
            bulk("x12"),
            Reply::Integer(2),
            bulk("yz"),
            bulk("x12"),
        ]
    );
}

#[test]
fn shards_move_and_replicas_restart_under_a_redis_protocol_load() {
    let mut cluster = Cluster::start();
    cluster.join(0);
    let config = cluster.join(1);
    assert_eq!(config.num, 2);
    for gid in GIDS {
        assert_eq!(config.shards_of(gid).len(), SHARDS / 2, "{config:?}");
    }

    // Every server answers `synod status`, with the documented node ids.
    let everyone = format!(
        "{},{},{}",
        cluster.ctl, cluster.groups[0], cluster.groups[1]
    );
    let status = run(&["status", "--servers", &everyone]);
    assert!(status.status.success(), "{}", stderr(&status));
    let text = stdout(&status);
    let lines = support::replica_lines(&text);
    assert_eq!(lines.len(), 9, "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("membership:"))
            .count(),
        3,
        "one membership line per group: {text}"
    );
    for (n, line) in lines.iter().enumerate() {
        let id = match n {
            0..3 => n as u64,
            _ => server_id(GIDS[(n - 3) / 3], (n - 3) % 3).0,
        };
        assert!(
            line.contains(&format!("id=n{id} replica={}/3 voting", n % 3)),
            "{line}"
        );
    }

    let start = Instant::now();
    let mut moves = Vec::new();
    let mut survived = Vec::new();
    let mut history = load::run_while(4, &cluster.fronts.clone(), None, start, || {
        moves.push(("move", move_shard_of(&cluster, "s0")));

        // A replica of each group killed: the other two serve, and a write acknowledged
        // meanwhile survives the restart.
        for (g, n) in [(0, 0), (1, 4)] {
            cluster.kill(n);
            let latest = cluster.shardctl("query", &[]);
            let key = key_served_by(&latest, GIDS[g], &format!("down{n}-"));
            cluster.shardkv("put", &[&key, &format!("while {n} was down")]);
            survived.push((key, format!("while {n} was down")));
            cluster.restart(n);
        }

        // Group 101 leaves (its shards go to 100) and joins again.
        let started = Instant::now();
        let left = cluster.shardctl("leave", &["--gid", &GIDS[1].to_string()]);
        assert!(left.shards.iter().all(|&g| g == GIDS[0]), "{left:?}");
        let rejoined = cluster.join(1);
        assert_eq!(rejoined.shards_of(GIDS[1]).len(), SHARDS / 2);
        let key = key_served_by(&rejoined, GIDS[1], "rejoined");
        cluster.shardkv("append", &[&key, "+"]);
        moves.push(("leave + join", started.elapsed()));

        moves.push(("move", move_shard_of(&cluster, "a1")));
    });
    load::final_reads(&mut history, &cluster.fronts, None, 4, start);
    for (what, took) in &moves {
        eprintln!("{what} took {took:?}");
    }
    eprintln!(
        "{} operations, {} acknowledged, in {:?}",
        history.len(),
        history.iter().filter(|op| op.ret.is_some()).count(),
        start.elapsed()
    );
    load::assert_linearizable(&history, 50);
    pipeline_across_groups(&cluster);
    for (key, value) in survived {
        assert_eq!(cluster.shardkv("get", &[&key]), value, "{key}");
    }

    // The restarted replicas answer status as voting members again.
    let restarted = format!(
        "{},{}",
        cluster.groups[0].split(',').next().expect("replica 0"),
        cluster.groups[1].split(',').nth(1).expect("replica 1"),
    );
    let status = run(&["status", "--servers", &restarted]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert_eq!(
        stdout(&status).matches("voting").count(),
        2,
        "{}",
        stdout(&status)
    );
}

#[test]
fn the_client_times_out_with_a_clear_error_when_no_controller_answers() {
    let nobody = format!("127.0.0.1:{}", free_ports(1)[0]);
    let started = Instant::now();
    let out = run(&["shardkv", "get", "--ctl", &nobody, "--timeout", "0.5", "k"]);
    assert!(!out.status.success(), "a get with no cluster succeeded");
    assert!(
        stderr(&out).contains("no server answered within"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let out = run(&[
        "shardctl",
        "move",
        "--ctl",
        &nobody,
        "--shard",
        "0",
        "--gid",
        "1",
        "--timeout",
        "0.3",
    ]);
    assert!(!out.status.success());
}

/// The smallest sharded cluster: one controller and one group of one server, joined, the
/// server given `more` flags. Its controller's and RESP front's addresses, and its servers
/// (stopped when dropped).
fn smallest_cluster(dir: &std::path::Path, more: &[&str]) -> (String, String, [Server; 2]) {
    let ports = free_ports(3);
    let (ctl, peers) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    let resp = format!("127.0.0.1:{}", ports[2]);
    let (ctl_data, data) = (dir.join("ctl"), dir.join("g100"));
    let ctl_args = ["shardctl", "serve", "--id", "0", "--peers", &ctl, "--data"];
    let controller = Server::start(
        &[&ctl_args[..], &[path(&ctl_data), "--bootstrap"]].concat(),
        "shardctl replica 0 listening on ",
    );
    let args = [
        "shardkv", "serve", "--gid", "100", "--id", "0", "--peers", &peers,
    ];
    let front = ["--ctl", &ctl, "--resp", &resp];
    let server = Server::start(
        &[
            &args[..],
            &front,
            more,
            &["--data", path(&data), "--bootstrap"],
        ]
        .concat(),
        "shardkv 100 replica 0 listening on ",
    );
    let join = run(&[
        "shardctl",
        "join",
        "--ctl",
        &ctl,
        "--gid",
        "100",
        "--servers",
        &peers,
    ]);
    assert!(join.status.success(), "{}", stderr(&join));
    (ctl, resp, [controller, server])
}

#[test]
fn a_value_over_the_limit_is_refused_at_both_edges_and_nothing_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, resp, _servers) = smallest_cluster(dir.path(), &["--max-value-bytes", "1024"]);
    let big = "x".repeat(2000);
    // The native request: the server refuses it before proposing it.
    let out = run(&["shardkv", "put", "--ctl", &ctl, "k", &big]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("value too large (2000 > 1024)"),
        "{}",
        stderr(&out)
    );
    // The RESP front: refused with the same words.
    let mut front = Resp::connect(&resp).unwrap();
    assert_eq!(
        front.call(&["APPEND", "k", &big]).unwrap(),
        Reply::Error("ERR value too large (2000 > 1024)".into())
    );
    // Nothing was applied, and a value at the limit is served.
    let get = run(&["shardkv", "get", "--ctl", &ctl, "k"]);
    assert_eq!(stdout(&get).trim_end(), "", "{}", stderr(&get));
    let at_limit = "y".repeat(1024);
    let out = run(&["shardkv", "put", "--ctl", &ctl, "k", &at_limit]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        front.call(&["GET", "k"]).unwrap(),
        Reply::Bulk(Some(at_limit))
    );
}

/// A pipeline whose replies add up to more than a frame to a client may carry (70 GETs of a
/// 1 MiB value: 70 MiB, over the 65 MiB limit) is answered in full: the group stops each
/// batch at its reply budget and the front sends the rest again. Before the sharded KV
/// counted Redis replies against the budget, the whole pipeline was one reply, dropped as
/// too large, and the client timed out.
#[test]
fn a_pipeline_of_replies_larger_than_a_frame_is_answered_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let (_ctl, resp, _servers) = smallest_cluster(dir.path(), &[]);
    let mut front = Resp::connect(&resp).unwrap();
    let value = "v".repeat(1 << 20);
    assert_eq!(
        front.call(&["SET", "k", &value]).unwrap(),
        Reply::Simple("OK".into())
    );
    let gets: Vec<&[&str]> = (0..70).map(|_| &["GET", "k"][..]).collect();
    let replies = front.pipeline(&gets).unwrap();
    assert_eq!(replies.len(), gets.len());
    assert!(
        replies
            .iter()
            .all(|r| *r == Reply::Bulk(Some(value.clone()))),
        "every GET answered with the value"
    );
}

/// `synod ARGS...`, which must succeed; what it prints.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn group_and_controller_members_change_under_a_redis_protocol_load() {
    let mut cluster = Cluster::start();
    cluster.join(0);
    cluster.join(1);
    let extra = free_ports(2);
    let g100: Vec<String> = cluster.groups[0].split(',').map(String::from).collect();
    let ctls: Vec<String> = cluster.ctl.split(',').map(String::from).collect();
    let grown = format!("127.0.0.1:{}", extra[0]);
    let grown_front = format!("127.0.0.1:{}", extra[1]);
    let gid = GIDS[0].to_string();
    let ctl = cluster.ctl.clone();
    let member = |args: &[&str], servers: &str| {
        let mut all = vec!["shardkv", "member", args[0], "--gid", &gid, "--ctl"];
        all.extend_from_slice(&[&ctl, "--servers", servers]);
        all.extend_from_slice(&args[1..]);
        ok(&all)
    };
    let mut joined = Vec::new();
    let mut took = Vec::new();
    // The load goes through group 101's fronts, whose clients were started before any
    // change, and through the front of the replica that grows group 100.
    let mut fronts = cluster.fronts[3..].to_vec();
    fronts.push(extra[1]);
    let start = Instant::now();
    let mut history = load::run_while(4, &fronts, None, start, || {
        // Grow group 100 by replica 3, at a new address.
        joined.push(cluster.start_joining(0, 3, &grown, &grown_front));
        let began = Instant::now();
        let group = cluster.groups[0].clone();
        let text = member(&["add", "3", &grown], &group);
        took.push(("member add 3", began.elapsed()));
        let n3 = server_id(GIDS[0], 3);
        assert!(text.contains(&format!("promoted {n3} to voter")), "{text}");
        let listed = serde_json::to_string(&[&g100[0], &g100[1], &g100[2], &grown]).unwrap();
        assert!(
            text.contains(&format!("configuration 3 lists {listed}")),
            "{text}"
        );

        // Replica 1's machine dies with its disk; a new replica 4 takes its address.
        cluster.kill(1);
        let lost = cluster.dir.path().join(format!("g{}-1", GIDS[0]));
        std::fs::remove_dir_all(lost).expect("deleting replica 1's directory");
        let front = format!("127.0.0.1:{}", cluster.fronts[1]);
        joined.push(cluster.start_joining(0, 4, &g100[1], &front));
        let began = Instant::now();
        let text = member(&["replace", "1", "4", &g100[1]], &group);
        // Another group's replicas are refused before anything changes.
        let other = [
            "member",
            "add",
            "--gid",
            "101",
            "--ctl",
            &ctl,
            "--servers",
            &group,
        ];
        let out = run(&[&["shardkv"], &other[..], &["5", "127.0.0.1:1"]].concat());
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("is no replica of group 101"),
            "{}",
            stderr(&out)
        );
        took.push(("member replace 1 4", began.elapsed()));
        let listed = [&g100[0], "", &g100[2], &grown, &g100[1]];
        let listed = serde_json::to_string(&listed).unwrap();
        assert!(text.contains(&format!("lists {listed}")), "{text}");

        // The first replicas leave: only the new ones serve group 100.
        for i in [0, 2] {
            member(&["remove", &i.to_string()], &group);
            cluster.kill(i);
        }
        let latest = cluster.shardctl("query", &[]);
        let only_new = ["", "", "", grown.as_str(), g100[1].as_str()];
        assert_eq!(latest.groups[&GIDS[0]], only_new, "{latest:?}");

        // Controller 1 loses its disk; a new controller 3 takes its address.
        cluster.controllers[1].take().expect("running").kill9();
        let lost = cluster.dir.path().join("ctl1");
        std::fs::remove_dir_all(lost).expect("deleting controller 1's directory");
        let data = cluster.dir.path().join("ctl3");
        let args = ["shardctl", "serve", "--id", "3", "--peers", &cluster.ctl];
        let more = ["--join", &ctls[1], "--data", path(&data)];
        let ready = "shardctl replica 3 listening on ";
        joined.push(Server::start(&[&args[..], &more].concat(), ready));
        let began = Instant::now();
        let replace = ["shardctl", "member", "replace", "--servers", &cluster.ctl];
        let text = ok(&[&replace[..], &["1", "3", &ctls[1]]].concat());
        took.push(("shardctl member replace 1 3", began.elapsed()));
        assert!(text.contains("replaced n1 by n3"), "{text}");

        // A client started now finds group 100's new replicas through the controllers,
        // and shards move in and out of the group.
        let latest = cluster.shardctl("query", &[]);
        let key = key_served_by(&latest, GIDS[0], "after");
        cluster.shardkv("put", &[&key, "new replicas"]);
        assert_eq!(cluster.shardkv("get", &[&key]), "new replicas");
        took.push(("move out of 100", move_shard_of(&cluster, &key)));
        assert_eq!(cluster.shardkv("get", &[&key]), "new replicas");
        let latest = cluster.shardctl("query", &[]);
        let key = key_served_by(&latest, GIDS[1], "into");
        cluster.shardkv("put", &[&key, "moved in"]);
        took.push(("move into 100", move_shard_of(&cluster, &key)));
        assert_eq!(cluster.shardkv("get", &[&key]), "moved in");
    });
    let end = start.elapsed().as_nanos() as u64;
    load::final_reads(&mut history, &fronts, None, 4, start);
    for (what, took) in &took {
        eprintln!("{what} took {took:?}");
    }
    eprintln!(
        "longest time without an acknowledged operation during the changes: {:?}",
        load::longest_gap(&history, 0, end)
    );
    load::assert_linearizable(&history, 50);

    let servers = format!("{grown},{}", g100[1]);
    let text = ok(&[
        "shardkv",
        "member",
        "list",
        "--gid",
        &gid,
        "--servers",
        &servers,
    ]);
    let (n3, n4) = (server_id(GIDS[0], 3), server_id(GIDS[0], 4));
    assert!(
        text.contains(&format!("voters [{n3},{n4}] learners []")),
        "{text}"
    );
    let text = ok(&["shardctl", "member", "list", "--servers", &cluster.ctl]);
    assert!(text.contains("voters [n0,n2,n3] learners []"), "{text}");
}
