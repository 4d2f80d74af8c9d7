//! A picture of a check: one self-contained HTML file (inline CSS, SVG and a line of JS; no
//! network fetches) with a section per partition and a lane per client.
//!
//! Each operation is a bar from its call to its return; an unknown outcome fades out to the
//! right edge. Bars carry their position in the linearization the checker chose (`#3`), a dot
//! marks where each can take effect, and a thin line joins the dots in order. In a failing
//! partition the operation that cannot be placed is red, with a dashed line at its return
//! ("must have happened by here"), and a table below lists every step with the state before
//! and after it. Hovering a bar shows the same details. Failing partitions come first and
//! open; the rest are folded.
//!
//! Times are drawn compressed: every distinct call or return time is one column, so long idle
//! gaps do not squeeze the interesting part.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::checker::states_along;
use crate::jsonl::summarize;
use crate::model::{Model, Operation};
use crate::report::{Analysis, PartitionReport, Verdict};

const LANE_H: u64 = 30;
const BAR_H: u64 = 22;
const LABEL_W: u64 = 90;
/// Column width bounds: narrow columns keep long histories scrollable, wide ones keep short
/// histories' labels readable.
const COL_MIN: u64 = 26;
const COL_MAX: u64 = 90;
/// The width a short history is spread over.
const FIT_W: u64 = 1100;
const TOP: u64 = 24;

/// Writes [`render`]'s page to `path`.
pub fn write_html<M: Model>(
    path: &Path,
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    analysis: &Analysis,
) -> std::io::Result<()> {
    std::fs::write(path, render(model, history, analysis))
}

/// The whole page as a string.
pub fn render<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    analysis: &Analysis,
) -> String {
    let verdict = analysis.verdict();
    let clients: Vec<u64> = history
        .iter()
        .map(|op| op.client)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut page = String::new();
    let (class, title) = match verdict {
        Verdict::Ok => ("ok", "Linearizable"),
        Verdict::Illegal => ("bad", "NOT linearizable"),
        Verdict::Unknown | Verdict::Skipped => ("unknown", "Unknown: the time budget ran out"),
    };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>synod check: {title}</title><style>{STYLE}</style></head><body>\
         <h1 class=\"{class}\">{title}</h1><pre class=\"summary\">{}</pre>\
         <p class=\"legend\"><span class=\"sw lin\"></span> linearized (number = order) \
         <span class=\"sw stuck\"></span> cannot be placed \
         <span class=\"sw rest\"></span> not reached \
         <span class=\"sw dropped\"></span> dropped (read with unknown outcome) \
         &nbsp; Bars run from call to return; hover one for its states.</p>",
        esc(&summarize(model, history, analysis))
    );
    // Failing partitions first, then undecided, then passing ones, then those not searched.
    let rank = |p: &&PartitionReport| match p.verdict {
        Verdict::Illegal => 0,
        Verdict::Unknown => 1,
        Verdict::Ok => 2,
        Verdict::Skipped => 3,
    };
    let mut partitions: Vec<&PartitionReport> = analysis.partitions.iter().collect();
    partitions.sort_by_key(rank);
    for (n, p) in partitions.into_iter().enumerate() {
        section(&mut page, n, model, history, &clients, p);
    }
    page.push_str(
        "<script>var s=document.querySelector('.stuckbar');\
         if(s)s.scrollIntoView({block:'nearest',inline:'center'});</script></body></html>\n",
    );
    page
}

fn section<M: Model>(
    page: &mut String,
    n: usize,
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    clients: &[u64],
    p: &PartitionReport,
) {
    let (status, open) = match p.verdict {
        Verdict::Illegal => ("NOT linearizable", " open"),
        Verdict::Unknown => ("undecided (timed out)", " open"),
        Verdict::Ok => ("linearizable", ""),
        Verdict::Skipped => ("not searched (another key is already not linearizable)", ""),
    };
    let label = if p.label.is_empty() {
        "history".to_string()
    } else {
        format!("key {:?}", p.label)
    };
    let _ = write!(
        page,
        "<details{open} class=\"part\"><summary><b>{}</b> — {status} ({} operations)</summary>\
         <div class=\"scroll\">",
        esc(&label),
        p.ops.len()
    );
    let states = states_along(model, history, &p.linearization);
    timeline(page, n, model, history, clients, p, &states);
    page.push_str("</div>");
    steps_table(page, model, history, p, &states);
    page.push_str("</details>");
}

