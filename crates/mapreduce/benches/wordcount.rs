//! Word count: `synod mr run`'s machinery (a coordinator and 2 worker processes over TCP)
//! against a single-threaded hash-map word count, on the same generated corpus, in the same
//! run. Prints medians of throughput, the ratio, and peak memory (VmHWM) per worker.
//!
//! `cargo bench -p synod-mapreduce --bench wordcount` uses a 512 MiB corpus (generated once,
//! deterministically, under `target/mr-bench/`). `SYNOD_BENCH_MB=64` makes a quick run;
//! `SYNOD_BENCH_RUNS` sets the number of runs (default 5).
//!
//! The bench binary is its own worker: started as `wordcount worker --coordinator ADDR
//! --work-dir DIR`, it runs the same `service::worker::run` that `synod mr worker` runs.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use synod_mapreduce::apps::for_each_word;
use synod_mapreduce::coordinator::CoordinatorConfig;
use synod_mapreduce::service::{local, worker};
use synod_mapreduce::split::{for_each_chunk, open_inputs, Piece};
use synod_mapreduce::{plan, AppSpec, JobConfig, Registry};

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Deterministic English-looking text: Zipf-distributed words from a fixed vocabulary,
/// sentences with capitals and punctuation, some accented words, ~75-column lines.
fn generate(path: &Path, bytes: u64) {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    const SYLLABLES: &[&str] = &[
        "the", "an", "re", "in", "er", "on", "at", "en", "es", "or", "ti", "is", "it", "al", "ar",
        "st", "to", "nt", "ng", "se", "ha", "ou", "io", "le", "ve", "co", "me", "de", "hi", "ri",
        "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be", "ma", "si", "om", "ur", "é",
        "ü", "ß",
    ];
    let vocab: Vec<String> = (0..60_000)
        .map(|_| {
            let n = 1 + (next() % 4) as usize;
            (0..n)
                .map(|_| {
                    let i = (next() % SYLLABLES.len() as u64) as usize;
                    // Accented syllables are rare.
                    let i = if i >= SYLLABLES.len() - 3 && next() % 8 != 0 {
                        i % 10
                    } else {
                        i
                    };
                    SYLLABLES[i]
                })
                .collect()
        })
        .collect();
    // Zipf(1) cumulative weights over ranks.
    let mut cum = Vec::with_capacity(vocab.len());
    let mut total = 0.0;
    for r in 1..=vocab.len() {
        total += 1.0 / r as f64;
        cum.push(total);
    }
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let (mut written, mut col) = (0u64, 0usize);
    while written < bytes {
        let words = 5 + next() % 16;
        for i in 0..words {
            let x = (next() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let w = &vocab[cum.partition_point(|&c| c < x).min(vocab.len() - 1)];
            let mut word = if i == 0 {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            } else {
                w.clone()
            };
            if i + 1 == words {
                word.push('.');
            } else if next() % 12 == 0 {
                word.push(',');
            }
            if col + word.len() > 75 {
                out.write_all(b"\n").unwrap();
                written += 1;
                col = 0;
            } else if col > 0 {
                out.write_all(b" ").unwrap();
                written += 1;
                col += 1;
            }
            out.write_all(word.as_bytes()).unwrap();
            written += word.len() as u64;
            col += word.len();
        }
    }
    out.write_all(b"\n").unwrap();
    out.flush().unwrap();
}

/// The baseline: one thread, one hash map, the same tokenizer, sorted output written.
fn baseline(input: &Path, out: &Path) -> usize {
    let file = open_inputs(&[input.to_path_buf()]).unwrap().remove(0);
    let piece = Piece {
        file: 0,
        start: 0,
        end: file.size,
        first_line: None,
    };
    let mut counts: HashMap<String, u64> = HashMap::new();
    for_each_chunk(&file, &piece, 8 << 20, |chunk, _| {
        let text = String::from_utf8_lossy(chunk);
        for_each_word(&text, |w| match counts.get_mut(w) {
            Some(c) => *c += 1,
            None => {
                counts.insert(w.to_string(), 1);
            }
        });
        Ok(())
    })
    .unwrap();
    let mut sorted: Vec<(&String, &u64)> = counts.iter().collect();
    sorted.sort();
    let mut w = BufWriter::new(std::fs::File::create(out).unwrap());
    for (k, v) in &sorted {
        writeln!(w, "{k}\t{v}").unwrap();
    }
    sorted.len()
}

fn mapreduce(
    rt: &tokio::runtime::Runtime,
    input: &Path,
    out: &Path,
    workers: usize,
    reports: &Path,
) -> Duration {
    let _ = std::fs::remove_dir_all(out);
    let t = Instant::now();
    let mut cfg = JobConfig::new(
        AppSpec::new("wc"),
        vec![input.to_path_buf()],
        out.to_path_buf(),
    );
    cfg.reduces = 2;
    let (plan, _) = plan(&cfg, &Registry::builtin()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let reports = reports.to_path_buf();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let command: local::WorkerCommand = Box::new(move |coord: &str, work: &Path| {
        let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut c = tokio::process::Command::new(&exe);
        c.args(["worker", "--coordinator", coord, "--work-dir"])
            .arg(work);
        c.stdout(std::fs::File::create(reports.join(format!("worker-{i}.txt"))).unwrap());
        c
    });
    let (tx, _rx) = tokio::sync::watch::channel(None);
    let status = rt
        .block_on(local::run(
            plan,
            workers,
            CoordinatorConfig::default(),
            command,
            tx,
            None,
        ))
        .unwrap();
    let elapsed = t.elapsed();
    eprintln!("  coordinator timeline: {}", status.events.join("; "));
    elapsed
}

/// The same job in one process (`--sequential`): the library's per-task overhead, no
/// parallelism.
fn sequential(input: &Path, out: &Path) -> Duration {
    let _ = std::fs::remove_dir_all(out);
    let t = Instant::now();
    let mut cfg = JobConfig::new(
        AppSpec::new("wc"),
        vec![input.to_path_buf()],
        out.to_path_buf(),
    );
    cfg.reduces = 2;
    let (plan, app) = plan(&cfg, &Registry::builtin()).unwrap();
    synod_mapreduce::run_sequential(app.as_ref(), &plan).unwrap();
    t.elapsed()
}

fn worker_main(args: &[String]) {
    let coordinator = args[args.iter().position(|a| a == "--coordinator").unwrap() + 1].clone();
    let work_dir = PathBuf::from(&args[args.iter().position(|a| a == "--work-dir").unwrap() + 1]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = worker::WorkerOptions {
        coordinator,
        listen: "127.0.0.1:0".parse().unwrap(),
        work_dir,
        cfg: Default::default(),
        connect_timeout: Duration::from_secs(30),
        tls: None,
    };
    rt.block_on(worker::run(opts, Registry::builtin())).unwrap();
    println!("peak_rss_kb {}", peak_rss_kb());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker_main(&args);
    }
    let mb: u64 = std::env::var("SYNOD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let runs: usize = std::env::var("SYNOD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/mr-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join(format!("corpus-{mb}MiB.txt"));
    if std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0) < mb << 20 {
        let t = Instant::now();
        generate(&input, mb << 20);
        eprintln!(
            "generated {} in {:.1} s",
            input.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let size_mb = std::fs::metadata(&input).unwrap().len() as f64 / (1 << 20) as f64;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut base, mut mr, mut seq, mut worker_peaks) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut distinct = 0;
    for run in 0..runs {
        let t = Instant::now();
        distinct = baseline(&input, &dir.join("baseline.txt"));
        base.push(size_mb / t.elapsed().as_secs_f64());
        let reports = dir.join("reports");
        let _ = std::fs::remove_dir_all(&reports);
        std::fs::create_dir_all(&reports).unwrap();
        let d = mapreduce(&rt, &input, &dir.join("out"), 2, &reports);
        mr.push(size_mb / d.as_secs_f64());
        let d = sequential(&input, &dir.join("seq"));
        seq.push(size_mb / d.as_secs_f64());
        for e in std::fs::read_dir(&reports).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
            if let Some(kb) = text.lines().find_map(|l| l.strip_prefix("peak_rss_kb ")) {
                worker_peaks.push(kb.trim().parse::<f64>().unwrap_or(0.0) / 1024.0);
            }
        }
        eprintln!(
            "run {}: baseline {:.1} MB/s, mapreduce {:.1} MB/s",
            run + 1,
            base[run],
            mr[run]
        );
    }
    // The two results must agree: same words, same counts.
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir.join("out")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    let expect = std::fs::read_to_string(dir.join("baseline.txt")).unwrap();
    assert!(
        lines.iter().map(String::as_str).eq(expect.lines()),
        "mapreduce and baseline disagree"
    );
    // Runs are paired (baseline then mapreduce, back to back), so the median of per-run
    // ratios is less sensitive to other load on the machine than the ratio of medians.
    let paired = median(mr.iter().zip(&base).map(|(m, b)| m / b).collect());
    let (b, m, q) = (median(base), median(mr), median(seq));
    println!("word count over {size_mb:.0} MiB ({distinct} distinct words), median of {runs} runs");
    println!("  baseline (1 thread, hash map): {b:8.1} MB/s");
    println!("  synod mr, 2 workers:           {m:8.1} MB/s");
    println!(
        "  ratio:                         {:8.2}x (median of per-run ratios: {paired:.2}x)",
        m / b
    );
    println!("  synod mr --sequential:         {q:8.1} MB/s (one process, for reference)");
    println!(
        "  peak memory per worker:        {:8.1} MiB (max over {} worker runs)",
        worker_peaks.iter().copied().fold(0.0, f64::max),
        worker_peaks.len()
    );
    println!(
        "  peak memory, this process (coordinator + baseline): {:.1} MiB",
        peak_rss_kb() as f64 / 1024.0
    );
}
