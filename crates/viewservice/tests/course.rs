//! The course's view service test, one test per scenario, with its numbers: pings every
//! [`PING_INTERVAL`], loops of at most 10 or 15 intervals, dead after [`DEAD_PINGS`] missed
//! pings. Each scenario starts from the state the previous ones leave behind (as in the
//! course, where they are steps of one test), by replaying them first.
//!
//! The test servers ping only when the test says so, with the number the test chooses, which
//! is how the course drives its clerks; after every simulated step an invariant checks that the
//! service only makes legal view changes.

use std::cell::RefCell;
use std::time::Duration;

use synod_sim::{Context, Node, NodeId, Simulator, TimerToken};
use synod_viewservice::{Msg, View, ViewMsg, ViewReply, ViewServer, DEAD_PINGS, PING_INTERVAL};

type M = Msg<()>;

const VS: NodeId = NodeId(0);
const CK1: NodeId = NodeId(1);
const CK2: NodeId = NodeId(2);
const CK3: NodeId = NodeId(3);

/// A server stand-in that pings on command and remembers the last view it was told.
#[derive(Default)]
struct Pinger {
    reply: ViewReply,
}

impl Node for Pinger {
    type Msg = M;
    fn on_start(&mut self, _ctx: &mut dyn Context<M>) {}
    fn on_message(&mut self, _ctx: &mut dyn Context<M>, _from: NodeId, msg: M) {
        if let Msg::View(ViewMsg::Reply(reply)) = msg {
            self.reply = reply;
        }
    }
    fn on_timer(&mut self, _ctx: &mut dyn Context<M>, _token: TimerToken) {}
}

struct Harness {
    sim: Simulator<M>,
}

impl Harness {
    fn new() -> Self {
        let mut sim = Simulator::new(synod_sim::seed_from_env(1));
        sim.add_node(VS, ViewServer::<()>::new);
        for id in [CK1, CK2, CK3] {
            sim.add_node(id, Pinger::default);
        }
        let last = RefCell::new(View::default());
        sim.add_invariant("legal view changes", move |sim| {
            let vs = sim.node::<ViewServer<()>>(VS).expect("view service up");
            let mut last = last.borrow_mut();
            if *vs.view() != *last {
                last.check_successor(vs.last_acked() >= last.num, vs.view())?;
                *last = vs.view().clone();
            }
            Ok(())
        });
        Harness { sim }
    }

    /// One ping interval: the listed servers ping with the given numbers, then time passes.
    fn round(&mut self, pings: &[(NodeId, u64)]) {
        for &(id, viewnum) in pings {
            self.sim
                .call(id, |_: &mut Pinger, ctx: &mut dyn Context<M>| {
                    let addr = format!("server-{id}");
                    ctx.send(VS, Msg::View(ViewMsg::Ping { viewnum, addr }));
                });
        }
        self.sim.run_for(PING_INTERVAL);
    }

    /// The view `id` learned from its latest ping.
    fn seen(&self, id: NodeId) -> View {
        self.sim.node::<Pinger>(id).unwrap().reply.view.clone()
    }

    /// The view service's current view.
    fn view(&self) -> View {
        self.sim.node::<ViewServer<()>>(VS).unwrap().view().clone()
    }

    fn check(&self, primary: NodeId, backup: Option<NodeId>, num: u64) {
        let view = self.view();
        assert_eq!(view.primary, Some(primary), "wrong primary in {view:?}");
        assert_eq!(view.backup, backup, "wrong backup in {view:?}");
        assert_eq!(view.num, num, "wrong view number in {view:?}");
    }

    fn first_primary(&mut self) {
        for _ in 0..DEAD_PINGS * 2 {
            self.round(&[(CK1, 0)]);
            if self.seen(CK1).primary == Some(CK1) {
                break;
            }
        }
        self.check(CK1, None, 1);
    }

