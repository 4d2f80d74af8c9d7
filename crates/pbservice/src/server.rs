//! The primary/backup server core: pings the view service, serves as primary, backup or
//! spare depending on the view, forwards and transfers state.

use std::collections::VecDeque;
use std::time::Duration;

use synod_node::limits::Limits;
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_viewservice::{View, ViewMsg, ViewReply, PING_INTERVAL};

use crate::{BackupAnswer, Msg, PbError, PbMsg, Reply, Request, Store};

/// How often a primary resends an unanswered forward or state transfer.
pub const RESEND_INTERVAL: Duration = Duration::from_millis(25);

const PING_TIMER: TimerToken = 0;
const RESEND_TIMER: TimerToken = 1;

/// Counters a test can assert on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PbStats {
    /// Client requests answered with a result.
    pub served: u64,
    /// Client requests answered with [`PbError::WrongServer`].
    pub wrong_server: u64,
    /// State transfers this server installed as a backup.
    pub installed: u64,
}

/// One primary/backup server. State is in memory only: a restarted server starts empty and
/// pings 0, which tells the view service it lost everything.
#[derive(Debug, Clone, Hash)]
pub struct PbServer {
    view_service: NodeId,
    /// Where clients reach this server; passed on by the view service.
    addr: String,
    view: View,
    /// The view number sent in pings: the latest view this server is ready to serve in.
    acked: u64,
    /// Whether `store` is a legitimate copy of the data: true for the first primary of the
    /// service (which starts empty) and after a state transfer. A server without it never
    /// acts as primary, even if a view names it (a restarted primary the view service has not
    /// yet declared dead).
    has_state: bool,
    store: Store,
    /// Operations applied to `store` since the service began: the position of the next
    /// forwarded operation is `applied + 1`.
    applied: u64,
    /// The view in which this server, as backup, received the state.
    installed_in: u64,
    /// Primary only: the backup of `view` has our state.
    backup_ready: bool,
    /// Primary only: requests waiting, and the one being forwarded.
    queue: VecDeque<(NodeId, Request)>,
    inflight: Option<(NodeId, Request)>,
    stats: PbStats,
    /// Requests with a key or value above these are refused before they are queued.
    limits: Limits,
}

impl PbServer {
    pub fn new(view_service: NodeId, addr: impl Into<String>) -> Self {
        PbServer {
            view_service,
            addr: addr.into(),
            view: View::default(),
            acked: 0,
            has_state: false,
            store: Store::default(),
            applied: 0,
            installed_in: 0,
            backup_ready: false,
            queue: VecDeque::new(),
            inflight: None,
            stats: PbStats::default(),
            limits: Limits::default(),
        }
    }

