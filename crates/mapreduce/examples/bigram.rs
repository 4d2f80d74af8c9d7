//! Your own MapReduce application: character bigram counts, run by the same coordinator and
//! worker machinery as the built-in ones.
//!
//! ```text
//! cargo run --example bigram -- sequential OUTPUT_DIR INPUT...
//! cargo run --example bigram -- run OUTPUT_DIR INPUT...        # coordinator + 2 worker processes
//! ```
//!
//! Three steps: implement [`App`], register it under a name in a [`Registry`], and make the
//! program able to act as a worker (here: `bigram worker --coordinator ADDR --work-dir DIR`),
//! because workers build the application from its name and must know it too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use synod_mapreduce::coordinator::CoordinatorConfig;
use synod_mapreduce::service::{local, worker};
use synod_mapreduce::{plan, run_sequential, App, AppSpec, JobConfig, MapInput, Registry};

/// Counts pairs of adjacent characters within each whitespace-separated word ("the" gives
/// "th" and "he").
struct Bigrams;

impl App for Bigrams {
    fn map(&self, input: &MapInput<'_>, emit: &mut dyn FnMut(&[u8], &[u8])) {
        let text = String::from_utf8_lossy(input.contents);
        for word in text.split_whitespace() {
            let chars: Vec<char> = word.chars().collect();
            for pair in chars.windows(2) {
                let key: String = pair.iter().collect();
                emit(key.as_bytes(), b"1");
            }
        }
    }

    fn reduce(&self, _key: &[u8], values: &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8> {
        let sum: u64 = values
            .filter_map(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
            .sum();
        sum.to_string().into_bytes()
    }

    /// Sums can be taken in parts on the map side.
    fn has_combiner(&self) -> bool {
        true
    }
}

fn registry() -> Registry {
    Registry::builtin().with("bigram", |_| Ok(Arc::new(Bigrams)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Runtime::new()?;
    match args.first().map(String::as_str) {
        Some("worker") if args.len() == 5 => {
            let opts = worker::WorkerOptions {
                coordinator: args[2].clone(),
                listen: "127.0.0.1:0".parse()?,
                work_dir: PathBuf::from(&args[4]),
                cfg: Default::default(),
                connect_timeout: Duration::from_secs(10),
                tls: None,
            };
            rt.block_on(worker::run(opts, registry()))?;
        }
        Some(mode @ ("run" | "sequential")) if args.len() >= 3 => {
            let inputs = args[2..].iter().map(PathBuf::from).collect();
            let mut cfg = JobConfig::new(AppSpec::new("bigram"), inputs, PathBuf::from(&args[1]));
            cfg.reduces = 4;
            let (plan, app) = plan(&cfg, &registry())?;
            if mode == "sequential" {
                run_sequential(app.as_ref(), &plan)?;
            } else {
                let exe = std::env::current_exe()?;
                let command: local::WorkerCommand =
                    Box::new(move |coordinator: &str, work: &Path| {
                        let mut c = tokio::process::Command::new(&exe);
                        c.args(["worker", "--coordinator", coordinator, "--work-dir"])
                            .arg(work);
                        c
                    });
                let (tx, _rx) = tokio::sync::watch::channel(None);
                rt.block_on(local::run(
                    plan,
                    2,
                    CoordinatorConfig::default(),
                    command,
                    tx,
                    None,
                ))?;
            }
            println!("bigram counts written to {}", args[1]);
        }
        _ => {
            eprintln!("usage: bigram (sequential|run) OUTPUT_DIR INPUT... | bigram worker --coordinator ADDR --work-dir DIR");
            std::process::exit(2);
        }
    }
    Ok(())
}
