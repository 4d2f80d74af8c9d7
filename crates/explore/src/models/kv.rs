//! The Paxos KV (a replicated state machine over [`KvState`]): three real [`KvReplica`]s,
//! replica 0 elected leader in the setup, and two clients that each run a short sequence of
//! operations against the leader or a follower, retrying once through another replica when
//! they like, under drops, crashes, lost disks and timers.
//!
//! [`KvModel::membership_bound`] adds an operator who asks replica 0, at any point of the
//! run, to remove replica 2 (`RsmMsg::Reconfigure`), proposed and decided in any
//! interleaving with the clients' operations and the replicas' messages. Its taking effect
//! (α = 8 instances later, after the leader's no-ops) lies beyond the bound CI covers.
//!
//! Invariants, after every step:
//! - **one value per log instance**, over every decision any replica ever held;
//! - **applied logs are prefixes of one another**: two replicas that applied the same number
//!   of instances hold the same state (the map and the session table);
//! - **linearizability**: the clients' history (an operation without a reply has an unknown
//!   outcome) passes `synod_check`, whenever a reply arrives.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use synod_check::kv::KvInput;
use synod_kvpaxos::{KvMsg, KvOp, KvReplica, KvReply, Op};
use synod_node::NodeId;
use synod_paxos::Config;
use synod_rsm::RsmMsg;

use crate::model::Model;
use crate::models::clients::{History, Workload};
use crate::models::{agree, paxos_config, quiet_before_rejoin};
use crate::world::{Actor, Budget, Envelope, Life, World};

/// The KV model.
#[derive(Debug, Clone)]
pub struct KvModel {
    pub workload: Workload,
    pub budget: Budget,
    /// A membership change an operator asks replica 0 for, at a moment of the search's
    /// choosing.
    pub change: Option<Config>,
}

const REPLICAS: usize = 3;

/// Who asks for the membership change: a client id no workload client has.
const OPERATOR: NodeId = NodeId(NodeId::FIRST_CLIENT + 1000);

impl KvModel {
    /// The depth to which CI explores [`Self::ci_bound`] completely.
    pub const CI_DEPTH: usize = 11;

    /// The depth to which CI explores [`Self::membership_bound`] completely.
    pub const MEMBERSHIP_CI_DEPTH: usize = 9;

    /// One membership change among a write and a read: replica 2 is removed (voters 0 and
    /// 1) while one client writes through the leader and the other reads through it.
    pub fn membership_bound() -> Self {
        KvModel {
            workload: Workload::a_write_and_a_read(vec![0]),
            budget: Budget::default(),
            change: Some(Config {
                epoch: 1,
                voters: vec![NodeId(0), NodeId(1)],
                learners: Vec::new(),
                addrs: Default::default(),
            }),
        }
    }

    /// The safety issue's bound: 2 clients with 2 operations each on one key (a write, then
    /// a read through the read barrier), to the leader or a follower, with retries, a drop,
    /// a crash and two timer firings.
    pub fn issue_bound() -> Self {
        KvModel {
            workload: Workload::writes_then_reads(vec![0, 1]),
            budget: Budget {
                drops: 1,
                duplicates: 0,
                crashes: 1,
                wipes: 0,
                timers: 2,
            },
            change: None,
        }
    }

    /// The bound CI covers: a write and a read of one key by two clients, each through the
    /// leader or a follower (which forwards it), every order of every message, and one
    /// retry through the other replica.
    pub fn ci_bound() -> Self {
        KvModel {
            workload: Workload::a_write_and_a_read(vec![0, 1]),
            budget: Budget::default(),
            change: None,
        }
    }
}

/// The request a client sends for `input`.
fn kv_op(input: &KvInput) -> KvOp {
    match input.clone() {
        KvInput::Get { key } => KvOp::Get { key: key.into() },
        KvInput::Put { key, value } => KvOp::Put {
            key: key.into(),
            value: value.into(),
        },
        KvInput::Append { key, value } => KvOp::Append {
            key: key.into(),
            value: value.into(),
        },
    }
}

/// What the invariants remember.
#[derive(Debug, Clone, Default, Hash)]
pub struct KvGhost {
    history: History,
    decided: BTreeMap<u64, Op>,
    /// Per number of applied instances, a fingerprint of the state they produced.
    states: BTreeMap<u64, u64>,
    /// Whether the operator asked for the membership change yet.
    change_asked: bool,
}

impl Model for KvModel {
    type Msg = KvMsg;
    type Ghost = KvGhost;

    fn name(&self) -> String {
        format!(
            "kv (3 replicas, {:?}, {:?}, change {:?})",
            self.workload, self.budget, self.change
        )
    }

    fn nodes(&self) -> Vec<NodeId> {
        (0..REPLICAS as u64).map(NodeId).collect()
    }

