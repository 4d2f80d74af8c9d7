//! How long one attempt on one server waits for its answer.
//!
//! A replica in a minority, or a stopped one, never answers, so a client gives each attempt a
//! bounded wait and then tries the next server. A fixed wait is wrong for big requests: a
//! write is answered only once it is carried to and fsynced by a majority, and an 8 MiB value
//! takes longer than a small command's wait to do that (over a second in a debug build), so
//! the client would abandon every attempt and time out. The wait therefore grows with the
//! bytes the request carries, at a rate well below what any replica sustains.

use std::time::Duration;

use synod_kvpaxos::KvOp;

/// The wait for a request that carries next to nothing.
const BASE: Duration = Duration::from_millis(800);

/// The slowest replication rate a healthy cluster is expected to sustain for one request,
/// in bytes per second: a debug build on a loaded machine moves an 8 MiB value through
/// Paxos at roughly 10 MiB/s, a release build at hundreds.
const SLOWEST_BYTES_PER_SEC: f64 = (4 << 20) as f64;

/// How long one attempt carrying `op` may wait before the client tries another server:
/// 800 ms plus 250 ms per MiB of key and value (2.8 s for an 8 MiB value).
pub(crate) fn attempt_wait(op: &KvOp) -> Duration {
    let bytes = match op {
        KvOp::Get { key } => key.len(),
        KvOp::Put { key, value } | KvOp::Append { key, value } => key.len() + value.len(),
    };
    BASE + Duration::from_secs_f64(bytes as f64 / SLOWEST_BYTES_PER_SEC)
}

/// The wait for a request of a fixed, small size (controller queries and the like).
pub(crate) const SMALL_REQUEST_WAIT: Duration = BASE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_grows_with_the_value() {
        let small = KvOp::Get { key: "k".into() };
        assert!(attempt_wait(&small) < SMALL_REQUEST_WAIT + Duration::from_millis(1));
        let big = KvOp::Put {
            key: String::new(),
            value: "x".repeat(8 << 20),
        };
        assert_eq!(attempt_wait(&big), Duration::from_millis(2800));
    }
}
