//! The operation every key/value service's clients send ([`KvOp`]): the course's Get, Put
//! and Append, or a Redis [`Command`], with what the services ask of it (its keys, whether it
//! writes, its size against the limits, how long a clerk waits before hedging it).

use serde::{Deserialize, Serialize};
use synod_node::clerk::{step_for, ClerkOp};
use synod_node::limits::{self, Limits, TooLarge};

use crate::Command;

/// A client's operation on a key/value service: the course's Get, Put and Append, or a Redis
/// command. The Paxos KV, the primary/backup KV and the sharded KV carry it alike. The
/// variants' order is part of the services' logs' and snapshots' encoding: new ones go last.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOp {
    Get {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
    },
    Put {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::bytes")]
        value: Vec<u8>,
    },
    Append {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::bytes")]
        value: Vec<u8>,
    },
    /// A Redis command (a transaction included), applied as one operation.
    Redis(Command),
}

impl KvOp {
    /// Bytes a write may add to the store (a Put's or Append's key and value); 0 for a read.
    pub fn added_bytes(&self) -> u64 {
        match self {
            KvOp::Get { .. } => 0,
            KvOp::Put { key, value } | KvOp::Append { key, value } => {
                (key.len() + value.len()) as u64
            }
            KvOp::Redis(command) => command.added_bytes(),
        }
    }

    /// Refuses an operation whose key or value is above `limits` (a Get's key is checked
    /// too: it travels and is logged like any other).
    pub fn check_size(&self, limits: &Limits) -> Result<(), TooLarge> {
        match self {
            KvOp::Get { key } => limits.check(key.len(), 0),
            KvOp::Put { key, value } | KvOp::Append { key, value } => {
                limits.check(key.len(), value.len())
            }
            KvOp::Redis(command) => command.check_size(limits),
        }
    }
    /// Refuses a batch (the operations of one `Batch` request) that holds an operation
    /// above `limits`, or whose keys and values together are above [`limits::BATCH_BYTES`]:
    /// a batch is one log entry, and a big value travels alone.
    pub fn check_batch(ops: &[KvOp], limits: &Limits) -> Result<(), TooLarge> {
        let mut bytes = 0;
        for op in ops {
            op.check_size(limits)?;
            bytes += op.payload_bytes();
        }
        if ops.len() > 1 && bytes > limits::BATCH_BYTES {
            return Err(TooLarge::Command {
                size: bytes as u64,
                limit: limits::BATCH_BYTES as u64,
            });
        }
        Ok(())
    }

    /// The keys the operation reads or writes.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            KvOp::Get { key } | KvOp::Put { key, .. } | KvOp::Append { key, .. } => vec![key],
            KvOp::Redis(command) => command.keys(),
        }
    }

    /// Whether the operation may change the store.
    pub fn writes(&self) -> bool {
        match self {
            KvOp::Get { .. } => false,
            KvOp::Put { .. } | KvOp::Append { .. } => true,
            KvOp::Redis(command) => command.writes(),
        }
    }

    /// Bytes of key and value the operation carries.
    pub fn payload_bytes(&self) -> usize {
        match self {
            KvOp::Get { key } => key.len(),
            KvOp::Put { key, value } | KvOp::Append { key, value } => key.len() + value.len(),
            KvOp::Redis(command) => command.payload_bytes(),
        }
    }
}

impl ClerkOp for KvOp {
    /// Grows with the key and value: see [`step_for`].
    fn hedge_step(&self) -> std::time::Duration {
        step_for(self.payload_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_hedge_step_grows_with_the_value() {
        let get = KvOp::Get { key: "k".into() };
        assert!(get.hedge_step() < synod_node::clerk::STEP + Duration::from_millis(1));
        let big = KvOp::Put {
            key: Vec::new(),
            value: vec![b'x'; 8 << 20],
        };
        assert_eq!(big.hedge_step(), Duration::from_millis(2300));
    }
}
