//! `synod up` as a user runs it: a 3-replica Paxos KV cluster as child processes, loaded
//! through the Redis protocol while replicas are SIGKILLed (and restarted by `up`) and
//! SIGSTOPped, with the history checked for linearizability; SIGTERM stops everything with
//! exit 0; a rerun on the same directory has the data; and hostile bytes on every port are
//! contained, bounded in memory and logged.

mod support;

use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::resp::{concurrent_incrs, Reply, Resp};
use support::{alive, assert_no_secret, key_lines, load, path, run, signal_pid, stderr, Server};

/// A replica as `up` announced it: `replica I: peer ADDR resp ADDR metrics ADDR pid N`.
#[derive(Debug, Clone, PartialEq)]
struct Replica {
    index: usize,
    peer: String,
    resp: u16,
    pid: u32,
}

fn parse_replica(line: &str) -> Replica {
    let words: Vec<&str> = line.split_whitespace().collect();
    let ["replica", index, "peer", peer, "resp", resp, "metrics", _, "pid", pid] = words[..] else {
        panic!("unexpected replica line {line:?}");
    };
    let port = resp.rsplit(':').next().and_then(|p| p.parse().ok());
    Replica {
        index: index.trim_end_matches(':').parse().expect("replica index"),
        peer: peer.to_owned(),
        resp: port.expect("resp port"),
        pid: pid.parse().expect("pid"),
    }
}

/// Starts `synod up --dir DIR` (secured, as by default) and waits for `ready`. The servers
/// log at `info`, whatever the caller's `RUST_LOG`, because tests look for their log lines.
fn up(dir: &std::path::Path) -> (Server, Vec<Replica>) {
    up_with(dir, &[])
}

/// [`up`] with more flags.
fn up_with(dir: &std::path::Path, flags: &[&str]) -> (Server, Vec<Replica>) {
    up_sized(dir, flags, 3)
}

/// [`up_with`], where `started` replicas start before `ready`.
fn up_sized(dir: &std::path::Path, flags: &[&str], started: usize) -> (Server, Vec<Replica>) {
    let args: Vec<&str> = ["up", "--dir", path(dir)]
        .iter()
        .chain(flags)
        .copied()
        .collect();
    let server = Server::start_logged_env(&args, &[("RUST_LOG", "info")], "ready");
    let replicas: Vec<Replica> = server.earlier.iter().map(|l| parse_replica(l)).collect();
    assert_eq!(
        replicas.len(),
        started,
        "lines before ready: {:?}",
        server.earlier
    );
    (server, replicas)
}

/// The password a secured `up` in `dir` gave its RESP fronts.
fn password(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("tls/resp-password")).expect("password file");
    text.trim_end().to_owned()
}

/// Stops `up` with SIGTERM, checks it exits 0 and leaves none of `pids` running, and returns
/// the logs of the whole run.
fn stop(mut up: Server, pids: &[u32]) -> String {
    up.signal("TERM");
    assert_eq!(
        up.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        up.logs()
    );
    for &pid in pids {
        assert!(!alive(pid), "child {pid} still running after up exited");
    }
    up.logs()
}

/// Retries GET through `port` until a value comes back, and says how long that took.
fn time_until_read(port: u16, password: &str) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let answer = Resp::connect_as(&format!("127.0.0.1:{port}"), Some(password))
            .and_then(|mut c| c.call(&["GET", "s0"]));
        if let Ok(Reply::Bulk(_)) = answer {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("replica on RESP port {port} did not answer a read within 20 s");
}

