//! The coordinator's status page, on the shared status-port responder
//! (`synod_metrics::http`): `/` as a self-refreshing HTML page, `/status.json` as JSON, and
//! `/metrics` (tasks by state, re-executions) for Prometheus.

use std::fmt::Write as _;

use synod_metrics::http::{self, Response};
use synod_metrics::{advance, Metrics, TaskLabel};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::coordinator::Status;

/// Serves status pages from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, status: watch::Receiver<Option<Status>>) {
    http::serve(listener, move |path| {
        let snapshot = status.borrow().clone();
        match (path, snapshot) {
            ("/metrics", snapshot) => {
                if let Some(s) = &snapshot {
                    record(synod_metrics::global(), s);
                }
                Response::metrics()
            }
            (_, None) => Response {
                status: 503,
                content_type: "text/plain",
                body: b"starting\n".to_vec(),
            },
            ("/status.json", Some(s)) => Response::ok(
                "application/json",
                serde_json::to_string_pretty(&s).unwrap_or_default(),
            ),
            ("/", Some(s)) => Response::ok("text/html; charset=utf-8", page(&s)),
            _ => Response::not_found(),
        }
    })
    .await;
}

/// Mirrors the coordinator's status into the process's metrics.
pub fn record(m: &Metrics, status: &Status) {
    for (phase, counts) in [("map", &status.maps), ("reduce", &status.reduces)] {
        for (state, n) in [
            ("idle", counts.idle),
            ("running", counts.running),
            ("done", counts.done),
        ] {
            m.mr_tasks
                .get_or_create(&TaskLabel { phase, state })
                .set(n as i64);
        }
    }
    advance(&m.mr_reexecutions, status.reexecutions);
    advance(&m.mr_task_failures, status.task_failures);
    advance(&m.mr_lost_workers, status.lost_workers);
    let alive = status.workers.iter().filter(|w| w.alive).count();
    m.mr_workers_alive.set(alive as i64);
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML page: phase and progress, tasks by state, workers, failures — in the look of
/// the dashboard of `synod up` (`synod_metrics::http::PAGE_STYLE`).
pub fn page(s: &Status) -> String {
    let mut h = String::new();
    let done = s.maps.done + s.reduces.done;
    let total = (s.maps.total + s.reduces.total).max(1);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=1>\
         <title>synod mr: {phase}</title><style>{style}</style></head><body>\
         <header><h1>MapReduce job: {phase}</h1><span class=muted>elapsed {:.1} s &middot; progress {done}/{total} tasks ({:.0}%)</span></header><main>",
        s.elapsed_ms as f64 / 1000.0,
        100.0 * done as f64 / total as f64,
        phase = s.phase,
        style = http::PAGE_STYLE,
    );
    if let Some(e) = &s.error {
        let _ = write!(
            h,
            "<section class=wide><h2>Error</h2><p class=state-down>{}</p></section>",
            esc(e)
        );
    }
    h.push_str("<section><h2>Tasks</h2><table><tr><th>phase</th><th>idle</th><th>running</th><th>done</th><th>total</th></tr>");
    for (name, c) in [("map", &s.maps), ("reduce", &s.reduces)] {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.idle, c.running, c.done, c.total
        );
    }
    let _ = write!(
        h,
        "</table><p class=muted>re-executions {} &middot; backup tasks {} &middot; task failures {} &middot; workers lost {} &middot; duplicate completions ignored {}</p></section>",
        s.reexecutions, s.backups, s.task_failures, s.lost_workers, s.duplicates_ignored
    );
    h.push_str("<section><h2>Workers</h2><table><tr><th>id</th><th>address</th><th>state</th><th>last heartbeat</th><th>task</th><th>tasks done</th></tr>");
    for w in &s.workers {
        let (state, class) = if w.alive {
            ("alive", "state-up")
        } else {
            ("lost", "state-down")
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class={class}>{state}</td><td>{} ms ago</td><td>{}</td><td>{}</td></tr>",
            esc(&w.id),
            esc(&w.addr),
            w.last_heartbeat_ms_ago,
            esc(w.task.as_deref().unwrap_or("idle")),
            w.tasks_done
        );
    }
    h.push_str(
        "</table></section><section class=wide><h2>Failures and recoveries</h2><ul id=faults>",
    );
    for e in s.events.iter().rev() {
        let _ = write!(h, "<li>{}</li>", esc(e));
    }
    h.push_str("</ul><p><a href=/status.json>status.json</a> &middot; <a href=/metrics>metrics</a></p></section></main></body></html>\n");
    h
}
