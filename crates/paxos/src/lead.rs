//! Multi-Paxos: a stable leader that runs phase 1 once for every instance from its first
//! undecided one on, then needs a single round trip (accept) per instance.
//!
//! A peer that wants to lead calls [`Paxos::campaign`]: it sends `PrepareAll(b, from)`. An
//! acceptor promises `b` for *every* instance (its `promised_all`; the effective promise in
//! an instance is the higher of that and the instance's own) unless it already promised
//! more, anywhere at or above `from`; with the promise it reports its votes and decisions in
//! the instances from `from` on. Once a majority promised, the leader is *ready*: it
//! re-proposes, under `b`, the highest-ballot value reported for each instance, learns the
//! reported decisions, and every later [`Paxos::start`] at or above `from` goes straight to
//! the accept phase under `b`. This is ordinary Paxos with one phase 1 shared by many
//! instances, so safety does not depend on who leads: two peers that both think they lead
//! are two proposers, and the acceptors' promises keep them from deciding different values.
//!
//! Leadership is only for liveness. The leader sends heartbeats; the embedding application
//! decides when to campaign (after not hearing a leader for a while). A leader steps down
//! as soon as it hears of a higher ballot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use synod_node::{limits, NodeId};

use crate::durable::Record;
use crate::guard::Ignored;
use crate::instance::{Phase, Proposer};
use crate::io::PaxosIo;
use crate::msg::{Ballot, PaxosMsg, Vote};
use crate::peer::Paxos;
use crate::{Fate, Value};

/// How often a ready leader tells the others it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(50);

/// A campaign, and once a majority promised, a leadership.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Lead<V> {
    pub ballot: Ballot,
    pub from: u64,
    pub promises: BTreeSet<NodeId>,
    /// The parts of each peer's `PromiseAll` received so far; a peer's promise counts once
    /// all of them are here.
    pub parts: BTreeMap<NodeId, BTreeSet<u32>>,
    /// Highest-ballot vote reported so far per instance.
    pub reports: BTreeMap<u64, (Ballot, V)>,
    pub ready: bool,
    pub heartbeat_at: Duration,
}

impl<V: Value> Paxos<V> {
    /// Asks every peer to accept this one as leader for the instances from `from` on (the
    /// application's first undecided instance). Supersedes any earlier campaign of this peer.
    ///
    /// Only a voter of the configuration of `from` and of the newest one campaigns: a peer
    /// that is leaving the voters does not lead them into the configuration without it.
    pub fn campaign(&mut self, io: &mut dyn PaxosIo<V>, from: u64) {
        if self.failed.is_some() || !self.votes(from) || !self.may_lead(from) {
            return;
        }
        let round = self
            .promised_all
            .round
            .max(self.seen_round)
            .max(self.lead.as_ref().map_or(0, |l| l.ballot.round))
            + 1;
        let ballot = Ballot {
            round,
            peer: self.me.0,
            nonce: self.nonce,
        };
        self.seen_round = round;
        let me = self.me;
        self.lead = Some(Lead {
            ballot,
            from,
            promises: BTreeSet::new(),
            parts: BTreeMap::new(),
            reports: BTreeMap::new(),
            ready: false,
            heartbeat_at: io.now(),
        });
        match self.promise_all(io, ballot, from) {
            Ok(votes) => self.on_promise_all(io, me, ballot, votes, self.max, (0, 1)),
            Err(higher) => {
                // The own acceptor promised more somewhere: the next campaign must beat it.
                self.seen_round = self.seen_round.max(higher.round);
                self.lead = None;
                return;
            }
        }
        for to in self.others() {
            let done = self.my_done();
            io.send(to, PaxosMsg::PrepareAll { ballot, from, done });
        }
    }

    /// Whether this peer leads (a majority promised its ballot and it heard of none higher).
    pub fn leading(&self) -> bool {
        self.lead.as_ref().is_some_and(|l| l.ready)
    }

    /// The peer this one believes leads, and when it last heard from it (this peer itself,
    /// heard now, when it leads). `None` before any leader.
    pub fn leader(&self, now: Duration) -> Option<(NodeId, Duration)> {
        if self.leading() {
            return Some((self.me, now));
        }
        let (ballot, heard) = self.leader_seen?;
        let leader = NodeId(ballot.peer);
        self.is_member(leader).then_some((leader, heard))
    }

    /// Whether this peer is a voter of the configuration of `from` and of the newest it
    /// knows.
    fn may_lead(&self, from: u64) -> bool {
        let latest = self.schedule.latest().map(|(_, c)| c);
        [self.config_for(from), latest]
            .iter()
            .all(|c| c.is_some_and(|c| c.is_voter(self.me)))
    }