#[test]
fn up_heals_kills_and_pauses_and_keeps_its_data_across_reruns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cluster, replicas) = up(dir.path());
    let pw = password(dir.path());
    // A new cluster: `up` declares every replica new.
    assert_eq!(
        cluster
            .logs()
            .matches("bootstrapping a new replica")
            .count(),
        3,
        "{}",
        cluster.logs()
    );
    let fronts: Vec<u16> = replicas.iter().map(|r| r.resp).collect();

    let start = Instant::now();
    let mut restarted = None;
    let mut history = load::run_while(4, &fronts, Some(&pw), start, || {
        std::thread::sleep(Duration::from_millis(700));
        let killed = Instant::now();
        signal_pid(replicas[1].pid, "KILL");
        let line = cluster
            .next_line("replica 1:", Duration::from_secs(10))
            .expect("up restarts a killed replica");
        let again = parse_replica(&line);
        assert_ne!(again.pid, replicas[1].pid);
        assert_eq!(
            (&again.peer, again.resp),
            (&replicas[1].peer, replicas[1].resp)
        );
        let restarted_after = killed.elapsed();
        let recovery = time_until_read(again.resp, &pw);
        eprintln!(
            "replica 1 listening again {restarted_after:?} after SIGKILL; \
             first read through its RESP port {recovery:?} later"
        );
        restarted = Some(again);
        signal_pid(replicas[2].pid, "STOP");
        std::thread::sleep(Duration::from_secs(2));
        signal_pid(replicas[2].pid, "CONT");
        std::thread::sleep(Duration::from_millis(700));
    });
    load::final_reads(&mut history, &fronts, Some(&pw), 4, start);
    load::assert_linearizable(&history, 50);
    assert!(
        cluster.logs().contains("replica 1 (pid"),
        "up reports the death: {}",
        cluster.logs()
    );

    let mut conn =
        Resp::connect_as(&format!("127.0.0.1:{}", fronts[0]), Some(&pw)).expect("connect");
    assert_eq!(
        conn.call(&["SET", "kept", "yes"]).expect("set"),
        Reply::Simple("OK".into())
    );
    let restarted = restarted.expect("replica 1 restarted");
    // Restarts, by `up` after the kill above and by the rerun below, pass no start flag.
    assert!(!cluster.logs().contains("is ignored"), "{}", cluster.logs());
    stop(cluster, &[replicas[0].pid, restarted.pid, replicas[2].pid]);

    // A rerun on the same directory: same addresses, same data, and nothing declared.
    let (cluster, again) = up(dir.path());
    for declared in ["bootstrapping", "lost its disk", "is ignored"] {
        assert!(!cluster.logs().contains(declared), "{}", cluster.logs());
    }
    let addrs = |rs: &[Replica]| {
        rs.iter()
            .map(|r| (r.peer.clone(), r.resp))
            .collect::<Vec<_>>()
    };
    assert_eq!(addrs(&again), addrs(&replicas));
    let mut conn =
        Resp::connect_as(&format!("127.0.0.1:{}", again[2].resp), Some(&pw)).expect("connect");
    assert_eq!(
        conn.call(&["GET", "kept"]).expect("get"),
        Reply::Bulk(Some("yes".into()))
    );

    // The directory is taken while this `up` runs.
    let out = run(&["up", "--dir", path(dir.path())]);
    assert!(!out.status.success());
    let want = format!(
        "data directory {} is in use by another synod process (pid {})",
        dir.path().display(),
        cluster.child.id()
    );
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    let pids: Vec<u32> = again.iter().map(|r| r.pid).collect();
    stop(cluster, &pids);
}

/// What `synod status` prints about the cluster.
fn status(dir: &std::path::Path, replicas: &[Replica]) -> String {
    let peers: Vec<&str> = replicas.iter().map(|r| r.peer.as_str()).collect();
    let ca = dir.join("tls/ca.pem");
    let out = run(&[
        "status",
        "--servers",
        &peers.join(","),
        "--tls-ca",
        path(&ca),
        "--password-file",
        path(&dir.join("tls/resp-password")),
    ]);
    assert!(out.status.success(), "status failed: {}", stderr(&out));
    support::stdout(&out)
}