    fn first_backup(&mut self) {
        for _ in 0..DEAD_PINGS * 2 {
            self.round(&[(CK1, 1), (CK2, 0)]);
            if self.seen(CK2).backup == Some(CK2) {
                break;
            }
        }
        self.check(CK1, Some(CK2), 2);
    }

    fn backup_takes_over(&mut self) {
        self.round(&[(CK1, 2)]);
        for _ in 0..DEAD_PINGS * 2 {
            self.round(&[(CK2, 2)]);
            if self.seen(CK2).primary == Some(CK2) {
                break;
            }
        }
        self.check(CK2, None, 3);
    }

    fn restarted_server_becomes_backup(&mut self) {
        self.round(&[(CK2, 3)]);
        for _ in 0..DEAD_PINGS * 2 {
            self.round(&[(CK1, 0), (CK2, 3)]);
            if self.seen(CK2).backup == Some(CK1) {
                break;
            }
        }
        self.check(CK2, Some(CK1), 4);
    }

    fn idle_third_server_becomes_backup(&mut self) {
        let acked = self.view().num;
        self.round(&[(CK2, acked)]);
        let mut previous = self.seen(CK1);
        for _ in 0..DEAD_PINGS * 2 {
            self.round(&[(CK3, 0), (CK1, previous.num)]);
            let now = self.seen(CK1);
            if now.primary == Some(CK1) && now.backup == Some(CK3) {
                break;
            }
            previous = now;
        }
        // One view change from (ck2, ck1) to (ck1, ck3): no backup-less view in between.
        self.check(CK1, Some(CK3), previous.num + 1);
    }

    fn restarted_primary_treated_as_dead(&mut self) {
        let v = self.view();
        self.round(&[(CK1, v.num)]);
        for _ in 0..DEAD_PINGS * 2 {
            self.round(&[(CK1, 0), (CK3, v.num)]);
            if self.view().primary != Some(CK1) {
                break;
            }
        }
        assert_eq!(self.view().primary, Some(CK3), "{:?}", self.view());
    }

    fn dead_backup_removed(&mut self) {
        for _ in 0..DEAD_PINGS * 3 {
            let num = self.view().num;
            self.round(&[(CK3, num)]);
        }
        let view = self.view();
        assert_eq!((view.primary, view.backup), (Some(CK3), None), "{view:?}");
    }

    fn no_new_view_until_primary_acks(&mut self) {
        let vx = self.view();
        for _ in 0..DEAD_PINGS * 3 {
            self.round(&[(CK1, 0), (CK3, vx.num)]);
            if self.view().num > vx.num {
                break;
            }
        }
        self.check(CK3, Some(CK1), vx.num + 1);
        let vy = self.view();
        // ck3 is primary but never acknowledged vy and now dies; ck1 must not be promoted.
        for _ in 0..DEAD_PINGS * 3 {
            self.round(&[(CK1, vy.num)]);
            if self.seen(CK1).num > vy.num {
                break;
            }
        }
        self.check(CK3, Some(CK1), vy.num);
    }

    fn uninitialized_server_never_primary(&mut self) {
        for _ in 0..DEAD_PINGS * 2 {
            let num = self.view().num;
            self.round(&[(CK1, num), (CK2, 0), (CK3, num)]);
        }
        for _ in 0..DEAD_PINGS * 2 {
            self.round(&[(CK2, 0)]);
        }
        assert_ne!(self.view().primary, Some(CK2), "{:?}", self.view());
    }
}

#[test]
fn first_primary() {
    let mut h = Harness::new();
    // No primary before anyone pinged, as a client asking with Get sees it.
    h.sim.call(CK1, |_: &mut Pinger, ctx: &mut dyn Context<M>| {
        ctx.send(VS, Msg::View(ViewMsg::Get));
    });
    h.sim.run_for(PING_INTERVAL);
    assert_eq!(h.seen(CK1).primary, None);
    h.first_primary();
}