    /// The acceptor's side of `PrepareAll`: promises `ballot` everywhere (durably) and
    /// returns its votes from `from` on, or the higher promise that stands in the way.
    fn promise_all(
        &mut self,
        io: &mut dyn PaxosIo<V>,
        ballot: Ballot,
        from: u64,
    ) -> Result<Vec<(u64, Vote<V>)>, Ballot> {
        let higher = self
            .instances
            .range(from..)
            .filter(|(_, i)| i.acceptor.decided.is_none())
            .map(|(_, i)| i.acceptor.promised)
            .chain([self.promised_all])
            .max()
            .unwrap_or_default();
        if ballot < higher {
            return Err(higher);
        }
        if ballot > self.promised_all {
            self.promised_all = ballot;
            if self
                .write(io, &Record::PromiseAll { ballot }, true)
                .is_err()
            {
                return Err(ballot);
            }
        }
        Ok(self
            .instances
            .range(from..)
            .filter_map(|(&seq, i)| {
                let a = &i.acceptor;
                match (&a.decided, &a.accepted) {
                    (Some(v), _) => Some((seq, Vote::Decided(v.clone()))),
                    (None, Some((b, v))) => Some((seq, Vote::Accepted(*b, v.clone()))),
                    (None, None) => None,
                }
            })
            .collect())
    }

    pub(crate) fn on_prepare_all(
        &mut self,
        io: &mut dyn PaxosIo<V>,
        peer: NodeId,
        ballot: Ballot,
        from: u64,
    ) {
        if !self.votes(from) {
            return self.ignore(self.not_voting_reason(), peer, "PrepareAll");
        }
        let done = self.my_done();
        let replies = match self.promise_all(io, ballot, from) {
            Ok(votes) => {
                self.saw_leader(io, ballot);
                let parts = split_votes(votes);
                let count = parts.len() as u32;
                parts
                    .into_iter()
                    .zip(0..)
                    .map(|(votes, part)| PaxosMsg::PromiseAll {
                        ballot,
                        votes,
                        max: self.max,
                        done,
                        part,
                        parts: count,
                    })
                    .collect()
            }
            Err(promised) => vec![PaxosMsg::RejectAll {
                ballot,
                promised,
                done,
            }],
        };
        if self.failed.is_none() {
            for reply in replies {
                io.send(peer, reply);
            }
        }
    }

    pub(crate) fn on_promise_all(
        &mut self,
        io: &mut dyn PaxosIo<V>,
        peer: NodeId,
        ballot: Ballot,
        votes: Vec<(u64, Vote<V>)>,
        max: Option<u64>,
        (part, parts): (u32, u32),
    ) {
        if part >= parts {
            return self.ignore(Ignored::Malformed, peer, "PromiseAll");
        }
        if let Some(m) = max {
            self.see(m);
        }
        let Some(lead) = self
            .lead
            .as_mut()
            .filter(|l| l.ballot == ballot && !l.ready)
        else {
            return self.ignore(Ignored::StaleCampaign, peer, "PromiseAll");
        };
        let got = lead.parts.entry(peer).or_default();
        got.insert(part);
        if got.len() as u32 == parts {
            lead.promises.insert(peer);
        }
        let mut decided = Vec::new();
        for (seq, vote) in votes {
            match vote {
                Vote::Decided(v) => decided.push((seq, v)),
                Vote::Accepted(b, v) => {
                    if lead.reports.get(&seq).is_none_or(|(rb, _)| b > *rb) {
                        lead.reports.insert(seq, (b, v));
                    }
                }
            }
        }
        // Promised by a majority of every configuration it may propose in: each instance
        // from `from` up to what this peer knows (see `fast_ballot`).
        let ready = self.schedule.quorum_of_each(&lead.promises);
        for (seq, v) in decided {
            self.see(seq);
            self.learn(io, seq, v);
        }
        if ready {
            self.become_leader(io);
        }
    }

