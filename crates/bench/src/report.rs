//! Turning measurements into what `synod bench` prints: one line per target as it finishes,
//! and a final table with ratios against the first target measured at the same read ratio
//! (the baseline).

use std::fmt::Write as _;
use std::time::Duration;

use crate::Measurement;

/// The figures of one measured run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub ops: u64,
    pub ops_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
}

impl Summary {
    pub fn of(m: &Measurement) -> Summary {
        let quantile = |q: f64| Duration::from_micros(m.latencies.value_at_quantile(q));
        let secs = m.elapsed.as_secs_f64();
        Summary {
            ops: m.ops,
            ops_per_sec: if secs > 0.0 { m.ops as f64 / secs } else { 0.0 },
            p50: quantile(0.5),
            p99: quantile(0.99),
            p999: quantile(0.999),
        }
    }

    /// The median of each figure over several runs (each figure on its own, so the result
    /// may mix runs); `runs` must not be empty.
    pub fn median(runs: &[Summary]) -> Summary {
        fn middle<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
            values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            values[values.len() / 2]
        }
        Summary {
            ops: middle(runs.iter().map(|s| s.ops).collect()),
            ops_per_sec: middle(runs.iter().map(|s| s.ops_per_sec).collect()),
            p50: middle(runs.iter().map(|s| s.p50).collect()),
            p99: middle(runs.iter().map(|s| s.p99).collect()),
            p999: middle(runs.iter().map(|s| s.p999).collect()),
        }
    }

    /// `1234 ops/s  p50 1.20 ms  p99 3.40 ms  p99.9 5.60 ms  (12340 ops)`.
    pub fn line(&self) -> String {
        format!(
            "{:.0} ops/s  p50 {}  p99 {}  p99.9 {}  ({} ops)",
            self.ops_per_sec,
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            self.ops
        )
    }
}

/// The latencies of a run's marked operations ([`crate::run_marked`]) against the others':
/// `{during}: N ops, p99 X ms, p99.9 Y ms; otherwise: ...; p99.9 {during}/otherwise R`.
pub fn split_line(m: &Measurement, during: &str) -> String {
    let mut otherwise = m.latencies.clone();
    // The marked latencies are a subset of all of them, so nothing goes below zero.
    let _ = otherwise.subtract(&m.marked);
    let describe = |h: &hdrhistogram::Histogram<u64>| match h.len() {
        0 => "no operations".to_string(),
        n => format!(
            "{n} ops, p99 {}, p99.9 {}",
            ms(Duration::from_micros(h.value_at_quantile(0.99))),
            ms(Duration::from_micros(h.value_at_quantile(0.999)))
        ),
    };
    let p999 = |h: &hdrhistogram::Histogram<u64>| h.value_at_quantile(0.999) as f64;
    let ratio = match (m.marked.is_empty(), otherwise.is_empty()) {
        (false, false) => format!("{:.2}x", p999(&m.marked) / p999(&otherwise).max(1.0)),
        _ => "-".to_string(),
    };
    format!(
        "{during}: {}; otherwise: {}; p99.9 {during}/otherwise {ratio}",
        describe(&m.marked),
        describe(&otherwise)
    )
}

/// One target's row of the final table: one target at one read ratio.
#[derive(Debug, Clone)]
pub struct Row {
    pub target: String,
    /// The fraction of gets in the load, 0 to 1.
    pub read_ratio: f64,
    /// What was measured, or why not (`skipped (not installed)`, `failed: ...`).
    pub outcome: Result<Summary, String>,
    /// How the target was set up (`3 replicas, fsync on`), shown after the figures.
    pub setup: String,
}

