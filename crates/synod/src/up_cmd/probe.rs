//! The readiness probe: `synod up` says `ready` only after a real write and read through a
//! Redis-protocol port, so "ready" means what a user means by it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use synod_resp::{encode, parse, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The key the probe writes (its value is a fresh random number each time).
pub const PROBE_KEY: &str = "synod:up:ready";

/// Longest single attempt; the fronts themselves give up on an operation after 10 s.
const ATTEMPT: Duration = Duration::from_secs(12);

/// Writes [`PROBE_KEY`] and reads it back through one of `fronts` after another until that
/// works, or fails at `deadline` with the last problem.
pub async fn write_and_read(fronts: &[SocketAddr], deadline: Instant) -> anyhow::Result<()> {
    let mut last = None;
    for front in fronts.iter().cycle() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || fronts.is_empty() {
            break;
        }
        let attempt = tokio::time::timeout(left.min(ATTEMPT), round_trip(*front)).await;
        match attempt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = Some(format!("{e:#}")),
            Err(_) => last = Some(format!("{front}: no answer")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the cluster did not accept a write in time (last problem: {})",
        last.as_deref().unwrap_or("none")
    )
}

async fn round_trip(front: SocketAddr) -> anyhow::Result<()> {
    let mut conn = TcpStream::connect(front)
        .await
        .with_context(|| format!("connecting to {front}"))?;
    let nonce = rand::random::<u64>().to_string();
    let mut buf = Vec::new();
    match call(&mut conn, &mut buf, &["SET", PROBE_KEY, &nonce]).await? {
        Value::Simple(ok) if ok == "OK" => {}
        other => bail!("{front}: SET answered {other:?}"),
    }
    match call(&mut conn, &mut buf, &["GET", PROBE_KEY]).await? {
        Value::Bulk(Some(value)) if value == nonce.as_bytes() => Ok(()),
        other => bail!("{front}: GET answered {other:?}, not the value just written"),
    }
}

async fn call(conn: &mut TcpStream, buf: &mut Vec<u8>, args: &[&str]) -> anyhow::Result<Value> {
    let mut out = Vec::new();
    let parts = args.iter().map(|a| Value::bulk(a.as_bytes())).collect();
    encode(&Value::Array(Some(parts)), &mut out);
    conn.write_all(&out).await?;
    loop {
        if let Some((value, used)) = parse(buf)? {
            buf.drain(..used);
            return Ok(value);
        }
        if conn.read_buf(buf).await? == 0 {
            bail!("connection closed");
        }
    }
}
