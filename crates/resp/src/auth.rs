//! Who may do what on a RESP port: the users of `synod_auth` (Redis's `requirepass` and ACL
//! users), with Redis's replies (`-NOAUTH`, `-WRONGPASS`, `-NOPERM`).
//!
//! A port with [`Users`] answers nothing but `AUTH` (and `QUIT`) until the connection has
//! authenticated; then each command is checked against its user's permissions: whether it
//! may read, whether it may write, and which keys it may touch (glob patterns, `~cache:*`).
//! Commands are classified here by name, from the raw command, so this module does not
//! depend on how the server turns commands into operations: a command it does not know is
//! a write of its first argument (what needs the most permission).
//!
//! Failed authentications are logged and rate-limited by [`Access`], server-wide and
//! shared with the server's native port.

use std::net::SocketAddr;
use std::sync::Arc;

pub use synod_auth::{Access, Permissions, Users};
use synod_auth::{AuthFailure, Denied, Need};
use tracing::warn;

use crate::value::Value;

/// One connection's standing: who it authenticated as, if anyone.
pub struct Session {
    access: Option<Arc<Access>>,
    peer: SocketAddr,
    user: Option<(String, Permissions)>,
    /// Whether a command refused for want of `AUTH` was logged: once per connection, so a
    /// client pipelining thousands of them cannot flood the log.
    noauth_logged: bool,
}

const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const TOO_MANY: &str = "ERR too many failed authentications; try again later";

impl Session {
    /// A connection from `peer` to a port with `access` (`None`: an open port).
    pub fn new(access: Option<Arc<Access>>, peer: SocketAddr) -> Self {
        Session {
            access,
            peer,
            user: None,
            noauth_logged: false,
        }
    }

    /// Screens one command: `Ok` with the command if it may run, or the reply to send in
    /// its place (the answer to `AUTH`, or a refusal).
    pub fn screen(&mut self, command: Value) -> Result<Value, Value> {
        let Some(access) = self.access.clone() else {
            return Ok(command);
        };
        let args = match &command {
            Value::Array(Some(items)) => items,
            _ => return Ok(command),
        };
        let arg = |i: usize| match args.get(i) {
            Some(Value::Bulk(Some(bytes))) => Some(bytes.as_slice()),
            _ => None,
        };
        let name = arg(0).map(|n| n.to_ascii_lowercase()).unwrap_or_default();
        match name.as_slice() {
            b"auth" => {
                let (user, password) = match (args.len(), arg(1), arg(2)) {
                    (2, Some(password), _) => (b"default".as_slice(), password),
                    (3, Some(user), Some(password)) => (user, password),
                    _ => {
                        return Err(Value::Error(
                            "ERR wrong number of arguments for 'auth' command".into(),
                        ))
                    }
                };
                Err(self.authenticate(&access, user, password))
            }
            b"quit" => Ok(command),
            _ => match &self.user {
                None => {
                    if !self.noauth_logged {
                        self.noauth_logged = true;
                        warn!(peer = %self.peer, "RESP command refused: not authenticated (NOAUTH)");
                    }
                    Err(Value::Error(NOAUTH.into()))
                }
                Some((user, permissions)) => match refusal(user, permissions, &name, args) {
                    Some(reply) => {
                        warn!(peer = %self.peer, %user, command = %String::from_utf8_lossy(&name),
                            "RESP command refused: no permission");
                        Err(reply)
                    }
                    None => Ok(command),
                },
            },
        }
    }

    fn authenticate(&mut self, access: &Access, user: &[u8], password: &[u8]) -> Value {
        let user = String::from_utf8_lossy(user).into_owned();
        match access.authenticate(&user, password, &self.peer, "RESP") {
            Ok(permissions) => {
                self.user = Some((user, permissions));
                Value::Simple("OK".into())
            }
            Err(AuthFailure::TooManyFailures) => Value::Error(TOO_MANY.into()),
            Err(AuthFailure::WrongPass | AuthFailure::Required) => Value::Error(WRONGPASS.into()),
        }
    }
}

/// What a command does: reads, writes, or neither (PING, ECHO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Neither,
}

/// The kind of command `name` and the positions of its keys among `args` (the command
/// name is position 0).
fn classify(name: &[u8], args: usize) -> (Kind, Vec<usize>) {
    let all_from_1 = (1..args).collect();
    match name {
        // Connection and transaction commands: a transaction's commands are screened one
        // by one as they are queued.
        b"ping" | b"echo" | b"hello" | b"select" | b"client" | b"command" | b"info" | b"quit"
        | b"config" | b"multi" | b"exec" | b"discard" => (Kind::Neither, Vec::new()),
        b"get" | b"strlen" | b"getrange" | b"ttl" | b"pttl" | b"type" | b"substr" => {
            (Kind::Read, vec![1])
        }
        // They name no key; as in Redis, key patterns do not filter what they list.
        b"dbsize" | b"keys" | b"scan" => (Kind::Read, Vec::new()),
        b"mget" | b"exists" => (Kind::Read, all_from_1),
        b"del" | b"unlink" => (Kind::Write, all_from_1),
        b"mset" | b"msetnx" => (Kind::Write, (1..args).step_by(2).collect()),
        // Everything else, known or not, is taken as a write of its first argument.
        _ => (Kind::Write, if args > 1 { vec![1] } else { Vec::new() }),
    }
}

