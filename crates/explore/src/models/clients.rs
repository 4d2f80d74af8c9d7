//! Clients for the KV models: each runs its operations in order, sending each to one of the
//! target servers (any of them: the checker tries every choice) and retrying an unanswered
//! one once through any target; and the history they observe, checked for linearizability.
//!
//! Why not the production clerk (`synod_rsm::clerk::RsmClerk`, which the simulator's suites
//! run): its choices are a subset of these. It sends to a server chosen by its order and
//! timers, which this model covers by trying every target at every point; and it retries
//! every step for as long as it waits, each retry a timer event and a message in the
//! explored state, which would make the state space unbounded where this model bounds it
//! with one retry. The clerk's own schedule is tested as a core (`crates/rsm/src/clerk.rs`)
//! and under the simulator's faults.

use std::fmt::Debug;
use std::hash::Hash;

use synod_check::kv::{KvInput, KvModel};
use synod_check::{check_operations, CheckResult, Operation};
use synod_node::NodeId;

/// What the clients do.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Each client's operations, in order.
    pub clients: Vec<Vec<KvInput>>,
    /// The servers (slots) a client may send to.
    pub targets: Vec<usize>,
    /// Whether a client may retry an unanswered operation once, through any target.
    pub retries: bool,
}

impl Workload {
    /// Two clients, each writing one key and then reading it (the read of a client with a
    /// session takes the read path that does not log), through any of `targets`, with
    /// retries.
    pub fn writes_then_reads(targets: Vec<usize>) -> Self {
        Workload {
            clients: vec![
                vec![KvInput::put("x", "1"), KvInput::get("x")],
                vec![KvInput::append("x", "2"), KvInput::get("x")],
            ],
            targets,
            retries: true,
        }
    }

    /// Two clients, one writing a key and one reading it, through any of `targets`, with
    /// retries.
    pub fn a_write_and_a_read(targets: Vec<usize>) -> Self {
        Workload {
            clients: vec![vec![KvInput::put("x", "1")], vec![KvInput::get("x")]],
            targets,
            retries: true,
        }
    }
}

/// One send the environment may make: the `op`-th operation of `client`, to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Send {
    pub client: usize,
    pub op: usize,
    pub target: usize,
    pub retry: bool,
}

/// One client operation as the history sees it.
#[derive(Debug, Clone, Default, Hash)]
struct Call {
    called: Option<u64>,
    retried: bool,
    returned: Option<(u64, String)>,
}

/// What the clients have seen so far (part of a model's ghost state).
#[derive(Debug, Clone, Default, Hash)]
pub struct History {
    /// A logical clock: one tick per request sent and per reply received.
    clock: u64,
    /// Per client, per operation.
    calls: Vec<Vec<Call>>,
    /// A reply arrived since the history was last checked.
    unchecked: bool,
}

impl Workload {
    /// The node id of client `client` (outside the world's slots).
    pub fn client_id(client: usize) -> NodeId {
        NodeId(NodeId::FIRST_CLIENT + client as u64)
    }

    /// The client of a node id, if it is one.
    pub fn client_of(id: NodeId) -> Option<usize> {
        id.0.checked_sub(NodeId::FIRST_CLIENT).map(|c| c as usize)
    }

    fn ops(&self) -> usize {
        self.clients.iter().map(Vec::len).max().unwrap_or(0)
    }

    pub fn history(&self) -> History {
        History {
            calls: self
                .clients
                .iter()
                .map(|ops| vec![Call::default(); ops.len()])
                .collect(),
            ..History::default()
        }
    }

    /// How many sends the environment has.
    pub fn inputs(&self) -> usize {
        self.clients.len() * self.ops() * self.targets.len() * 2
    }

    pub fn decode(&self, input: usize) -> Send {
        let retry = input % 2 == 1;
        let rest = input / 2;
        let target = self.targets[rest % self.targets.len()];
        let rest = rest / self.targets.len();
        Send {
            client: rest / self.ops(),
            op: rest % self.ops(),
            target,
            retry,
        }
    }

    /// Whether `send` may happen now: a first send once the client's previous operation
    /// returned, a retry once, while unanswered.
    pub fn enabled(&self, history: &History, send: Send) -> bool {
        let Some(call) = history.calls[send.client].get(send.op) else {
            return false;
        };
        if send.retry {
            return self.retries
                && call.called.is_some()
                && call.returned.is_none()
                && !call.retried;
        }
        let previous_done =
            send.op == 0 || history.calls[send.client][send.op - 1].returned.is_some();
        previous_done && call.called.is_none()
    }

    /// Records `send` in the history and returns the operation to send.
    pub fn sent(&self, history: &mut History, send: Send) -> &KvInput {
        history.clock += 1;
        let call = &mut history.calls[send.client][send.op];
        if send.retry {
            call.retried = true;
        } else {
            call.called = Some(history.clock);
        }
        &self.clients[send.client][send.op]
    }

    pub fn describe(&self, input: usize) -> String {
        let send = self.decode(input);
        format!(
            "client {} {} {:?} to n{}",
            send.client,
            if send.retry { "retries" } else { "sends" },
            self.clients[send.client][send.op],
            send.target
        )
    }

    /// Checks the history for linearizability, if a reply arrived since the last check.
    pub fn check(&self, history: &mut History) -> Result<(), String> {
        if !std::mem::take(&mut history.unchecked) {
            return Ok(());
        }
        let mut ops = Vec::new();
        for (client, calls) in history.calls.iter().enumerate() {
            for (op, call) in calls.iter().enumerate() {
                let Some(called) = call.called else {
                    continue;
                };
                let input = self.clients[client][op].clone();
                ops.push(match &call.returned {
                    Some((at, output)) => {
                        Operation::new(client as u64, input, called, output.clone(), *at)
                    }
                    None => Operation::unknown(client as u64, input, called),
                });
            }
        }
        match check_operations(&KvModel, &ops, None) {
            Ok(CheckResult::Ok) => Ok(()),
            Ok(other) => Err(format!("linearizability: {other:?} for {ops:?}")),
            Err(e) => Err(format!("linearizability: bad history: {e}")),
        }
    }
}

impl History {
    /// Client `client` got the answer `output` for its operation `seq` (numbered from 1);
    /// a second answer to the same operation is ignored.
    pub fn returned(&mut self, client: usize, seq: u64, output: String) {
        let Some(call) = self
            .calls
            .get_mut(client)
            .and_then(|calls| calls.get_mut((seq as usize).wrapping_sub(1)))
        else {
            return;
        };
        if call.returned.is_some() {
            return;
        }
        self.clock += 1;
        call.returned = Some((self.clock, output));
        self.unchecked = true;
    }
}
