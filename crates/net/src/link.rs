//! Outbound links: one task per peer server that this node sends to.
//!
//! ```text
//!   node task ──try_send(frame)──▶ [bounded queue] ──▶ link task ──TCP──▶ peer's server
//!                                                          ◀── echoes of its probes ──
//! ```
//!
//! The node never waits for a link: `Context::send` encodes the message and `try_send`s it,
//! dropping it if the queue is full. The link task owns the connection and cycles through
//!
//! 1. *connecting*: TCP connect (bounded by `connect_timeout`, short: a SYN lost to a
//!    partition is retransmitted by the kernel only after a second) and handshake, checking
//!    that the server at the configured address really is the peer we meant;
//! 2. *connected*: write queued frames in batches, probe the connection and read the echoes
//!    (see [`crate::liveness`]), and give the connection up when a write stays unconfirmed
//!    past `silence_limit`, or on EOF, so a peer that restarts is noticed at once and one
//!    behind a healed partition is reached on a fresh connection instead of one stuck in the
//!    kernel's retransmission backoff;
//! 3. *backing off* after a failure: exponential delay with jitter, capped low
//!    (`backoff_max`) so a healed link is back within a few heartbeats, reset after every
//!    successful handshake.
//!
//! A connection given up loses what the kernel still held for it. The frames still queued
//! go out on the next connection if the next connect succeeds; a failed connect attempt
//! drops them: they were sent to a peer we could not reach, as if lost on a cut link, and
//! after a long outage they would only be stale. (Dropping them at every teardown was
//! measured to hurt: on a lossy link, where teardowns come every few seconds, it lost
//! decisions that followers then had to learn one instance at a time.) The protocols
//! tolerate the loss and resend what matters. Links are one-way: replies come back on the
//! peer's own link to us.
//!
//! Shutdown: the node drops the queue's sender. A connected link writes what is queued and
//! closes; a disconnected one gives up at once when the shared cancellation token fires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use synod_node::NodeId;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::codec::{Hello, PROBE};
use crate::config::NetOptions;
use crate::conn::{
    handshake, no_delay, tune_peer_socket, write_batch, FrameReader, FrameWriter, Halves, ReadHalf,
};
use crate::error::NetError;
use crate::liveness::{Liveness, Step};

/// Identity of one link: from whom to whom, and where the peer listens.
pub(crate) struct LinkTarget {
    pub me: NodeId,
    pub to: NodeId,
    pub addr: SocketAddr,
}