/// Redis's refusal of a command that `permissions` do not allow, if they do not.
fn refusal(user: &str, permissions: &Permissions, name: &[u8], args: &[Value]) -> Option<Value> {
    let (kind, positions) = classify(name, args.len());
    let keys = positions
        .iter()
        .filter_map(|&i| match args.get(i) {
            Some(Value::Bulk(Some(key))) => Some(key.as_slice()),
            _ => None,
        })
        .collect();
    let need = match kind {
        Kind::Neither => Need::Nothing,
        Kind::Read => Need::Read(keys),
        Kind::Write => Need::Write(keys),
    };
    match permissions.allow(user, &need) {
        Ok(()) => None,
        Err(Denied::Kind { .. } | Denied::MemberOnly) => {
            let shown: String = String::from_utf8_lossy(name).chars().take(64).collect();
            Some(Value::Error(format!(
                "NOPERM User {user} has no permissions to run the '{shown}' command"
            )))
        }
        Err(Denied::Key { .. }) => {
            Some(Value::Error("NOPERM No permissions to access a key".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_auth::FAILURE_BURST;

    fn command(words: &[&str]) -> Value {
        Value::Array(Some(
            words
                .iter()
                .map(|w| Value::Bulk(Some(w.as_bytes().to_vec())))
                .collect(),
        ))
    }

    fn session(users: Users) -> Session {
        Session::new(Some(Access::new(users)), "127.0.0.1:1".parse().unwrap())
    }

    fn error(reply: Result<Value, Value>) -> String {
        match reply {
            Err(Value::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    const ACL: &str = "# users\nuser default on >s3cret ~* +@all\nuser reader on >r3ad ~* +@read\n\
                       user cache on >c4che ~cache:* +@all\nuser gone off >x ~* +@all\n";

    #[test]
    fn nothing_but_auth_before_authenticating() {
        let mut s = session(Users::require_pass("pw"));
        assert_eq!(error(s.screen(command(&["GET", "k"]))), NOAUTH);
        assert_eq!(error(s.screen(command(&["PING"]))), NOAUTH);
        assert_eq!(error(s.screen(command(&["AUTH", "nope"]))), WRONGPASS);
        assert_eq!(error(s.screen(command(&["GET", "k"]))), NOAUTH);
        assert_eq!(
            s.screen(command(&["AUTH", "pw"])),
            Err(Value::Simple("OK".into()))
        );
        assert_eq!(s.screen(command(&["GET", "k"])), Ok(command(&["GET", "k"])));
    }

    #[test]
    fn acl_users_are_held_to_their_permissions() {
        let users = Users::parse_acl(ACL).unwrap();
        let mut reader = session(users.clone());
        assert!(reader.screen(command(&["AUTH", "reader", "r3ad"])).is_err());
        assert!(reader.screen(command(&["GET", "any"])).is_ok());
        assert_eq!(
            error(reader.screen(command(&["SET", "any", "v"]))),
            "NOPERM User reader has no permissions to run the 'set' command"
        );
        let mut cache = session(users.clone());
        assert_eq!(
            cache.screen(command(&["AUTH", "cache", "c4che"])),
            Err(Value::Simple("OK".into()))
        );
        assert!(cache.screen(command(&["SET", "cache:1", "v"])).is_ok());
        assert_eq!(
            error(cache.screen(command(&["SET", "other", "v"]))),
            "NOPERM No permissions to access a key"
        );
        assert_eq!(
            error(cache.screen(command(&["MGET", "cache:1", "other"]))),
            "NOPERM No permissions to access a key"
        );
        let mut gone = session(users.clone());
        assert_eq!(
            error(gone.screen(command(&["AUTH", "gone", "x"]))),
            WRONGPASS
        );
        // Another user's password is no password for this one.
        let mut mixed = session(users);
        assert_eq!(
            error(mixed.screen(command(&["AUTH", "cache", "s3cret"]))),
            WRONGPASS
        );
    }

    #[test]
    fn an_open_port_screens_nothing() {
        let mut s = Session::new(None, "127.0.0.1:1".parse().unwrap());
        assert_eq!(
            s.screen(command(&["SET", "k", "v"])),
            Ok(command(&["SET", "k", "v"]))
        );
    }

    #[test]
    fn failures_past_the_burst_are_refused_without_checking() {
        let mut s = session(Users::require_pass("pw"));
        for _ in 0..FAILURE_BURST as usize {
            assert_eq!(error(s.screen(command(&["AUTH", "guess"]))), WRONGPASS);
        }
        assert_eq!(error(s.screen(command(&["AUTH", "pw"]))), TOO_MANY);
    }
}
