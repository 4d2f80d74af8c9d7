//! How long a request waits on the servers tried so far before it also goes to the next one.
//!
//! A replica in a minority, or a stopped one, never answers, so a client hedges: after a step
//! without an answer it sends the request to one more server (see [`crate::hedge`]). A fixed
//! step is wrong for big requests: a write is answered only once it is carried to and fsynced
//! by a majority, and an 8 MiB value takes longer than a small command's step to do that (over
//! a second in a debug build), so the client would send the whole value to every server in
//! turn, adding to the load that made it slow. The step therefore grows with the bytes the
//! request carries, at a rate well below what any replica sustains.

use std::time::Duration;

use crate::hedge::STEP;

/// The slowest replication rate a healthy cluster is expected to sustain for one request,
/// in bytes per second: a debug build on a loaded machine moves an 8 MiB value through
/// Paxos at roughly 10 MiB/s, a release build at hundreds.
const SLOWEST_BYTES_PER_SEC: f64 = (4 << 20) as f64;

/// The hedge step for a request carrying `bytes` of keys and values: [`STEP`] plus 250 ms
/// per MiB (2.3 s for an 8 MiB value).
pub(crate) fn hedge_step(bytes: usize) -> Duration {
    STEP + Duration::from_secs_f64(bytes as f64 / SLOWEST_BYTES_PER_SEC)
}

#[cfg(test)]
mod tests {
    use synod_kvpaxos::KvOp;

    use super::*;

    #[test]
    fn the_step_grows_with_the_value() {
        let small = KvOp::Get { key: "k".into() };
        assert!(hedge_step(small.payload_bytes()) < STEP + Duration::from_millis(1));
        let big = KvOp::Put {
            key: String::new(),
            value: "x".repeat(8 << 20),
        };
        assert_eq!(hedge_step(big.payload_bytes()), Duration::from_millis(2300));
    }
}
