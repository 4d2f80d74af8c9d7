//! A minimal etcd v3 client over gRPC, etcd's own client interface (what `etcdctl` and the Go
//! client use), on one HTTP/2 connection per benchmark client: `etcdserverpb.KV/Put` and
//! `etcdserverpb.KV/Range`. Ranges are linearizable, etcd's default, so a get costs what a
//! synod get costs: a quorum round.
//!
//! The two requests are encoded by hand (a few protobuf fields, see [`put_request`] and
//! [`range_request`]) rather than generated from etcd's `.proto` files, so the benchmark
//! needs no protobuf compiler. A call succeeds when etcd answers `grpc-status: 0`; the
//! answer's body is not decoded, since the benchmark measures only that it came.

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::{handshake, SendRequest};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::{BenchError, Store};

/// One HTTP/2 connection to one etcd member's client URL.
pub struct EtcdConn {
    sender: SendRequest<Full<Bytes>>,
    /// `HOST:PORT`, for the `:authority` of each request.
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
        let (sender, conn) = handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| BenchError::Http(e.to_string()))?;
        // The connection's I/O runs in its own task; it ends when `sender` is dropped.
        tokio::spawn(conn);
        Ok(EtcdConn { sender, authority })
    }

    /// Calls gRPC method `path` with the encoded protobuf `message`; an answer whose
    /// `grpc-status` is not 0 is an error carrying etcd's message.
    async fn call(&mut self, path: &str, message: Bytes) -> Result<(), BenchError> {
        let http = |e: &dyn std::fmt::Display| BenchError::Http(e.to_string());
        // gRPC's length-prefixed message: not compressed, then the length, big-endian.
        let mut framed = BytesMut::with_capacity(5 + message.len());
        framed.put_u8(0);
        framed.put_u32(message.len() as u32);
        framed.put_slice(&message);
        let uri = format!("http://{}{path}", self.authority);
        let request = Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, "application/grpc")
            .header(hyper::header::TE, "trailers")
            .body(Full::new(framed.freeze()))
            .map_err(|e| http(&e))?;
        self.sender.ready().await.map_err(|e| http(&e))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| http(&e))?;
        let (parts, body) = response.into_parts();
        let headers = parts.headers;
        let collected = body.collect().await.map_err(|e| http(&e))?;
        // The status comes in the trailers, or in the headers of an answer without a body.
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match status.as_deref() {
            Some("0") => Ok(()),
            other => {
                let message = collected
                    .trailers()
                    .and_then(|t| t.get("grpc-message"))
                    .or_else(|| headers.get("grpc-message"))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                Err(BenchError::Http(format!(
                    "{path} answered grpc-status {}: {message}",
                    other.unwrap_or("(none)")
                )))
            }
        }
    }
}

/// A protobuf field of wire type 2 (length-delimited bytes): its key, its length as a varint,
/// its bytes.
fn put_bytes_field(out: &mut BytesMut, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, bytes.len() as u64);
    out.put_slice(bytes);
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// `PutRequest { key = 1, value = 2 }` (etcd's `rpc.proto`).
fn put_request(key: &str, value: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(key.len() + value.len() + 8);
    put_bytes_field(&mut out, 1, key.as_bytes());
    put_bytes_field(&mut out, 2, value.as_bytes());
    out.freeze()
}

/// `RangeRequest { key = 1 }`: one key, linearizable (`serializable = 7` left false).
fn range_request(key: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(key.len() + 4);
    put_bytes_field(&mut out, 1, key.as_bytes());
    out.freeze()
}

impl Store for EtcdConn {
    async fn get(&mut self, key: &str) -> Result<(), BenchError> {
        self.call("/etcdserverpb.KV/Range", range_request(key))
            .await
    }

    async fn put(&mut self, key: &str, value: &str) -> Result<(), BenchError> {
        self.call("/etcdserverpb.KV/Put", put_request(key, value))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_as_protobuf() {
        // Field 1 (key), length 1, "k"; field 2 (value), length 2, "vv".
        assert_eq!(&put_request("k", "vv")[..], b"\x0a\x01k\x12\x02vv");
        assert_eq!(&range_request("key")[..], b"\x0a\x03key");
        let mut long = BytesMut::new();
        put_varint(&mut long, 300);
        assert_eq!(&long[..], [0xac, 0x02]);
    }
}
