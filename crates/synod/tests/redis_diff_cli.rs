//! synod's Redis fronts checked against Redis itself, in `cargo test` (so in CI): the
//! differential test (scripts/redis_diff.py: seeded command scripts run on `redis-server` and
//! on each service's front, replies compared byte for byte but for the exceptions listed in
//! docs/running.md) and redis-py over every supported command (scripts/redis_py_check.py).
//! Both need the Debian packages `redis-server` and `python3-redis` (`.ci/run` installs them);
//! without them the tests fail, saying so.

use std::path::PathBuf;
use std::process::Command;

/// Seeds (scripts) per service, and commands per script.
const SEEDS: &str = "12";
const COMMANDS: &str = "80";

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name)
}

/// A Python 3 that can import `module`: the one on PATH, else Debian's.
fn python_with(module: &str) -> String {
    for candidate in ["python3", "/usr/bin/python3"] {
        let imports = Command::new(candidate)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|out| out.status.success());
        if imports {
            return candidate.to_owned();
        }
    }
    panic!("no python3 can import {module} (Debian: apt-get install python3-redis)");
}

fn run(python: &str, name: &str, args: &[&str]) {
    assert!(
        Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success()),
        "redis-server is not on PATH (Debian: apt-get install redis-server)"
    );
    let out = Command::new(python)
        .arg(script(name))
        .args(["--synod", env!("CARGO_BIN_EXE_synod")])
        .args(args)
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The seeds and the sizes, for the test's log (and to replay a failure).
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_front_answers_byte_for_byte_as_redis_does_but_for_the_documented_exceptions() {
    run(
        &python_with("socket"),
        "redis_diff.py",
        &["--seeds", SEEDS, "--commands", COMMANDS],
    );
}

#[test]
fn redis_py_runs_every_supported_command_with_pipelines_and_transactions() {
    run(&python_with("redis"), "redis_py_check.py", &[]);
}
