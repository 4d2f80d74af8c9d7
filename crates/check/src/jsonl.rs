//! Histories as JSON lines, and checking them end to end (what `synod check` runs).
//!
//! One JSON object per line; blank lines are skipped:
//!
//! ```text
//! {"client": 3, "op": "put", "key": "k", "value": "v", "call": 1234, "return": 1240}
//! {"client": 4, "op": "get", "key": "k", "output": "v", "call": 1235, "return": 1250}
//! {"client": 5, "op": "append", "key": "k", "value": "w", "call": 1300, "return": null}
//! ```
//!
//! - `op` is `put`, `append` or `get` for the KV model, `write` or `read` for the register
//!   model (which ignores `key`).
//! - `value` is what a `put`/`append`/`write` writes; `output` is what a `get`/`read` returned
//!   (a missing key reads as `""`).
//! - `call` and `return` are integer times from one clock, in any unit. A `return` that is
//!   `null` or absent marks an operation with unknown outcome (the client timed out): its
//!   `output`, if any, is ignored.
//!
//! Other fields are ignored, so recorders may add their own.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::kv::{KvInput, KvModel};
use crate::model::{Model, Operation};
use crate::register::{RegisterInput, RegisterModel};
use crate::report::{Analysis, HistoryError, Verdict};

/// Which sequential model to check a history against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Kv,
    Register,
}

impl FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kv" => Ok(ModelKind::Kv),
            "register" => Ok(ModelKind::Register),
            other => Err(format!("unknown model {other:?} (expected kv or register)")),
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::Kv => "kv",
            ModelKind::Register => "register",
        })
    }
}

/// Why a history file could not be checked.
#[derive(Debug, Error)]
pub enum JsonlError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("cannot write {path}: {source}")]
    WriteHtml {
        path: String,
        source: std::io::Error,
    },
}

/// One line as written; checked against the model's operations in [`parse`].
#[derive(Deserialize)]
struct Record {
    client: u64,
    op: String,
    key: Option<String>,
    value: Option<String>,
    output: Option<String>,
    call: u64,
    #[serde(rename = "return")]
    ret: Option<u64>,
}

/// Builds one model's input from a record, or says what is wrong with it.
type InputParser<I> = fn(&Record) -> Result<I, String>;

fn kv_input(r: &Record) -> Result<KvInput, String> {
    let key = r.key.clone().ok_or("missing field `key`")?;
    match r.op.as_str() {
        "get" => Ok(KvInput::Get { key }),
        "put" => Ok(KvInput::Put {
            key,
            value: value_of(r)?,
        }),
        "append" => Ok(KvInput::Append {
            key,
            value: value_of(r)?,
        }),
        other => Err(format!(
            "unknown op {other:?} for the kv model (expected put, append or get)"
        )),
    }
}

fn register_input(r: &Record) -> Result<RegisterInput, String> {
    match r.op.as_str() {
        "read" => Ok(RegisterInput::Read),
        "write" => Ok(RegisterInput::Write(value_of(r)?)),
        other => Err(format!(
            "unknown op {other:?} for the register model (expected read or write)"
        )),
    }
}

fn value_of(r: &Record) -> Result<String, String> {
    r.value
        .clone()
        .ok_or_else(|| format!("{} needs a `value`", r.op))
}

/// Parses a history for a model whose output is the string a read returned.
fn parse<M: Model<Output = String>>(
    model: &M,
    text: &str,
    input: InputParser<M::Input>,
) -> Result<Vec<Operation<M::Input, String>>, JsonlError> {
    let mut ops = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_error = |message: String| JsonlError::Line {
            line: n + 1,
            message,
        };
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(line).map_err(|e| {
            // serde_json places errors at "line 1" of the one line it saw; say the column only.
            let message = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = message.strip_suffix(&suffix).unwrap_or(&message);
            line_error(format!("column {}: {message}", e.column()))
        })?;
        let op_input = input(&record).map_err(line_error)?;
        let output = match record.ret {
            None => None,
            Some(ret) if ret < record.call => {
                return Err(line_error(format!(
                    "returns at {ret}, before its call at {}",
                    record.call
                )))
            }
            Some(_) if model.is_read_only(&op_input) => {
                Some(record.output.clone().ok_or_else(|| {
                    line_error(format!("a completed {} needs an `output`", record.op))
                })?)
            }
            // A write returns nothing; whatever it carries is irrelevant.
            Some(_) => Some(String::new()),
        };
        ops.push(Operation {
            client: record.client,
            input: op_input,
            call: record.call,
            output,
            ret: record.ret,
        });
    }
    Ok(ops)
}

