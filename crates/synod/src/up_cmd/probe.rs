//! The readiness probe: `synod up` says `ready` only after a real write and read through a
//! Redis-protocol port, so "ready" means what a user means by it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use synod_bench::RespConn;
use synod_resp::Value;
use tokio::time::Instant;

/// The key the probe writes (its value is a fresh random number each time).
pub const PROBE_KEY: &str = "synod:up:ready";

/// Longest single attempt; the fronts themselves give up on an operation after 10 s.
const ATTEMPT: Duration = Duration::from_secs(12);

/// How often a wait that has not succeeded yet is reported.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Writes [`PROBE_KEY`] and reads it back through one of `fronts` after another until that
/// works, or fails at `deadline` with the last problem.
pub async fn write_and_read(
    fronts: &[SocketAddr],
    password: Option<&str>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut last = None;
    let started = Instant::now();
    let mut report_at = started + REPORT_EVERY;
    for front in fronts.iter().cycle() {
        if Instant::now() >= report_at {
            report_at += REPORT_EVERY;
            eprintln!(
                "still waiting for the cluster to accept a write ({}s; last problem: {})",
                started.elapsed().as_secs(),
                last.as_deref().unwrap_or("none")
            );
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || fronts.is_empty() {
            break;
        }
        let attempt = tokio::time::timeout(left.min(ATTEMPT), round_trip(*front, password)).await;
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

async fn round_trip(front: SocketAddr, password: Option<&str>) -> anyhow::Result<()> {
    let mut conn = RespConn::connect(&front.to_string()).await?;
    if let Some(password) = password {
        // The reply, never the password, goes into an error.
        match conn.call(&[b"AUTH", password.as_bytes()]).await? {
            Value::Simple(ok) if ok == "OK" => {}
            other => bail!("{front}: AUTH answered {other:?}"),
        }
    }
    let nonce = rand::random::<u64>().to_string();
    match conn
        .call(&[b"SET", PROBE_KEY.as_bytes(), nonce.as_bytes()])
        .await?
    {
        Value::Simple(ok) if ok == "OK" => {}
        other => bail!("{front}: SET answered {other:?}"),
    }
    match conn.call(&[b"GET", PROBE_KEY.as_bytes()]).await? {
        Value::Bulk(Some(value)) if value == nonce.as_bytes() => Ok(()),
        other => bail!("{front}: GET answered {other:?}, not the value just written"),
    }
}
