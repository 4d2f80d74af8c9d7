//! `synod mr` as real processes: a worker killed with SIGKILL in the middle of a job, local
//! runs against the sequential reference, and the bad-input contract (clear message, non-zero
//! exit, no partial output).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{path, run, run_measuring_peak_rss, stderr, synod};

/// About 13 MB of words from a fixed vocabulary, the same every time.
fn write_corpus(p: &Path, lines: usize) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let vocab: Vec<String> = (0..5000)
        .map(|_| {
            let len = 2 + next() % 8;
            (0..len)
                .map(|_| (b'a' + (next() % 26) as u8) as char)
                .collect()
        })
        .collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(p).unwrap());
    for _ in 0..lines {
        let line: Vec<&str> = (0..10)
            .map(|_| vocab[(next() % 5000) as usize].as_str())
            .collect();
        writeln!(out, "{}", line.join(" ")).unwrap();
    }
}

fn parts(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A child process killed on drop, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body.split_once("\r\n\r\n")?.1.to_string())
}

#[test]
fn worker_killed_with_sigkill_mid_job_gives_the_sequential_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.txt");
    write_corpus(&input, 200_000);
    let reference = dir.path().join("reference");
    let job = ["--app", "wc", "--maps", "40", "--reduces", "5"];
    let out = run(&[
        &["mr", "run", "--sequential", "--output", path(&reference)][..],
        &job,
        &[path(&input)],
    ]
    .concat());
    assert!(out.status.success(), "{}", stderr(&out));

    let output = dir.path().join("out");
    let mut coordinator = synod()
        .args([
            "mr",
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--heartbeat-timeout-ms",
            "1000",
        ])
        .args(job)
        .args(["--output", path(&output), path(&input)])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = coordinator.stdout.take().unwrap();
    let mut err_pipe = coordinator.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut coordinator = Proc(coordinator);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut listen, mut http) = (None, None);
    while listen.is_none() || http.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("coordinator announces its addresses");
        if let Some(a) = line.strip_prefix("coordinator listening on ") {
            listen = Some(a.trim().to_string());
        }
        if let Some(a) = line.strip_prefix("status page: http://") {
            http = a.split('/').next().map(str::to_string);
        }
    }
    let (listen, http) = (listen.unwrap(), http.unwrap());
    let workers: Vec<Proc> = (0..3)
        .map(|_| {
            Proc(
                synod()
                    .args([
                        "mr",
                        "worker",
                        "--coordinator",
                        &listen,
                        "--listen",
                        "127.0.0.1:0",
                    ])
                    .env("RUST_LOG", "warn")
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();

    // Wait until the job is well under way, then kill a worker that holds a task and map
    // output.
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the job never got going"
        );
        // Before the first status the page answers 503 with a plain-text body.
        let status = http_get(&http, "/status.json")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
        if let Some(s) = status {
            if s["maps"]["done"].as_u64().unwrap_or(0) >= 4 && s["phase"] == "map" {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut workers = workers.into_iter();
    let mut victim = workers.next().unwrap();
    victim.0.kill().unwrap(); // SIGKILL
    victim.0.wait().unwrap();

    let html = http_get(&http, "/").unwrap();
    assert!(
        html.contains("<h1>MapReduce job:") && html.contains("Workers"),
        "{html}"
    );

    let start = Instant::now();
    let status = loop {
        if let Some(s) = coordinator.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the job did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let logs = logs.join().unwrap();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("lost: no heartbeat"),
        "the kill was noticed: {logs}"
    );
    assert_eq!(
        parts(&output),
        parts(&reference),
        "output identical to the sequential run"
    );
    for mut w in workers {
        assert!(
            w.0.wait().unwrap().success(),
            "surviving workers exit 0 once the job is done"
        );
    }
}

#[test]
fn local_run_matches_sequential_for_every_builtin_app() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.txt");
    std::fs::write(&a, "The cat and the hat.\nA cat sat.\n").unwrap();
    std::fs::write(&b, b"the end\xffand \xc3\xa9t\xc3\xa9\n").unwrap();
    for app in [
        &["--app", "wc"][..],
        &["--app", "ii"],
        &["--app", "grep", "--pattern", "cat|end"],
    ] {
        let seq = dir.path().join(format!("seq-{}", app[1]));
        let dist = dir.path().join(format!("dist-{}", app[1]));
        let common = [&["--maps", "3", "--reduces", "2"][..], app].concat();
        let s = run(&[
            &["mr", "run", "--sequential", "--output", path(&seq)][..],
            &common,
            &[path(&a), path(&b)],
        ]
        .concat());
        assert!(s.status.success(), "{}", stderr(&s));
        let d = run(&[
            &["mr", "run", "--workers", "2", "--output", path(&dist)][..],
            &common,
            &[path(&a), path(&b)],
        ]
        .concat());
        assert!(d.status.success(), "{}", stderr(&d));
        assert_eq!(parts(&dist), parts(&seq), "{app:?}");
        assert_eq!(
            parts(&dist)
                .iter()
                .map(|p| p.0.as_str())
                .collect::<Vec<_>>(),
            ["part-00000", "part-00001"]
        );
    }
    let wc: String = parts(&dir.path().join("seq-wc"))
        .into_iter()
        .map(|(_, t)| String::from_utf8_lossy(&t).into_owned())
        .collect();
    let mut lines: Vec<&str> = wc.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "A\t1",
            "The\t1",
            "and\t2",
            "cat\t2",
            "end\t1",
            "hat\t1",
            "sat\t1",
            "the\t2",
            "\u{e9}t\u{e9}\t1"
        ]
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "x\n").unwrap();
    let out = dir.path().join("out");
    let o = path(&out);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--app", "wc", "--output", o, "/no/such/input.txt"],
            "/no/such/input.txt",
        ),
        (
            vec!["--app", "wc", "--output", o, "--reduces", "0", path(&input)],
            "reduce tasks must be at least 1",
        ),
        (
            vec!["--app", "wc", "--output", o, "--maps", "0", path(&input)],
            "map tasks must be at least 1",
        ),
        (
            vec!["--app", "nope", "--output", o, path(&input)],
            "unknown application",
        ),
        (
            vec![
                "--app",
                "grep",
                "--pattern",
                "(",
                "--output",
                o,
                path(&input),
            ],
            "bad --pattern",
        ),
    ];
    for (args, want) in cases {
        for mode in [
            &["mr", "run", "--workers", "1"][..],
            &["mr", "run", "--sequential"],
        ] {
            let r = run(&[mode, &args].concat());
            assert!(!r.status.success(), "{args:?} should fail");
            assert!(stderr(&r).contains(want), "{args:?}: {}", stderr(&r));
            assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
        }
    }
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("part-00000"), "old\n").unwrap();
    let r = run(&[
        "mr",
        "run",
        "--sequential",
        "--app",
        "wc",
        "--output",
        o,
        path(&input),
    ]);
    assert!(!r.status.success());
    assert!(stderr(&r).contains("not empty"), "{}", stderr(&r));
    let r = run(&[
        "mr",
        "run",
        "--sequential",
        "--force",
        "--reduces",
        "1",
        "--app",
        "wc",
        "--output",
        o,
        path(&input),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(
        std::fs::read_to_string(out.join("part-00000")).unwrap(),
        "x\t1\n"
    );
}

/// Writes one line of `bytes` bytes (the words `ab`, and a newline at the end), in 1 MiB writes.
fn write_single_line(p: &Path, bytes: usize) {
    let block = "ab ".repeat((1 << 20) / 3);
    let mut out = std::io::BufWriter::new(std::fs::File::create(p).unwrap());
    let mut left = bytes - 1;
    while left > 0 {
        let n = left.min(block.len());
        out.write_all(&block.as_bytes()[..n]).unwrap();
        left -= n;
    }
    out.write_all(b"\n").unwrap();
}

/// Runs `synod mr run --sequential --app wc` with a 64 MiB per-task budget over `input`,
/// returning the exit code, stderr and peak RSS in MiB.
fn word_count_measured(dir: &Path, input: &Path, output: &Path) -> (Option<i32>, String, u64) {
    let log = dir.join("stderr.log");
    let mut cmd = synod();
    cmd.args([
        "mr",
        "run",
        "--sequential",
        "--app",
        "wc",
        "--memory-mb",
        "64",
    ])
    .args(["--output", path(output), path(input)])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap());
    let (code, peak_kib) = run_measuring_peak_rss(cmd);
    (code, std::fs::read_to_string(&log).unwrap(), peak_kib >> 10)
}