    fn make(&self, slot: usize, life: Life) -> Box<dyn Actor<KvMsg>> {
        Box::new(KvReplica::new(self.nodes(), slot, paxos_config(life)))
    }

    fn budget(&self) -> Budget {
        self.budget
    }

    fn ghost(&self) -> KvGhost {
        KvGhost {
            history: self.workload.history(),
            ..KvGhost::default()
        }
    }

    fn time_step(&self) -> Duration {
        // Past the election timeout (with its jitter), the hole patience and the retries.
        Duration::from_secs(1)
    }

    fn setup(&self, world: &mut World<KvMsg, KvGhost>) {
        // Replica 0 campaigns and every message settles: it leads, the others follow.
        world.fire_timer(0, self.time_step());
        world.settle();
        assert!(
            world
                .node::<KvReplica>(0)
                .is_some_and(|r| r.paxos().leading()),
            "setup: replica 0 should lead"
        );
    }

    fn inputs(&self) -> usize {
        self.workload.inputs() + usize::from(self.change.is_some())
    }

    fn input_enabled(&self, world: &World<KvMsg, KvGhost>, input: usize) -> bool {
        if input == self.workload.inputs() {
            return !world.ghost.change_asked;
        }
        self.workload
            .enabled(&world.ghost.history, self.workload.decode(input))
    }

    fn input(&self, world: &mut World<KvMsg, KvGhost>, input: usize) {
        if let Some(config) = self
            .change
            .clone()
            .filter(|_| input == self.workload.inputs())
        {
            world.ghost.change_asked = true;
            world.inject(OPERATOR, NodeId(0), RsmMsg::Reconfigure { config });
            return;
        }
        let send = self.workload.decode(input);
        let op = kv_op(self.workload.sent(&mut world.ghost.history, send));
        let request = RsmMsg::Request {
            client: send.client as u64 + 1,
            seq: send.op as u64 + 1,
            op,
        };
        let from = Workload::client_id(send.client);
        world.inject(from, NodeId(send.target as u64), request);
    }

    fn describe_input(&self, input: usize) -> String {
        match &self.change {
            Some(config) if input == self.workload.inputs() => {
                format!("operator asks n0 for {config:?}")
            }
            _ => self.workload.describe(input),
        }
    }

    fn before_timer(&self, world: &mut World<KvMsg, KvGhost>, slot: usize) {
        let membership = world
            .node::<KvReplica>(slot)
            .map(|r| r.paxos().membership());
        quiet_before_rejoin(world, membership);
    }

    fn on_external(&self, world: &mut World<KvMsg, KvGhost>, env: Envelope<KvMsg>) {
        let (Some(client), RsmMsg::Reply { seq, reply }) = (Workload::client_of(env.to), env.msg)
        else {
            return;
        };
        let output = match reply {
            KvReply::Value(v) => String::from_utf8_lossy(&v).into_owned(),
            KvReply::Written { .. } => String::new(),
            // The client learns nothing: the operation stays of unknown outcome (a value
            // too large is refused before anything is proposed; the model sends none, nor
            // batches, and its replicas have no users to deny a request).
            KvReply::SessionExpired
            | KvReply::Denied(_)
            | KvReply::TooLarge(_)
            | KvReply::OutOfMemory { .. }
            | KvReply::Batch(_)
            | KvReply::Redis(_) => return,
        };
        world.ghost.history.returned(client, seq, output);
    }

    fn check(&self, world: &mut World<KvMsg, KvGhost>) -> Result<(), String> {
        let mut ghost = std::mem::take(&mut world.ghost);
        let checked = self.check_replicas(world, &mut ghost);
        world.ghost = ghost;
        checked
    }
}

impl KvModel {
    fn check_replicas(
        &self,
        world: &World<KvMsg, KvGhost>,
        ghost: &mut KvGhost,
    ) -> Result<(), String> {
        for slot in 0..REPLICAS {
            let Some(replica) = world.node::<KvReplica>(slot) else {
                continue;
            };
            agree(&mut ghost.decided, slot, replica.paxos().decided())?;
            let applied = replica
                .status(NodeId(slot as u64))
                .applied
                .map_or(0, |a| a + 1);
            // The configurations are replicated state too.
            let mut h = DefaultHasher::new();
            replica.kv().hash(&mut h);
            replica.paxos().schedule().latest().hash(&mut h);
            let state = h.finish();
            match ghost.states.get(&applied) {
                Some(&first) if first != state => {
                    return Err(format!(
                        "applied logs are prefixes: n{slot} applied {applied} instances and \
                         holds {:?}, unlike a replica that applied as many before",
                        replica.kv()
                    ))
                }
                Some(_) => {}
                None => {
                    ghost.states.insert(applied, state);
                }
            }
        }
        self.workload.check(&mut ghost.history)
    }
}