/// Parses a KV history.
pub fn parse_kv(text: &str) -> Result<Vec<Operation<KvInput, String>>, JsonlError> {
    parse(&KvModel, text, kv_input)
}

/// Parses a register history.
pub fn parse_register(text: &str) -> Result<Vec<Operation<RegisterInput, String>>, JsonlError> {
    parse(&RegisterModel, text, register_input)
}

/// What checking a history file found.
#[derive(Debug)]
pub struct Checked {
    pub verdict: Verdict,
    /// A few human-readable lines: the verdict and, if illegal, where it breaks.
    pub summary: String,
}

/// Reads, parses and checks the history at `path`; writes the HTML timeline to `html` if
/// given (whatever the verdict, so a passing history can be looked at too).
pub fn check_file(
    path: &Path,
    kind: ModelKind,
    timeout: Option<Duration>,
    html: Option<&Path>,
) -> Result<Checked, JsonlError> {
    let text = std::fs::read_to_string(path).map_err(|source| JsonlError::Read {
        path: path.display().to_string(),
        source,
    })?;
    match kind {
        ModelKind::Kv => check_history(&KvModel, &parse_kv(&text)?, timeout, html),
        ModelKind::Register => {
            check_history(&RegisterModel, &parse_register(&text)?, timeout, html)
        }
    }
}

fn check_history<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    timeout: Option<Duration>,
    html: Option<&Path>,
) -> Result<Checked, JsonlError> {
    let analysis = crate::analyze(model, history, timeout)?;
    if let Some(out) = html {
        crate::html::write_html(out, model, history, &analysis).map_err(|source| {
            JsonlError::WriteHtml {
                path: out.display().to_string(),
                source,
            }
        })?;
    }
    Ok(Checked {
        verdict: analysis.verdict(),
        summary: summarize(model, history, &analysis),
    })
}

/// The verdict in words, naming for each failed partition the operation that cannot be placed.
pub fn summarize<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    analysis: &Analysis,
) -> String {
    let verdict = analysis.verdict();
    let mut out = format!(
        "{}: {} operations in {} partition(s)\n",
        match verdict {
            Verdict::Ok => "linearizable",
            Verdict::Illegal => "NOT linearizable",
            Verdict::Unknown | Verdict::Skipped => "unknown (time budget exhausted)",
        },
        history.len(),
        analysis.partitions.len()
    );
    for p in &analysis.partitions {
        match (p.verdict, p.stuck) {
            (Verdict::Illegal, Some(stuck)) => {
                let op = &history[stuck];
                let states = crate::checker::states_along(model, history, &p.linearization);
                out.push_str(&format!(
                    "  partition {:?}: after {} of {} operations linearized (state {}), \
                     cannot place {} (client {}, called at {})\n",
                    p.label,
                    p.linearization.len(),
                    p.ops.len() - p.dropped.len(),
                    states
                        .last()
                        .map_or_else(String::new, |s| model.describe_state(s)),
                    model.describe_operation(&op.input, op.output.as_ref()),
                    op.client,
                    op.call,
                ));
            }
            (Verdict::Unknown, _) => {
                out.push_str(&format!("  partition {:?}: search timed out\n", p.label));
            }
            (Verdict::Skipped, _) => {
                out.push_str(&format!(
                    "  partition {:?}: not searched to the end (another partition is \
                     already not linearizable)\n",
                    p.label
                ));
            }
            _ => {}
        }
    }
    out
}
