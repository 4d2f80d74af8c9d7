//! The replicated state: the key/value map and the duplicate-detection table, which travel
//! together so that a new backup (and a promoted one) filters retries exactly as the primary did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synod_node::limits::{TooLarge, MAX_VALUE_CEILING};

use crate::{Op, PbError, Request};

/// Keys, values, and per client the last sequence number applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Store {
    data: BTreeMap<String, String>,
    /// One entry per client: since a client has one operation outstanding at a time, an
    /// older or equal number is a retry. The table grows with the number of clients ever seen.
    last_seq: BTreeMap<u64, u64>,
}

impl Store {
    /// The value of `key`, empty if it was never written.
    pub fn get(&self, key: &str) -> &str {
        self.data.get(key).map_or("", String::as_str)
    }

    /// Whether `request` is a Put or Append that was already applied.
    pub fn is_duplicate(&self, request: &Request) -> bool {
        !request.op.is_get()
            && self
                .last_seq
                .get(&request.client)
                .is_some_and(|&last| request.seq <= last)
    }

    /// Applies `request` (a retried write is not applied again) and returns what the client
    /// is told: the value for a Get, empty for a write, or the refusal of an Append that would
    /// grow a value past the ceiling. The ceiling, not a server's configured limit, so primary
    /// and backup decide alike; a refused Append changes nothing, not even the client's
    /// sequence number, so its retry is refused again rather than reported done.
    pub fn apply(&mut self, request: &Request) -> Result<String, PbError> {
        if self.is_duplicate(request) {
            return Ok(String::new());
        }
        match &request.op {
            Op::Get { key } => return Ok(self.get(key).to_owned()),
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
            }
            Op::Append { key, value } => {
                let len = self.get(key).len() + value.len();
                if len > MAX_VALUE_CEILING {
                    return Err(PbError::TooLarge(TooLarge::Value {
                        size: len as u64,
                        limit: MAX_VALUE_CEILING as u64,
                    }));
                }
                self.data.entry(key.clone()).or_default().push_str(value);
            }
        }
        self.last_seq.insert(request.client, request.seq);
        Ok(String::new())
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
        assert_eq!(s.get("k"), "abc");
        let get = req(3, 1, Op::Get { key: "k".into() });
        assert_eq!(s.apply(&get), Ok("abc".into()));
        assert_eq!(s.apply(&get), Ok("abc".into()), "gets are never filtered");
        assert_eq!(s.get("missing"), "");
    }

    #[test]
    fn an_append_past_the_ceiling_is_refused_and_changes_nothing() {
        let mut s = Store::default();
        let almost = "a".repeat(MAX_VALUE_CEILING - 1);
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
        assert_eq!(s.get("k").len(), MAX_VALUE_CEILING - 1);
        assert_eq!(s.apply(&req(1, 2, append("b"))), Ok(String::new()));
        assert_eq!(s.get("k").len(), MAX_VALUE_CEILING);
    }
}
