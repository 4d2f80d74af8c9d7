//! The replicated state: the key/value map and the duplicate-detection table, which travel
//! together so that a new backup (and a promoted one) filters retries exactly as the primary did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Op, Request};

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
    /// is told: the value for a Get, empty for a write.
    pub fn apply(&mut self, request: &Request) -> String {
        if self.is_duplicate(request) {
            return String::new();
        }
        match &request.op {
            Op::Get { key } => return self.get(key).to_owned(),
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
            }
            Op::Append { key, value } => self.data.entry(key.clone()).or_default().push_str(value),
        }
        self.last_seq.insert(request.client, request.seq);
        String::new()
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
        s.apply(&req(1, 1, append("a")));
        s.apply(&req(1, 1, append("a")));
        s.apply(&req(2, 1, append("b")));
        s.apply(&req(1, 2, append("c")));
        s.apply(&req(1, 1, append("a")));
        assert_eq!(s.get("k"), "abc");
        let get = req(3, 1, Op::Get { key: "k".into() });
        assert_eq!(s.apply(&get), "abc");
        assert_eq!(s.apply(&get), "abc", "gets are never filtered");
        assert_eq!(s.get("missing"), "");
    }
}
