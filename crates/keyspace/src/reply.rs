//! A command's reply, in the shapes RESP2 has (the front encodes it as is).

use serde::{Deserialize, Serialize};

/// What a command answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reply {
    /// `+OK`
    Ok,
    /// A status line other than OK (`+string`, `+none` from TYPE).
    Status(String),
    /// An error line, its code first (`ERR value is not an integer or out of range`).
    Error(String),
    Integer(i64),
    /// A bulk string; `None` is the nil bulk (a missing key).
    Bulk(#[serde(with = "crate::bytes::option")] Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    /// Bytes of the values the reply carries: what bounds a batch's replies.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Reply::Bulk(Some(value)) => value.len(),
            Reply::Array(items) => items.iter().map(Reply::payload_bytes).sum(),
            Reply::Status(text) | Reply::Error(text) => text.len(),
            Reply::Ok | Reply::Integer(_) | Reply::Bulk(None) => 0,
        }
    }
}
