//! The counter server core.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synod_node::{Context, Node, NodeId, TimerToken};

use crate::CounterMsg;

/// Increments between snapshots.
pub const SNAPSHOT_EVERY: usize = 1000;

/// Everything that must survive a crash. Serialized whole as the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    value: i64,
    /// Per client: the last sequence number applied and the value answered for it.
    last: BTreeMap<u64, (u64, i64)>,
}

/// One applied increment, as logged.
#[derive(Debug, Serialize, Deserialize)]
struct Increment {
    client: u64,
    seq: u64,
    amount: i64,
}

impl State {
    fn apply(&mut self, inc: &Increment) -> i64 {
        self.value = self.value.wrapping_add(inc.amount);
        self.last.insert(inc.client, (inc.seq, self.value));
        self.value
    }
}

/// The counter server. Stops answering (rather than answer without durability) if its storage
/// fails.
#[derive(Debug, Default)]
pub struct CounterServer {
    state: State,
    /// Increments logged since the last snapshot.
    since_snapshot: usize,
    failed: bool,
}

impl CounterServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current value.
    pub fn value(&self) -> i64 {
        self.state.value
    }

    /// Whether storage failed and the server stopped serving.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn recover(&mut self, ctx: &mut dyn Context<CounterMsg>) -> Result<(), String> {
        let recovered = ctx.storage().recover().map_err(|e| e.to_string())?;
        self.state = match recovered.snapshot {
            Some(bytes) => postcard::from_bytes(&bytes).map_err(|e| format!("snapshot: {e}"))?,
            None => State::default(),
        };
        for record in &recovered.records {
            let inc: Increment =
                postcard::from_bytes(record).map_err(|e| format!("log record: {e}"))?;
            self.state.apply(&inc);
        }
        self.since_snapshot = recovered.records.len();
        Ok(())
    }

    /// Makes `inc` durable, then applies it. Returns the new value.
    fn log_and_apply(
        &mut self,
        ctx: &mut dyn Context<CounterMsg>,
        inc: Increment,
    ) -> Result<i64, String> {
        let record = postcard::to_allocvec(&inc).map_err(|e| e.to_string())?;
        let storage = ctx.storage();
        storage.append(&record).map_err(|e| e.to_string())?;
        storage.persist_before_send().map_err(|e| e.to_string())?;
        let value = self.state.apply(&inc);
        self.since_snapshot += 1;
        if self.since_snapshot >= SNAPSHOT_EVERY {
            let snapshot = postcard::to_allocvec(&self.state).map_err(|e| e.to_string())?;
            ctx.storage()
                .install_snapshot(&snapshot)
                .map_err(|e| e.to_string())?;
            self.since_snapshot = 0;
        }
        Ok(value)
    }
}

impl Node for CounterServer {
    type Msg = CounterMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<CounterMsg>) {
        if let Err(why) = self.recover(ctx) {
            // Serving from a state we could not fully load would break both guarantees.
            self.failed = true;
            tracing::error!(node = %ctx.id(), "cannot recover, not serving: {why}");
        }
    }

    fn on_message(&mut self, ctx: &mut dyn Context<CounterMsg>, from: NodeId, msg: CounterMsg) {
        if self.failed {
            return;
        }
        let reply = match msg {
            CounterMsg::Get { seq } => CounterMsg::Value {
                seq,
                value: self.state.value,
            },
            CounterMsg::Add {
                client,
                seq,
                amount,
            } => match self.state.last.get(&client) {
                Some(&(last_seq, value)) if seq <= last_seq => {
                    // A retry (or a stale duplicate): never apply twice. The answer for an
                    // older number is no longer known, and that client has moved on anyway.
                    if seq < last_seq {
                        return;
                    }
                    CounterMsg::Value { seq, value }
                }
                _ => match self.log_and_apply(
                    ctx,
                    Increment {
                        client,
                        seq,
                        amount,
                    },
                ) {
                    Ok(value) => CounterMsg::Value { seq, value },
                    Err(why) => {
                        self.failed = true;
                        tracing::error!(node = %ctx.id(), "storage failed, not serving: {why}");
                        return;
                    }
                },
            },
            CounterMsg::Value { .. } => return,
        };
        ctx.send(from, reply);
    }

    fn on_timer(&mut self, _ctx: &mut dyn Context<CounterMsg>, _token: TimerToken) {}
}
