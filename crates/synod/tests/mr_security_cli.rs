//! A MapReduce coordinator and its workers with certificates from one CA (`synod certs`):
//! a worker with another CA's certificate and a plain worker are refused, and the refusals
//! logged; workers with the CA's certificates finish the job, fetching each other's map
//! output over TLS; and no private key appears in any log of the run. A whole job on this
//! machine (`synod mr run`) admits its own workers only, by a CA it makes for the run.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{key_lines, member_tls_flags, path, signal_pid, stderr, synod, Server};

fn worker(coordinator: &str, tls: &[String]) -> std::process::Command {
    let mut cmd = synod();
    cmd.args([
        "mr",
        "worker",
        "--coordinator",
        coordinator,
        "--listen",
        "127.0.0.1:0",
    ])
    .args(tls)
    .env("RUST_LOG", "info");
    cmd
}

/// A worker process, killed on drop so that a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_log(server: &Server, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.logs().contains(line) {
        assert!(
            Instant::now() < deadline,
            "no log line says {line:?}:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn only_workers_with_a_certificate_from_the_jobs_ca_take_part() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tls, other) = (dir.path().join("tls"), dir.path().join("other-ca"));
    let input = dir.path().join("input.txt");
    let text: String = (0..2000).map(|i| format!("w{} common\n", i % 97)).collect();
    std::fs::write(&input, text).expect("input");
    let output = dir.path().join("out");
    let coordinator_tls = member_tls_flags(&tls, 0);
    let mut args: Vec<String> = [
        "mr",
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--app",
        "wc",
    ]
    .map(String::from)
    .into();
    args.extend(["--maps", "4", "--reduces", "2", "--output"].map(String::from));
    args.extend([path(&output).to_owned(), path(&input).to_owned()]);
    args.extend(coordinator_tls);
    let mut cmd = synod();
    cmd.args(&args).env("RUST_LOG", "info");
    let mut coordinator =
        Server::start_command(cmd, "coordinator listening on ", Duration::from_secs(20));
    let addr = coordinator.addr.clone();

    // A worker with a certificate from another CA fails its TLS handshake and gives up.
    let intruder = worker(&addr, &member_tls_flags(&other, 1))
        .output()
        .expect("running the intruder");
    assert!(!intruder.status.success());
    assert!(
        stderr(&intruder).contains("refused this worker"),
        "{}",
        stderr(&intruder)
    );
    wait_for_log(&coordinator, "TLS handshake failed");
    // A plain worker is refused at the handshake (it keeps trying until it is stopped).
    let plain = Proc(
        worker(&addr, &[])
            .stderr(Stdio::null())
            .spawn()
            .expect("plain worker"),
    );
    wait_for_log(&coordinator, "refused a plain connection from a client");
    drop(plain);

    // Their logs go to files, read once they exited.
    let log_file = |id: u64| dir.path().join(format!("worker-{id}.log"));
    let good: Vec<Proc> = (1..=2)
        .map(|id| {
            let log = std::fs::File::create(log_file(id)).expect("log file");
            let mut cmd = worker(&addr, &member_tls_flags(&tls, id));
            Proc(cmd.stderr(log).spawn().expect("worker"))
        })
        .collect();
    assert_eq!(coordinator.wait_exit(Duration::from_secs(60)), Some(0));
    let parts: Vec<_> = std::fs::read_dir(&output).expect("output").collect();
    assert_eq!(parts.len(), 2, "one part per reduce");
    let counted = std::fs::read_to_string(output.join("part-00000")).unwrap_or_default()
        + &std::fs::read_to_string(output.join("part-00001")).unwrap_or_default();
    assert!(counted.contains("common\t2000"), "{counted}");

    let mut logs = coordinator.logs();
    for (id, mut w) in (1..=2).zip(good) {
        assert!(
            w.0.wait().expect("worker exit").success(),
            "worker {id} failed"
        );
        logs.push_str(&std::fs::read_to_string(log_file(id)).expect("worker log"));
    }
    logs.push_str(&stderr(&intruder));
    for secret in key_lines(&tls).iter().chain(&key_lines(&other)) {
        assert!(
            !logs.contains(secret.as_str()),
            "a private key appears in the logs"
        );
    }
}

/// The child processes of process `pid` (from every thread's list: any may have spawned).
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .map(|p| p.parse().expect("a pid"))
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[test]
fn a_local_run_admits_only_its_own_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("input.txt");
    let text: String = (0..20_000)
        .map(|i| format!("w{} common\n", i % 97))
        .collect();
    std::fs::write(&input, text).expect("input");
    let output = dir.path().join("out");
    let mut cmd = synod();
    cmd.args([
        "mr",
        "run",
        "--workers",
        "1",
        "--app",
        "wc",
        "--reduces",
        "2",
    ])
    .args([
        "--http",
        "127.0.0.1:0",
        "--output",
        path(&output),
        path(&input),
    ])
    .env("RUST_LOG", "warn");
    let mut job = Server::start_command(cmd, "status page: ", Duration::from_secs(20));
    // Its only worker is stopped as soon as it runs as a worker, so the job waits while
    // outsiders try to take part. A child caught between fork and exec still shows the
    // parent's command line: it is let go on to its exec and caught again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (own, args) = loop {
        assert!(Instant::now() < deadline, "mr run started no worker");
        if let Some(&pid) = children(job.child.id()).first() {
            signal_pid(pid, "STOP");
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a == "--coordinator") {
                break (pid, args);
            }
            signal_pid(pid, "CONT");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let flag = |name: &str| {
        let at = args.iter().position(|a| a == name);
        at.and_then(|i| args.get(i + 1)).cloned()
    };
    let coordinator = flag("--coordinator").expect("the worker's --coordinator");
    let cert = flag("--tls-cert").expect("the worker has a certificate");
    // A plain worker is refused (it keeps trying until it is stopped), and so is one with a
    // certificate from another CA.
    let plain = Proc(
        worker(&coordinator, &[])
            .stderr(Stdio::null())
            .spawn()
            .expect("plain worker"),
    );
    wait_for_log(&job, "refused a plain connection from a client");
    drop(plain);
    let other = member_tls_flags(&dir.path().join("other-ca"), 1);
    let intruder = worker(&coordinator, &other)
        .output()
        .expect("running the intruder");
    assert!(
        stderr(&intruder).contains("refused this worker"),
        "{}",
        stderr(&intruder)
    );
    wait_for_log(&job, "TLS handshake failed");
    signal_pid(own, "CONT");
    assert_eq!(
        job.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        job.logs()
    );
    let counted = std::fs::read_to_string(output.join("part-00000")).unwrap_or_default()
        + &std::fs::read_to_string(output.join("part-00001")).unwrap_or_default();
    assert!(counted.contains("common\t20000"), "{counted}");
    assert!(
        !Path::new(&cert).exists(),
        "the run's certificates are removed when it ends"
    );
}
