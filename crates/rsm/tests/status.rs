//! The generic layer on the simulator, with a minimal state machine: commands are applied
//! once each, and every replica answers a status query with its own log position, `min()`,
//! durable and state sizes; the status messages encode like every service's first variants.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use synod_node::{Context, Node, NodeId, TimerToken};
use synod_paxos::PaxosConfig;
use synod_rsm::{MsgOf, Rsm, RsmMsg, Sessions, StateMachine, StatusMsg, StatusReport};
use synod_sim::Simulator;

/// A counter: `Add(n)` returns the new total.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
    sessions: Sessions<u64>,
}

impl StateMachine for Counter {
    type Command = u64;
    type Internal = ();
    type Reply = u64;

    fn apply(&mut self, _at: u64, add: &u64) -> u64 {
        self.total += add;
        self.total
    }
    fn apply_internal(&mut self, _at: u64, _op: &()) {}
    fn sessions(&self, _cmd: &u64) -> Option<&Sessions<u64>> {
        Some(&self.sessions)
    }
    fn sessions_mut(&mut self, _cmd: &u64) -> Option<&mut Sessions<u64>> {
        Some(&mut self.sessions)
    }
    fn expired() -> u64 {
        u64::MAX
    }
    fn reindex(&mut self) {
        self.sessions.reindex();
    }
}

type Msg = MsgOf<Counter>;

/// Sends `adds` one at a time (retrying every 100 ms), then a status query to every server.
#[derive(Default)]
struct Client {
    adds: Vec<u64>,
    done: usize,
    replies: Vec<u64>,
    reports: Vec<StatusReport>,
}

const SERVERS: [NodeId; 3] = [NodeId(0), NodeId(1), NodeId(2)];

impl Client {
    fn send(&mut self, ctx: &mut dyn Context<Msg>) {
        if let Some(&op) = self.adds.get(self.done) {
            let seq = self.done as u64 + 1;
            let to = SERVERS[self.done % 3];
            ctx.send(to, RsmMsg::Request { client: 7, seq, op });
            ctx.set_timer(Duration::from_millis(100), seq);
        } else {
            // Status replies can be lost too: ask whoever has not answered, until all have.
            for to in SERVERS {
                if !self.reports.iter().any(|r| r.id == to) {
                    ctx.send(to, RsmMsg::StatusQuery);
                }
            }
            ctx.set_timer(Duration::from_millis(100), 0);
        }
    }
}

impl Node for Client {
    type Msg = Msg;
    fn on_start(&mut self, ctx: &mut dyn Context<Msg>) {
        self.send(ctx);
    }
    fn on_message(&mut self, ctx: &mut dyn Context<Msg>, _from: NodeId, msg: Msg) {
        match msg {
            RsmMsg::Reply { seq, reply } if seq == self.done as u64 + 1 => {
                self.replies.push(reply);
                self.done += 1;
                self.send(ctx);
            }
            RsmMsg::Status(report) if !self.reports.iter().any(|r| r.id == report.id) => {
                self.reports.push(report)
            }
            _ => {}
        }
    }
    fn on_timer(&mut self, ctx: &mut dyn Context<Msg>, token: TimerToken) {
        let status_phase = self.done == self.adds.len() && self.reports.len() < 3;
        if token == self.done as u64 + 1 || (token == 0 && status_phase) {
            self.send(ctx);
        }
    }
}

#[test]
fn commands_apply_once_and_every_replica_reports_its_status() {
    let mut sim: Simulator<Msg> = Simulator::new(synod_sim::seed_from_env(5));
    for (i, &id) in SERVERS.iter().enumerate() {
        sim.add_node(id, move || {
            Rsm::<Counter>::new(SERVERS.to_vec(), i, PaxosConfig::default())
        });
    }
    for &id in &SERVERS {
        sim.set_unreliable(id, true);
    }
    let client = NodeId(NodeId::FIRST_CLIENT);
    sim.add_node(client, || Client {
        adds: vec![1, 2, 3, 4, 5],
        ..Client::default()
    });
    sim.require(Duration::from_secs(20), "every status report", |s| {
        s.node::<Client>(client)
            .is_some_and(|c| c.reports.len() == 3)
    });
    let c = sim.node::<Client>(client).unwrap();
    // Retries after lost replies were answered from the session table, not applied again.
    assert_eq!(c.replies, vec![1, 3, 6, 10, 15]);
    for (i, report) in c.reports.iter().enumerate() {
        let replica = sim.node::<Rsm<Counter>>(report.id).unwrap();
        assert_eq!(report.peers, SERVERS.to_vec(), "report {i}");
        assert_eq!(report.index as u64, report.id.0);
        assert!(report.max >= Some(4), "{report:?}");
        // The replica may have applied more since (a no-op filling the log's end).
        assert!(report.applied.is_some() && report.applied <= replica.next().checked_sub(1));
        assert!(report.durable_bytes > 0, "{report:?}");
        assert!(report.state_bytes > 0, "{report:?}");
        assert!(!report.broken);
    }
    // Every replica applied a prefix of the log (one that missed the last decision learns it
    // with the next command), and since all called done, Paxos forgot the oldest instances.
    sim.run_for(Duration::from_secs(1));
    let mut complete = 0;
    for &id in &SERVERS {
        let r = sim.node::<Rsm<Counter>>(id).unwrap();
        assert!([0, 1, 3, 6, 10, 15].contains(&r.machine().total));
        complete += usize::from(r.machine().total == 15);
        assert!(r.status(id).min > 0, "replica {id} never forgot anything");
    }
    assert!(complete >= 1, "the last proposer applied everything");
}

#[test]
fn status_messages_encode_alike_for_every_service() {
    let report = StatusReport {
        id: NodeId(1),
        index: 1,
        peers: SERVERS.to_vec(),
        role: synod_rsm::Role::Leaving,
        configs: vec![
            (0, synod_paxos::Config::initial(SERVERS.to_vec())),
            (12, synod_paxos::Config::initial(SERVERS[..2].to_vec())),
        ],
        membership: synod_paxos::Membership::Voting { horizon: None },
        leader: true,
        max: Some(9),
        applied: Some(8),
        min: 3,
        durable_bytes: 100,
        state_bytes: 10,
        broken: false,
        catch_up: Some(synod_rsm::CatchUp::Receiving {
            from: NodeId(0),
            received: 5,
            total: 10,
        }),
        snapshots: synod_rsm::SnapshotStatus {
            writing_for_ms: Some(7),
            last: Some(synod_rsm::SnapshotTaken {
                bytes: 100,
                millis: 3,
            }),
        },
    };
    let generic = postcard::to_allocvec(&StatusMsg::Report(report.clone())).unwrap();
    let service = postcard::to_allocvec(&Msg::Status(report)).unwrap();
    assert_eq!(generic, service);
    assert_eq!(
        postcard::to_allocvec(&StatusMsg::Query).unwrap(),
        postcard::to_allocvec(&Msg::StatusQuery).unwrap()
    );
}
