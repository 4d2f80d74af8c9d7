//! `synod check`: checks a recorded history for linearizability (see `synod_check::jsonl` for
//! the file format) and optionally draws it as an HTML timeline.
//!
//! A history written by `synod sim --history` names its scenario and seed on every line. For
//! such a history, `--html report.html` also writes the protocol viewer of that very run
//! beside the report (`report.viewer.html`, by running the scenario again: the run is a
//! function of the seed) and opens the report with a link to it and the `synod sim` command
//! that makes it.
//!
//! Exit codes: 0 linearizable, 1 not linearizable, 2 unknown (time budget ran out) or bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use synod_check::jsonl::{check_file, ModelKind};
use synod_check::Verdict;

use crate::sim_cmd::SimOrigin;

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
                match link_viewer(&args.history, html) {
                    Ok(Some(viewer)) => println!("viewer written to {}", viewer.display()),
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("synod check: {e:#}");
                        return ExitCode::from(2);
                    }
                }
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

/// If `history` came from the simulator, writes the viewer of its run beside the report
/// `html` and links the report to it; returns the viewer's path.
fn link_viewer(history: &Path, html: &Path) -> anyhow::Result<Option<PathBuf>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(history)
        .with_context(|| format!("cannot read {}", history.display()))?;
    let Some(origin) = SimOrigin::of_history(&text) else {
        return Ok(None);
    };
    let viewer = html.with_extension("viewer.html");
    origin.write_viewer(&viewer)?;
    let name = viewer
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let banner = format!(
        "<p class=\"sim-origin\" id=\"sim-origin\" style=\"padding:8px 12px;background:#eef2ff;border:1px solid #c7d2fe\">\
         This history comes from the simulator: scenario <b>{scenario}</b>, seed <b>{seed}</b>. \
         <a id=\"viewer-link\" href=\"{href}\">Open the protocol viewer of this run</a> \
         (written beside this report by <code>{command}</code>).</p>",
        scenario = origin.scenario,
        seed = origin.seed,
        href = synod_check::html::esc(&name),
        command = synod_check::html::esc(&origin.command(Path::new(&name))),
    );
    let report =
        std::fs::read_to_string(html).with_context(|| format!("cannot read {}", html.display()))?;
    let report = report.replacen("<body>", &format!("<body>{banner}"), 1);
    std::fs::write(html, report).with_context(|| format!("cannot write {}", html.display()))?;
    Ok(Some(viewer))
}
