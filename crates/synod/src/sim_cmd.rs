//! `synod sim`: runs a course scenario, or a random fault schedule, on the deterministic
//! simulator and writes the protocol viewer: one self-contained HTML page (inline script and
//! style, the run embedded as JSON) with a message-sequence timeline per node that a learner
//! steps through and filters. The same scenario and seed always give the same page, byte for
//! byte.
//!
//! `--json` prints the recorded run instead of a summary; `--history` writes the clients'
//! operations as a `synod check` history whose every line names the scenario and the seed, so
//! `synod check --html` can link the check's report to the viewer of the run it came from.
//!
//! Exit codes: 0 the scenario ran, 1 it got stuck (a step that must happen did not) or an
//! output could not be written, 2 bad arguments.

mod clerk_node;
mod scenarios;
mod trace;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use serde::Serialize;
use synod_check::kv::KvInput;
use synod_sim::RecordedOp;

use scenarios::{find, SCENARIOS};
use trace::Trace;

/// The page, with the run's JSON in place of [`TRACE_SLOT`].
const VIEWER_PAGE: &str = include_str!("sim_cmd/viewer.html");
const TRACE_SLOT: &str = "/*TRACE*/null";

#[derive(clap::Args)]
pub struct SimArgs {
    /// The scenario to run (`synod sim --list` lists them).
    #[arg(required_unless_present = "list", value_parser = scenario_names())]
    scenario: Option<String>,
    /// The seed: every delay, loss and random choice of the run comes from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the protocol viewer here (self-contained; open it in any browser).
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    /// Print the recorded run (nodes, counts, events) as JSON instead of a summary line.
    #[arg(long)]
    json: bool,
    /// Write the clients' operations as JSON lines for `synod check`; each line names the
    /// scenario and the seed. Only scenarios with clients have a history.
    #[arg(long, value_name = "HISTORY.jsonl")]
    history: Option<PathBuf>,
    /// List the scenarios, one a line.
    #[arg(long)]
    list: bool,
}

