//! `synod kv member` against real `synod kv serve` processes under a recorded
//! Redis-protocol load, every history checked for linearizability with final reads through
//! every serving front: a cluster grows from 3 to 5 (`kv serve --join`, `member add`), the
//! leader is removed, and a replica whose directory was deleted is replaced by a new one
//! under a new id (`member replace`), after which the group survives losing another of its
//! first replicas and a restart of the last one (which finds the new replica's address in
//! its directory). Each test prints how long each change took and the longest time without
//! an acknowledged operation around it (`-- --nocapture`); `adding_a_replica_to_a_big_state`
//! prints the time to add and promote a replica to `SYNOD_MEMBER_BYTES` bytes of state
//! (default 10 MB).

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use support::resp::{Reply, Resp};
use support::{
    free_ports, load, loopback_list, path, run, start_kv_replica, start_kv_replica_with, stderr,
    stdout, Server,
};

/// `synod kv member ARGS --servers SERVERS`, which must succeed.
fn member(servers: &str, args: &[&str]) -> Output {
    let mut all = vec!["kv", "member"];
    all.extend_from_slice(&args[..1]);
    all.extend_from_slice(&["--servers", servers, "--timeout", "10"]);
    all.extend_from_slice(&args[1..]);
    let out = run(&all);
    assert!(out.status.success(), "{all:?}: {}", stderr(&out));
    out
}

/// Starts replica `id`, new to the cluster of `peers`, listening on loopback port `port`.
fn start_joining(id: usize, peers: &str, port: u16, dir: &std::path::Path, resp: u16) -> Server {
    let addr = format!("127.0.0.1:{port}");
    start_kv_replica_with(id, peers, dir, resp, None, &["--join", &addr])
}

/// A new cluster of three bootstrapped replicas in `dir`, on fresh loopback ports, with
/// `spare` more ports for replicas that join later.
struct Cluster {
    /// Peer ports: the three replicas', then the spares'.
    ports: Vec<u16>,
    /// The three replicas' `--peers`.
    peers: String,
    /// A RESP port for each peer port, in the same order.
    fronts: Vec<u16>,
    replicas: Vec<Server>,
}

fn three_replicas(dir: &std::path::Path, spare: usize) -> Cluster {
    let mut ports = free_ports(2 * (3 + spare));
    let fronts = ports.split_off(3 + spare);
    let peers = loopback_list(&ports[..3]);
    let replicas = (0..3)
        .map(|i| start_kv_replica(i, &peers, dir, fronts[i], Some("--bootstrap")))
        .collect();
    Cluster {
        ports,
        peers,
        fronts,
        replicas,
    }
}

