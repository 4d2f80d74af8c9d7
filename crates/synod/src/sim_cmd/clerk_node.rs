//! A production clerk run as a simulator node for a viewer scenario: it works through a list
//! of operations one at a time, pausing between them, and records each in a client history
//! (what `synod sim --history` writes for `synod check`).

use std::collections::VecDeque;
use std::time::Duration;

use synod_check::kv::KvInput;
use synod_node::clerk::{Clerk, ClerkOutput};
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_sim::{OpId, Recorder};

/// The history every client of a scenario records into.
pub type History = Recorder<KvInput, String>;

/// The pause between a client's operations; the clerks number their own timers from 1, so
/// this token is the largest.
const THINK: TimerToken = u64::MAX;

/// What a scenario tells the generic [`ClerkNode`] about one clerk type: how its servers map
/// to simulator nodes, how its messages sit in the simulation's message type, and how its
/// operations read in a history.
pub trait SimClerk: Clerk + 'static {
    /// The simulation's message type.
    type NodeMsg;
    fn node_of(server: &Self::Server) -> NodeId;
    fn server_of(id: NodeId) -> Option<Self::Server>;
    fn wrap(msg: Self::Msg) -> Self::NodeMsg;
    /// The clerk's message inside a simulation message, if it is one.
    fn unwrap(msg: Self::NodeMsg) -> Option<Self::Msg>;
    /// The operation for the history (`None`: not a key/value operation, left out).
    fn input(op: &Self::Op) -> Option<KvInput>;
    /// The reply as the history's output.
    fn output(reply: &Self::Reply) -> String;
}

/// A client node: one clerk, a list of operations, a history.
pub struct ClerkNode<C: SimClerk> {
    clerk: C,
    client: u64,
    plan: VecDeque<C::Op>,
    think: Duration,
    history: History,
    pending: Option<OpId>,
    completed: usize,
}

impl<C: SimClerk> ClerkNode<C> {
    pub fn new(clerk: C, client: u64, plan: Vec<C::Op>, think: Duration, history: History) -> Self {
        ClerkNode {
            clerk,
            client,
            plan: plan.into(),
            think,
            history,
            pending: None,
            completed: 0,
        }
    }

    /// Operations answered so far.
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// Whether every operation of the plan was answered.
    pub fn finished(&self) -> bool {
        self.plan.is_empty() && !self.clerk.busy()
    }

    fn next(&mut self, ctx: &mut dyn Context<C::NodeMsg>) {
        let Some(op) = self.plan.pop_front() else {
            return;
        };
        self.pending = C::input(&op).map(|input| self.history.invoke(self.client, input));
        let out = self.clerk.start(op);
        self.carry_out(ctx, out);
    }

    fn carry_out(
        &mut self,
        ctx: &mut dyn Context<C::NodeMsg>,
        outputs: Vec<ClerkOutput<C::Server, C::Msg, C::Reply>>,
    ) {
        for output in outputs {
            match output {
                ClerkOutput::Send { to, msg } => ctx.send(C::node_of(&to), C::wrap(msg)),
                ClerkOutput::Timer { after, token } => ctx.set_timer(after, token),
                ClerkOutput::Done(reply) => {
                    if let Some(op) = self.pending.take() {
                        self.history.complete(op, C::output(&reply));
                    }
                    self.completed += 1;
                    ctx.set_timer(self.think, THINK);
                }
            }
        }
    }
}

impl<C: SimClerk> Node for ClerkNode<C> {
    type Msg = C::NodeMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<C::NodeMsg>) {
        ctx.set_timer(self.think, THINK);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<C::NodeMsg>, from: NodeId, msg: C::NodeMsg) {
        let (Some(server), Some(msg)) = (C::server_of(from), C::unwrap(msg)) else {
            tracing::debug!(%from, "client ignores a message from no server of its clerk");
            return;
        };
        let out = self.clerk.on_message(&server, msg);
        self.carry_out(ctx, out);
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<C::NodeMsg>, token: TimerToken) {
        if token == THINK {
            if !self.clerk.busy() {
                self.next(ctx);
            }
        } else {
            let out = self.clerk.on_timeout(token);
            self.carry_out(ctx, out);
        }
    }
}
