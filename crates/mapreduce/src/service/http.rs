//! The coordinator's status page: a minimal HTTP/1.1 responder (one request per connection)
//! serving `/` as a self-refreshing HTML page and `/status.json` as JSON.

use std::fmt::Write as _;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::coordinator::Status;

/// Serves status pages from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, status: watch::Receiver<Option<Status>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let status = status.clone();
        tokio::spawn(async move {
            // A client that stalls or sends garbage only loses its own connection.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), answer(stream, status))
                .await;
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    status: watch::Receiver<Option<Status>>,
) -> std::io::Result<()> {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&req);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let snapshot = status.borrow().clone();
    let (code, kind, body) = match (path, snapshot) {
        (_, None) => (
            "503 Service Unavailable",
            "text/plain",
            "starting\n".to_string(),
        ),
        ("/status.json", Some(s)) => (
            "200 OK",
            "application/json",
            serde_json::to_string_pretty(&s).unwrap_or_default(),
        ),
        ("/", Some(s)) => ("200 OK", "text/html; charset=utf-8", page(&s)),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let head = format!("HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML page: phase and progress, tasks by state, workers, failures.
pub fn page(s: &Status) -> String {
    let mut h = String::new();
    let done = s.maps.done + s.reduces.done;
    let total = (s.maps.total + s.reduces.total).max(1);
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=1>\
         <title>synod mr: {phase}</title><style>body{{font-family:sans-serif}}td,th{{padding:2px 10px;text-align:left}}</style></head><body>\
         <h1>MapReduce job: {phase}</h1><p>elapsed {:.1} s &middot; progress {done}/{total} tasks ({:.0}%)</p>",
        s.elapsed_ms as f64 / 1000.0,
        100.0 * done as f64 / total as f64,
        phase = s.phase,
    );
    if let Some(e) = &s.error {
        let _ = write!(h, "<p><b>error:</b> {}</p>", esc(e));
    }
    h.push_str("<h2>Tasks</h2><table><tr><th>phase</th><th>idle</th><th>running</th><th>done</th><th>total</th></tr>");
    for (name, c) in [("map", &s.maps), ("reduce", &s.reduces)] {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.idle, c.running, c.done, c.total
        );
    }
    let _ = write!(
        h,
        "</table><p>re-executions {} &middot; backup tasks {} &middot; task failures {} &middot; workers lost {} &middot; duplicate completions ignored {}</p>",
        s.reexecutions, s.backups, s.task_failures, s.lost_workers, s.duplicates_ignored
    );
    h.push_str("<h2>Workers</h2><table><tr><th>id</th><th>address</th><th>state</th><th>last heartbeat</th><th>task</th><th>tasks done</th></tr>");
    for w in &s.workers {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ms ago</td><td>{}</td><td>{}</td></tr>",
            esc(&w.id),
            esc(&w.addr),
            if w.alive { "alive" } else { "lost" },
            w.last_heartbeat_ms_ago,
            esc(w.task.as_deref().unwrap_or("idle")),
            w.tasks_done
        );
    }
    h.push_str("</table><h2>Failures and recoveries</h2><ul>");
    for e in s.events.iter().rev() {
        let _ = write!(h, "<li>{}</li>", esc(e));
    }
    h.push_str("</ul><p><a href=/status.json>status.json</a></p></body></html>\n");
    h
}