/// Waits (up to 10 s) until `synod status` on `replicas` says each is a voter and the
/// membership in effect has `voters`, with no change pending.
fn assert_voters(dir: &std::path::Path, replicas: &[Replica], voters: &str) {
    let want = format!("(in effect) voters [{voters}] learners []");
    let start = Instant::now();
    loop {
        let text = status(dir, replicas);
        let lines = support::replica_lines(&text);
        let all_vote =
            lines.len() == replicas.len() && lines.iter().all(|l| l.contains("member=voter"));
        if all_vote && text.contains(&want) && !text.contains("decided, in effect from") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "status does not show voters [{voters}]: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sets `n` keys `k0`.. to `v0`.. through `port`.
fn write_keys(port: u16, pw: &str, n: usize) {
    let mut conn = Resp::connect_as(&format!("127.0.0.1:{port}"), Some(pw)).expect("connect");
    for i in 0..n {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        assert_eq!(
            conn.call(&["SET", &key, &value]).expect("set"),
            Reply::Simple("OK".into())
        );
    }
}

/// Checks the `n` keys of [`write_keys`] through `port`.
fn read_keys(port: u16, pw: &str, n: usize) {
    let mut conn = Resp::connect_as(&format!("127.0.0.1:{port}"), Some(pw)).expect("connect");
    for i in 0..n {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        assert_eq!(
            conn.call(&["GET", &key]).expect("get"),
            Reply::Bulk(Some(value)),
            "{key} through port {port}"
        );
    }
}

/// The replica `up` announced with `replica ID:` after `ready` (a replica it added).
fn added(cluster: &Server, id: usize) -> Replica {
    let line = cluster
        .next_line(&format!("replica {id}:"), Duration::from_secs(60))
        .unwrap_or_else(|| panic!("up did not start replica {id}: {}", cluster.logs()));
    parse_replica(&line)
}

/// The `members:` line `up` prints once it changed the membership.
fn members_line(cluster: &Server) -> String {
    cluster
        .next_line("members:", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("up did not finish its changes: {}", cluster.logs()))
}

#[test]
fn up_grows_and_shrinks_a_cluster_through_membership_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cluster, three) = up(dir.path());
    let pw = password(dir.path());
    write_keys(three[0].resp, &pw, 20);
    stop(cluster, &three.iter().map(|r| r.pid).collect::<Vec<_>>());

    // 3 -> 5: the three restart as they were, then two new replicas join, one at a time.
    let began = Instant::now();
    let (cluster, mut five) = up_with(dir.path(), &["--replicas", "5"]);
    let addrs = |rs: &[Replica]| {
        rs.iter()
            .map(|r| (r.index, r.peer.clone(), r.resp))
            .collect::<Vec<_>>()
    };
    assert_eq!(addrs(&five), addrs(&three));
    five.push(added(&cluster, 3));
    five.push(added(&cluster, 4));
    let members = members_line(&cluster);
    eprintln!(
        "{members}; {:?} from `synod up --replicas 5` to it",
        began.elapsed()
    );
    assert!(members.starts_with("members: n0,n1,n2,n3,n4 "), "{members}");
    assert_voters(dir.path(), &five, "n0,n1,n2,n3,n4");
    read_keys(five[4].resp, &pw, 20);
    let pids: Vec<u32> = five.iter().map(|r| r.pid).collect();
    stop(cluster, &pids);

    // A plain rerun restarts the five as they are (the joined ones with --join).
    let (cluster, again) = up_sized(dir.path(), &[], 5);
    assert_eq!(addrs(&again), addrs(&five));
    assert_voters(dir.path(), &again, "n0,n1,n2,n3,n4");
    read_keys(again[3].resp, &pw, 20);
    stop(cluster, &again.iter().map(|r| r.pid).collect::<Vec<_>>());

    // 5 -> 4, stopped in the middle: `up` made the change that removes n4 but was stopped
    // before it stopped n4, deleted its directory and recorded that. So the record still
    // lists n4, with its removal pending, and its directory is there.
    let record = std::fs::read_to_string(dir.path().join("members-kv.json")).expect("record");
    let kept = dir.path().join("kept");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .args([dir.path().join("replica-4"), kept.clone()])
        .status()
        .expect("cp");
    assert!(copied.success());
    let (cluster, before) = up_sized(dir.path(), &["--replicas", "4"], 5);
    let members = members_line(&cluster);
    assert!(members.starts_with("members: n0,n1,n2,n3 "), "{members}");
    assert!(!alive(before[4].pid), "removed replica 4 still runs");
    assert!(!dir.path().join("replica-4").exists());
    stop(cluster, &before.iter().map(|r| r.pid).collect::<Vec<_>>());
    std::fs::rename(&kept, dir.path().join("replica-4")).expect("restoring replica 4");
    let mut record = record;
    let end = record.rfind('}').expect("a JSON object");
    record.insert_str(end, r#", "pending": {"remove": {"id": 4}}"#);
    std::fs::write(dir.path().join("members-kv.json"), record).expect("writing the record");

    // The next `up` (a plain one: the cluster keeps the size it is changing to) finishes it.
    let (cluster, before) = up_sized(dir.path(), &[], 5);
    for line in [
        "finishing the change an earlier `up` began: removing replica 4",
        "n4 is not a member",
        "replica 4 stopped and its data directory removed",
        "members: n0,n1,n2,n3 ",
    ] {
        assert!(
            cluster.next_line(line, Duration::from_secs(60)).is_some(),
            "no {line:?}: {}",
            cluster.logs()
        );
    }
    assert!(!dir.path().join("replica-4").exists());
    assert_voters(dir.path(), &before[..4], "n0,n1,n2,n3");
    stop(cluster, &before.iter().map(|r| r.pid).collect::<Vec<_>>());

    // 4 -> 3: the highest is removed, then stopped, its directory deleted.
    let (cluster, before) = up_sized(dir.path(), &["--replicas", "3"], 4);
    let members = members_line(&cluster);
    assert!(members.starts_with("members: n0,n1,n2 "), "{members}");
    assert!(!alive(before[3].pid), "removed replica 3 still runs");
    assert!(!dir.path().join("replica-3").exists());
    assert_voters(dir.path(), &before[..3], "n0,n1,n2");
    read_keys(before[1].resp, &pw, 20);
    stop(cluster, &before.iter().map(|r| r.pid).collect::<Vec<_>>());

    let (cluster, last) = up(dir.path());
    assert_eq!(addrs(&last), addrs(&three));
    read_keys(last[2].resp, &pw, 20);
    stop(cluster, &last.iter().map(|r| r.pid).collect::<Vec<_>>());
}

#[test]
fn a_replica_whose_disk_was_lost_is_replaced_under_a_new_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cluster, replicas) = up(dir.path());
    let pw = password(dir.path());
    write_keys(replicas[0].resp, &pw, 20);
    stop(cluster, &replicas.iter().map(|r| r.pid).collect::<Vec<_>>());

    // Replica 1's disk is gone. Started blank under its old id, it would vote as if it had
    // never promised anything; `up` starts the two others and replaces it by replica 3.
    std::fs::remove_dir_all(dir.path().join("replica-1")).expect("removing replica 1's data");
    let (cluster, mut now) = up_sized(dir.path(), &[], 2);
    assert!(
        cluster
            .logs()
            .contains("replica 1 has no data in its directory although the cluster has formed"),
        "{}",
        cluster.logs()
    );
    now.push(added(&cluster, 3));
    cluster
        .next_line(
            "replica 1 (its data directory was lost) replaced by replica 3",
            Duration::from_secs(60),
        )
        .unwrap_or_else(|| panic!("no replacement: {}", cluster.logs()));
    assert!(members_line(&cluster).starts_with("members: n0,n2,n3 "));
    assert!(!cluster.logs().contains("--rejoin"), "{}", cluster.logs());
    assert_voters(dir.path(), &now, "n0,n2,n3");
    read_keys(now[2].resp, &pw, 20);
    let mut conn =
        Resp::connect_as(&format!("127.0.0.1:{}", now[2].resp), Some(&pw)).expect("connect");
    assert_eq!(
        conn.call(&["SET", "after", "replaced"]).expect("set"),
        Reply::Simple("OK".into())
    );
    drop(conn);
    stop(cluster, &now.iter().map(|r| r.pid).collect::<Vec<_>>());

    // A plain rerun restarts replicas 0, 2 and 3, with everything written.
    let (cluster, again) = up(dir.path());
    let ids: Vec<usize> = again.iter().map(|r| r.index).collect();
    assert_eq!(ids, [0, 2, 3]);
    read_keys(again[0].resp, &pw, 20);
    let mut conn =
        Resp::connect_as(&format!("127.0.0.1:{}", again[1].resp), Some(&pw)).expect("connect");
    assert_eq!(
        conn.call(&["GET", "after"]).expect("get"),
        Reply::Bulk(Some("replaced".into()))
    );
    drop(conn);
    stop(cluster, &again.iter().map(|r| r.pid).collect::<Vec<_>>());
}