#[test]
fn first_backup() {
    let mut h = Harness::new();
    h.first_primary();
    h.first_backup();
}

#[test]
fn backup_takes_over_when_the_primary_fails() {
    let mut h = Harness::new();
    h.first_primary();
    h.first_backup();
    h.backup_takes_over();
}

#[test]
fn restarted_server_becomes_backup() {
    let mut h = Harness::new();
    h.first_primary();
    h.first_backup();
    h.backup_takes_over();
    h.restarted_server_becomes_backup();
}

#[test]
fn idle_third_server_becomes_backup_when_the_primary_fails() {
    let mut h = Harness::new();
    h.first_primary();
    h.first_backup();
    h.backup_takes_over();
    h.restarted_server_becomes_backup();
    h.idle_third_server_becomes_backup();
}

fn up_to_restarted_primary() -> Harness {
    let mut h = Harness::new();
    h.first_primary();
    h.first_backup();
    h.backup_takes_over();
    h.restarted_server_becomes_backup();
    h.idle_third_server_becomes_backup();
    h.restarted_primary_treated_as_dead();
    h
}

#[test]
fn restarted_primary_treated_as_dead() {
    up_to_restarted_primary();
}

#[test]
fn dead_backup_removed() {
    let mut h = up_to_restarted_primary();
    h.dead_backup_removed();
}

#[test]
fn no_new_view_until_the_primary_acknowledges() {
    let mut h = up_to_restarted_primary();
    h.dead_backup_removed();
    h.no_new_view_until_primary_acks();
}

#[test]
fn uninitialized_server_never_becomes_primary() {
    let mut h = up_to_restarted_primary();
    h.dead_backup_removed();
    h.no_new_view_until_primary_acks();
    h.uninitialized_server_never_primary();
    // The whole course test took about 7.5 s of real time; here it is virtual.
    assert!(h.sim.now() < Duration::from_secs(30));
}

/// The view service passes on the address each member announced, so clients outside the
/// simulator know where to connect, and whether the primary acknowledged the view.
#[test]
fn replies_carry_member_addresses() {
    let mut h = Harness::new();
    h.first_primary();
    h.first_backup();
    h.sim.call(CK3, |_: &mut Pinger, ctx: &mut dyn Context<M>| {
        ctx.send(VS, Msg::View(ViewMsg::Get));
    });
    h.sim.run_for(PING_INTERVAL);
    let reply = &h.sim.node::<Pinger>(CK3).unwrap().reply;
    assert_eq!(reply.view, h.view());
    assert_eq!(reply.primary_addr, format!("server-{CK1}"));
    assert_eq!(reply.backup_addr, format!("server-{CK2}"));
    assert_eq!(
        reply.acked,
        h.sim.node::<ViewServer<()>>(VS).unwrap().acked()
    );
}

/// Beyond the course: a backup that restarts (pings 0 after a view number) is dropped in a new
/// view, even when it is the only candidate to replace itself, and only re-added as a fresh
/// backup after that; while it only pings 0 it can never be promoted.
#[test]
fn restarted_backup_is_replaced_and_never_promoted_without_acknowledging() {
    let mut h = Harness::new();
    h.first_primary();
    h.first_backup();
    h.round(&[(CK1, 2), (CK2, 2)]);
    // ck2 restarts: the view must change, first to (ck1, none) ...
    h.round(&[(CK1, 2), (CK2, 0)]);
    h.check(CK1, None, 3);
    // ... and once ck1 acknowledges, ck2 is a fresh backup again.
    h.round(&[(CK1, 3), (CK2, 0)]);
    h.check(CK1, Some(CK2), 4);
    // ck1 acknowledges and dies; ck2 never acknowledged anything since its restart.
    h.round(&[(CK1, 4), (CK2, 0)]);
    for _ in 0..DEAD_PINGS * 3 {
        h.round(&[(CK2, 0)]);
    }
    h.check(CK1, Some(CK2), 4);
}