/// The scenarios' names, for clap to accept (and to list when given another).
fn scenario_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(SCENARIOS.iter().map(|s| s.name))
}

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        for scenario in SCENARIOS {
            println!("{:<16} {}", scenario.name, scenario.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.scenario.as_deref().unwrap_or_default();
    // Clap accepted only the scenarios' names.
    let scenario = find(name).context("an unknown scenario passed the argument parser")?;
    if args.history.is_some() && !scenario.clients {
        bail!("scenario {name} has no clients, so no history to write");
    }
    let outcome = scenario.run(args.seed)?;
    let trace = &outcome.trace;
    if let Some(path) = &args.html {
        write_file(path, &viewer_page(trace))?;
    }
    if let (Some(path), Some(history)) = (&args.history, &outcome.history) {
        write_file(path, &history_lines(name, args.seed, history))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(trace)?)?;
    } else {
        writeln!(out, "{}", summary(trace))?;
        if let Some(path) = &args.html {
            writeln!(out, "viewer written to {}", path.display())?;
        }
        if let Some(path) = &args.history {
            writeln!(out, "history written to {}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line: the scenario, the seed, and how many events of each kind it recorded.
fn summary(trace: &Trace) -> String {
    let c = &trace.counts;
    format!(
        "{} seed {}: {} nodes, {} events ({} sends, {} deliveries, {} drops, {} timers, {} crashes, \
         {} restarts, {} partitions, {} faults, {} decisions){}",
        trace.scenario,
        trace.seed,
        trace.nodes.len(),
        c.events,
        c.send,
        c.deliver,
        c.drop,
        c.timer,
        c.crash,
        c.restart,
        c.partition,
        c.fault,
        c.decision,
        if trace.truncated {
            format!("; recording stopped at {} events", trace::MAX_EVENTS)
        } else {
            String::new()
        }
    )
}

/// The viewer page for `trace`. The JSON goes inside a `<script>`, so every `<` is escaped
/// (`\u003c` is the same character to JSON) and no message text can close the script.
fn viewer_page(trace: &Trace) -> String {
    // A trace is plain data (strings and integers): serializing it cannot fail.
    let json = serde_json::to_string(trace).expect("a trace serializes");
    VIEWER_PAGE.replace(TRACE_SLOT, &json.replace('<', "\\u003c"))
}

/// One line of a history written by `synod sim --history`: the checker's fields, plus where
/// the run came from (which `synod check` ignores while checking).
#[derive(Serialize)]
struct HistoryLine<'a> {
    client: u64,
    op: &'static str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    call: u64,
    #[serde(rename = "return")]
    ret: Option<u64>,
    scenario: &'a str,
    seed: u64,
}

fn history_lines(scenario: &str, seed: u64, ops: &[RecordedOp<KvInput, String>]) -> String {
    let mut text = String::new();
    for op in ops {
        let (name, key, value) = match &op.input {
            KvInput::Get { key } => ("get", key, None),
            KvInput::Put { key, value } => ("put", key, Some(value.as_str())),
            KvInput::Append { key, value } => ("append", key, Some(value.as_str())),
        };
        let line = HistoryLine {
            client: op.client,
            op: name,
            key,
            value,
            output: op.output.as_deref().filter(|_| name == "get"),
            call: op.call,
            ret: op.ret,
            scenario,
            seed,
        };
        text.push_str(&serde_json::to_string(&line).expect("a history line serializes"));
        text.push('\n');
    }
    text
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Where a history written by `synod sim --history` came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOrigin {
    pub scenario: String,
    pub seed: u64,
}

impl SimOrigin {
    /// The origin named by the first line of `history`, if it is a simulator history of a
    /// scenario this binary knows.
    pub fn of_history(history: &str) -> Option<SimOrigin> {
        let first = history.lines().find(|l| !l.trim().is_empty())?;
        let line: serde_json::Value = serde_json::from_str(first).ok()?;
        let scenario = line.get("scenario")?.as_str()?;
        let seed = line.get("seed")?.as_u64()?;
        find(scenario).map(|s| SimOrigin {
            scenario: s.name.to_owned(),
            seed,
        })
    }

    /// The command that writes this run's viewer to `out`.
    pub fn command(&self, out: &Path) -> String {
        format!(
            "synod sim {} --seed {} --html {}",
            self.scenario,
            self.seed,
            out.display()
        )
    }

    /// Runs the scenario again (the run is a function of the seed) and writes its viewer.
    pub fn write_viewer(&self, out: &Path) -> anyhow::Result<()> {
        let scenario = find(&self.scenario).context("unknown scenario")?;
        let outcome = scenario.run(self.seed)?;
        write_file(out, &viewer_page(&outcome.trace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_page_and_different_seeds_differ() {
        for scenario in SCENARIOS {
            let page = |seed| viewer_page(&scenario.run(seed).expect("scenario runs").trace);
            let first = page(3);
            assert_eq!(first, page(3), "{}: seed 3 twice", scenario.name);
            assert_ne!(first, page(4), "{}: seeds 3 and 4", scenario.name);
            assert!(
                !first.contains(TRACE_SLOT),
                "{}: the data slot is filled",
                scenario.name
            );
        }
    }

    #[test]
    fn every_scenario_records_what_it_is_about() {
        for scenario in SCENARIOS {
            let outcome = scenario.run(1).expect("scenario runs");
            let trace = &outcome.trace;
            let c = &trace.counts;
            assert!(!trace.truncated, "{}: recording truncated", scenario.name);
            assert!(
                c.send > 0 && c.deliver > 0 && c.decision > 0,
                "{}: {c:?}",
                scenario.name
            );
            let faults = c.crash + c.partition + c.fault + c.drop;
            assert!(faults > 0, "{}: no fault recorded: {c:?}", scenario.name);
            let sends = trace.events.iter().filter(|e| e.kind == "send").count();
            let ends = trace
                .events
                .iter()
                .filter(|e| e.kind == "deliver" || e.kind == "drop")
                .count();
            assert!(ends <= sends, "{}: more arrivals than sends", scenario.name);
            assert_eq!(
                outcome.history.is_some(),
                scenario.clients,
                "{}",
                scenario.name
            );
        }
    }

    #[test]
    fn a_sim_history_names_its_origin_and_others_do_not() {
        let outcome = find("pb-failover").unwrap().run(5).unwrap();
        let lines = history_lines("pb-failover", 5, outcome.history.as_ref().unwrap());
        assert_eq!(
            SimOrigin::of_history(&lines),
            Some(SimOrigin {
                scenario: "pb-failover".into(),
                seed: 5
            })
        );
        let plain =
            r#"{"client": 1, "op": "get", "key": "k", "output": "", "call": 1, "return": 2}"#;
        assert_eq!(SimOrigin::of_history(plain), None);
        let unknown =
            r#"{"client": 1, "op": "get", "key": "k", "call": 1, "scenario": "nope", "seed": 1}"#;
        assert_eq!(SimOrigin::of_history(unknown), None);
    }
}
