//! Why a client operation failed, in terms a caller can act on: "not applied" versus
//! "outcome unknown".

use std::time::Duration;

use synod_auth::{AuthFailure, Denied};
use synod_net::limits::TooLarge;

use crate::driver::Stopped;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client was given no server addresses.
    #[error("no server addresses given")]
    NoServers,
    /// No replica answered in time; the operation may or may not have been applied.
    #[error("no server answered within {0:?}; the operation may or may not have been applied")]
    Timeout(Duration),
    /// No primary completed the operation in time; its outcome is unknown. `problem` is the
    /// last connection problem seen, to tell "nobody listens" from "slow".
    #[error("no primary answered within {after:?}{}", last_problem(.problem))]
    NoPrimary {
        after: Duration,
        problem: Option<String>,
    },
    /// The server forgot this client's session (its table is bounded), so it cannot tell a
    /// retry from a new request; the operation was not applied.
    #[error("the server forgot this client's session; the operation was not applied")]
    SessionExpired,
    /// The server answered with a reply of the wrong kind for the request (a server that
    /// disagrees with this client about the protocol); the outcome is unknown.
    #[error("unexpected reply {0}; the operation may or may not have been applied")]
    Unexpected(String),
    /// A server refused this client's credentials (or their absence); nothing was sent.
    #[error("{0}; give a user and password (--user and --password-file, or SYNOD_USER and SYNOD_PASSWORD)")]
    Refused(AuthFailure),
    /// The client's user may not make this request; it was not applied.
    #[error("refused: {0}; the operation was not applied")]
    Denied(Denied),
    /// The key or value is above the size policy (this client's, checked before sending,
    /// or the server's); the operation was not applied.
    #[error("{0}; the operation was not applied")]
    TooLarge(#[from] TooLarge),
    /// The store holds `used` bytes of keys and values and the write would pass the server's
    /// `--max-memory` (`limit`); the operation was not applied.
    #[error(
        "out of memory: the store holds {used} bytes, the limit is {limit}; \
         the operation was not applied"
    )]
    OutOfMemory { used: u64, limit: u64 },
}

/// The list of server addresses a client was given, refused if it is empty.
pub(crate) fn server_list<S: Into<String>>(
    servers: impl IntoIterator<Item = S>,
) -> Result<Vec<String>, ClientError> {
    let servers: Vec<String> = servers.into_iter().map(Into::into).collect();
    if servers.is_empty() {
        return Err(ClientError::NoServers);
    }
    Ok(servers)
}

impl Stopped {
    /// The error of an operation stopped this way; `timeout` makes the one of an operation
    /// whose deadline passed, from the last connection problem seen.
    pub(crate) fn error(self, timeout: impl FnOnce(Option<String>) -> ClientError) -> ClientError {
        match self {
            Stopped::Deadline(problem) => timeout(problem),
            Stopped::Refused(failure) => ClientError::Refused(failure),
        }
    }
}

fn last_problem(problem: &Option<String>) -> String {
    problem
        .as_ref()
        .map_or_else(String::new, |p| format!(" (last problem: {p})"))
}