/// A replica that joined and whose directory is deleted under a running `up` is not
/// restarted blank under its id (it would vote as if it had promised nothing, and it cannot
/// rejoin): `up` stops, and the next `up` replaces it.
#[test]
fn a_joined_replica_whose_directory_vanishes_under_up_is_replaced_by_the_next_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cluster, three) = up(dir.path());
    let pw = password(dir.path());
    stop(cluster, &three.iter().map(|r| r.pid).collect::<Vec<_>>());
    let (mut cluster, mut four) = up_with(dir.path(), &["--replicas", "4"]);
    four.push(added(&cluster, 3));
    members_line(&cluster);
    write_keys(four[3].resp, &pw, 20);

    std::fs::remove_dir_all(dir.path().join("replica-3")).expect("removing replica 3's data");
    signal_pid(four[3].pid, "KILL");
    assert_eq!(
        cluster.wait_exit(Duration::from_secs(20)),
        Some(1),
        "{}",
        cluster.logs()
    );
    assert!(
        cluster.logs().contains(
            "and its data directory is gone: a replica that joined cannot rejoin under its id"
        ),
        "{}",
        cluster.logs()
    );
    for r in &four {
        assert!(
            !alive(r.pid),
            "child {} still running after up exited",
            r.pid
        );
    }

    let (cluster, mut now) = up(dir.path());
    now.push(added(&cluster, 4));
    cluster
        .next_line(
            "replica 3 (its data directory was lost) replaced by replica 4",
            Duration::from_secs(60),
        )
        .unwrap_or_else(|| panic!("no replacement: {}", cluster.logs()));
    assert!(members_line(&cluster).starts_with("members: n0,n1,n2,n4 "));
    assert_voters(dir.path(), &now, "n0,n1,n2,n4");
    read_keys(now[3].resp, &pw, 20);
    stop(cluster, &now.iter().map(|r| r.pid).collect::<Vec<_>>());
}

