//! A minimal etcd v3 client over its JSON gateway (`POST /v3/kv/put`, `POST /v3/kv/range`,
//! keys and values in base64) on one HTTP/1.1 keep-alive connection. Ranges are
//! linearizable, etcd's default, so a get costs what a synod get costs: a quorum round.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{BenchError, Store};

/// One connection to one etcd member's client URL.
pub struct EtcdConn {
    sender: SendRequest<Full<Bytes>>,
    /// `HOST:PORT`, for the `Host` header.
    authority: String,
}

impl EtcdConn {
    /// Connects to `endpoint` (`http://HOST:PORT` or `HOST:PORT`; TLS is not supported).
    pub async fn connect(endpoint: &str) -> Result<EtcdConn, BenchError> {
        let authority = endpoint.strip_prefix("http://").unwrap_or(endpoint);
        let authority = authority.trim_end_matches('/').to_owned();
        if authority.contains("://") {
            return Err(BenchError::Http(format!(
                "{endpoint}: only plain http:// endpoints are supported"
            )));
        }
        let stream = TcpStream::connect(&authority).await.map_err(|e| {
            BenchError::Io(std::io::Error::new(
                e.kind(),
                format!("connecting to {authority}: {e}"),
            ))
        })?;
        stream.set_nodelay(true)?;
        let (sender, conn) = handshake(TokioIo::new(stream))
            .await
            .map_err(|e| BenchError::Http(e.to_string()))?;
        // The connection's I/O runs in its own task; it ends when `sender` is dropped.
        tokio::spawn(conn);
        Ok(EtcdConn { sender, authority })
    }

    /// POSTs a JSON body to `path` and returns the answer's body; a status other than 200
    /// is an error carrying etcd's message.
    async fn post(&mut self, path: &str, body: serde_json::Value) -> Result<Bytes, BenchError> {
        let http = |e: &dyn std::fmt::Display| BenchError::Http(e.to_string());
        let request = Request::post(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| http(&e))?;
        self.sender.ready().await.map_err(|e| http(&e))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| http(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| http(&e))?
            .to_bytes();
        if status != hyper::StatusCode::OK {
            return Err(BenchError::Http(format!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(body)
    }
}

impl Store for EtcdConn {
    async fn get(&mut self, key: &str) -> Result<(), BenchError> {
        let body = serde_json::json!({ "key": BASE64.encode(key) });
        self.post("/v3/kv/range", body).await?;
        Ok(())
    }

    async fn put(&mut self, key: &str, value: &str) -> Result<(), BenchError> {
        let body = serde_json::json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) });
        self.post("/v3/kv/put", body).await?;
        Ok(())
    }
}
