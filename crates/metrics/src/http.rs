//! A minimal HTTP/1.1 responder for status ports: one GET per connection, answered from a
//! function of the path, then closed. Enough for Prometheus, a browser and `curl`; nothing
//! a client sends can hold more than [`MAX_REQUEST`] bytes, [`MAX_CONNECTIONS`] connections
//! or [`REQUEST_TIMEOUT`] of a task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Bytes of request head read at most; the rest is ignored.
pub const MAX_REQUEST: usize = 16 * 1024;
/// Connections answered at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a connection may take to send its request and take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The style sheet every synod page shares, to be inlined in a `<style>` element (pages are
/// self-contained: no external assets).
pub const PAGE_STYLE: &str = include_str!("page.css");

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    pub fn not_found() -> Response {
        Response {
            status: 404,
            content_type: "text/plain",
            body: b"not found\n".to_vec(),
        }
    }

    /// `/metrics` of this process.
    pub fn metrics() -> Response {
        Response::ok(crate::CONTENT_TYPE, crate::global().encode())
    }
}

/// Answers every connection of `listener` with `answer(path)` (the path without its query
/// string) until the task is dropped.
pub async fn serve<F>(listener: TcpListener, answer: F)
where
    F: Fn(&str) -> Response + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(reason = %e, "status port: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // A client that stalls or sends garbage only loses its own connection.
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, respond(stream, &*answer)).await;
        });
    }
}

async fn respond<F>(mut stream: TcpStream, answer: &F) -> std::io::Result<()>
where
    F: Fn(&str) -> Response,
{
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let response = answer(path);
    let reason = match response.status {
        200 => "OK",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&response.body).await?;
    stream.shutdown().await
}

/// Why [`get`] got no body.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered {0}")]
    Status(String),
    #[error("the answer is larger than {MAX_BODY} bytes")]
    TooLarge,
}

/// Bytes of an answer [`get`] reads at most.
pub const MAX_BODY: u64 = 4 << 20;

/// The body of `GET path` from a status port at `addr` (one answered by [`serve`]), within
/// `limit`.
pub async fn get(addr: SocketAddr, path: &str, limit: Duration) -> Result<Vec<u8>, GetError> {
    let fetch = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_BODY + 1)
            .read_to_end(&mut answer)
            .await?;
        if answer.len() as u64 > MAX_BODY {
            return Err(GetError::TooLarge);
        }
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| GetError::Status("without a complete head".into()))?;
        let head = String::from_utf8_lossy(&answer[..split]);
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(GetError::Status(status.to_owned()));
        }
        Ok(answer[split + 4..].to_vec())
    };
    tokio::time::timeout(limit, fetch)
        .await
        .map_err(|_| GetError::Timeout(limit))?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn answers_by_path_and_serves_the_registry() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        crate::global().record_request("get", Duration::from_millis(3), false);
        tokio::spawn(serve(listener, |path| match path {
            "/metrics" => Response::metrics(),
            _ => Response::not_found(),
        }));
        let metrics = get(addr, "/metrics?x=1").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("synod_requests_total{command=\"get\"} 1"));
        assert!(metrics.contains("synod_request_errors_total{command=\"get\"} 1"));
        assert!(metrics.contains("# TYPE synod_request_duration_seconds histogram"));
        assert!(metrics.trim_end().ends_with("# EOF"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        let limit = Duration::from_secs(5);
        let body = super::get(addr, "/metrics", limit).await.unwrap();
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("synod_connections"));
        let missing = super::get(addr, "/nope", limit).await.unwrap_err();
        assert!(matches!(missing, GetError::Status(s) if s.contains("404")));
    }
}