/// Waits until `member list` through `servers` starts with `expected` and contains each
/// of `roles` (`id=n3 voter`); returns the listing.
fn listed(servers: &str, expected: &str, roles: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = stdout(&run(&["kv", "member", "list", "--servers", servers]));
        let done = text.starts_with(expected) && roles.iter().all(|r| text.contains(r.as_str()));
        if done || Instant::now() > deadline {
            assert!(done, "expected {expected:?} and {roles:?}: {text}");
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The index in `servers` of the replica `synod status` shows leading.
fn leader(servers: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = stdout(&run(&["status", "--servers", servers]));
        if let Some(i) = text.lines().position(|l| l.contains("voting leader")) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SETs `keys` keys of `value_bytes` bytes through the front on `port`, pipelined.
fn preload(port: u16, keys: usize, value_bytes: usize) {
    let mut conn = Resp::connect(&format!("127.0.0.1:{port}")).expect("connecting to a front");
    let value = "v".repeat(value_bytes);
    let names: Vec<String> = (0..keys).map(|n| format!("preload{n:07}")).collect();
    for chunk in names.chunks(64) {
        let commands: Vec<[&str; 3]> = chunk.iter().map(|k| ["SET", k, &value]).collect();
        let commands: Vec<&[&str]> = commands.iter().map(|c| &c[..]).collect();
        for reply in conn.pipeline(&commands).expect("preloading") {
            assert!(matches!(reply, Reply::Simple(_)), "{reply:?}");
        }
    }
}

/// A change made during the load: its name, and when it began and ended (nanoseconds
/// since the load's start).
struct Window(String, u64, u64);

fn print_windows(
    history: &[synod_check::Operation<synod_check::kv::KvInput, String>],
    windows: &[Window],
) {
    for Window(name, from, to) in windows {
        eprintln!(
            "{name}: took {:.2} s, longest time without an acknowledged operation {:.2} s",
            (to - from) as f64 / 1e9,
            load::longest_gap(history, *from, *to + 1_000_000_000).as_secs_f64()
        );
    }
}

fn nanos(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

#[test]
fn growing_three_to_five_under_load_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Cluster {
        ports,
        peers,
        fronts,
        replicas: _first,
    } = three_replicas(dir.path(), 2);
    preload(fronts[0], 1000, 100);
    let _new: Vec<_> = (3..5)
        .map(|i| start_joining(i, &peers, ports[i], dir.path(), fronts[i]))
        .collect();
    listed(
        &loopback_list(&ports[..5]),
        "membership: epoch 0 (in effect)",
        &["id=n3 joining".into(), "id=n4 joining".into()],
    );

    let start = Instant::now();
    let mut windows = Vec::new();
    let mut history = load::run_while(4, &fronts[..3], None, start, || {
        std::thread::sleep(Duration::from_millis(500));
        for id in [3, 4] {
            let began = nanos(start);
            let addr = format!("127.0.0.1:{}", ports[id]);
            let out = member(&peers, &["add", &format!("n{id}"), &addr]);
            let text = stdout(&out);
            assert!(
                text.contains(&format!("added n{id} at {addr} as a learner")),
                "{text}"
            );
            assert!(text.contains(&format!("promoted n{id} to voter")), "{text}");
            eprintln!("{text}");
            windows.push(Window(
                format!("member add n{id} (1k keys)"),
                began,
                nanos(start),
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    });
    let all = loopback_list(&ports[..5]);
    let voters: Vec<String> = (0..5).map(|id| format!("id=n{id} voter")).collect();
    listed(
        &all,
        "membership: epoch 4 (in effect) voters [n0,n1,n2,n3,n4] learners []",
        &voters,
    );
    load::final_reads(&mut history, &fronts, None, 4, start);
    print_windows(&history, &windows);
    load::assert_linearizable(&history, 50);
}

#[test]
fn removing_the_leader_under_load_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Cluster {
        peers,
        fronts,
        replicas: _replicas,
        ..
    } = three_replicas(dir.path(), 0);
    listed(
        &peers,
        "membership: epoch 0 (in effect) voters [n0,n1,n2]",
        &[],
    );
    let gone = leader(&peers);

    let start = Instant::now();
    let mut windows = Vec::new();
    let mut history = load::run_while(4, &fronts, None, start, || {
        std::thread::sleep(Duration::from_secs(1));
        let began = nanos(start);
        let out = member(&peers, &["remove", &format!("n{gone}")]);
        windows.push(Window(
            format!("member remove n{gone} (the leader)"),
            began,
            nanos(start),
        ));
        assert!(
            stdout(&out).starts_with(&format!("removed n{gone}: epoch 1 decided")),
            "{}",
            stdout(&out)
        );
        std::thread::sleep(Duration::from_secs(2));
    });

    let voters: Vec<String> = (0..3)
        .filter(|&i| i != gone)
        .map(|i| format!("n{i}"))
        .collect();
    let mut roles: Vec<String> = voters.iter().map(|v| format!("id={v} voter")).collect();
    roles.push(format!("id=n{gone} removed"));
    listed(
        &peers,
        &format!(
            "membership: epoch 1 (in effect) voters [{}] learners []",
            voters.join(",")
        ),
        &roles,
    );
    let new_leader = leader(&peers);
    assert_ne!(new_leader, gone, "the removed leader leads no more");

    // The removed replica's front still serves, through the others.
    load::final_reads(&mut history, &fronts, None, 4, start);
    print_windows(&history, &windows);
    load::assert_linearizable(&history, 50);
}

#[test]
fn replacing_a_replica_whose_directory_was_deleted_under_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Cluster {
        ports,
        peers,
        fronts,
        replicas,
    } = three_replicas(dir.path(), 1);
    let mut replicas: Vec<Option<Server>> = replicas.into_iter().map(Some).collect();
    preload(fronts[0], 1000, 100);
    let new_addr = format!("127.0.0.1:{}", ports[3]);
    let mut replacement = None;

    let start = Instant::now();
    let mut windows = Vec::new();
    let serving = [fronts[0], fronts[1], fronts[3]];
    let mut history = load::run_while(4, &serving, None, start, || {
        std::thread::sleep(Duration::from_millis(500));
        // Replica 2's machine dies with its disk.
        replicas[2].take().expect("running").kill9();
        std::fs::remove_dir_all(dir.path().join("r2")).expect("deleting r2");
        // A new machine: a new replica under a new id.
        replacement = Some(start_joining(3, &peers, ports[3], dir.path(), fronts[3]));
        let began = nanos(start);
        let out = member(&peers, &["replace", "n2", "n3", &new_addr]);
        windows.push(Window(
            "member replace n2 n3 (1k keys)".into(),
            began,
            nanos(start),
        ));
        let text = stdout(&out);
        eprintln!("{text}");
        assert!(
            text.contains("replaced n2 by n3: epoch 2 decided"),
            "{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
        // The group is n0, n1 and n3 now: it survives losing another first replica.
        let began = nanos(start);
        replicas[0].take().expect("running").kill9();
        std::thread::sleep(Duration::from_secs(2));
        windows.push(Window(
            "kill -9 of n0 after the replacement".into(),
            began,
            nanos(start),
        ));
        // n1 restarted with its usual flags reaches n3 at the address its directory keeps
        // (the configuration): with n0 gone, the two of them are the majority.
        let began = nanos(start);
        replicas[1].take().expect("running").kill9();
        replicas[1] = Some(start_kv_replica(1, &peers, dir.path(), fronts[1], None));
        std::thread::sleep(Duration::from_secs(2));
        windows.push(Window(
            "kill -9 and restart of n1, n0 down".into(),
            began,
            nanos(start),
        ));
    });

    listed(
        &loopback_list(&[ports[1], ports[3]]),
        "membership: epoch 2 (in effect) voters [n0,n1,n3] learners []",
        &["id=n1 voter".into(), "id=n3 voter".into()],
    );
    load::final_reads(&mut history, &[fronts[1], fronts[3]], None, 4, start);
    print_windows(&history, &windows);
    load::assert_linearizable(&history, 50);
    drop(replacement);
}

/// `member add` refuses an address that answers as another replica; a directory that joined,
/// restarted without `--join`, is refused naming both sides; restarted with its flags, it
/// serves again as the voter it became.
#[test]
fn a_joined_replica_restarts_with_its_flags_and_refuses_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Cluster {
        ports,
        peers,
        fronts,
        replicas: _first,
    } = three_replicas(dir.path(), 1);
    let addr = format!("127.0.0.1:{}", ports[3]);
    let joined = start_joining(3, &peers, ports[3], dir.path(), fronts[3]);
    // The address must be the replica named: nothing changes otherwise.
    let wrong = run(&["kv", "member", "add", "--servers", &peers, "n5", &addr]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains(&format!("{addr} is replica n3, not n5")),
        "{}",
        stderr(&wrong)
    );
    member(&peers, &["add", "n3", &addr]);
    joined.kill9();

    let data = dir.path().join("r3");
    let refused = run(&[
        "kv",
        "serve",
        "--id",
        "3",
        "--peers",
        &peers,
        "--data",
        path(&data),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains(&format!(
            "belongs to replica 3, with --join {addr}, but it is now started without --join"
        )),
        "{}",
        stderr(&refused)
    );
    let taken = run(&[
        "kv",
        "serve",
        "--id",
        "1",
        "--peers",
        &peers,
        "--data",
        path(&data),
        "--join",
        &addr,
    ]);
    assert!(
        stderr(&taken).contains("--id 1 is replica 1 of --peers: a joining replica takes a new id"),
        "{}",
        stderr(&taken)
    );

    let _back = start_joining(3, &peers, ports[3], dir.path(), fronts[3]);
    let all = loopback_list(&ports[..4]);
    listed(
        &all,
        "membership: epoch 2 (in effect) voters [n0,n1,n2,n3]",
        &["id=n3 voter".into()],
    );
    let mut conn = Resp::connect(&format!("127.0.0.1:{}", fronts[3])).expect("front of n3");
    assert!(matches!(
        conn.call(&["SET", "k", "v"]),
        Ok(Reply::Simple(_))
    ));
}

#[test]
fn adding_a_replica_to_a_big_state() {
    let bytes: usize = std::env::var("SYNOD_MEMBER_BYTES")
        .ok()
        .map(|v| v.parse().expect("SYNOD_MEMBER_BYTES is a number of bytes"))
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let Cluster {
        ports,
        peers,
        fronts,
        replicas: _first,
    } = three_replicas(dir.path(), 1);
    let value_bytes = 50_000;
    preload(fronts[0], bytes / value_bytes, value_bytes);
    let _new = start_joining(3, &peers, ports[3], dir.path(), fronts[3]);
    let began = Instant::now();
    let out = member(&peers, &["add", "n3", &format!("127.0.0.1:{}", ports[3])]);
    let took = began.elapsed();
    eprintln!("{}", stdout(&out));
    eprintln!(
        "member add n3 with {} MB of state: learner, caught up and voter in {:.2} s",
        bytes / 1_000_000,
        took.as_secs_f64()
    );
    let mut conn = Resp::connect(&format!("127.0.0.1:{}", fronts[3])).expect("front of n3");
    let last = format!("preload{:07}", bytes / value_bytes - 1);
    match conn.call(&["GET", &last]) {
        Ok(Reply::Bulk(Some(v))) => assert_eq!(v.len(), value_bytes),
        other => panic!("GET {last} through n3: {other:?}"),
    }
}
