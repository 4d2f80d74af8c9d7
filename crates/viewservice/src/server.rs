//! The view service core: tracks pings and moves from view to view by the rules in the crate
//! documentation.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::time::Duration;

use synod_node::{Context, Node, NodeId, TimerToken};

use crate::{Msg, View, ViewMsg, ViewReply, DEAD_PINGS, PING_INTERVAL};

/// What the service remembers about one server from its latest ping.
#[derive(Debug, Clone, Hash)]
struct Seen {
    /// Local time of the latest ping.
    at: Duration,
    /// The view number in the latest ping.
    viewnum: u64,
    addr: String,
}

/// The view service. Keeps no durable state: after a restart it starts again from view 0,
/// which the replicas cannot tell from a brand-new service (see the crate docs: the service is
/// a single point of failure).
#[derive(Debug, Clone, Hash)]
pub struct ViewServer<S> {
    view: View,
    /// Whether the primary of `view` has pinged `view.num`.
    acked: bool,
    /// The highest view number its primary acknowledged.
    last_acked: u64,
    servers: BTreeMap<NodeId, Seen>,
    /// Members of the current view that pinged 0 after having pinged a view number: they
    /// restarted and lost their state, so they must not keep their role.
    restarted: BTreeSet<NodeId>,
    _service: PhantomData<fn() -> S>,
}

impl<S> Default for ViewServer<S> {
    fn default() -> Self {
        ViewServer {
            view: View::default(),
            acked: false,
            last_acked: 0,
            servers: BTreeMap::new(),
            restarted: BTreeSet::new(),
            _service: PhantomData,
        }
    }
}

impl<S> ViewServer<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Whether the primary acknowledged the current view (so the service may move on).
    pub fn acked(&self) -> bool {
        self.acked
    }

    /// The highest view number whose primary acknowledged it.
    pub fn last_acked(&self) -> u64 {
        self.last_acked
    }

    fn reply(&self) -> ViewReply {
        let addr = |id: Option<NodeId>| {
            id.and_then(|id| self.servers.get(&id))
                .map(|seen| seen.addr.clone())
                .unwrap_or_default()
        };
        ViewReply {
            view: self.view.clone(),
            primary_addr: addr(self.view.primary),
            backup_addr: addr(self.view.backup),
            acked: self.acked,
        }
    }

    fn on_ping(&mut self, now: Duration, from: NodeId, viewnum: u64, addr: String) {
        let previous = self.servers.insert(
            from,
            Seen {
                at: now,
                viewnum,
                addr,
            },
        );
        let restarted = viewnum == 0 && previous.is_some_and(|seen| seen.viewnum != 0);
        if restarted && self.view.contains(from) {
            self.restarted.insert(from);
        }
        if self.view.num == 0 {
            self.view = View {
                num: 1,
                primary: Some(from),
                backup: None,
            };
            self.acked = false;
            return;
        }
        if self.view.primary == Some(from) && viewnum == self.view.num {
            self.acked = true;
            self.last_acked = viewnum;
        }
        self.advance(now);
    }

    fn alive(&self, id: NodeId, now: Duration) -> bool {
        self.servers
            .get(&id)
            .is_some_and(|seen| now.saturating_sub(seen.at) < PING_INTERVAL * DEAD_PINGS)
    }

    /// Alive and still holding the state it had when it joined the view.
    fn usable(&self, id: NodeId, now: Duration) -> bool {
        self.alive(id, now) && !self.restarted.contains(&id)
    }

    /// Moves to the next view if the current one is acknowledged and needs a change.
    fn advance(&mut self, now: Duration) {
        if !self.acked {
            return;
        }
        let Some(primary) = self.view.primary else {
            return;
        };
        let mut next = self.view.clone();
        if !self.usable(primary, now) {
            // Only the backup holds the data; one that never acknowledged a view may not have
            // received it, so it cannot take over either.
            match self.view.backup {
                Some(backup) if self.usable(backup, now) && self.servers[&backup].viewnum != 0 => {
                    next.primary = Some(backup);
                    next.backup = None;
                }
                _ => return,
            }
        } else if let Some(backup) = self.view.backup {
            if !self.usable(backup, now) {
                next.backup = None;
            }
        }
        if next.backup.is_none() {
            next.backup = self
                .servers
                .keys()
                .copied()
                .find(|&id| Some(id) != next.primary && self.usable(id, now));
        }
        if next != self.view {
            next.num = self.view.num + 1;
            self.view = next;
            self.acked = false;
            // Whoever restarted is out of the view now (a restarted backup is not re-added in
            // the same step, or the view would not change and it would stay marked).
            self.restarted.clear();
        }
    }
}

impl<S: 'static> Node for ViewServer<S> {
    type Msg = Msg<S>;

    fn on_start(&mut self, ctx: &mut dyn Context<Msg<S>>) {
        ctx.set_timer(PING_INTERVAL, 0);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<Msg<S>>, from: NodeId, msg: Msg<S>) {
        match msg {
            Msg::View(ViewMsg::Ping { viewnum, addr }) => {
                // Over TCP the reply travels on our own link to the pinger, so the driver
                // must learn where that is (a restarted server may come back elsewhere).
                if !addr.is_empty() {
                    ctx.add_peer(from, &addr);
                }
                self.on_ping(ctx.now(), from, viewnum, addr);
                ctx.send(from, Msg::View(ViewMsg::Reply(self.reply())));
            }
            Msg::View(ViewMsg::Get) => ctx.send(from, Msg::View(ViewMsg::Reply(self.reply()))),
            Msg::View(ViewMsg::Reply(_)) | Msg::Service(_) => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<Msg<S>>, _token: TimerToken) {
        self.advance(ctx.now());
        ctx.set_timer(PING_INTERVAL, 0);
    }
}