    /// The same server, refusing keys and values above `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The latest view this server knows.
    pub fn view(&self) -> &View {
        &self.view
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Operations applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The view in which this server last received the full state as a backup (0 if never).
    pub fn installed_in(&self) -> u64 {
        self.installed_in
    }

    pub fn stats(&self) -> &PbStats {
        &self.stats
    }

    /// Whether this server acts as the primary of its view.
    pub fn is_primary(&self, me: NodeId) -> bool {
        self.view.primary == Some(me) && self.has_state
    }

    fn ping(&self, ctx: &mut dyn Context<Msg>) {
        let ping = ViewMsg::Ping {
            viewnum: self.acked,
            addr: self.addr.clone(),
        };
        ctx.send(self.view_service, Msg::View(ping));
    }

    /// Tells the driver where the members of the view service's current view are: the
    /// primary sends to its backup and the backup answers its primary, and over TCP these
    /// addresses are only known from the view service. Done for every reply, not only newer
    /// views, so a member that restarted at a new address is found again.
    fn add_members(&self, ctx: &mut dyn Context<Msg>, reply: &ViewReply) {
        let me = ctx.id();
        let members = [
            (reply.view.primary, &reply.primary_addr),
            (reply.view.backup, &reply.backup_addr),
        ];
        for (id, addr) in members {
            if let Some(id) = id.filter(|&id| id != me && !addr.is_empty()) {
                ctx.add_peer(id, addr);
            }
        }
    }

    /// Adopts `view` if it is newer. Views come from the view service, directly or relayed by
    /// another server, and are authoritative either way.
    fn learn(&mut self, ctx: &mut dyn Context<Msg>, view: View) {
        if view.num <= self.view.num {
            return;
        }
        let me = ctx.id();
        if view.num == 1 && view.primary == Some(me) {
            // The service's very first primary: the empty store is the whole truth.
            self.has_state = true;
        }
        self.view = view;
        if self.is_primary(me) {
            self.backup_ready = self.view.backup.is_none();
            if self.backup_ready {
                self.acked = self.view.num;
            } else {
                self.send_transfer(ctx);
            }
            // An operation in flight is applied now if there is no backup any more, or
            // forwarded again once the new backup has the state.
            self.pump(ctx);
        } else {
            self.step_down(ctx);
            if !self.view.contains(me) {
                // A spare holds nothing the view service relies on. A backup acknowledges once
                // it has the state, and a primary without the state (it restarted before the
                // view service noticed) never does.
                self.acked = self.view.num;
            }
        }
    }

    /// Tells every waiting client to look for the real primary.
    fn step_down(&mut self, ctx: &mut dyn Context<Msg>) {
        for (client, request) in self.inflight.take().into_iter().chain(self.queue.drain(..)) {
            self.stats.wrong_server += 1;
            ctx.send(
                client,
                Msg::Service(PbMsg::Reply {
                    seq: request.seq,
                    result: Err(PbError::WrongServer),
                }),
            );
        }
    }

    fn answer(
        &mut self,
        ctx: &mut dyn Context<Msg>,
        client: NodeId,
        seq: u64,
        result: Result<Reply, PbError>,
    ) {
        self.stats.served += 1;
        ctx.send(client, Msg::Service(PbMsg::Reply { seq, result }));
    }

    fn on_request(&mut self, ctx: &mut dyn Context<Msg>, from: NodeId, request: Request) {
        if !self.is_primary(ctx.id()) {
            self.stats.wrong_server += 1;
            let reply = PbMsg::Reply {
                seq: request.seq,
                result: Err(PbError::WrongServer),
            };
            return ctx.send(from, Msg::Service(reply));
        }
        if let Err(refused) = request.op.check_size(&self.limits) {
            // Refused whole, before it is queued or forwarded: nothing of it is applied.
            return self.answer(ctx, from, request.seq, Err(PbError::TooLarge(refused)));
        }
        if let Some(reply) = self.store.duplicate(&request) {
            // Applied (and confirmed by the backup of its time) already; the reply was lost.
            return self.answer(ctx, from, request.seq, Ok(reply));
        }
        // A retry of a waiting request only updates where to answer (a TCP client may have
        // reconnected under a new id).
        let same = |(_, r): &(NodeId, Request)| r.client == request.client && r.seq == request.seq;
        if let Some(waiting) = self
            .inflight
            .iter_mut()
            .chain(self.queue.iter_mut())
            .find(|w| same(w))
        {
            waiting.0 = from;
            return;
        }
        self.queue.push_back((from, request));
        self.pump(ctx);
    }

    /// Moves operations along: without a backup they are applied at once; with a backup that
    /// holds the state, the next one is forwarded when none is in flight.
    fn pump(&mut self, ctx: &mut dyn Context<Msg>) {
        if !self.is_primary(ctx.id()) || !self.backup_ready {
            return;
        }
        if self.view.backup.is_none() {
            let waiting: Vec<_> = self
                .inflight
                .take()
                .into_iter()
                .chain(self.queue.drain(..))
                .collect();
            for (client, request) in waiting {
                let value = self.store.apply(&request);
                self.applied += 1;
                self.answer(ctx, client, request.seq, value);
            }
        } else if self.inflight.is_none() {
            if let Some(next) = self.queue.pop_front() {
                self.inflight = Some(next);
                self.send_forward(ctx);
            }
        }
    }

    fn send_forward(&self, ctx: &mut dyn Context<Msg>) {
        if let (Some(backup), Some((_, request))) = (self.view.backup, &self.inflight) {
            let forward = PbMsg::Forward {
                view: self.view.clone(),
                index: self.applied + 1,
                request: request.clone(),
            };
            ctx.send(backup, Msg::Service(forward));
        }
    }

    fn send_transfer(&self, ctx: &mut dyn Context<Msg>) {
        if let Some(backup) = self.view.backup {
            let transfer = PbMsg::Transfer {
                view: self.view.clone(),
                applied: self.applied,
                store: self.store.clone(),
            };
            ctx.send(backup, Msg::Service(transfer));
        }
    }

    /// The primary hears from its backup.
    fn on_backup_answer(
        &mut self,
        ctx: &mut dyn Context<Msg>,
        from: NodeId,
        view: View,
        answer: BackupAnswer,
    ) {
        self.learn(ctx, view.clone());
        let current = view.num == self.view.num && self.view.backup == Some(from);
        if !current || !self.is_primary(ctx.id()) {
            return;
        }
        match answer {
            BackupAnswer::Installed { .. } if !self.backup_ready => {
                self.backup_ready = true;
                self.acked = self.view.num;
                self.send_forward(ctx);
                self.pump(ctx);
            }
            BackupAnswer::Applied { index } if index == self.applied + 1 => {
                if let Some((client, request)) = self.inflight.take() {
                    let value = self.store.apply(&request);
                    self.applied += 1;
                    self.answer(ctx, client, request.seq, value);
                    self.pump(ctx);
                }
            }
            BackupAnswer::NeedState => {
                self.backup_ready = false;
                self.send_transfer(ctx);
            }
            _ => {}
        }
    }

    /// Whether a message claiming to come from the primary of `view` may be acted on by this
    /// server as its backup (after learning `view`).
    fn accepts_primary(&self, me: NodeId, from: NodeId, view: &View) -> bool {
        view.num == self.view.num && self.view.primary == Some(from) && self.view.backup == Some(me)
    }

    fn answer_primary(&self, ctx: &mut dyn Context<Msg>, to: NodeId, answer: BackupAnswer) {
        let msg = PbMsg::Backup {
            view: self.view.clone(),
            answer,
        };
        ctx.send(to, Msg::Service(msg));
    }

    fn on_forward(
        &mut self,
        ctx: &mut dyn Context<Msg>,
        from: NodeId,
        view: View,
        index: u64,
        request: Request,
    ) {
        self.learn(ctx, view.clone());
        let answer = if !self.accepts_primary(ctx.id(), from, &view) {
            BackupAnswer::Refused
        } else if self.installed_in != self.view.num || index > self.applied + 1 {
            BackupAnswer::NeedState
        } else {
            if index == self.applied + 1 {
                // A refusal changes nothing here as on the primary, which tells the client.
                let _refusal_told_by_primary = self.store.apply(&request);
                self.applied += 1;
            }
            BackupAnswer::Applied { index }
        };
        self.answer_primary(ctx, from, answer);
    }

    fn on_transfer(
        &mut self,
        ctx: &mut dyn Context<Msg>,
        from: NodeId,
        view: View,
        applied: u64,
        store: Store,
    ) {
        self.learn(ctx, view.clone());
        if !self.accepts_primary(ctx.id(), from, &view) {
            return self.answer_primary(ctx, from, BackupAnswer::Refused);
        }
        // A delayed copy of an older transfer in this view must not roll back operations
        // applied since.
        if self.installed_in != self.view.num || applied > self.applied {
            self.store = store;
            self.applied = applied;
            self.installed_in = self.view.num;
            self.has_state = true;
            self.acked = self.view.num;
            self.stats.installed += 1;
        }
        let applied = self.applied;
        self.answer_primary(ctx, from, BackupAnswer::Installed { applied });
    }
}

impl Node for PbServer {
    type Msg = Msg;

