//! Helpers for tests that run `synod` as real processes: spawn a server and learn its address,
//! send it signals, and never leave a process behind.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod resp;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
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
}

impl Server {
    /// Starts `synod ARGS` and waits (up to 10 s) for a stdout line starting with `prefix`;
    /// the rest of that line is the address.
    pub fn start(args: &[&str], prefix: &str) -> Server {
        let mut child = synod()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning synod");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let wanted = prefix.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix(&wanted) {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("server {args:?} did not print {prefix:?} within 10 s");
            }
        };
        Server { child, addr }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
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

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}