/// The comparison table: figures per target and read ratio (rows grouped by read ratio, in
/// the order the ratios first appear), and ops/s and p50 as ratios against the first
/// measured row of the same read ratio.
pub fn table(rows: &[Row]) -> String {
    let mut ordered: Vec<&Row> = rows.iter().collect();
    let first_of = |ratio: f64| rows.iter().position(|r| r.read_ratio == ratio);
    ordered.sort_by_key(|r| first_of(r.read_ratio));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>5} {:>9} {:>10} {:>10} {:>10} {:>8} {:>8}  setup",
        "target", "gets", "ops/s", "p50", "p99", "p99.9", "ops/s x", "p50 x"
    );
    for row in ordered {
        let baseline = rows
            .iter()
            .filter(|r| r.read_ratio == row.read_ratio)
            .find_map(|r| r.outcome.as_ref().ok());
        let gets = format!("{:.0}%", row.read_ratio * 100.0);
        let _ = match (&row.outcome, baseline) {
            (Ok(s), Some(base)) => writeln!(
                out,
                "{:<18} {:>5} {:>9.0} {:>10} {:>10} {:>10} {:>8} {:>8}  {}",
                row.target,
                gets,
                s.ops_per_sec,
                ms(s.p50),
                ms(s.p99),
                ms(s.p999),
                ratio(s.ops_per_sec, base.ops_per_sec),
                ratio(s.p50.as_secs_f64(), base.p50.as_secs_f64()),
                row.setup
            ),
            (outcome, _) => writeln!(
                out,
                "{:<18} {:>5} {}  {}",
                row.target,
                gets,
                outcome.as_ref().err().map_or("", String::as_str),
                row.setup
            ),
        };
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}", value / base)
    } else {
        "-".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(ops_per_sec: f64, p50_ms: u64) -> Summary {
        Summary {
            ops: 100,
            ops_per_sec,
            p50: Duration::from_millis(p50_ms),
            p99: Duration::from_millis(2 * p50_ms),
            p999: Duration::from_millis(3 * p50_ms),
        }
    }

    #[test]
    fn the_median_is_taken_figure_by_figure() {
        let m = Summary::median(&[summary(300.0, 1), summary(100.0, 9), summary(200.0, 5)]);
        assert_eq!(m.ops_per_sec, 200.0);
        assert_eq!(m.p50, Duration::from_millis(5));
        assert_eq!(m.p999, Duration::from_millis(15));
    }

    #[test]
    fn ratios_are_against_the_first_measured_target() {
        let rows = vec![
            Row {
                target: "skipped-one".into(),
                read_ratio: 0.5,
                outcome: Err("skipped (not installed)".into()),
                setup: String::new(),
            },
            Row {
                target: "base".into(),
                read_ratio: 0.5,
                outcome: Ok(summary(1000.0, 4)),
                setup: "3 replicas".into(),
            },
            Row {
                target: "other".into(),
                read_ratio: 0.5,
                outcome: Ok(summary(3000.0, 2)),
                setup: String::new(),
            },
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("skipped (not installed)"));
        assert!(lines[2].contains("1.00") && lines[2].ends_with("3 replicas"));
        assert!(
            lines[3].contains(" 3.00 ") && lines[3].contains(" 0.50 "),
            "{text}"
        );
        assert!(lines[3].contains("2.00 ms") && lines[3].contains("6.00 ms"));
    }

    #[test]
    fn rows_are_grouped_by_read_ratio_each_with_its_own_baseline() {
        let row = |target: &str, read_ratio: f64, ops: f64| Row {
            target: target.into(),
            read_ratio,
            outcome: Ok(summary(ops, 4)),
            setup: String::new(),
        };
        let rows = vec![
            row("plain", 0.0, 1000.0),
            row("plain", 1.0, 4000.0),
            row("sharded", 0.0, 800.0),
            row("sharded", 1.0, 2000.0),
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("plain") && lines[1].contains(" 0% "));
        assert!(lines[2].starts_with("sharded") && lines[2].contains(" 0.80 "));
        assert!(lines[3].starts_with("plain") && lines[3].contains(" 100% "));
        assert!(
            lines[4].starts_with("sharded") && lines[4].contains(" 0.50 "),
            "{text}"
        );
    }

    #[test]
    fn the_split_line_compares_marked_operations_with_the_others() {
        let histogram =
            || hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let (mut all, mut marked) = (histogram(), histogram());
        for _ in 0..1000 {
            all.record(1_000).unwrap();
        }
        for _ in 0..10 {
            all.record(4_000).unwrap();
            marked.record(4_000).unwrap();
        }
        let m = Measurement {
            ops: all.len(),
            elapsed: Duration::from_secs(1),
            latencies: all,
            marked,
        };
        assert_eq!(
            split_line(&m, "during snapshots"),
            "during snapshots: 10 ops, p99 4.00 ms, p99.9 4.00 ms; otherwise: 1000 ops, \
             p99 1.00 ms, p99.9 1.00 ms; p99.9 during snapshots/otherwise 4.00x"
        );
    }
}