/// What a map task may hold beyond its 64 MiB budget: the process itself (runtime, code,
/// allocator slack), measured at about 10 MiB for a tiny job, with room to spare.
const PROCESS_OVERHEAD_MIB: u64 = 32;
const BUDGET_MIB: u64 = 64;

#[test]
fn a_long_line_keeps_the_memory_budget_or_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // A line of 24 MiB fits the map task's input half of the budget: it is counted whole.
    let fits = dir.path().join("fits.txt");
    write_single_line(&fits, 24 << 20);
    let out = dir.path().join("out-fits");
    let (code, err, peak) = word_count_measured(dir.path(), &fits, &out);
    assert_eq!(code, Some(0), "{err}");
    let counted: String = parts(&out)
        .into_iter()
        .map(|(_, t)| String::from_utf8(t).unwrap())
        .collect();
    assert_eq!(counted, format!("ab\t{}\n", (24 << 20) / 3));
    eprintln!("24 MiB line: peak RSS {peak} MiB, budget {BUDGET_MIB} MiB");
    assert!(
        peak < BUDGET_MIB + PROCESS_OVERHEAD_MIB,
        "peak RSS {peak} MiB"
    );

    // A line of 200 MB does not: the job fails naming the file, the offset and the limit,
    // having held no more than the budget, and leaves no part files.
    let huge = dir.path().join("huge.txt");
    write_single_line(&huge, 200_000_000);
    let out = dir.path().join("out-huge");
    let (code, err, peak) = word_count_measured(dir.path(), &huge, &out);
    eprintln!("200 MB line: peak RSS {peak} MiB, budget {BUDGET_MIB} MiB; {err}");
    assert_ne!(code, Some(0));
    assert!(
        err.contains(path(&huge)) && err.contains("line at offset 0 longer than 33554432 bytes"),
        "{err}"
    );
    assert!(
        peak < BUDGET_MIB + PROCESS_OVERHEAD_MIB,
        "peak RSS {peak} MiB"
    );
    let left: Vec<_> = std::fs::read_dir(&out).map_or(Vec::new(), |d| d.collect());
    assert!(left.is_empty(), "no part files after a failed job");
}