/// Runs a link until its queue is closed and drained, or cancellation while disconnected.
pub(crate) async fn run_link(
    target: LinkTarget,
    mut queue: mpsc::Receiver<Bytes>,
    opts: Arc<NetOptions>,
    cancel: CancellationToken,
) {
    let LinkTarget { to, addr, .. } = target;
    let mut failures: u32 = 0;
    loop {
        let connected = tokio::select! {
            result = connect(&target, &opts) => result,
            _ = cancel.cancelled() => return,
        };
        match connected {
            Ok((reader, writer)) => {
                failures = 0;
                debug!(peer = %to, %addr, "link up");
                match pump(reader, writer, &mut queue, &opts).await {
                    Ok(()) => return,
                    Err(NetError::Closed) => info!(peer = %to, %addr, "link closed by peer"),
                    Err(e) => warn!(peer = %to, %addr, reason = %e, "link down; reconnecting"),
                }
            }
            Err(e) => {
                // The first failure is news; the rest of a long outage is noise.
                if failures == 0 {
                    warn!(peer = %to, %addr, reason = %e, "cannot reach peer; retrying with backoff");
                } else {
                    debug!(peer = %to, %addr, reason = %e, failures, "reconnect failed");
                }
                failures = failures.saturating_add(1);
                let dropped = drop_queued(&mut queue);
                if dropped > 0 {
                    debug!(peer = %to, dropped, "dropped frames queued for an unreachable peer");
                }
            }
        }
        let delay = backoff(&opts, failures, &mut rand::thread_rng());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Empties the queue, returning how many frames it held.
fn drop_queued(queue: &mut mpsc::Receiver<Bytes>) -> usize {
    std::iter::from_fn(|| queue.try_recv().ok()).count()
}

async fn connect(
    target: &LinkTarget,
    opts: &NetOptions,
) -> Result<(FrameReader<ReadHalf>, FrameWriter), NetError> {
    let stream = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(target.addr))
        .await
        .map_err(|_| NetError::Timeout {
            what: "connect",
            after: opts.connect_timeout,
        })??;
    tune_peer_socket(&stream, opts)?;
    no_delay(&stream)?;
    let halves = match &opts.tls {
        None => Halves::plain(stream),
        Some(tls) => {
            let secured =
                tokio::time::timeout(opts.handshake_timeout, tls.connect(stream, target.to))
                    .await
                    .map_err(|_| NetError::Timeout {
                        what: "TLS handshake",
                        after: opts.handshake_timeout,
                    })??;
            Halves::tls(secured)
        }
    };
    let (reader, writer, theirs) = handshake(
        halves,
        Hello::Peer(target.me),
        &[],
        opts.max_frame,
        opts.handshake_timeout,
    )
    .await?;
    if theirs != Hello::Peer(target.to) {
        return Err(NetError::UnexpectedHello {
            expected: format!("server {}", target.to),
            found: theirs,
        });
    }
    Ok((reader, writer))
}

/// Moves frames from the queue to the socket, probing the connection, until the queue closes
/// (`Ok`) or the connection fails or falls silent.
async fn pump(
    mut reader: FrameReader<ReadHalf>,
    mut writer: FrameWriter,
    queue: &mut mpsc::Receiver<Bytes>,
    opts: &NetOptions,
) -> Result<(), NetError> {
    let origin = Instant::now();
    let since = |at: Instant| at.duration_since(origin);
    let mut liveness = Liveness::connected(opts.link_timing(), Duration::ZERO);
    loop {
        let wake = match liveness.step(since(Instant::now())) {
            Step::Reconnect => return Err(silent_error(opts)),
            Step::Probe => {
                // A write blocked by a full socket buffer is silence too.
                let probe = async {
                    writer.write_all(&PROBE).await?;
                    writer.flush().await
                };
                tokio::time::timeout(opts.silence_limit, probe)
                    .await
                    .map_err(|_| silent_error(opts))??;
                liveness.probe_sent(since(Instant::now()));
                continue;
            }
            Step::WaitUntil(at) => origin + at,
        };
        tokio::select! {
            // Echoes first: after this process was stopped and resumed, the echoes that
            // arrived meanwhile must count before the silence is judged.
            biased;
            inbound = reader.read_frame() => match inbound? {
                None => return Err(NetError::Closed),
                Some(payload) if payload.is_empty() => {
                    if !liveness.heard(since(Instant::now())) {
                        return Err(NetError::UnexpectedFrame);
                    }
                }
                // The peer never sends messages on our link, only echoes.
                Some(_) => return Err(NetError::UnexpectedFrame),
            },
            next = queue.recv() => match next {
                Some(frame) => {
                    tokio::time::timeout(opts.silence_limit, write_batch(&mut writer, frame, queue))
                        .await
                        .map_err(|_| silent_error(opts))??;
                    liveness.sent(since(Instant::now()));
                }
                None => {
                    writer.shutdown().await?;
                    return Ok(());
                }
            },
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Why a link gave its connection up: nothing confirmed it for `silence_limit`.
fn silent_error(opts: &NetOptions) -> NetError {
    NetError::Timeout {
        what: "peer link (no echo of a probe)",
        after: opts.silence_limit,
    }
}

/// Delay before reconnect attempt number `failures`: exponential, capped, with "equal
/// jitter" (half fixed, half random) so it never collapses to zero.
pub(crate) fn backoff(opts: &NetOptions, failures: u32, rng: &mut impl Rng) -> Duration {
    let factor = 1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX);
    let base = opts
        .backoff_min
        .saturating_mul(factor)
        .min(opts.backoff_max);
    let half = base / 2;
    half + rng.gen_range(Duration::ZERO..=half)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_bounds() {
        let opts = NetOptions {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            ..NetOptions::default()
        };
        let rng = &mut rand::thread_rng();
        for _ in 0..100 {
            let first = backoff(&opts, 0, rng);
            assert!(first >= Duration::from_millis(5) && first <= Duration::from_millis(10));
            let third = backoff(&opts, 2, rng);
            assert!(third >= Duration::from_millis(20) && third <= Duration::from_millis(40));
            let capped = backoff(&opts, 1000, rng);
            assert!(capped >= Duration::from_millis(50) && capped <= Duration::from_millis(100));
        }
    }

    /// What a simulated link is doing.
    enum State {
        /// A connect attempt started at this time.
        Connecting(Duration),
        /// Waiting until this time to try again.
        BackingOff(Duration),
        /// Connected; `stuck` once a partition swallowed something sent on it, which is the
        /// kernel's retransmission backoff at its worst: nothing on it ever arrives again.
        Up {
            liveness: Liveness,
            stuck: bool,
            echo_at: Option<Duration>,
        },
    }

    /// When, in a simulated run, the link gave its connection up and got a working one.
    #[derive(Default)]
    struct Run {
        teardowns: Vec<Duration>,
        ups: Vec<Duration>,
    }

    /// Drives the link's decisions (liveness, connect timeout, backoff) in virtual time, 1 ms
    /// a step, over a network with a 1 ms round trip that is cut during `cut`: a message sent
    /// while it is cut is lost, and a connect attempt made then times out. The node sends a
    /// message every 10 ms.
    fn simulate(
        opts: &NetOptions,
        cut: std::ops::Range<Duration>,
        end: Duration,
        seed: u64,
    ) -> Run {
        let rng = &mut StdRng::seed_from_u64(seed);
        let ms = Duration::from_millis;
        let mut run = Run::default();
        let mut failures = 0;
        let mut state = State::Connecting(Duration::ZERO);
        let mut now = Duration::ZERO;
        while now < end {
            let reachable = !cut.contains(&now);
            state = match state {
                State::Connecting(_) if reachable => {
                    failures = 0;
                    run.ups.push(now);
                    State::Up {
                        liveness: Liveness::connected(opts.link_timing(), now),
                        stuck: false,
                        echo_at: None,
                    }
                }
                State::Connecting(since) if now >= since + opts.connect_timeout => {
                    failures += 1;
                    State::BackingOff(now + backoff(opts, failures, rng))
                }
                State::BackingOff(until) if now >= until => State::Connecting(now),
                State::Up {
                    mut liveness,
                    mut stuck,
                    mut echo_at,
                } => {
                    stuck |= !reachable;
                    if echo_at.is_some_and(|at| now >= at) {
                        echo_at = None;
                        assert!(liveness.heard(now));
                    }
                    if now.as_millis().is_multiple_of(10) {
                        liveness.sent(now);
                    }
                    match liveness.step(now) {
                        Step::Reconnect => {
                            run.teardowns.push(now);
                            State::BackingOff(now + backoff(opts, 0, rng))
                        }
                        Step::Probe => {
                            liveness.probe_sent(now);
                            if !stuck {
                                echo_at = Some(now + ms(1));
                            }
                            State::Up {
                                liveness,
                                stuck,
                                echo_at,
                            }
                        }
                        Step::WaitUntil(_) => State::Up {
                            liveness,
                            stuck,
                            echo_at,
                        },
                    }
                }
                waiting => waiting,
            };
            now += ms(1);
        }
        run
    }

    #[test]
    fn a_link_through_a_partition_is_given_up_and_back_soon_after_the_heal() {
        let opts = NetOptions::default();
        let ms = Duration::from_millis;
        // Bounds from the timings: the teardown waits for the next probe and then the
        // silence limit; after the heal, an attempt in flight times out, one backoff passes,
        // and the next attempt connects (1 ms steps add a little).
        let teardown_bound = opts.probe_every + opts.silence_limit + ms(2);
        let heal_bound = opts.connect_timeout + opts.backoff_max + ms(2);
        for seed in 0..200u64 {
            let cut_at = ms(1_000 + seed * 7);
            let heal_at = cut_at + ms(200 + seed * 53 % 8_000);
            let run = simulate(&opts, cut_at..heal_at, heal_at + ms(3_000), seed);
            assert_eq!(run.ups[0], Duration::ZERO, "seed {seed}");
            let first_teardown = run.teardowns.first().copied();
            if heal_at - cut_at > teardown_bound {
                let at = first_teardown.expect("a link through a long cut is given up");
                assert!(
                    at >= cut_at && at <= cut_at + teardown_bound,
                    "seed {seed}: at {at:?}"
                );
            }
            // No teardown outside the cut (those within it are the stuck connection's).
            for &at in &run.teardowns {
                assert!(
                    at >= cut_at && at <= heal_at + teardown_bound,
                    "seed {seed}: at {at:?}"
                );
            }
            let back = run.ups.iter().copied().filter(|&t| t >= heal_at).min();
            if let Some(&last) = run.teardowns.last() {
                let back = back.expect("a link given up reconnects after the heal");
                let bound = heal_at.max(last) + heal_bound;
                assert!(
                    back <= bound,
                    "seed {seed}: back at {back:?}, healed at {heal_at:?}"
                );
            }
        }
    }

    #[test]
    fn a_link_on_a_working_network_is_never_given_up() {
        let run = simulate(
            &NetOptions::default(),
            Duration::ZERO..Duration::ZERO,
            Duration::from_secs(60),
            1,
        );
        assert!(run.teardowns.is_empty());
        assert_eq!(run.ups, [Duration::ZERO]);
    }
}
