//! When a peer link should probe, and when it should give up on its connection: the link's
//! liveness decision, without I/O or a clock, so it can be tested in virtual time.
//!
//! Links are one-way (replies to our messages come back on the peer's own link to us), so
//! a link learns that its connection still works from *probes*: every `probe_every` it
//! writes an empty frame, which the peer's server answers on the same connection. An echo
//! confirms everything written before its probe, because TCP delivers in order.
//!
//! The rule: a write (a message or a probe) that stays unconfirmed for `silence_limit`
//! means the connection is dead in practice, whatever the kernel thinks. After a
//! partition heals, the kernel may keep such a connection in retransmission backoff for
//! seconds (an RTO of 6.5 s was seen after an 8 s partition); the link instead drops it
//! and connects afresh (see `link` for what happens to the frames).
//!
//! Idle links are probed too, so a link that is needed again after a quiet spell is
//! already known good or already reconnecting.

use std::time::Duration;

/// How a link paces its probes and how much silence it tolerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTiming {
    /// A probe is written when none is unanswered and the last one went out this long ago.
    pub probe_every: Duration,
    /// A write unconfirmed for this long tears the connection down.
    pub silence_limit: Duration,
}

/// What the link should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write a probe, then report it with [`Liveness::probe_sent`].
    Probe,
    /// The connection is silent past the limit: drop it and its queue, and reconnect.
    Reconnect,
    /// Nothing until this time (or until something is written or heard).
    WaitUntil(Duration),
}

/// One connection's liveness, fed with what happened and when. Times are offsets from any
/// fixed origin (the link uses its own start); they never go backwards.
#[derive(Debug, Clone)]
pub struct Liveness {
    timing: LinkTiming,
    /// When the unanswered probe went out, if one is.
    probe_out: Option<Duration>,
    /// When the last probe went out (the connection's start before the first).
    last_probe: Duration,
    /// The earliest write not confirmed by any echo that may still come: it was written
    /// before the unanswered probe, or with no probe unanswered.
    unconfirmed: Option<Duration>,
    /// The earliest write after the unanswered probe: its echo will not confirm it.
    after_probe: Option<Duration>,
}

impl Liveness {
    /// A connection that came up at `now`.
    pub fn connected(timing: LinkTiming, now: Duration) -> Self {
        assert!(
            timing.probe_every < timing.silence_limit,
            "a link must probe more often than it gives up: {timing:?}"
        );
        Liveness {
            timing,
            probe_out: None,
            last_probe: now,
            unconfirmed: None,
            after_probe: None,
        }
    }

    /// A message was written at `now`.
    pub fn sent(&mut self, now: Duration) {
        match self.probe_out {
            Some(_) => self.after_probe.get_or_insert(now),
            None => self.unconfirmed.get_or_insert(now),
        };
    }

    /// A probe was written at `now`.
    pub fn probe_sent(&mut self, now: Duration) {
        assert!(
            self.probe_out.is_none(),
            "a probe was sent while another is unanswered"
        );
        self.unconfirmed.get_or_insert(now);
        self.probe_out = Some(now);
        self.last_probe = now;
    }

    /// An echo arrived at `now`. Returns `false` if no probe was unanswered, which only a
    /// misbehaving peer causes.
    pub fn heard(&mut self, _now: Duration) -> bool {
        if self.probe_out.take().is_none() {
            return false;
        }
        self.unconfirmed = self.after_probe.take();
        true
    }

    /// What to do at `now`.
    pub fn step(&self, now: Duration) -> Step {
        let give_up = self.unconfirmed.map(|t| t + self.timing.silence_limit);
        if give_up.is_some_and(|at| now >= at) {
            return Step::Reconnect;
        }
        let probe_at = match self.probe_out {
            Some(_) => None,
            None => Some(self.last_probe + self.timing.probe_every),
        };
        if probe_at.is_some_and(|at| now >= at) {
            return Step::Probe;
        }
        let next = [give_up, probe_at].into_iter().flatten().min();
        // Without a probe out there is a probe time; with one there is a give-up time.
        Step::WaitUntil(next.expect("either a probe or a give-up time is pending"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: LinkTiming = LinkTiming {
        probe_every: Duration::from_millis(100),
        silence_limit: Duration::from_millis(500),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_idle_link_probes_on_schedule_and_stays_up_while_echoes_come() {
        let mut link = Liveness::connected(TIMING, ms(0));
        assert_eq!(link.step(ms(0)), Step::WaitUntil(ms(100)));
        for round in 1..=20u64 {
            let t = ms(100 * round);
            assert_eq!(link.step(t), Step::Probe);
            link.probe_sent(t);
            assert_eq!(link.step(t), Step::WaitUntil(t + ms(500)));
            assert!(link.heard(t + ms(1)));
            assert_eq!(link.step(t + ms(1)), Step::WaitUntil(t + ms(100)));
        }
    }

    #[test]
    fn a_write_unconfirmed_past_the_limit_tears_the_connection_down() {
        let mut link = Liveness::connected(TIMING, ms(0));
        link.sent(ms(30));
        assert_eq!(link.step(ms(100)), Step::Probe);
        link.probe_sent(ms(100));
        // The echo never comes: the limit counts from the message, not the probe.
        assert_eq!(link.step(ms(529)), Step::WaitUntil(ms(530)));
        assert_eq!(link.step(ms(530)), Step::Reconnect);
    }

    #[test]
    fn an_echo_confirms_writes_before_its_probe_only() {
        let mut link = Liveness::connected(TIMING, ms(0));
        link.probe_sent(ms(100));
        link.sent(ms(150));
        assert!(link.heard(ms(160)));
        // The message at 150 went out after the probe: still unconfirmed, so the next
        // probe must answer for it by 650.
        assert_eq!(link.step(ms(200)), Step::Probe);
        link.probe_sent(ms(200));
        assert_eq!(link.step(ms(649)), Step::WaitUntil(ms(650)));
        assert_eq!(link.step(ms(650)), Step::Reconnect);
    }

    #[test]
    fn steady_traffic_with_echoes_never_reconnects() {
        let mut link = Liveness::connected(TIMING, ms(0));
        for t in 0..5_000u64 {
            let now = ms(t);
            link.sent(now);
            match link.step(now) {
                Step::Probe => link.probe_sent(now),
                Step::Reconnect => panic!("reconnected at {t} ms with echoes 20 ms behind"),
                Step::WaitUntil(at) => assert!(at > now),
            }
            // Echoes take 20 ms: the probe sent 20 ms ago is answered now.
            if t % 100 == 20 && t > 100 {
                assert!(link.heard(now));
            }
        }
    }

    #[test]
    fn an_echo_without_a_probe_is_reported() {
        let mut link = Liveness::connected(TIMING, ms(0));
        assert!(!link.heard(ms(5)));
    }
}
