//! `synod check`: checks a recorded history for linearizability (see `synod_check::jsonl` for
//! the file format) and optionally draws it as an HTML timeline.
//!
//! Exit codes: 0 linearizable, 1 not linearizable, 2 unknown (time budget ran out) or bad input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use synod_check::jsonl::{check_file, ModelKind};
use synod_check::Verdict;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The sequential model: `kv` (ops put/append/get, partitioned by key) or `register`
    /// (ops write/read on one register; `key` is ignored).
    #[arg(long, default_value = "kv")]
    model: ModelKind,
    /// The history, one JSON object per line.
    history: PathBuf,
    /// Write an HTML timeline of the check here (self-contained; open it in any browser).
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    /// Give up after this many seconds and report "unknown" (default: no limit).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    timeout: Option<Duration>,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

pub fn run(args: CheckArgs) -> ExitCode {
    match check_file(
        &args.history,
        args.model,
        args.timeout,
        args.html.as_deref(),
    ) {
        Ok(checked) => {
            print!("{}", checked.summary);
            if let Some(html) = &args.html {
                println!("timeline written to {}", html.display());
            }
            ExitCode::from(match checked.verdict {
                Verdict::Ok => 0,
                Verdict::Illegal => 1,
                Verdict::Unknown | Verdict::Skipped => 2,
            })
        }
        Err(e) => {
            eprintln!("synod check: {}: {e}", args.history.display());
            ExitCode::from(2)
        }
    }
}
