//! The view service with primary/backup: the real [`ViewServer`] and two [`PbServer`]s, a
//! view with a primary and an installed backup reached in the setup, and two clients that
//! send to either server (a server that is not the primary says so and the client may
//! retry elsewhere), under server crashes (a restarted server has lost its state, as the
//! design says), drops and timers. A timer firing moves the clock by 300 ms, so a server
//! whose pings stop for two firings is declared dead while it may still be running: the
//! split-brain case primary/backup must survive. The view service is the design's single
//! point of failure and is not crashed.
//!
//! Invariants, after every step:
//! - **views follow the rules**: each view the service moves to is a legal successor of the
//!   one before ([`synod_pbservice::View::check_successor`]);
//! - **linearizability** of the clients' history.

use std::time::Duration;

use synod_check::kv::KvInput;
use synod_node::NodeId;
use synod_pbservice::{Msg, Op, PbMsg, PbServer, Request, View};
use synod_viewservice::ViewServer;

use crate::model::Model;
use crate::models::clients::{History, Workload};
use crate::world::{Actor, Budget, Envelope, Life, World};

const VIEW_SERVICE: usize = 0;

/// The primary/backup model.
#[derive(Debug, Clone)]
pub struct PbModel {
    pub workload: Workload,
    pub budget: Budget,
}

impl PbModel {
    /// The depth to which CI explores [`Self::ci_bound`] completely.
    pub const CI_DEPTH: usize = 10;

    /// Two clients with a write and a read each, to either server, with retries; a server
    /// crash, a drop and three timer firings (enough for a failover).
    pub fn issue_bound() -> Self {
        PbModel {
            workload: Workload::writes_then_reads(vec![1, 2]),
            budget: Budget {
                drops: 1,
                duplicates: 0,
                crashes: 1,
                wipes: 0,
                timers: 3,
            },
        }
    }

    /// The bound CI covers: a write and a read by two clients, to either server, with
    /// retries, one crash of a server and two timer firings.
    pub fn ci_bound() -> Self {
        PbModel {
            workload: Workload::a_write_and_a_read(vec![1, 2]),
            budget: Budget {
                drops: 0,
                timers: 2,
                ..Self::issue_bound().budget
            },
        }
    }
}

/// What the invariants remember.
#[derive(Debug, Clone, Default, Hash)]
pub struct PbGhost {
    history: History,
    /// The view service's view at the last look.
    view: View,
}

fn server_op(input: &KvInput) -> Op {
    match input.clone() {
        KvInput::Get { key } => Op::Get { key: key.into() },
        KvInput::Put { key, value } => Op::Put {
            key: key.into(),
            value: value.into(),
        },
        KvInput::Append { key, value } => Op::Append {
            key: key.into(),
            value: value.into(),
        },
    }
}

impl Model for PbModel {
    type Msg = Msg;
    type Ghost = PbGhost;

    fn name(&self) -> String {
        format!(
            "pb (view service, 2 servers, {:?}, {:?})",
            self.workload, self.budget
        )
    }

    fn nodes(&self) -> Vec<NodeId> {
        (0..3).map(NodeId).collect()
    }

    fn make(&self, slot: usize, _life: Life) -> Box<dyn Actor<Msg>> {
        match slot {
            VIEW_SERVICE => Box::new(ViewServer::<PbMsg>::new()),
            _ => Box::new(PbServer::new(NodeId(0), format!("n{slot}"))),
        }
    }

    fn budget(&self) -> Budget {
        self.budget
    }

    fn ghost(&self) -> PbGhost {
        PbGhost {
            history: self.workload.history(),
            ..PbGhost::default()
        }
    }

    fn time_step(&self) -> Duration {
        Duration::from_millis(300)
    }

    fn setup(&self, world: &mut World<Msg, PbGhost>) {
        // Ping rounds until n1 is primary and n2 an installed backup of an acknowledged view.
        for _ in 0..20 {
            for slot in [1, 2, VIEW_SERVICE] {
                world.fire_timer(slot, Duration::ZERO);
                world.settle();
            }
            let vs = world.node::<ViewServer<PbMsg>>(VIEW_SERVICE);
            let ready = vs.is_some_and(|vs| {
                vs.acked()
                    && vs.view().primary == Some(NodeId(1))
                    && vs.view().backup == Some(NodeId(2))
            }) && world
                .node::<PbServer>(2)
                .is_some_and(|b| b.installed_in() == b.view().num && b.view().num > 0);
            if ready {
                let vs = world.node::<ViewServer<PbMsg>>(VIEW_SERVICE).expect("up");
                world.ghost.view = vs.view().clone();
                return;
            }
        }
        panic!("setup: no view with a primary and an installed backup");
    }

    fn crashable(&self, slot: usize) -> bool {
        slot != VIEW_SERVICE
    }

    fn wipeable(&self, _slot: usize) -> bool {
        false
    }

    fn inputs(&self) -> usize {
        self.workload.inputs()
    }

    fn input_enabled(&self, world: &World<Msg, PbGhost>, input: usize) -> bool {
        self.workload
            .enabled(&world.ghost.history, self.workload.decode(input))
    }

    fn input(&self, world: &mut World<Msg, PbGhost>, input: usize) {
        let send = self.workload.decode(input);
        let op = server_op(self.workload.sent(&mut world.ghost.history, send));
        let request = Request {
            client: send.client as u64 + 1,
            seq: send.op as u64 + 1,
            op,
        };
        let from = Workload::client_id(send.client);
        let to = NodeId(send.target as u64);
        world.inject(from, to, Msg::Service(PbMsg::Request(request)));
    }

    fn describe_input(&self, input: usize) -> String {
        self.workload.describe(input)
    }

    fn on_external(&self, world: &mut World<Msg, PbGhost>, env: Envelope<Msg>) {
        let (Some(client), Msg::Service(PbMsg::Reply { seq, result })) =
            (Workload::client_of(env.to), env.msg)
        else {
            return;
        };
        // "Not the primary" tells the client nothing about its operation.
        // The course's output: a Get's value as text, nothing for a write.
        if let Ok(reply) = result {
            let output = match reply {
                synod_pbservice::Reply::Bulk(Some(value)) => {
                    String::from_utf8_lossy(&value).into_owned()
                }
                _ => String::new(),
            };
            world.ghost.history.returned(client, seq, output);
        }
    }

    fn check(&self, world: &mut World<Msg, PbGhost>) -> Result<(), String> {
        let vs = world.node::<ViewServer<PbMsg>>(VIEW_SERVICE);
        if let Some((view, last_acked)) = vs.map(|vs| (vs.view().clone(), vs.last_acked())) {
            let ghost = &mut world.ghost;
            if view != ghost.view {
                // One step can acknowledge a view and move past it: ask the service what
                // was acknowledged rather than what was at the last look.
                let acked = last_acked >= ghost.view.num;
                ghost
                    .view
                    .check_successor(acked, &view)
                    .map_err(|e| format!("views follow the rules: {e}"))?;
                ghost.view = view;
            }
        }
        self.workload.check(&mut world.ghost.history)
    }
}
