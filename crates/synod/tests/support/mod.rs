//! Helpers for tests that run `synod` as real processes: spawn a server and learn its address,
//! send it signals, and never leave a process behind.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod browser;
pub mod load;
pub mod resp;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The `synod` binary under test.
pub fn synod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_synod"))
}

/// Runs `synod ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    synod().args(args).output().expect("running synod")
}

/// A server process that is killed when dropped, so a failing test leaves nothing running.
pub struct Server {
    pub child: Child,
    /// What the server printed on its first stdout line matching the expected prefix.
    pub addr: String,
    /// The stdout lines printed before that one.
    pub earlier: Vec<String>,
    /// Later stdout lines, as they come.
    lines: mpsc::Receiver<String>,
    /// Everything written on stderr so far, when started with [`Server::start_logged`].
    logs: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `synod ARGS` and waits (up to 10 s) for a stdout line starting with `prefix`;
    /// the rest of that line is the address. Stderr goes to the test's stderr.
    pub fn start(args: &[&str], prefix: &str) -> Server {
        let mut cmd = synod();
        cmd.args(args);
        Self::launch(cmd, prefix, false, Duration::from_secs(10))
    }

    /// Like [`Server::start`], but keeps stderr for [`Server::logs`], and waits up to
    /// `limit` for the line.
    pub fn start_logged(args: &[&str], prefix: &str, limit: Duration) -> Server {
        let mut cmd = synod();
        cmd.args(args);
        Self::launch(cmd, prefix, true, limit)
    }

    /// Like [`Server::start_logged`], with extra environment variables, waiting up to 60 s.
    pub fn start_logged_env(args: &[&str], env: &[(&str, &str)], prefix: &str) -> Server {
        let mut cmd = synod();
        cmd.args(args).envs(env.iter().copied());
        Self::launch(cmd, prefix, true, Duration::from_secs(60))
    }

    /// Like [`Server::start_logged`], for a command the caller built: synod run through
    /// another program, say.
    pub fn start_command(cmd: Command, prefix: &str, limit: Duration) -> Server {
        Self::launch(cmd, prefix, true, limit)
    }

    fn launch(mut cmd: Command, prefix: &str, capture: bool, limit: Duration) -> Server {
        let stderr = if capture {
            Stdio::piped()
        } else {
            Stdio::inherit()
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawning synod");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let logs = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let mut server = Server {
            child,
            addr: String::new(),
            earlier: Vec::new(),
            lines,
            logs,
        };
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match server.lines.recv_timeout(left) {
                Ok(line) => match line.strip_prefix(prefix) {
                    Some(rest) => {
                        server.addr = rest.trim().to_owned();
                        return server;
                    }
                    None => server.earlier.push(line),
                },
                Err(_) => {
                    let logs = server.logs();
                    panic!(
                        "server {cmd:?} did not print {prefix:?} within {limit:?}; stderr: {logs}"
                    );
                }
            }
        }
    }

    /// Waits up to `limit` for the next stdout line starting with `prefix` (skipping others)
    /// and returns the whole line.
    pub fn next_line(&self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
    }

    /// What the server wrote on stderr so far (empty unless started with `start_logged`).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) {
        signal_pid(self.child.id(), name);
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the server");
    }

    /// Waits up to `limit` for the process to exit by itself and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("polling the server") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal by name (`STOP`, `CONT`, `TERM`, `KILL`) to process `pid`.
