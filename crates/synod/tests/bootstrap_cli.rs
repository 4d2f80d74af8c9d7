//! Forming a cluster by hand, as real processes: an empty data directory starts only when
//! the operator declares it new (`--bootstrap`) or lost (`--rejoin`), a directory refuses to
//! run as another replica or in another cluster, and three replicas declared new form a
//! cluster whatever order and pace they start in, with writes arriving from the start — on
//! loopback and inside a network namespace of their own.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use support::resp::{Reply, Resp};
use support::{free_ports, kv_replica_args, loopback_list, path, run, stderr, Server};

/// How long after a majority of replicas is up a write must have succeeded, and how long
/// after that (or after the last replica is up, if later) every replica must read it back.
const FORMATION_BOUND: Duration = Duration::from_secs(10);

/// The pause between a client's failed attempts (connection refused while nothing listens).
const RETRY_PAUSE: Duration = Duration::from_millis(20);

fn refusal(data: &Path) -> String {
    format!(
        "error: data directory {} holds no state: start it with --bootstrap if this replica \
         is new and the cluster is being formed, or with --rejoin if it lost its disk \
         (docs/running.md, \"Bootstrap and disk loss\")",
        data.display()
    )
}

/// Runs `synod ARGS`, which must fail with exit code `code` and say each of `wants` on
/// stderr.
fn refused<S: AsRef<str>>(args: &[S], code: i32, wants: &[&str]) {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = run(&args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    for want in wants {
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn an_empty_data_directory_starts_only_when_declared_new_or_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let peers = loopback_list(&free_ports(3));
    let ctl = loopback_list(&free_ports(3));
    let data = dir.path().join("empty");
    let d = path(&data);
    let kv = ["kv", "serve", "--id", "0", "--peers", &peers, "--data", d];
    let shardctl = [
        "shardctl", "serve", "--id", "0", "--peers", &ctl, "--data", d,
    ];
    let shardkv = [
        "shardkv", "serve", "--gid", "100", "--id", "0", "--peers", &peers, "--ctl", &ctl,
        "--data", d,
    ];
    for command in [&kv[..], &shardctl, &shardkv] {
        refused(command, 1, &[&refusal(&data)]);
        let both = [command, &["--bootstrap", "--rejoin"]].concat();
        let conflict = "error: the argument '--bootstrap' cannot be used with '--rejoin'";
        refused(&both, 2, &[conflict]);
        let no_threads = [command, &["--bootstrap", "--threads", "0"]].concat();
        let range = "error: invalid value '0' for '--threads <THREADS>': 0 is not in 1..=256";
        refused(&no_threads, 2, &[range]);
    }
}

#[test]
fn a_data_directory_refuses_another_replica_index_peer_list_or_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(4);
    let peers = loopback_list(&ports[..3]);
    let data = dir.path().join("r0");
    let d = path(&data);
    let serve = |id: &str, peers: &str, extra: &[&str]| -> Vec<String> {
        let args = ["kv", "serve", "--id", id, "--peers", peers, "--data", d];
        [&args[..], extra]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let first = serve("0", &peers, &["--bootstrap"]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let replica = Server::start(&first, "kv replica 0 listening on ");
    // It answers its status once it has recovered, and so written its first record.
    let addr = format!("127.0.0.1:{}", ports[0]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run(&["status", "--servers", &addr]).status.success() {
        assert!(
            Instant::now() < deadline,
            "replica 0 never answered its status"
        );
        std::thread::sleep(RETRY_PAUSE);
    }
    replica.kill9();
    let recorded = std::fs::read_to_string(data.join("identity.json")).expect("identity");
    assert!(recorded.contains("\"replica\": 0"), "{recorded}");

    let want = format!(
        "error: data directory {d} belongs to replica 0 of its cluster, but --id is 1: a \
         directory keeps its replica index for life (identity.json)"
    );
    refused(&serve("1", &peers, &[]), 1, &[&want]);

    let other_peers = loopback_list(&[ports[0], ports[1], ports[3]]);
    let want = format!(
        "error: data directory {d} was started with --peers {peers}, but --peers is now \
         {other_peers}: a cluster keeps its peer list, in its order, for life (identity.json)"
    );
    refused(&serve("0", &other_peers, &[]), 1, &[&want]);

    let other_cluster = serve("0", &peers, &["--cluster-token", "another"]);
    let wants = [
        &format!("error: data directory {d} belongs to cluster ")[..],
        ", but --peers and --cluster-token name cluster ",
        ": start it with the --cluster-token it was formed with (identity.json)",
    ];
    refused(&other_cluster, 1, &wants);

    let twice = loopback_list(&[ports[0], ports[1], ports[0]]);
    let want = format!(
        "error: --peers lists 127.0.0.1:{} twice: every replica needs an address of its own",
        ports[0]
    );
    refused(&serve("1", &twice, &["--bootstrap"]), 1, &[&want]);

    // The same flags start it again; `--bootstrap` on a directory with state is a restart.
    let again = serve("0", &peers, &["--bootstrap"]);
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    let again = Server::start_logged_env(
        &again,
        &[("RUST_LOG", "info")],
        "kv replica 0 listening on ",
    );
    let restart = "the data directory holds state, so this is a restart: --bootstrap is ignored";
    assert!(again.logs().contains(restart), "{}", again.logs());
}

/// A network namespace of the test's own, deleted when dropped.
struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates one with its loopback up, or says why it could not.
    fn create() -> Result<Namespace, String> {
        let name = format!("synod-boot-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let namespace = Namespace { name };
        ip(&["-n", &namespace.name, "link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// `synod`, run inside the namespace by `ip netns exec`.
    fn synod(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, env!("CARGO_BIN_EXE_synod")]);
        cmd
    }

    /// Moves the calling thread into the namespace, so its sockets and the threads it
    /// spawns are there too.
    fn enter(&self) {
        let file = std::fs::File::open(format!("/run/netns/{}", self.name))
            .expect("opening the namespace");
        // SAFETY: setns only reads the descriptor, which `file` keeps open during the call.
        let entered =
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

/// Runs `ip ARGS`, or says why it failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {args:?}: {}", stderr(&out).trim()))
    }
}

/// How the test starts `synod`: directly, or inside a namespace.
fn synod_in(namespace: Option<&Namespace>) -> Command {
    match namespace {
        Some(namespace) => namespace.synod(),
        None => support::synod(),
    }
}

/// The 6 orders of 3 replicas.
const ORDERS: [[usize; 3]; 6] = synod_testkit::START_ORDERS;

/// The pauses before the second and the third replica of each order: drawn from `seed`
/// between 0 and 2.5 s, except that one order starts its second replica at once and another
/// leaves its first alone for 5 s (the full range, kept to two pauses to bound the time).
fn pauses(seed: u64) -> Vec<[Duration; 2]> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pauses: Vec<[Duration; 2]> = ORDERS
        .iter()
        .map(|_| [0, 1].map(|_| Duration::from_millis(rng.gen_range(0..=2500))))
        .collect();
    let at_once = rng.gen_range(0..ORDERS.len());
    let alone = (at_once + rng.gen_range(1..ORDERS.len())) % ORDERS.len();
    pauses[at_once][rng.gen_range(0..2)] = Duration::ZERO;
    pauses[alone][0] = Duration::from_secs(5);
    pauses
}

/// A write acknowledged by the cluster: the attempt's key and value, and when.
struct Acknowledged {
    key: String,
    value: String,
    at: Instant,
}

/// Sends SETs to the replicas' RESP fronts in turn, a new key per attempt (so an attempt
/// that failed but is applied later cannot overwrite the one that succeeded), until one is
/// acknowledged or `stop` is set.
fn write_until_acknowledged(fronts: Vec<u16>, stop: Arc<AtomicBool>) -> Option<Acknowledged> {
    for attempt in 0.. {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        let (key, value) = (format!("boot{attempt}"), format!("v{attempt}"));
        let front = format!("127.0.0.1:{}", fronts[attempt % fronts.len()]);
        let reply = Resp::connect(&front).and_then(|mut conn| conn.call(&["SET", &key, &value]));
        if let Ok(Reply::Simple(ok)) = &reply {
            if ok == "OK" {
                let at = Instant::now();
                return Some(Acknowledged { key, value, at });
            }
        }
        std::thread::sleep(RETRY_PAUSE);
    }
    unreachable!("the attempts never run out")
}

/// Reads `key` through the RESP front on `port` until it is `value`, or panics at `deadline`.
fn read_back(port: u16, key: &str, value: &str, deadline: Instant) {
    loop {
        let reply = Resp::connect(&format!("127.0.0.1:{port}"))
            .and_then(|mut conn| conn.call(&["GET", key]));
        if let Ok(Reply::Bulk(Some(got))) = &reply {
            assert_eq!(got, value, "read of {key} through port {port}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} not readable through port {port} in time: {reply:?}"
        );
        std::thread::sleep(RETRY_PAUSE);
    }
}

/// Starts three `kv serve --bootstrap` replicas in `order`, pausing `pauses` between them,
/// with a client writing from the moment the first listens; checks that the cluster forms
/// within [`FORMATION_BOUND`] and returns how long after the majority was up the first
/// write was acknowledged.
fn form(namespace: Option<&Namespace>, order: [usize; 3], pauses: [Duration; 2]) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let fronts = ports[3..].to_vec();
    let start = |id: usize| -> Server {
        let mut cmd = synod_in(namespace);
        cmd.args(kv_replica_args(
            id,
            &peers,
            dir.path(),
            fronts[id],
            Some("--bootstrap"),
        ));
        let prefix = format!("kv replica {id} listening on ");
        Server::start_command(cmd, &prefix, Duration::from_secs(10))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut replicas = vec![start(order[0])];
    let (acknowledged, writes) = mpsc::channel();
    let writer = {
        let (fronts, stop) = (fronts.clone(), stop.clone());
        std::thread::spawn(move || {
            let _ = acknowledged.send(write_until_acknowledged(fronts, stop));
        })
    };
    std::thread::sleep(pauses[0]);
    replicas.push(start(order[1]));
    let majority_up = Instant::now();
    std::thread::sleep(pauses[1]);
    replicas.push(start(order[2]));
    let all_up = Instant::now();

    let waited = writes.recv_timeout(FORMATION_BOUND.saturating_sub(majority_up.elapsed()));
    stop.store(true, Ordering::SeqCst);
    let written = match waited {
        Ok(Some(written)) => written,
        _ => {
            let logs: Vec<String> = replicas.iter().map(Server::logs).collect();
            panic!(
                "order {order:?} with pauses {pauses:?}: no write acknowledged within \
                 {FORMATION_BOUND:?} of the majority being up; replica logs: {logs:#?}"
            );
        }
    };
    writer.join().expect("the writer");
    let deadline = written.at.max(all_up) + FORMATION_BOUND;
    for &front in &fronts {
        read_back(front, &written.key, &written.value, deadline);
    }
    written.at.saturating_duration_since(majority_up)
}

/// Forms a cluster in every order, with pauses drawn from a printed seed, and prints how
/// long each took to form. `network` names the network for the printout.
fn form_in_every_order(namespace: Option<&Namespace>, network: &str) {
    let seed = match std::env::var("SYNOD_SEED") {
        Ok(seed) => seed.parse().expect("SYNOD_SEED is a number"),
        Err(_) => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos() as u64,
    };
    eprintln!("{network}: seed {seed} (SYNOD_SEED={seed} repeats these pauses)");
    for (order, pauses) in ORDERS.into_iter().zip(pauses(seed)) {
        let formed = form(namespace, order, pauses);
        eprintln!(
            "{network}: order {order:?}, pauses {pauses:?}: first write acknowledged \
             {formed:?} after the majority was up"
        );
    }
}

#[test]
fn a_new_cluster_forms_in_any_start_order_and_pace() {
    form_in_every_order(None, "loopback");
}

#[test]
fn a_new_cluster_forms_in_any_start_order_inside_a_network_namespace() {
    let namespace = match Namespace::create() {
        Ok(namespace) => namespace,
        Err(_) if std::env::var("SYNOD_SKIP_NETNS").as_deref() == Ok("1") => {
            eprintln!("SYNOD_SKIP_NETNS=1: not run in a network namespace");
            return;
        }
        Err(why) => panic!(
            "cannot create a network namespace ({why}); this test needs root and `ip netns`. \
             Set SYNOD_SKIP_NETNS=1 to skip it where namespaces are not available."
        ),
    };
    // The test's own sockets (the client's) must be in the namespace too; a thread of its
    // own enters it, so the test harness's threads stay where they are.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                namespace.enter();
                form_in_every_order(Some(&namespace), "network namespace");
            })
            .join()
            .expect("the run inside the namespace");
    });
}