    /// A majority promised: re-propose every reported vote under the new ballot.
    fn become_leader(&mut self, io: &mut dyn PaxosIo<V>) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        lead.ready = true;
        let ballot = lead.ballot;
        let reports = std::mem::take(&mut lead.reports);
        tracing::debug!(peer = %self.me, ?ballot, "leading");
        self.leader_seen = Some((ballot, io.now()));
        for (seq, (_, value)) in reports {
            if !matches!(self.status(seq), Fate::Pending) {
                continue;
            }
            let now = io.now();
            let backoff = self.config.retry;
            let inst = self.instances.entry(seq).or_default();
            let p = inst.proposer.get_or_insert_with(|| Proposer {
                value: value.clone(),
                phase: Phase::Idle,
                highest_round: 0,
                retry_at: now,
                backoff,
            });
            p.retry_at = now + backoff;
            self.proposing.insert(seq);
            self.accept_phase(io, seq, ballot, value);
        }
    }

    /// Whether `start(seq)` may skip phase 1: this peer leads, `seq` is covered, and the
    /// peers that promised include a majority of `config(seq)`'s voters. After a
    /// configuration change takes effect, that may fail until the leader has prepared the
    /// new voters ([`lead_tick`](Self::lead_tick) campaigns again).
    pub(crate) fn fast_ballot(&self, seq: u64) -> Option<Ballot> {
        let lead = self.lead.as_ref()?;
        let covered = self
            .config_for(seq)
            .is_some_and(|c| c.quorum(&lead.promises));
        (lead.ready && seq >= lead.from && covered).then_some(lead.ballot)
    }

    /// Hears of `promised` (in a refusal, a promise or a heartbeat): a leader with a lower
    /// ballot steps down.
    pub(crate) fn outbid(&mut self, promised: Ballot) {
        if self.lead.as_ref().is_some_and(|l| promised > l.ballot) {
            tracing::debug!(peer = %self.me, ?promised, "stepping down");
            self.lead = None;
        }
    }

    /// Notes that the peer of `ballot` leads (or campaigns) and was heard from now.
    pub(crate) fn saw_leader(&mut self, io: &mut dyn PaxosIo<V>, ballot: Ballot) {
        if self.leader_seen.is_none_or(|(b, _)| ballot >= b) {
            self.leader_seen = Some((ballot, io.now()));
        }
        self.outbid(ballot);
    }

    /// Sends heartbeats while leading. They carry what the leader knows of every peer's `done`,
    /// because followers talk only to the leader and would otherwise never learn each
    /// other's, and so never forget anything.
    ///
    /// A configuration change also ends up here: a leader that is no longer a voter of the
    /// newest configuration steps down (the others campaign once its heartbeats stop), and
    /// one whose promises do not cover a majority of every configuration it knows prepares
    /// again, from its application's next instance.
    pub(crate) fn lead_tick(&mut self, io: &mut dyn PaxosIo<V>) {
        let now = io.now();
        let from = self.my_done();
        if let Some(lead) = self.lead.as_ref().filter(|l| l.ready) {
            if !self.may_lead(from) {
                tracing::info!(peer = %self.me, "no longer a voter: stepping down");
                self.lead = None;
                return;
            }
            if !self.schedule.quorum_of_each(&lead.promises) {
                tracing::debug!(peer = %self.me, from, "configuration changed: preparing again");
                return self.campaign(io, from);
            }
        }
        let Some(lead) = self.lead.as_mut().filter(|l| l.ready) else {
            return;
        };
        if now < lead.heartbeat_at {
            return;
        }
        lead.heartbeat_at = now + HEARTBEAT;
        let ballot = lead.ballot;
        for to in self.others() {
            let done = self.my_done();
            let done_all = self.done_below.iter().map(|(&p, &d)| (p, d)).collect();
            io.send(
                to,
                PaxosMsg::Heartbeat {
                    ballot,
                    done,
                    done_all,
                    max: self.max,
                },
            );
        }
    }
}

/// Cuts an acceptor's votes into the parts of its `PromiseAll`: each part at most
/// [`limits::BATCH_BYTES`] of votes or a single vote (one log entry, which fits a frame), so
/// every part fits a frame however many votes in flight there are. Always at least one part.
fn split_votes<V: Value>(votes: Vec<(u64, Vote<V>)>) -> Vec<Vec<(u64, Vote<V>)>> {
    let mut parts = vec![Vec::new()];
    let mut bytes = 0;
    for vote in votes {
        let size = postcard::experimental::serialized_size(&vote).unwrap_or(0);
        let current = parts.last().map_or(0, Vec::len);
        if current > 0 && bytes + size > limits::BATCH_BYTES {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(part) = parts.last_mut() {
            part.push(vote);
        }
    }
    parts
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn votes_are_cut_into_parts_that_fit_a_frame_and_none_is_lost() {
        let big = vec![7u8; limits::BATCH_BYTES * 6 / 10];
        let votes: Vec<(u64, Vote<Vec<u8>>)> = (0..3)
            .map(|seq| (seq, Vote::Decided(big.clone())))
            .chain([(3, Vote::Decided(vec![1]))])
            .collect();
        let parts = split_votes(votes.clone());
        assert_eq!(parts.len(), 3, "two large votes never share a part");
        assert_eq!(parts.concat(), votes);
        for part in &parts {
            let bytes = postcard::experimental::serialized_size(part).unwrap();
            assert!(bytes <= limits::BATCH_BYTES + 64, "a part of {bytes} bytes");
        }
        assert_eq!(split_votes::<Vec<u8>>(Vec::new()), vec![Vec::new()]);
    }
}
