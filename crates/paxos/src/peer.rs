//! The Paxos peer: the course's API (`start`, `status`, `done`, `min`, `max`) over a table of
//! instances, each with an acceptor, a learner and possibly a proposer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use synod_node::NodeId;

use crate::barrier::Barriers;
use crate::config::{Config, ConfigError, Schedule};
use crate::durable::{AcceptorState, Membership, PaxosState, Record};
use crate::guard::Ignored;
use crate::instance::{Instance, Phase, Proposer};
use crate::io::PaxosIo;
use crate::lead::Lead;
use crate::msg::{Ballot, PaxosMsg};
use crate::{Fate, PaxosConfig, PaxosError, Value};

/// One Paxos peer. See the crate documentation for the protocol and its guarantees.
#[derive(Debug, Clone, Hash)]
pub struct Paxos<V> {
    /// The peers this one was started with: whom it talks to before it knows a schedule,
    /// and whom a rejoin asks.
    pub(crate) peers: Vec<NodeId>,
    pub(crate) me: NodeId,
    pub(crate) config: PaxosConfig,
    /// The schedule this peer was started with (the group's first configuration, or none
    /// for a peer that joins a running group), restored by a recovery without a snapshot.
    initial: Schedule,
    /// The configurations of the instances from the application's next one on.
    pub(crate) schedule: Schedule,
    /// Every peer of `schedule`, sorted (see [`Paxos::members`]): asked on every message.
    members: Vec<NodeId>,
    /// This life's ballot nonce (see [`Ballot`]).
    pub(crate) nonce: u64,
    pub(crate) instances: BTreeMap<u64, Instance<V>>,
    /// Instances this peer is proposing in and has not seen decided.
    pub(crate) proposing: BTreeSet<u64>,
    /// Per peer, the highest `done_below` heard from it.
    pub(crate) done_below: BTreeMap<NodeId, u64>,
    min: u64,
    pub(crate) max: Option<u64>,
    /// The acceptor's promise for every instance (see [`crate::lead`]); an instance's
    /// effective promise is the higher of this and its own.
    pub(crate) promised_all: Ballot,
    /// This peer's campaign or leadership.
    pub(crate) lead: Option<Lead<V>>,
    /// The highest leader ballot heard of, and when.
    pub(crate) leader_seen: Option<(Ballot, Duration)>,
    /// Highest round this life used (in a campaign or a classic round) or saw refusing a
    /// campaign: every new ballot of this peer is above it, so no two share a number.
    pub(crate) seen_round: u64,
    pub(crate) barriers: Barriers,
    pub(crate) membership: Membership,
    /// While rejoining: when to (re)send the query, whether it was sent yet, and the answers.
    join_query_at: Duration,
    join_asked: bool,
    /// Per answering peer: the highest instance it knows of and its ballot floor.
    join_replies: BTreeMap<NodeId, (Option<u64>, Ballot)>,
    held_bytes: usize,
    requests: u64,
    learned: u64,
    records: usize,
    record_bytes: usize,
    lagging: Option<NodeId>,
    pub(crate) failed: Option<String>,
}

/// At most this many decisions answer one `Learn`...
pub const LEARN_BATCH: usize = 256;
/// ...and about this many bytes of values.
const LEARN_BYTES: usize = 8 << 20;

/// How long a rejoining peer waits between rounds of `JoinQuery`.
const JOIN_RETRY: Duration = Duration::from_millis(250);

impl<V: Value> Paxos<V> {
    /// Peer `me` (an index into `peers`) of the group `peers`, governed by `Config::initial(peers)`
    /// from instance 0. Call [`recover`](Self::recover) from the embedding node's `on_start`
    /// before anything else.
    pub fn new(peers: Vec<NodeId>, me: usize, config: PaxosConfig) -> Self {
        let schedule = Schedule::starting_with(Config::initial(peers.clone()));
        let me = peers[me];
        Self::blank(peers, me, config, schedule)
    }

    /// Peer `me`, new to a running group whose peers include `contacts`: it knows no
    /// configuration, so it acts in no instance until the application installs the group's
    /// schedule with its state ([`install_schedule`](Self::install_schedule)).
    pub fn joining(contacts: Vec<NodeId>, me: NodeId, config: PaxosConfig) -> Self {
        Self::blank(contacts, me, config, Schedule::default())
    }

    fn blank(peers: Vec<NodeId>, me: NodeId, config: PaxosConfig, initial: Schedule) -> Self {
        let mut paxos = Paxos {
            peers,
            me,
            config,
            schedule: initial.clone(),
            members: Vec::new(),
            initial,
            nonce: 0,
            instances: BTreeMap::new(),
            proposing: BTreeSet::new(),
            done_below: BTreeMap::new(),
            min: 0,
            max: None,
            promised_all: Ballot::default(),
            lead: None,
            leader_seen: None,
            seen_round: 0,
            barriers: Barriers::default(),
            membership: Membership::Rejoining,
            join_query_at: Duration::ZERO,
            join_asked: false,
            join_replies: BTreeMap::new(),
            held_bytes: 0,
            requests: 0,
            learned: 0,
            records: 0,
            record_bytes: 0,
            lagging: None,
            failed: None,
        };
        paxos.schedule_changed();
        paxos
    }

    // ---- the course's API ------------------------------------------------------------------