/// Bytes a synod client sends first (magic, this build's protocol version, "client").
fn synod_hello() -> Vec<u8> {
    synod_net::codec::encode_hello(synod_net::Hello::Client).to_vec()
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connecting to a port under test")
}

/// Connects, writes `bytes`, and leaves the connection open.
fn send(port: u16, bytes: &[u8]) -> TcpStream {
    let mut conn = connect(port);
    // The server may close first (that is the point); a failed write is fine.
    let _ = conn.write_all(bytes);
    conn
}

/// Random bytes from a seeded generator (xorshift: no dependency needed for noise).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Never the first byte of a valid hello or RESP value, so it is plainly garbage.
            match seed as u8 {
                b'S' | b'*' | b'$' => b'?',
                byte => byte,
            }
        })
        .collect()
}

/// A well-behaved client: a write and a read through `port` must work.
fn serves(port: u16, value: &str) {
    let mut conn = Resp::connect(&format!("127.0.0.1:{port}")).expect("connect");
    assert_eq!(
        conn.call(&["SET", "good", value]).expect("set"),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        conn.call(&["GET", "good"]).expect("get"),
        Reply::Bulk(Some(value.into()))
    );
}

#[test]
fn bad_input_on_every_port_is_contained_bounded_and_logged() {
    // Two idle connections per idle client plus everything else must fit under the limit on
    // open files, here and in the servers, which inherit it through `up`.
    let idle_clients = ((support::raise_fd_limit().saturating_sub(200)) / 2).min(1000);
    assert!(
        idle_clients >= 400,
        "too few file descriptors for this test"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    // Insecure: this test is about what the framing does with bad input, which a secured
    // server never reads from a connection that is not TLS (up_security_cli.rs covers that).
    let (cluster, replicas) = up_with(dir.path(), &["--insecure"]);
    let pids: Vec<u32> = replicas.iter().map(|r| r.pid).collect();
    let before: Vec<u64> = pids.iter().map(|&pid| support::rss_kib(pid)).collect();
    let peer_port = |r: &Replica| r.peer.rsplit(':').next().unwrap().parse::<u16>().unwrap();

    let mut held = Vec::new();
    for r in &replicas {
        let (peer, resp) = (peer_port(r), r.resp);
        // Garbage.
        held.push(send(peer, &noise(64 * 1024, 1 + r.index as u64)));
        held.push(send(resp, &noise(100 * 1024, 7 + r.index as u64)));
        // A valid header announcing an absurd length.
        let mut huge = synod_hello();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        held.push(send(peer, &huge));
        held.push(send(resp, b"*99999999999\r\n"));
        held.push(send(resp, b"$99999999999\r\n"));
        // Half a frame, then silence (kept open until the end).
        let mut half = synod_hello();
        half.extend_from_slice(&1000u32.to_le_bytes());
        half.extend_from_slice(&[0; 10]);
        held.push(send(peer, &half));
        held.push(send(resp, b"*3\r\n$3\r\nSET\r\n$1\r\nk"));
        // A request, then gone before the answer.
        drop(send(resp, b"*3\r\n$3\r\nSET\r\n$4\r\ngone\r\n$1\r\nv\r\n"));
        let mut cut = synod_hello();
        cut.extend_from_slice(&40u32.to_le_bytes());
        cut.extend_from_slice(&[1; 20]);
        drop(send(peer, &cut));
    }
    // A thousand idle connections on each port of replica 0.
    let idle: Vec<TcpStream> = (0..idle_clients)
        .flat_map(|_| [connect(peer_port(&replicas[0])), connect(replicas[0].resp)])
        .collect();

    // Every server keeps serving the well-behaved, through every front.
    for (i, r) in replicas.iter().enumerate() {
        serves(r.resp, &format!("v{i}"));
    }
    let during: Vec<u64> = pids.iter().map(|&pid| support::rss_kib(pid)).collect();
    drop(idle);
    drop(held);
    serves(replicas[0].resp, "after");
    let after: Vec<u64> = pids.iter().map(|&pid| support::rss_kib(pid)).collect();
    eprintln!(
        "VmRSS KiB before {before:?}, with the bad connections open {during:?}, after {after:?}"
    );
    for i in 0..3 {
        let peak = during[i].max(after[i]);
        assert!(
            peak < before[i] + 64 * 1024,
            "replica {i} grew from {} KiB to {peak} KiB",
            before[i]
        );
    }

    // Each server said why it closed the bad connections (the lines arrive as they close).
    let reasons = [
        "bad magic",
        "exceeds the limit of",
        "in the middle of a frame",
        "array of 99999999999 elements exceeds the limit",
        "bulk string of 99999999999 bytes exceeds the limit",
        "line too long",
        "RESP client disconnected in the middle of a command",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let missing = loop {
        let logs = cluster.logs();
        let missing: Vec<&str> = reasons.into_iter().filter(|r| !logs.contains(r)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        missing.is_empty(),
        "no log line says {missing:?}:\n{}",
        cluster.logs()
    );
    stop(cluster, &pids);
}

/// The body of `http://ADDR/metrics`.
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connecting to a metrics port");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("asking for /metrics");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).expect("reading /metrics");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

#[test]
fn up_pb_serves_redis_and_stops_when_its_view_service_dies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Server::start_logged(
        &["up", "--pb", "--dir", path(dir.path())],
        "ready",
        Duration::from_secs(60),
    );
    let [view, one, two] = &cluster.earlier[..] else {
        panic!("unexpected lines {:?}", cluster.earlier);
    };
    assert!(view.starts_with("view service: peer 127.0.0.1:"), "{view}");
    let resp_port = |line: &str| -> u16 {
        let resp = line.split_whitespace().skip_while(|w| *w != "resp").nth(1);
        resp.and_then(|a| a.rsplit(':').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no resp address in {line:?}"))
    };
    // Every process serves its metrics on the port `up` printed.
    let metrics_of = |line: &str| -> String {
        let addr = line
            .split_whitespace()
            .skip_while(|w| *w != "metrics")
            .nth(1);
        scrape(addr.unwrap_or_else(|| panic!("no metrics address in {line:?}")))
    };
    let sets_served = |line: &str| -> u64 {
        let metrics = metrics_of(line);
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("synod_requests_total{command=\"SET\"} "))
            .map_or(0, |n| n.parse().expect("a count"))
    };
    let sets_before = sets_served(one);
    let mut conn = Resp::connect(&format!("127.0.0.1:{}", resp_port(one))).expect("connect");
    assert_eq!(
        conn.call(&["SET", "k", "v"]).expect("set"),
        Reply::Simple("OK".into())
    );
    let mut conn = Resp::connect(&format!("127.0.0.1:{}", resp_port(two))).expect("connect");
    assert_eq!(
        conn.call(&["GET", "k"]).expect("get"),
        Reply::Bulk(Some("v".into()))
    );
    // The server whose front took the SET counted it; the view service counts its links.
    assert_eq!(sets_served(one), sets_before + 1);
    assert!(
        metrics_of(view).contains("synod_link_received_bytes_total"),
        "the view service's metrics"
    );

    // The view service holds the only copy of the views: its death ends the cluster.
    let view_pid: u32 = view.rsplit(' ').next().unwrap().parse().expect("pid");
    signal_pid(view_pid, "KILL");
    assert_eq!(cluster.wait_exit(Duration::from_secs(15)), Some(1));
    assert!(
        cluster.logs().contains("view service (pid"),
        "{}",
        cluster.logs()
    );
}

#[test]
fn up_sharded_joins_both_groups_and_any_front_serves_any_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = Server::start_logged(
        &["up", "--sharded", "--dir", path(dir.path())],
        "ready",
        Duration::from_secs(60),
    );
    let pw = password(dir.path());
    let lines = &cluster.earlier;
    assert_eq!(lines.len(), 3 + 2 * 3, "lines before ready: {lines:?}");
    assert!(
        lines[0].starts_with("controller 0: peer 127.0.0.1:"),
        "{lines:?}"
    );
    assert!(
        lines[8].starts_with("group 101 replica 2: peer "),
        "{lines:?}"
    );
    let fronts: Vec<String> = lines[3..]
        .iter()
        .map(|l| {
            let resp = l.split_whitespace().skip_while(|w| *w != "resp").nth(1);
            resp.unwrap_or_else(|| panic!("no resp address in {l:?}"))
                .to_owned()
        })
        .collect();
    // Ten keys spread over the shards of both groups: written through a server of group
    // 100, read back through a server of group 101, so each front routes to the owner.
    let (mut writer, mut reader) = (
        Resp::connect_as(&fronts[0], Some(&pw)).expect("connect"),
        Resp::connect_as(&fronts[5], Some(&pw)).expect("connect"),
    );
    for k in 0..10 {
        let (key, value) = (format!("key{k}"), format!("value{k}"));
        assert_eq!(
            writer.call(&["SET", &key, &value]).expect("set"),
            Reply::Simple("OK".into())
        );
        assert_eq!(
            reader.call(&["GET", &key]).expect("get"),
            Reply::Bulk(Some(value))
        );
    }
    // Single commands from many connections leave every front in shared batches (reads by
    // group, writes by shard): each INCR of two counters still applies once.
    for counter in ["{a}counter", "{b}counter"] {
        let answers = concurrent_incrs(&fronts, Some(&pw), 12, 10, counter);
        assert_eq!(answers, (1..=120).collect::<Vec<i64>>(), "{counter}");
    }
    // The native ports are guarded too: `synod shardkv` needs the cluster's password, and
    // `synod shardctl` changes need requirepass's user, which `up` joined the groups as.
    let controllers: Vec<&str> = lines[..3]
        .iter()
        .map(|l| l.split_whitespace().nth(3).expect("a controller's address"))
        .collect();
    let ctl = controllers.join(",");
    let tls = dir.path().join("tls");
    let native = |args: &[&str], password: bool| {
        let mut cmd = support::synod();
        cmd.args(args)
            .args(["--ctl", &ctl, "--timeout", "10"])
            .args(["--tls-ca", path(&tls.join("ca.pem"))]);
        if password {
            cmd.args(["--password-file", path(&tls.join("resp-password"))]);
        }
        cmd.output().expect("running synod")
    };
    let anonymous = native(&["shardkv", "get", "key3"], false);
    assert!(
        stderr(&anonymous).contains("authentication required"),
        "{}",
        stderr(&anonymous)
    );
    let read = native(&["shardkv", "get", "key3"], true);
    assert_eq!(support::stdout(&read), "value3", "{}", stderr(&read));
    let query = native(&["shardctl", "query"], true);
    assert!(
        support::stdout(&query).starts_with("{\"num\":2,"),
        "both groups joined: {}",
        support::stdout(&query)
    );
    let pids: Vec<u32> = lines
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse().expect("pid"))
        .collect();
    let logs = stop(cluster, &pids);
    let mut secrets = key_lines(&tls);
    secrets.push(pw);
    assert_no_secret(&secrets, &logs, "the logs of up and its servers");
}