pub fn signal_pid(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Whether process `pid` exists (a zombie counts: it has not been reaped).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Raises this process's soft limit on open files as far as the hard limit allows (children
/// inherit it) and returns the new soft limit, for tests that open many connections.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        limit.rlim_cur = limit.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// The resident memory of process `pid` in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Runs `cmd` to its end and returns its exit code and its peak resident memory in KiB, exact
/// (the kernel's `ru_maxrss` for that one child, from `wait4`), where polling /proc would miss
/// a short peak. Its output goes wherever `cmd` sends it.
pub fn run_measuring_peak_rss(mut cmd: Command) -> (Option<i32>, u64) {
    let child = cmd.spawn().expect("starting the command");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data the kernel fills in; `pid` is our own unwaited child, and
    // `child` is never waited through std afterwards (dropping a `Child` does not wait).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss as u64)
}

/// Distinct free ports, found by binding port 0 (and releasing it just before use).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// The comma-separated list of `127.0.0.1:PORT` addresses for `ports`, as `--peers`,
/// `--servers` and `--ctl` take it.
pub fn loopback_list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `synod kv serve` arguments for replica `id` of `peers`, its data in `dir/r{id}` and its
/// RESP front on loopback port `resp`, plus `flag` (`--bootstrap`, `--rejoin`) if given.
pub fn kv_replica_args(
    id: usize,
    peers: &str,
    dir: &Path,
    resp: u16,
    flag: Option<&str>,
) -> Vec<String> {
    let data = dir.join(format!("r{id}"));
    let mut args = [
        "kv",
        "serve",
        "--id",
        &id.to_string(),
        "--peers",
        peers,
        "--data",
        path(&data),
        "--resp",
        &format!("127.0.0.1:{resp}"),
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(flag.map(str::to_owned));
    args
}

/// Starts replica `id` with its data in `dir/r{id}` (see [`kv_replica_args`]).
pub fn start_kv_replica(
    id: usize,
    peers: &str,
    dir: &Path,
    resp: u16,
    flag: Option<&str>,
) -> Server {
    start_kv_replica_with(id, peers, dir, resp, flag, &[])
}

/// [`start_kv_replica`] with `extra` arguments.
pub fn start_kv_replica_with(
    id: usize,
    peers: &str,
    dir: &Path,
    resp: u16,
    flag: Option<&str>,
    extra: &[&str],
) -> Server {
    let mut args = kv_replica_args(id, peers, dir, resp, flag);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args, &format!("kv replica {id} listening on "))
}

/// The replicas' lines of `synod status` output, without the `membership:` lines that end it.
pub fn replica_lines(status: &str) -> Vec<&str> {
    status
        .lines()
        .filter(|line| !line.starts_with("membership:"))
        .collect()
}

/// The `applied=N` figure of a `synod status` line (the first, given several).
pub fn applied(status: &str) -> Option<u64> {
    status
        .split_whitespace()
        .find_map(|w| w.strip_prefix("applied="))
        .and_then(|n| n.parse().ok())
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Issues member `id`'s certificate (naming 127.0.0.1) from the CA in `tls` (created if
/// missing), which must succeed, and returns its `--tls-cert/--tls-key/--tls-ca` flags.
pub fn member_tls_flags(tls: &Path, id: u64) -> Vec<String> {
    let issued = run(&[
        "certs",
        "member",
        "--dir",
        path(tls),
        "--id",
        &id.to_string(),
        "--host",
        "127.0.0.1",
    ]);
    assert!(issued.status.success(), "{}", stderr(&issued));
    let file = |name: String| path(&tls.join(name)).to_owned();
    vec![
        "--tls-cert".into(),
        file(format!("member-{id}.pem")),
        "--tls-key".into(),
        file(format!("member-{id}.key")),
        "--tls-ca".into(),
        file("ca.pem".into()),
    ]
}

/// The private keys' secrets in the TLS directory `tls`: their base64 lines.
pub fn key_lines(tls: &Path) -> Vec<String> {
    let lines: Vec<String> = std::fs::read_dir(tls)
        .expect("tls dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".key"))
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.path()).expect("readable");
            text.lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 16)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(lines.len() >= 2, "no keys found in {}", tls.display());
    lines
}

/// Fails if any of `secrets` appears in `text` (`what` says where), without printing it.
pub fn assert_no_secret(secrets: &[String], text: &str, what: &str) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret appears in {what}"
        );
    }
}
