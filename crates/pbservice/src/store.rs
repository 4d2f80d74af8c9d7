//! The replicated state: the key/value map and the duplicate-detection table, which travel
//! together so that a new backup (and a promoted one) filters retries exactly as the primary did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synod_keyspace::{Keyspace, Reply};
use synod_node::limits::{TooLarge, MAX_VALUE_CEILING};

use crate::{Op, PbError, Request};

/// Keys and values, and per client its last write: sequence number and reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Store {
    data: Keyspace,
    /// One entry per client: since a client has one operation outstanding at a time, an
    /// older or equal number is a retry. The table grows with the number of clients ever seen.
    last_write: BTreeMap<u64, (u64, Reply)>,
}

impl Store {
    /// The value of `key`, `None` if it has none.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&Vec<u8>> {
        self.data.get(key)
    }

    /// If `request` is a write applied already, what its client is told again: the first
    /// reply to that request (or OK to an older one, which no client waits for).
    pub fn duplicate(&self, request: &Request) -> Option<Reply> {
        if !request.op.writes() {
            return None;
        }
        let (seq, reply) = self.last_write.get(&request.client)?;
        match request.seq.cmp(seq) {
            std::cmp::Ordering::Less => Some(Reply::Ok),
            std::cmp::Ordering::Equal => Some(reply.clone()),
            std::cmp::Ordering::Greater => None,
        }
    }

    /// Applies `request` (a retried write is not applied again) and returns what the client
    /// is told, or the refusal of an Append that would grow a value past the ceiling. The
    /// ceiling, not a server's configured limit, so primary and backup decide alike; a
    /// refused Append changes nothing, not even the client's sequence number, so its retry
    /// is refused again rather than reported done.
    pub fn apply(&mut self, request: &Request) -> Result<Reply, PbError> {
        if let Some(reply) = self.duplicate(request) {
            return Ok(reply);
        }
        let reply = match &request.op {
            Op::Get { key } => {
                return Ok(Reply::Bulk(Some(
                    self.get(key).cloned().unwrap_or_default(),
                )))
            }
            Op::Redis(command) if !command.writes() => return Ok(self.data.apply(command)),
            Op::Redis(command) => self.data.apply(command),
            Op::Put { key, value } => {
                self.data.put(key.clone(), value.clone());
                Reply::Ok
            }
            Op::Append { key, value } => match self.data.append(key, value) {
                Some(len) => Reply::Integer(len as i64),
                None => {
                    let size = self.get(key).map_or(0, Vec::len) + value.len();
                    return Err(PbError::TooLarge(TooLarge::Value {
                        size: size as u64,
                        limit: MAX_VALUE_CEILING as u64,
                    }));
                }
            },
        };
        self.last_write
            .insert(request.client, (request.seq, reply.clone()));
        Ok(reply)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(client: u64, seq: u64, op: Op) -> Request {
        Request { client, seq, op }
    }

    #[test]
    fn a_retried_append_is_applied_once() {
        let mut s = Store::default();
        let append = |v: &str| Op::Append {
            key: "k".into(),
            value: v.into(),
        };
        s.apply(&req(1, 1, append("a"))).unwrap();
        s.apply(&req(1, 1, append("a"))).unwrap();
        s.apply(&req(2, 1, append("b"))).unwrap();
        s.apply(&req(1, 2, append("c"))).unwrap();
        s.apply(&req(1, 1, append("a"))).unwrap();
        assert_eq!(s.get("k"), Some(&b"abc".to_vec()));
        let get = req(3, 1, Op::Get { key: "k".into() });
        let abc = Reply::Bulk(Some(b"abc".to_vec()));
        assert_eq!(s.apply(&get), Ok(abc.clone()));
        assert_eq!(s.apply(&get), Ok(abc), "gets are never filtered");
        assert_eq!(s.get("missing"), None);
    }

    #[test]
    fn an_append_past_the_ceiling_is_refused_and_changes_nothing() {
        let mut s = Store::default();
        let almost = vec![b'a'; MAX_VALUE_CEILING - 1];
        let put = Op::Put {
            key: "k".into(),
            value: almost,
        };
        s.apply(&req(1, 1, put)).unwrap();
        let append = |v: &str| Op::Append {
            key: "k".into(),
            value: v.into(),
        };
        let refused = PbError::TooLarge(TooLarge::Value {
            size: MAX_VALUE_CEILING as u64 + 1,
            limit: MAX_VALUE_CEILING as u64,
        });
        assert_eq!(s.apply(&req(1, 2, append("bc"))), Err(refused));
        // Its retry is refused again, not taken for done.
        assert_eq!(s.apply(&req(1, 2, append("bc"))), Err(refused));
        assert_eq!(s.get("k").map(Vec::len), Some(MAX_VALUE_CEILING - 1));
        assert_eq!(
            s.apply(&req(1, 2, append("b"))),
            Ok(Reply::Integer(MAX_VALUE_CEILING as i64))
        );
        assert_eq!(s.get("k").map(Vec::len), Some(MAX_VALUE_CEILING));
    }

    #[test]
    fn a_retried_command_gets_its_first_reply_again() {
        let mut s = Store::default();
        let incr = Op::Redis(synod_keyspace::Command::Incr {
            key: b"n".to_vec(),
            by: synod_keyspace::Increment::Integer(1),
        });
        assert_eq!(s.apply(&req(1, 1, incr.clone())), Ok(Reply::Integer(1)));
        assert_eq!(s.apply(&req(1, 1, incr.clone())), Ok(Reply::Integer(1)));
        assert_eq!(s.apply(&req(1, 2, incr)), Ok(Reply::Integer(2)));
    }
}
