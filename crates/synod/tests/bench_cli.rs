//! `synod bench` end to end: a tiny run against a cluster it starts itself prints one line
//! per target and the comparison table; the sharded targets, at two read ratios, against a
//! sharded cluster it starts, print a row per target and ratio, grouped by ratio; etcd and Redis are measured when installed and
//! reported as skipped when not; an unreachable target fails the run after the table; bad
//! arguments are refused with a clear error before anything starts. Speed is never
//! asserted: only that operations completed and the figures are there.

mod support;

use support::{run, stderr, stdout, synod};

/// The ops/s figure of a `TARGET: N ops/s p50 ...` line.
fn ops_per_sec(line: &str) -> f64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.get(2), Some(&"ops/s"), "unexpected line {line:?}");
    for label in ["p50", "p99", "p99.9"] {
        let at = words.iter().position(|w| *w == label);
        let figure = at.and_then(|i| words.get(i + 1)?.parse::<f64>().ok());
        assert!(figure.is_some(), "no {label} figure in {line:?}");
    }
    words[1].parse().expect("ops/s is a number")
}

/// Runs a tiny benchmark (4 clients, 1 s after 200 ms of warm-up, 100 keys) with `args`
/// added and the environment variables `env` set, requires it to succeed, and returns its
/// stdout.
fn tiny_bench(args: &[&str], env: &[(&str, &str)]) -> String {
    let common = [
        "bench",
        "--clients",
        "4",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--keys",
        "100",
    ];
    let output = synod()
        .args(common.iter().chain(args))
        .envs(env.iter().copied())
        .output()
        .expect("running synod bench");
    let out = stdout(&output);
    assert!(output.status.success(), "{out}\n{}", stderr(&output));
    out
}

/// The first line of `out` that starts with `prefix`.
fn line(out: &str, prefix: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
        .to_string()
}

#[test]
fn a_tiny_bench_prints_each_target_and_the_table() {
    // An empty PATH hides redis-server, installed or not, so its target is skipped.
    let out = tiny_bench(
        &["--targets", "synod-kv,synod-kv-resp,redis"],
        &[("PATH", "")],
    );
    let line = |prefix: &str| line(&out, prefix);
    assert!(
        line("synod bench: 4 clients, 16-byte keys, 100-byte values").contains("read ratio 0.5")
    );
    assert!(ops_per_sec(&line("synod-kv: ")) > 0.0);
    assert!(ops_per_sec(&line("synod-kv-resp: ")) > 0.0);
    assert_eq!(line("redis: "), "redis: skipped (not installed)");

    let header = line("target ");
    for column in ["ops/s", "p50", "p99", "p99.9", "setup"] {
        assert!(header.contains(column), "{header}");
    }
    let baseline = line("synod-kv ");
    assert!(
        baseline.contains(" 1.00 ") && baseline.ends_with("3 replicas, fsync on, native client")
    );
    assert!(line("synod-kv-resp ").ends_with("Redis protocol"));
    assert!(line("redis ").contains("skipped (not installed)"));
}

#[test]
fn the_sharded_targets_at_two_read_ratios_print_a_row_each() {
    let args = [
        "--read-ratio",
        "0,1",
        "--targets",
        "synod-shardkv,synod-shardkv-resp",
        "--resp-fronts",
        "1",
    ];
    let out = tiny_bench(&args, &[]);
    let line = |prefix: &str| line(&out, prefix);
    for target in ["synod-shardkv", "synod-shardkv-resp"] {
        for ratio in ["0", "1"] {
            let figures = line(&format!("{target} (read ratio {ratio}): "));
            let figures = figures.split_once(": ").expect("a colon").1;
            assert!(ops_per_sec(&format!("{target}: {figures}")) > 0.0);
        }
    }
    // The table: puts first (each group with its own baseline), then gets.
    let rows: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("target "))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 4, "{out}");
    let expected = [
        ("synod-shardkv ", " 0% ", "native client"),
        ("synod-shardkv-resp ", " 0% ", "Redis protocol, 1 front"),
        ("synod-shardkv ", " 100% ", "native client"),
        ("synod-shardkv-resp ", " 100% ", "Redis protocol, 1 front"),
    ];
    for (row, (target, gets, client)) in rows.iter().zip(expected) {
        assert!(row.starts_with(target) && row.contains(gets), "{row}");
        assert!(row.contains("3 controllers, 2 groups of 3") && row.ends_with(client));
    }
    assert!(
        rows[0].contains(" 1.00 ") && rows[2].contains(" 1.00 "),
        "{out}"
    );
}

#[test]
fn bad_arguments_are_refused_with_a_clear_error() {
    let cases: [(&[&str], &str); 5] = [
        (&["--duration", "5x"], "invalid duration \"5x\""),
        (
            &["--resp-fronts", "0"],
            "invalid value '0' for '--resp-fronts",
        ),
        (&["--targets", "synod-kv,mongo"], "invalid value 'mongo'"),
        (
            &["--read-ratio", "2"],
            "--read-ratio must be between 0 and 1",
        ),
        (
            &["--key-size", "2", "--keys", "1000"],
            "--key-size 2 is too small",
        ),
    ];
    for (args, message) in cases {
        let output = run(&[&["bench"], args].concat());
        assert!(!output.status.success(), "{args:?} was accepted");
        let err = stderr(&output);
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(stdout(&output).is_empty(), "{args:?} started a benchmark");
    }
    let unknown = stderr(&run(&["bench", "--targets", "mongo"]));
    assert!(
        unknown.contains(
            "synod-kv, synod-kv-resp, synod-kv-resp-tls, synod-shardkv, synod-shardkv-resp, etcd, \
             redis, all"
        ),
        "{unknown}"
    );
}

#[test]
fn a_target_that_cannot_be_reached_fails_the_run_after_the_table() {
    let port = support::free_ports(1)[0];
    let redis = format!("127.0.0.1:{port}");
    let output = run(&[
        "bench",
        "--targets",
        "redis",
        "--redis",
        &redis,
        "--duration",
        "1s",
    ]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("redis: failed: connecting to {redis}: ")),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("redis "))
        .unwrap_or_default();
    assert!(row.contains("failed: connecting to"), "{out}");
}

/// Whether `program` is on this machine's `PATH`, as `synod bench` looks for it.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[test]
fn etcd_and_redis_are_measured_when_installed_and_skipped_otherwise() {
    let output = run(&[
        "bench",
        "--targets",
        "etcd,redis",
        "--clients",
        "4",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
        "--keys",
        "50",
    ]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}\n{}", stderr(&output));
    for (target, program) in [("etcd", "etcd"), ("redis", "redis-server")] {
        let prefix = format!("{target}: ");
        let line = out
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_default();
        if installed(program) {
            assert!(ops_per_sec(line) > 0.0, "{out}");
        } else {
            assert_eq!(line, format!("{target}: skipped (not installed)"), "{out}");
        }
    }
}