    fn on_start(&mut self, ctx: &mut dyn Context<Msg>) {
        self.ping(ctx);
        ctx.set_timer(PING_INTERVAL, PING_TIMER);
        ctx.set_timer(RESEND_INTERVAL, RESEND_TIMER);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<Msg>, from: NodeId, msg: Msg) {
        match msg {
            Msg::View(ViewMsg::Reply(reply)) if from == self.view_service => {
                self.add_members(ctx, &reply);
                self.learn(ctx, reply.view);
            }
            Msg::View(_) => {}
            Msg::Service(PbMsg::Request(request)) => self.on_request(ctx, from, request),
            Msg::Service(PbMsg::Forward {
                view,
                index,
                request,
            }) => self.on_forward(ctx, from, view, index, request),
            Msg::Service(PbMsg::Transfer {
                view,
                applied,
                store,
            }) => self.on_transfer(ctx, from, view, applied, store),
            Msg::Service(PbMsg::Backup { view, answer }) => {
                self.on_backup_answer(ctx, from, view, answer);
            }
            Msg::Service(PbMsg::Reply { .. }) => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<Msg>, token: TimerToken) {
        match token {
            PING_TIMER => {
                self.ping(ctx);
                ctx.set_timer(PING_INTERVAL, PING_TIMER);
            }
            _ => {
                if self.is_primary(ctx.id()) {
                    if self.backup_ready {
                        self.send_forward(ctx);
                    } else {
                        self.send_transfer(ctx);
                    }
                }
                ctx.set_timer(RESEND_INTERVAL, RESEND_TIMER);
            }
        }
    }
}