/// The SVG: lanes, bars, linearization points and the failure marker.
fn timeline<M: Model>(
    page: &mut String,
    n: usize,
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    clients: &[u64],
    p: &PartitionReport,
    states: &[M::State],
) {
    let times: Vec<u64> = p
        .ops
        .iter()
        .flat_map(|&i| [Some(history[i].call), history[i].ret])
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let col_w = (FIT_W / (times.len() as u64 + 1)).clamp(COL_MIN, COL_MAX);
    let col = |t: u64| times.partition_point(|&x| x < t) as u64;
    let x_of = |t: u64| LABEL_W + col(t) * col_w + col_w / 2;
    let end_x = LABEL_W + (times.len() as u64 + 1) * col_w;
    let lane_of = |client: u64| clients.partition_point(|&c| c < client) as u64;
    let width = end_x + col_w;
    let height = TOP + clients.len() as u64 * LANE_H + 8;
    let _ = write!(
        page,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\">"
    );
    for (lane, client) in clients.iter().enumerate() {
        let y = TOP + lane as u64 * LANE_H;
        let _ = write!(
            page,
            "<rect class=\"lane{}\" x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{LANE_H}\"/>\
             <text class=\"client\" x=\"6\" y=\"{}\">client {client}</text>",
            lane % 2,
            y + LANE_H / 2 + 4
        );
    }
    // A few time ticks, so the compressed axis can still be read.
    let every = (times.len() / 12).max(1);
    for (c, t) in times.iter().enumerate().step_by(every) {
        let x = LABEL_W + c as u64 * col_w + col_w / 2;
        let _ = write!(page, "<text class=\"tick\" x=\"{x}\" y=\"14\">{t}</text>");
    }
    let order_of = |i: usize| p.linearization.iter().position(|&j| j == i);
    let bar_y = |op: &Operation<M::Input, M::Output>| {
        TOP + lane_of(op.client) * LANE_H + (LANE_H - BAR_H) / 2
    };
    for &i in &p.ops {
        let op = &history[i];
        let x1 = x_of(op.call);
        let x2 = op.ret.map_or(end_x, x_of).max(x1 + 8);
        let y = bar_y(op);
        let desc = model.describe_operation(&op.input, op.output.as_ref());
        let ret = op
            .ret
            .map_or("never (unknown outcome)".to_string(), |r| r.to_string());
        let mut tip = format!(
            "client {}: {desc}\ncall {}, return {ret}",
            op.client, op.call
        );
        let (class, text) = if let Some(k) = order_of(i) {
            let _ = write!(
                tip,
                "\nstep #{}: state {} → {}",
                k + 1,
                model.describe_state(&states[k]),
                states
                    .get(k + 1)
                    .map_or(String::new(), |s| model.describe_state(s))
            );
            ("lin", format!("#{} {desc}", k + 1))
        } else if p.stuck == Some(i) {
            let _ = write!(
                tip,
                "\nCANNOT BE PLACED: after step #{} the state is {}",
                p.linearization.len(),
                states
                    .last()
                    .map_or(String::new(), |s| model.describe_state(s))
            );
            ("stuck stuckbar", format!("✗ {desc}"))
        } else if p.dropped.contains(&i) {
            tip.push_str("\ndropped: a read with unknown outcome says nothing");
            ("dropped", desc)
        } else {
            tip.push_str("\nnot linearized in the longest prefix found");
            ("rest", desc)
        };
        let open_end = if op.ret.is_none() { " open" } else { "" };
        let _ = write!(
            page,
            "<svg class=\"bar {class}{open_end}\" id=\"op{n}-{i}\" x=\"{x1}\" y=\"{y}\" \
             width=\"{}\" height=\"{BAR_H}\"><title>{}</title>\
             <rect width=\"100%\" height=\"100%\" rx=\"4\"/>\
             <text x=\"4\" y=\"{}\">{}</text></svg>",
            x2 - x1,
            esc(&tip),
            BAR_H / 2 + 4,
            esc(&text)
        );
    }
    // Linearization points, taken as early as each operation allows: the order is then
    // visibly one that respects real time.
    let mut path = String::new();
    let mut last_x = 0;
    for &i in &p.linearization {
        let op = &history[i];
        let x = (x_of(op.call) + 4).max(last_x + 4);
        last_x = x;
        let y = bar_y(op) + BAR_H;
        let _ = write!(path, "{}{x},{y}", if path.is_empty() { "M" } else { " L" });
        let _ = write!(
            page,
            "<circle class=\"point\" cx=\"{x}\" cy=\"{y}\" r=\"3\"/>"
        );
    }
    if !path.is_empty() {
        let _ = write!(page, "<path class=\"order\" d=\"{path}\"/>");
    }
    if let Some(ret) = p.stuck.and_then(|i| history[i].ret) {
        let x = x_of(ret);
        let _ = write!(
            page,
            "<line class=\"deadline\" x1=\"{x}\" y1=\"{TOP}\" x2=\"{x}\" y2=\"{}\"/>",
            height - 4
        );
    }
    page.push_str("</svg>");
}