    /// Asks the group to agree on `value` for instance `seq`. Returns at once; use
    /// [`status`](Self::status) to learn the outcome. Ignored below [`min`](Self::min), when
    /// the instance is already decided, or when this peer is already proposing in it.
    pub fn start(&mut self, io: &mut dyn PaxosIo<V>, seq: u64, value: V) {
        if self.failed.is_some() || seq < self.min {
            return;
        }
        self.see(seq);
        let now = io.now();
        let inst = self.instances.entry(seq).or_default();
        if inst.acceptor.decided.is_some() || inst.proposer.is_some() {
            return;
        }
        let proposed = value.clone();
        inst.proposer = Some(Proposer {
            value,
            phase: Phase::Idle,
            highest_round: 0,
            retry_at: now,
            backoff: self.config.retry,
        });
        self.proposing.insert(seq);
        self.reweigh(seq);
        match self.fast_ballot(seq) {
            Some(ballot) => {
                if let Some(p) = self.proposer(seq) {
                    p.retry_at = now + p.backoff;
                }
                self.accept_phase(io, seq, ballot, proposed);
            }
            None => self.begin_round(io, seq),
        }
    }

    /// What this peer knows about instance `seq`, without asking anyone.
    pub fn status(&self, seq: u64) -> Fate<'_, V> {
        if seq < self.min {
            return Fate::Forgotten;
        }
        match self
            .instances
            .get(&seq)
            .and_then(|i| i.acceptor.decided.as_ref())
        {
            Some(value) => Fate::Decided(value),
            None => Fate::Pending,
        }
    }

    /// This peer's application no longer needs instances `<= seq`.
    pub fn done(&mut self, seq: u64) {
        let below = seq.saturating_add(1);
        if below > self.my_done() {
            self.done_below.insert(self.me, below);
            self.schedule.prune_below(below);
            self.schedule_changed();
            self.forget();
        }
    }

    /// One more than the smallest `done` argument over this peer and the voters of the
    /// configurations it knows (0 until every one has called `done`). Instances below it are
    /// forgotten. Learners are not waited for: one that falls behind fetches the
    /// application's state instead.
    pub fn min(&self) -> u64 {
        self.min
    }

    /// The highest instance this peer has heard of, `None` before any. Forgetting never
    /// lowers it.
    pub fn max(&self) -> Option<u64> {
        self.max
    }

    // ---- driving -------------------------------------------------------------------------

    /// Restores the durable state (the `PaxosState` from the node's snapshot and the log
    /// records after it) and draws this life's ballot nonce. An empty storage means a new
    /// peer, or one that lost its disk if [`PaxosConfig::rejoin`] says so.
    pub fn recover(
        &mut self,
        io: &mut dyn PaxosIo<V>,
        state: Option<PaxosState<V>>,
        records: &[Vec<u8>],
    ) -> Result<(), PaxosError> {
        let fresh = state.is_none() && records.is_empty();
        *self = Self::blank(
            std::mem::take(&mut self.peers),
            self.me,
            self.config.clone(),
            std::mem::take(&mut self.initial),
        );
        self.nonce = io.rng().next_u64();
        self.barriers = Barriers::starting_at(io.rng().next_u64());
        if let Some(state) = state {
            self.load(state)?;
        }
        for bytes in records {
            let record: Record<V> =
                postcard::from_bytes(bytes).map_err(|e| PaxosError::Decode(e.to_string()))?;
            self.replay(record);
        }
        self.records = records.len();
        self.record_bytes = records.iter().map(Vec::len).sum();
        if fresh && !self.config.rejoin {
            self.membership = Membership::Voting { horizon: None };
            self.write(io, &Record::Joined { horizon: None }, true)?;
        }
        if self.membership == Membership::Rejoining {
            self.join_query_at = io.now() + self.config.rejoin_quiet;
        }
        Ok(())
    }

    /// Handles a message from `from`. Messages from nodes outside every configuration this
    /// peer knows are ignored.
    pub fn handle(&mut self, io: &mut dyn PaxosIo<V>, from: NodeId, msg: PaxosMsg<V>) {
        if from == self.me || !self.is_member(from) {
            return self.ignore(Ignored::NotAPeer, from, msg.kind());
        }
        let peer = from;
        if self.failed.is_some() {
            return self.ignore(Ignored::Failed, from, msg.kind());
        }
        if msg.is_request() {
            self.requests += 1;
        }
        if msg.done() > self.done_of(peer) {
            self.done_below.insert(peer, msg.done());
            self.forget();
        }
        if let Some(seq) = msg.seq() {
            self.see(seq);
        }
        match msg {
            PaxosMsg::Prepare { seq, ballot, .. } => self.on_prepare(io, peer, seq, ballot),
            PaxosMsg::Accept {
                seq, ballot, value, ..
            } => self.on_accept(io, peer, seq, ballot, value),
            PaxosMsg::Decided { seq, .. } | PaxosMsg::AlreadyDecided { seq, .. }
                if seq < self.min =>
            {
                self.ignore(Ignored::Forgotten, from, "Decided")
            }
            PaxosMsg::Decided { seq, value, .. } | PaxosMsg::AlreadyDecided { seq, value, .. } => {
                // A proposer that learns the outcome from a peer (rather than by counting
                // accepts) passes it on: peers that never proposed would otherwise not hear.
                if self.proposing.contains(&seq) {
                    for to in self.others().into_iter().filter(|&to| to != from) {
                        let done = self.my_done();
                        let value = value.clone();
                        io.send(to, PaxosMsg::Decided { seq, value, done });
                    }
                }
                self.learn(io, seq, value)
            }
            PaxosMsg::Promise {
                seq,
                ballot,
                accepted,
                ..
            } => self.on_promise(io, peer, seq, ballot, accepted),
            PaxosMsg::Accepted { seq, ballot, .. } => self.on_accepted(io, peer, seq, ballot),
            PaxosMsg::Reject { seq, promised, .. } => {
                if let Some(p) = self.proposer(seq) {
                    p.highest_round = p.highest_round.max(promised.round);
                }
                self.outbid(promised);
            }
            PaxosMsg::PrepareAll { ballot, from, .. } => {
                self.on_prepare_all(io, peer, ballot, from)
            }
            PaxosMsg::PromiseAll {
                ballot,
                votes,
                max,
                part,
                parts,
                ..
            } => self.on_promise_all(io, peer, ballot, votes, max, (part, parts)),
            PaxosMsg::RejectAll { promised, .. } => {
                self.seen_round = self.seen_round.max(promised.round);
                self.outbid(promised);
            }
            PaxosMsg::Heartbeat {
                ballot,
                done_all,
                max,
                ..
            } => {
                self.saw_leader(io, ballot);
                self.learn_done(&done_all);
                if let Some(m) = max {
                    self.see(m);
                }
            }
            PaxosMsg::Forgotten { seq, .. } => {
                if matches!(self.status(seq), Fate::Pending) {
                    // Every peer was done with an instance this peer never learned: only the
                    // application's state can bring it up to date.
                    self.lagging = Some(from);
                    self.stop_proposing(seq);
                }
            }
            PaxosMsg::JoinQuery { .. } => self.on_join_query(io, peer),
            PaxosMsg::JoinInfo { max, floor, .. } => self.on_join_info(io, peer, max, floor),
            PaxosMsg::ReadQuery { id, .. } => self.on_read_query(io, peer, id),
            PaxosMsg::ReadMax { id, max, .. } => self.on_read_max(peer, id, max),
            PaxosMsg::Learn { from, .. } => self.on_learn(io, peer, from),
        }
    }

    /// Call periodically (the embedding node owns the timer): retries proposals that have
    /// not decided in time, and drives a rejoin.
    pub fn tick(&mut self, io: &mut dyn PaxosIo<V>) {
        if self.failed.is_some() {
            return;
        }
        let now = io.now();
        if self.membership == Membership::Rejoining && now >= self.join_query_at {
            self.join_query_at = now + JOIN_RETRY;
            self.join_asked = true;
            for to in self.others() {
                io.send(
                    to,
                    PaxosMsg::JoinQuery {
                        done: self.my_done(),
                    },
                );
            }
            self.try_join(io);
        }
        self.lead_tick(io);
        self.barrier_tick(io);
        let due: Vec<u64> = self
            .proposing
            .iter()
            .copied()
            .filter(|seq| {
                self.instances
                    .get(seq)
                    .and_then(|i| i.proposer.as_ref())
                    .is_some_and(|p| p.retry_at <= now)
            })
            .collect();
        for seq in due {
            self.begin_round(io, seq);
        }
    }

    // ---- inspection ------------------------------------------------------------------------

    /// Serialized bytes of the values this peer holds in memory, over all instances. Drops
    /// when instances are forgotten: the measure of the course's memory tests.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Instances held in memory.
    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    /// Requests (prepare, accept, decided, join query) received from other peers: the
    /// course's `rpcCount`.
    pub fn requests_received(&self) -> u64 {
        self.requests
    }

    /// Decisions learned since this peer started (not counting recovered ones): lets an
    /// observer skip looking at [`decided`](Self::decided) when nothing changed.
    pub fn decisions_learned(&self) -> u64 {
        self.learned
    }

    /// Every decided instance still held, in order.
    pub fn decided(&self) -> impl Iterator<Item = (u64, &V)> {
        self.instances
            .iter()
            .filter_map(|(&seq, i)| i.acceptor.decided.as_ref().map(|v| (seq, v)))
    }

    /// The value this peer's acceptor accepted in `seq`, if any and not yet decided here.
    pub fn accepted(&self, seq: u64) -> Option<&V> {
        let inst = self.instances.get(&seq)?;
        inst.acceptor.accepted.as_ref().map(|(_, v)| v)
    }

    /// The acceptor state of every instance held, in order: what a checker inspects.
    pub fn acceptors(&self) -> impl Iterator<Item = (u64, &AcceptorState<V>)> {
        self.instances.iter().map(|(&seq, i)| (seq, &i.acceptor))
    }

    /// The ballot promised for every instance (multi-Paxos phase 1).
    pub fn promised_all(&self) -> Ballot {
        self.promised_all
    }

    pub fn membership(&self) -> Membership {
        self.membership
    }

    /// This peer's node id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The configurations of the instances from the application's next one on (empty for a
    /// peer that joined and has not received the group's state yet).
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The configuration of the application's next instance, if known.
    pub fn config(&self) -> Option<&Config> {
        self.config_for(self.my_done())
    }

    // ---- membership changes ----------------------------------------------------------------

    /// The application applied a configuration change decided at instance `at` (its next
    /// instance: call this before [`done`](Self::done)`(at)`): it governs the instances from
    /// `at + α` on. Refused (and nothing changes) unless it is well formed, its epoch is the
    /// next one and the previous change is in effect at `at`; every replica refuses alike,
    /// since all of that depends only on the log. Only a group with an α can change.
    pub fn reconfigure(&mut self, at: u64, config: Config) -> Result<(), ConfigError> {
        let Some(alpha) = self.config.alpha else {
            return Err(ConfigError::Static);
        };
        // Know before acting: the configuration is scheduled exactly when instance `at` is
        // applied, before any peer can know instance `at + α`.
        assert_eq!(at, self.my_done(), "configuration applied out of order");
        self.schedule.add(at, at + alpha, config)?;
        self.schedule_changed();
        tracing::info!(peer = %self.me, from = at + alpha, latest = ?self.schedule.latest(), "configuration change scheduled");
        Ok(())
    }

    /// Installs the schedule that came with the application's state (a snapshot from a
    /// peer, as of its next instance); call it before [`done`](Self::done) with that state's
    /// last instance.
    pub fn install_schedule(&mut self, schedule: Schedule) {
        assert!(
            !schedule.is_empty(),
            "an installed schedule governs some instances"
        );
        self.schedule = schedule;
        self.schedule_changed();
    }

    /// Why this peer stopped (a storage failure), if it did. A failed peer ignores all input.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// A peer that forgot an instance this one still needs, reported once: the application
    /// should fetch a snapshot of its state from it.
    pub fn take_lagging(&mut self) -> Option<NodeId> {
        self.lagging.take()
    }

    /// Log records written since the last [`checkpoint`](Self::checkpoint) (or recovery).
    pub fn log_records(&self) -> usize {
        self.records
    }

    /// Bytes of the log records counted by [`log_records`](Self::log_records).
    pub fn log_bytes(&self) -> usize {
        self.record_bytes
    }

    /// The durable state, for the embedding node's next snapshot, which stands for every
    /// record appended so far. The node must either install it at once (which empties the
    /// log) or hand it to a background snapshot (`Storage::begin_snapshot`), which keeps the
    /// records appended after it in the log: replayed over this state, they give the state
    /// Paxos is in when they were appended.
    pub fn checkpoint(&mut self) -> PaxosState<V> {
        self.records = 0;
        self.record_bytes = 0;
        PaxosState {
            instances: self
                .instances
                .iter()
                .map(|(&seq, i)| (seq, i.acceptor.clone()))
                .collect(),
            done_below: self.done_below.clone(),
            max: self.max,
            membership: self.membership,
            promised_all: self.promised_all,
            schedule: self.schedule.clone(),
        }
    }

    // ---- proposer --------------------------------------------------------------------------

    fn begin_round(&mut self, io: &mut dyn PaxosIo<V>, seq: u64) {
        let Some(voters) = self.config_for(seq).map(|c| c.voters.clone()) else {
            return self.postpone(io, seq);
        };
        let now = io.now();
        let votes = self.votes(seq) && voters.contains(&self.me);
        let (me, nonce, max_retry) = (self.me, self.nonce, self.config.max_retry);
        let Some(inst) = self.instances.get_mut(&seq) else {
            return;
        };
        let Some(p) = inst.proposer.as_mut() else {
            return;
        };
        let promised = inst.acceptor.promised.max(self.promised_all);
        // Above every round this life used anywhere, a campaign's included: a campaign's
        // ballot covers every instance from its start, so a classic ballot equal to it could
        // carry another value in the same instance (two values under one ballot).
        let round = p.highest_round.max(promised.round).max(self.seen_round) + 1;
        p.highest_round = round;
        self.seen_round = round;
        let ballot = Ballot {
            round,
            peer: me.0,
            nonce,
        };
        // Randomized, growing retry intervals keep dueling proposers from colliding forever.
        let jitter = io.rng().gen_range(0..=p.backoff.as_micros() as u64);
        p.retry_at = now + p.backoff + Duration::from_micros(jitter);
        p.backoff = (p.backoff * 2).min(max_retry);
        let mut promises = BTreeSet::new();
        let mut best = None;
        if votes {
            inst.acceptor.promised = ballot;
            promises.insert(me);
            best = inst.acceptor.accepted.clone();
        }
        p.phase = Phase::Preparing {
            ballot,
            promises,
            best,
        };
        self.reweigh(seq);
        if votes
            && self
                .write(io, &Record::Promise { seq, ballot }, true)
                .is_err()
        {
            return;
        }
        for to in voters.into_iter().filter(|&v| v != me) {
            let done = self.my_done();
            io.send(to, PaxosMsg::Prepare { seq, ballot, done });
        }
        self.after_promise(io, seq);
    }

    /// Know before acting: this peer has not applied far enough to know which peers' votes
    /// count in `seq` (or knows no configuration at all yet), so its proposal there waits
    /// and tries again at its next retry.
    fn postpone(&mut self, io: &mut dyn PaxosIo<V>, seq: u64) {
        let retry_at = io.now() + self.config.retry;
        if let Some(p) = self.proposer(seq) {
            tracing::trace!(seq, "configuration not known yet; proposal postponed");
            p.phase = Phase::Idle;
            p.retry_at = retry_at;
        }
        self.reweigh(seq);
    }

    fn on_promise(
        &mut self,
        io: &mut dyn PaxosIo<V>,
        peer: NodeId,
        seq: u64,
        ballot: Ballot,
        accepted: Option<(Ballot, V)>,
    ) {
        let from = peer;
        let Some(p) = self.proposer(seq) else {
            return self.ignore(Ignored::NotProposing, from, "Promise");
        };
        let Phase::Preparing {
            ballot: current,
            promises,
            best,
        } = &mut p.phase
        else {
            return self.ignore(Ignored::StaleRound, from, "Promise");
        };
        if *current != ballot {
            return self.ignore(Ignored::StaleRound, from, "Promise");
        }
        promises.insert(peer);
        if let Some((b, v)) = accepted {
            // An acceptor that promised `ballot` can only have accepted below it.
            assert!(
                b < ballot,
                "instance {seq}: promise of {ballot:?} reports {b:?}"
            );
            if best.as_ref().is_none_or(|(bb, _)| b > *bb) {
                *best = Some((b, v));
            }
        }
        self.reweigh(seq);
        self.after_promise(io, seq);
    }

    /// Moves to the accept phase once a majority of `config(seq)`'s voters promised.
    fn after_promise(&mut self, io: &mut dyn PaxosIo<V>, seq: u64) {
        let promised = match self.instances.get(&seq).and_then(|i| i.proposer.as_ref()) {
            Some(Proposer {
                phase: Phase::Preparing { promises, .. },
                ..
            }) => self.quorum_in(seq, promises),
            _ => false,
        };
        if !promised {
            return;
        }
        let Some(p) = self.proposer(seq) else {
            return;
        };
        let Phase::Preparing { ballot, best, .. } = &mut p.phase else {
            return;
        };
        let ballot = *ballot;
        let value = match best.take() {
            Some((_, v)) => v,
            None => p.value.clone(),
        };
        self.accept_phase(io, seq, ballot, value);
    }

    /// Phase 2 of `seq` under `ballot` with `value`: votes locally (durably) if allowed, asks
    /// the others.
    pub(crate) fn accept_phase(
        &mut self,
        io: &mut dyn PaxosIo<V>,
        seq: u64,
        ballot: Ballot,
        value: V,
    ) {
        let Some(voters) = self.config_for(seq).map(|c| c.voters.clone()) else {
            return self.postpone(io, seq);
        };
        let me = self.me;
        let votes = self.votes(seq) && voters.contains(&me);
        let promised_all = self.promised_all;
        let Some(inst) = self.instances.get_mut(&seq) else {
            return;
        };
        let Some(p) = inst.proposer.as_mut() else {
            return;
        };
        let mut accepts = BTreeSet::new();
        let local = votes && ballot >= inst.acceptor.promised.max(promised_all);
        if local {
            inst.acceptor.promised = ballot;
            inst.acceptor.accepted = Some((ballot, value.clone()));
            accepts.insert(me);
        }
        p.phase = Phase::Accepting {
            ballot,
            value: value.clone(),
            accepts,
        };
        self.reweigh(seq);
        if local {
            let record = Record::Accept {
                seq,
                ballot,
                value: value.clone(),
            };
            if self.write(io, &record, true).is_err() {
                return;
            }
        }
        for to in voters.into_iter().filter(|&v| v != me) {
            let done = self.my_done();
            let value = value.clone();
            io.send(
                to,
                PaxosMsg::Accept {
                    seq,
                    ballot,
                    value,
                    done,
                },
            );
        }
        self.after_accept(io, seq);
    }

    fn on_accepted(&mut self, io: &mut dyn PaxosIo<V>, peer: NodeId, seq: u64, ballot: Ballot) {
        let from = peer;
        let Some(p) = self.proposer(seq) else {
            return self.ignore(Ignored::NotProposing, from, "Accepted");
        };
        match &mut p.phase {
            Phase::Accepting {
                ballot: current,
                accepts,
                ..
            } if *current == ballot => {
                accepts.insert(peer);
            }
            _ => return self.ignore(Ignored::StaleRound, from, "Accepted"),
        }
        self.after_accept(io, seq);
    }

    /// Declares the value decided once a majority of `config(seq)`'s voters accepted, and
    /// tells every peer, learners included.
    fn after_accept(&mut self, io: &mut dyn PaxosIo<V>, seq: u64) {
        let Some(p) = self.instances.get(&seq).and_then(|i| i.proposer.as_ref()) else {
            return;
        };
        let Phase::Accepting { value, accepts, .. } = &p.phase else {
            return;
        };
        if !self.quorum_in(seq, accepts) {
            return;
        }
        let value = value.clone();
        for to in self.others() {
            let done = self.my_done();
            let value = value.clone();
            io.send(to, PaxosMsg::Decided { seq, value, done });
        }
        self.learn(io, seq, value);
    }

    // ---- acceptor and learner --------------------------------------------------------------

    /// Answers a request about an instance this peer forgot or knows is decided, instead of
    /// voting. Returns whether it answered.
    fn answer_settled(&mut self, io: &mut dyn PaxosIo<V>, peer: NodeId, seq: u64) -> bool {
        let done = self.my_done();
        let reply = match self.status(seq) {
            Fate::Forgotten => PaxosMsg::Forgotten { seq, done },
            Fate::Decided(value) => PaxosMsg::AlreadyDecided {
                seq,
                value: value.clone(),
                done,
            },
            Fate::Pending => return false,
        };
        io.send(peer, reply);
        true
    }

    /// The acceptor's common gate for a prepare or an accept of `ballot` in `seq`: answers
    /// a settled instance with its decision, ignores instances this peer may not vote in, and
    /// rejects a ballot below its promise (for this instance or for all). Returns whether the
    /// request may be taken.
    fn admit(
        &mut self,
        io: &mut dyn PaxosIo<V>,
        peer: NodeId,
        seq: u64,
        ballot: Ballot,
        what: &'static str,
    ) -> bool {
        if self.answer_settled(io, peer, seq) {
            return false;
        }
        if !self.votes(seq) {
            self.ignore(self.not_voting_reason(), peer, what);
            return false;
        }
        // A peer removed from (or not yet added to) the voters of `seq` stops voting there:
        // its vote would not be counted anyway.
        if self.config_for(seq).is_some_and(|c| !c.is_voter(self.me)) {
            self.ignore(Ignored::NotAVoter, peer, what);
            return false;
        }
        let done = self.my_done();
        let instance = self.instances.entry(seq).or_default();
        let promised = instance.acceptor.promised.max(self.promised_all);
        if ballot < promised {
            let reject = PaxosMsg::Reject {
                seq,
                promised,
                done,
            };
            io.send(peer, reject);
            return false;
        }
        true
    }

    fn on_prepare(&mut self, io: &mut dyn PaxosIo<V>, peer: NodeId, seq: u64, ballot: Ballot) {
        if !self.admit(io, peer, seq, ballot, "Prepare") {
            return;
        }
        let done = self.my_done();
        let inst = self.instances.entry(seq).or_default();
        let changed = ballot > inst.acceptor.promised;
        inst.acceptor.promised = ballot;
        let accepted = inst.acceptor.accepted.clone();
        if changed
            && self
                .write(io, &Record::Promise { seq, ballot }, true)
                .is_err()
        {
            return;
        }
        io.send(
            peer,
            PaxosMsg::Promise {
                seq,
                ballot,
                accepted,
                done,
            },
        );
    }

    fn on_accept(
        &mut self,
        io: &mut dyn PaxosIo<V>,
        peer: NodeId,
        seq: u64,
        ballot: Ballot,
        value: V,
    ) {
        if !self.admit(io, peer, seq, ballot, "Accept") {
            return;
        }
        let done = self.my_done();
        let promised_all = self.promised_all;
        let inst = self.instances.entry(seq).or_default();
        assert!(
            ballot >= inst.acceptor.promised.max(promised_all),
            "instance {seq}: accepting {ballot:?} below the promise {:?}",
            inst.acceptor.promised.max(promised_all)
        );
        // A duplicate of an accept already taken carries the same value (one value per ballot).
        let fresh = match &inst.acceptor.accepted {
            Some((b, v)) if *b == ballot => {
                debug_assert!(*v == value, "instance {seq}: two values under {ballot:?}");
                false
            }
            _ => true,
        };
        inst.acceptor.promised = ballot;
        if fresh {
            inst.acceptor.accepted = Some((ballot, value.clone()));
            self.reweigh(seq);
            let record = Record::Accept { seq, ballot, value };
            if self.write(io, &record, true).is_err() {
                return;
            }
        }
        io.send(peer, PaxosMsg::Accepted { seq, ballot, done });
    }

    pub(crate) fn learn(&mut self, io: &mut dyn PaxosIo<V>, seq: u64, value: V) {
        if seq < self.min {
            return;
        }
        let inst = self.instances.entry(seq).or_default();
        if let Some(decided) = &inst.acceptor.decided {
            // The heart of consensus, checked where it would break: a decision never changes.
            debug_assert!(
                *decided == value,
                "instance {seq}: learned {value:?}, but {decided:?} was decided"
            );
            return;
        }
        // The decision supersedes the acceptor's vote: any later request is answered with it.
        inst.acceptor.decided = Some(value.clone());
        inst.acceptor.accepted = None;
        self.learned += 1;
        inst.proposer = None;
        self.proposing.remove(&seq);
        self.reweigh(seq);
        // No persist barrier of its own: a lost decision is learned again from the acceptors.
        let _ = self.write(io, &Record::Decided { seq, value }, false);
    }

    // ---- catching up ---------------------------------------------------------------------

    /// Asks for the decisions from instance `from` on: of the leader if one is heard of,
    /// else of every other peer. For a peer that is behind (its application waits on an
    /// instance that others decided), so it needs one round trip per [`LEARN_BATCH`]
    /// instances instead of a proposal per instance.
    pub fn catch_up(&mut self, io: &mut dyn PaxosIo<V>, from: u64) {
        if self.failed.is_some() {
            return;
        }
        let done = self.my_done();
        let leader = self
            .leader_seen
            .map(|(b, _)| NodeId(b.peer))
            .filter(|&l| l != self.me && self.is_member(l));
        let to = match leader {
            Some(l) => vec![l],
            None => self.others(),
        };
        for to in to {
            io.send(to, PaxosMsg::Learn { from, done });
        }
    }

    /// Answers a `Learn`: the decisions held from `from` on, in order, up to the first
    /// instance not decided here, at most [`LEARN_BATCH`] instances and about
    /// [`LEARN_BYTES`] of values.
    fn on_learn(&mut self, io: &mut dyn PaxosIo<V>, peer: NodeId, from: u64) {
        let to = peer;
        let done = self.my_done();
        if from < self.min {
            return io.send(to, PaxosMsg::Forgotten { seq: from, done });
        }
        let mut answers = Vec::new();
        let mut bytes = 0;
        for (seq, inst) in self.instances.range(from..) {
            let Some(value) = &inst.acceptor.decided else {
                break;
            };
            let contiguous = *seq == from + answers.len() as u64;
            if !contiguous || answers.len() == LEARN_BATCH || bytes >= LEARN_BYTES {
                break;
            }
            bytes += inst.bytes;
            let value = value.clone();
            answers.push(PaxosMsg::Decided {
                seq: *seq,
                value,
                done,
            });
        }
        if answers.is_empty() {
            return self.ignore(Ignored::NothingToTeach, to, "Learn");
        }
        for answer in answers {
            io.send(to, answer);
        }
    }

    // ---- rejoining after a lost disk -------------------------------------------------------

    fn on_join_query(&mut self, io: &mut dyn PaxosIo<V>, peer: NodeId) {
        // A peer that is rejoining itself has no durable past to vouch for: counting its
        // answer could hide a vote or a promise that only its lost disk held.
        if self.membership == Membership::Rejoining {
            return self.ignore(Ignored::Rejoining, peer, "JoinQuery");
        }
        let reply = PaxosMsg::JoinInfo {
            max: self.max,
            floor: self.ballot_floor(),
            done: self.my_done(),
        };
        io.send(peer, reply);
    }

    /// The highest ballot this acceptor has promised, for all instances or for any one it
    /// still holds. Every promise is durable before it is given, so this is durable too.
    fn ballot_floor(&self) -> Ballot {
        self.instances
            .values()
            .map(|i| i.acceptor.promised)
            .chain([self.promised_all])
            .max()
            .unwrap_or_default()
    }

    fn on_join_info(
        &mut self,
        io: &mut dyn PaxosIo<V>,
        peer: NodeId,
        max: Option<u64>,
        floor: Ballot,
    ) {
        if self.membership != Membership::Rejoining {
            return self.ignore(Ignored::NotRejoining, peer, "JoinInfo");
        }
        // Answers that arrive before this life asked were meant for an earlier life and may
        // predate votes it cast.
        if !self.join_asked {
            return self.ignore(Ignored::NotAskedYet, peer, "JoinInfo");
        }
        self.join_replies.insert(peer, (max, floor));
        self.try_join(io);
    }

    /// Joins once `ceil(n/2)` other peers answered. Any majority that counted a vote or a
    /// promise of this peer's lost life holds at least `floor(n/2)` other peers, so it shares
    /// one with the answering set; that peer's durable state covers the instance (so the
    /// *horizon* does) and the ballot (so the *floor* does). From then on this peer votes
    /// only above the horizon and promises at least the floor everywhere, so it can
    /// contradict nothing its earlier life said that counted. `docs/paxos.md` has the
    /// argument, and why [`PaxosConfig::rejoin_quiet`] must outlast in-flight messages.
    fn try_join(&mut self, io: &mut dyn PaxosIo<V>) {
        let needed = self.peers.len().div_ceil(2).min(self.peers.len() - 1);
        if self.join_replies.len() < needed {
            return;
        }
        let horizon = self
            .join_replies
            .values()
            .map(|&(max, _)| max)
            .chain([self.max])
            .max()
            .flatten();
        let floor = self
            .join_replies
            .values()
            .map(|&(_, floor)| floor)
            .chain([self.promised_all])
            .max()
            .unwrap_or_default();
        // The floor is a promise for every instance, written before the membership that
        // lets this peer vote: a crash between the two leaves it rejoining, which is safe.
        if floor > self.promised_all {
            self.promised_all = floor;
            if self
                .write(io, &Record::PromiseAll { ballot: floor }, false)
                .is_err()
            {
                return;
            }
        }
        self.seen_round = self.seen_round.max(floor.round);
        if self.write(io, &Record::Joined { horizon }, true).is_ok() {
            tracing::info!(peer = %self.me, ?horizon, ?floor, "rejoined after disk loss");
            self.membership = Membership::Voting { horizon };
            if let Some(h) = horizon {
                self.see(h);
            }
            self.join_replies.clear();
        }
    }

    // ---- helpers ---------------------------------------------------------------------------

    pub(crate) fn votes(&self, seq: u64) -> bool {
        match self.membership {
            Membership::Rejoining => false,
            Membership::Voting { horizon } => horizon.is_none_or(|h| seq > h),
        }
    }

    /// Why [`votes`](Self::votes) said no.
    pub(crate) fn not_voting_reason(&self) -> Ignored {
        match self.membership {
            Membership::Rejoining => Ignored::Rejoining,
            Membership::Voting { .. } => Ignored::BelowHorizon,
        }
    }

    pub(crate) fn my_done(&self) -> u64 {
        self.done_of(self.me)
    }

    pub(crate) fn done_of(&self, peer: NodeId) -> u64 {
        self.done_below.get(&peer).copied().unwrap_or(0)
    }

    /// Every peer of the configurations this peer knows (the peers it was started with
    /// while it knows none).
    pub fn members(&self) -> BTreeSet<NodeId> {
        if self.schedule.is_empty() {
            return self.peers.iter().copied().collect();
        }
        self.schedule.members()
    }

    /// Whether `peer` is in a configuration this peer knows (or among the peers it was started
    /// with, while it knows none).
    pub fn is_member(&self, peer: NodeId) -> bool {
        self.members.binary_search(&peer).is_ok()
    }

    /// Every other peer of the configurations this peer knows, learners included.
    pub(crate) fn others(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .copied()
            .filter(|&p| p != self.me)
            .collect()
    }

    /// Recomputes [`members`](Self::members)' cache after the schedule changed.
    fn schedule_changed(&mut self) {
        self.members = self.members().into_iter().collect();
    }

    /// Whether `answered` holds a majority of `config(seq)`'s voters. Only asked about an
    /// instance this peer proposes in, which it entered knowing its configuration.
    fn quorum_in(&self, seq: u64, answered: &BTreeSet<NodeId>) -> bool {
        let Some(config) = self.config_for(seq) else {
            unreachable!("instance {seq}: counting votes without knowing its configuration");
        };
        config.quorum(answered)
    }

    /// `config(seq)`, if this peer knows it: with an α ([`PaxosConfig::alpha`]), only for
    /// instances below `done + α`, whose configuration the instances applied so far settle.
    pub(crate) fn config_for(&self, seq: u64) -> Option<&Config> {
        let known = self
            .config
            .alpha
            .is_none_or(|alpha| seq < self.my_done().saturating_add(alpha));
        known.then(|| self.schedule.at(seq)).flatten()
    }

    pub(crate) fn see(&mut self, seq: u64) {
        self.max = self.max.max(Some(seq));
    }

    pub(crate) fn proposer(&mut self, seq: u64) -> Option<&mut Proposer<V>> {
        self.instances.get_mut(&seq)?.proposer.as_mut()
    }

    fn stop_proposing(&mut self, seq: u64) {
        if let Some(inst) = self.instances.get_mut(&seq) {
            inst.proposer = None;
        }
        self.proposing.remove(&seq);
        self.reweigh(seq);
    }

    fn reweigh(&mut self, seq: u64) {
        if let Some(inst) = self.instances.get_mut(&seq) {
            let bytes = inst.weigh();
            self.held_bytes = self.held_bytes - inst.bytes + bytes;
            inst.bytes = bytes;
        }
    }

    /// Takes in another peer's knowledge of its peers' `done`.
    fn learn_done(&mut self, done_all: &[(NodeId, u64)]) {
        for &(peer, theirs) in done_all {
            if self.is_member(peer) && theirs > self.done_of(peer) {
                self.done_below.insert(peer, theirs);
            }
        }
        self.forget();
    }

    /// Drops every instance below the new minimum (over this peer and the voters it knows
    /// of), freeing its memory.
    fn forget(&mut self) {
        let voters: BTreeSet<NodeId> = match self.schedule.is_empty() {
            true => self.peers.iter().copied().collect(),
            false => self
                .schedule
                .entries()
                .iter()
                .flat_map(|(_, c)| c.voters.iter().copied())
                .collect(),
        };
        let min = voters
            .into_iter()
            .chain([self.me])
            .map(|p| self.done_of(p))
            .min()
            .unwrap_or(0);
        if min <= self.min {
            return;
        }
        self.min = min;
        let kept = self.instances.split_off(&min);
        let forgotten = std::mem::replace(&mut self.instances, kept);
        self.held_bytes -= forgotten.values().map(|i| i.bytes).sum::<usize>();
        self.proposing = self.proposing.split_off(&min);
    }

    /// Appends a record and, if `persist_before_send`, puts the storage barrier after it: the
    /// record is then durable before any message this peer sends afterwards leaves the process
    /// (the driver decides when the disk write happens; see [`Storage::persist_before_send`]).
    /// A failure stops the peer for good: it must not answer without durability.
    pub(crate) fn write(
        &mut self,
        io: &mut dyn PaxosIo<V>,
        record: &Record<V>,
        persist_before_send: bool,
    ) -> Result<(), PaxosError> {
        let result: Result<usize, PaxosError> = (|| {
            let bytes =
                postcard::to_allocvec(record).map_err(|e| PaxosError::Decode(e.to_string()))?;
            io.storage().append(&bytes)?;
            if persist_before_send {
                io.storage().persist_before_send()?;
            }
            Ok(bytes.len())
        })();
        match result {
            Ok(len) => {
                self.records += 1;
                self.record_bytes += len;
                Ok(())
            }
            Err(e) => {
                tracing::error!(peer = %self.me, "storage failed, Paxos peer stops: {e}");
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn load(&mut self, state: PaxosState<V>) -> Result<(), PaxosError> {
        if self.config.alpha.is_none() && state.schedule != self.initial {
            return Err(PaxosError::Config(format!(
                "the stored configuration {:?} is not this static group's {:?}",
                state.schedule.latest().map(|(_, c)| c),
                self.initial.latest().map(|(_, c)| c),
            )));
        }
        self.done_below = state.done_below;
        self.schedule = state.schedule;
        self.schedule_changed();
        self.forget();
        self.max = state.max;
        self.membership = state.membership;
        self.promised_all = state.promised_all;
        for (seq, acceptor) in state.instances {
            if seq >= self.min {
                self.install(seq, acceptor);
            }
        }
        Ok(())
    }

    fn install(&mut self, seq: u64, acceptor: AcceptorState<V>) {
        self.instances.insert(
            seq,
            Instance {
                acceptor,
                ..Instance::default()
            },
        );
        self.reweigh(seq);
    }

    fn replay(&mut self, record: Record<V>) {
        let seq = match &record {
            Record::Promise { seq, .. }
            | Record::Accept { seq, .. }
            | Record::Decided { seq, .. } => *seq,
            Record::Joined { horizon } => {
                self.membership = Membership::Voting { horizon: *horizon };
                return;
            }
            Record::PromiseAll { ballot } => {
                self.promised_all = self.promised_all.max(*ballot);
                return;
            }
        };
        self.see(seq);
        if seq < self.min {
            return;
        }
        let a = &mut self.instances.entry(seq).or_default().acceptor;
        match record {
            Record::Promise { ballot, .. } => a.promised = a.promised.max(ballot),
            Record::Accept { ballot, value, .. } => {
                a.promised = a.promised.max(ballot);
                if a.decided.is_none() {
                    a.accepted = Some((ballot, value));
                }
            }
            Record::Decided { value, .. } => {
                a.decided = Some(value);
                a.accepted = None;
            }
            Record::Joined { .. } | Record::PromiseAll { .. } => {}
        }
        self.reweigh(seq);
    }
}