/// The linearization step by step, ending with the operation that cannot follow.
fn steps_table<M: Model>(
    page: &mut String,
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    p: &PartitionReport,
    states: &[M::State],
) {
    page.push_str(
        "<table><tr><th>#</th><th>client</th><th>operation</th><th>call</th><th>return</th>\
         <th>state before</th><th>state after</th></tr>",
    );
    let describe = |k: usize| {
        states
            .get(k)
            .map_or(String::new(), |s| model.describe_state(s))
    };
    let mut row = |class: &str,
                   num: String,
                   op: &Operation<M::Input, M::Output>,
                   before: &str,
                   after: &str| {
        let _ = write!(
            page,
            "<tr class=\"{class}\"><td>{num}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            op.client,
            esc(&model.describe_operation(&op.input, op.output.as_ref())),
            op.call,
            op.ret.map_or("?".to_string(), |r| r.to_string()),
            esc(before),
            esc(after)
        );
    };
    for (k, &i) in p.linearization.iter().enumerate() {
        row(
            "",
            (k + 1).to_string(),
            &history[i],
            &describe(k),
            &describe(k + 1),
        );
    }
    if let Some(i) = p.stuck {
        let before = describe(p.linearization.len());
        row(
            "stuckrow",
            "✗".to_string(),
            &history[i],
            &before,
            "impossible here",
        );
    }
    page.push_str("</table>");
}

/// `s` made safe inside an HTML element or a quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:16px;color:#222}\
h1{padding:8px 12px;border-radius:6px;font-size:20px}\
h1.ok{background:#d8f5d8}h1.bad{background:#fbd5d5;color:#900}h1.unknown{background:#eee}\
pre.summary{background:#f6f6f6;padding:8px;white-space:pre-wrap}\
.legend .sw{display:inline-block;border:1px solid #999;width:14px;height:10px;border-radius:2px;margin:0 4px 0 12px}\
.sw.lin,.bar.lin rect{fill:#cfe3ff;background:#cfe3ff;stroke:#3b6fb6}\
.sw.stuck,.bar.stuck rect{fill:#ff6b6b;background:#ff6b6b;stroke:#900;stroke-width:3}\
.sw.rest,.bar.rest rect{fill:#e4e4e4;background:#e4e4e4;stroke:#999}\
.sw.dropped,.bar.dropped rect{fill:#fff;background:#fff;stroke:#bbb;stroke-dasharray:3 3}\
.bar.open rect{stroke-dasharray:6 3}\
.bar text{font:12px ui-monospace,monospace;fill:#111}.bar:hover rect{stroke:#000;stroke-width:2}\
.lane0{fill:#fafafa}.lane1{fill:#f0f0f0}.client{font:12px system-ui;fill:#555}\
.tick{font:10px ui-monospace,monospace;fill:#888;text-anchor:middle}\
.point{fill:#1b3f7a}.order{fill:none;stroke:#1b3f7a;stroke-width:1;opacity:.5}\
.deadline{stroke:#c00;stroke-width:2;stroke-dasharray:5 4}\
details.part{margin:12px 0;border:1px solid #ddd;border-radius:6px;padding:6px}\
summary{cursor:pointer;font-size:15px}.scroll{overflow-x:auto;margin:8px 0}\
table{border-collapse:collapse;font:12px ui-monospace,monospace}\
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}tr.stuckrow{background:#fbd5d5;color:#900;font-weight:bold}";
