//! Who may do what on a RESP port: Redis's `requirepass` and a subset of its ACL users, with
//! Redis's replies (`-NOAUTH`, `-WRONGPASS`, `-NOPERM`).
//!
//! A port with [`Users`] answers nothing but `AUTH` (and `QUIT`) until the connection has
//! authenticated; then each command is checked against its user's permissions: whether it
//! may read, whether it may write, and which keys it may touch (glob patterns, `~cache:*`).
//! Commands are classified here by name, from the raw command, so this module does not
//! depend on how the server turns commands into operations: a command it does not know is
//! a write of its first argument (what needs the most permission).
//!
//! Users come from `requirepass` (the `default` user, allowed everything) or from an ACL
//! file of Redis's form, one user a line:
//!
//! ```text
//! user default on >s3cret ~* +@all
//! user reader on >r3ad ~* +@read
//! user cache on >c4che ~cache:* +@all
//! ```
//!
//! Failed authentications are logged (the user name and the client's address, never the
//! password) and rate-limited server-wide: past [`FAILURES_PER_SECOND`] (with a burst of
//! [`FAILURE_BURST`]) an `AUTH` is answered with an error without its password being
//! checked, which bounds how fast anyone can guess. Passwords are compared in constant
//! time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use thiserror::Error;
use tracing::warn;

use crate::value::Value;

/// Failed authentications a server checks per second, on average...
pub const FAILURES_PER_SECOND: f64 = 10.0;
/// ...and at most in a burst.
pub const FAILURE_BURST: f64 = 20.0;

/// What a user may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    /// Glob patterns (`*`, `?`) of the keys it may touch.
    pub keys: Vec<String>,
}

impl Permissions {
    /// Everything, on every key.
    pub fn all() -> Self {
        Permissions {
            read: true,
            write: true,
            keys: vec!["*".into()],
        }
    }
}

/// One user of a port.
#[derive(Clone)]
struct User {
    password: Vec<u8>,
    enabled: bool,
    permissions: Permissions,
}

/// The users of a RESP port.
#[derive(Clone, Default)]
pub struct Users {
    users: BTreeMap<String, User>,
}

impl std::fmt::Debug for Users {
    // Never the passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.users.keys()).finish()
    }
}

/// Why an ACL file was refused. Never quotes a password.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AclError {
    #[error("line {line}: expected `user NAME ...`")]
    NotAUser { line: usize },
    #[error("line {line}: user {user} has no password (>PASSWORD)")]
    NoPassword { line: usize, user: String },
    #[error("line {line}: unknown rule {rule:?} (known: on, off, >PASSWORD, ~PATTERN, +@all, +@read, +@write)")]
    UnknownRule { line: usize, rule: String },
    #[error("line {line}: user {user} is defined twice")]
    Twice { line: usize, user: String },
    #[error("no user is defined")]
    Empty,
}

impl Users {
    /// `requirepass`: the `default` user with `password`, allowed everything.
    pub fn require_pass(password: &str) -> Self {
        let mut users = Users::default();
        users.add("default", password, Permissions::all());
        users
    }

    /// Adds (or replaces) an enabled user.
    pub fn add(&mut self, name: &str, password: &str, permissions: Permissions) {
        let user = User {
            password: password.as_bytes().to_vec(),
            enabled: true,
            permissions,
        };
        self.users.insert(name.to_string(), user);
    }

    /// Parses an ACL file (see the module docs). Blank lines and `#` comments are skipped.
    pub fn parse_acl(text: &str) -> Result<Self, AclError> {
        let mut users = Users::default();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some("user"), Some(name)) = (words.next(), words.next()) else {
                return Err(AclError::NotAUser { line: line_no });
            };
            let mut user = User {
                password: Vec::new(),
                enabled: false,
                permissions: Permissions {
                    read: false,
                    write: false,
                    keys: Vec::new(),
                },
            };
            let mut has_password = false;
            for rule in words {
                match rule {
                    "on" => user.enabled = true,
                    "off" => user.enabled = false,
                    "+@all" => {
                        user.permissions.read = true;
                        user.permissions.write = true;
                    }
                    "+@read" => user.permissions.read = true,
                    "+@write" => user.permissions.write = true,
                    "allkeys" => user.permissions.keys.push("*".into()),
                    _ if rule.starts_with('>') => {
                        user.password = rule.as_bytes()[1..].to_vec();
                        has_password = true;
                    }
                    _ if rule.starts_with('~') => user.permissions.keys.push(rule[1..].into()),
                    _ => {
                        // The rule may be a mistyped password: say where, not what.
                        let rule = if rule.len() > 16 {
                            "(a long rule)".into()
                        } else {
                            rule.into()
                        };
                        return Err(AclError::UnknownRule {
                            line: line_no,
                            rule,
                        });
                    }
                }
            }
            if !has_password {
                return Err(AclError::NoPassword {
                    line: line_no,
                    user: name.into(),
                });
            }
            if users.users.insert(name.to_string(), user).is_some() {
                return Err(AclError::Twice {
                    line: line_no,
                    user: name.into(),
                });
            }
        }
        if users.users.is_empty() {
            return Err(AclError::Empty);
        }
        Ok(users)
    }

    /// The permissions of `name` if `password` is its password and it is enabled. Every
    /// user's password is compared, in constant time, so the time taken does not tell
    /// which users exist.
    fn check(&self, name: &str, password: &[u8]) -> Option<&Permissions> {
        let mut found = None;
        for (user_name, user) in &self.users {
            let matches = constant_time_eq(&user.password, password);
            if matches && user.enabled && user_name == name {
                found = Some(&user.permissions);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `key` matches the glob `pattern` (`*` any run, `?` any one byte).
pub fn glob_match(pattern: &[u8], key: &[u8]) -> bool {
    // Iterative matching with backtracking to the last `*`: linear in practice, and never
    // recursive, so no pattern can exhaust the stack.
    let (mut p, mut k) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, k));
                p += 1;
            }
            Some(&c) if c == b'?' || c == key[k] => {
                p += 1;
                k += 1;
            }
            _ => match star {
                Some((sp, sk)) => {
                    p = sp + 1;
                    k = sk + 1;
                    star = Some((sp, sk + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The server-wide bound on failed authentications (a token bucket).
#[derive(Debug)]
pub struct FailureLimit {
    state: Mutex<(f64, Instant)>,
}

impl Default for FailureLimit {
    fn default() -> Self {
        FailureLimit {
            state: Mutex::new((FAILURE_BURST, Instant::now())),
        }
    }
}

impl FailureLimit {
    /// Whether another password may be checked now: false while failures come too fast.
    fn may_try(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = *state;
        tokens + at.elapsed().as_secs_f64() * FAILURES_PER_SECOND >= 1.0
    }

    /// Counts a failure.
    fn failed(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = *state;
        let now = Instant::now();
        let refilled = (tokens + (now - at).as_secs_f64() * FAILURES_PER_SECOND).min(FAILURE_BURST);
        *state = ((refilled - 1.0).max(0.0), now);
    }
}

/// A port's access control: its users and its bound on failures.
#[derive(Debug)]
pub struct Access {
    users: Users,
    failures: FailureLimit,
}

impl Access {
    pub fn new(users: Users) -> Arc<Self> {
        Arc::new(Access {
            users,
            failures: FailureLimit::default(),
        })
    }
}

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
        if !access.failures.may_try() {
            warn!(peer = %self.peer, %user, "RESP authentication refused: too many failures");
            return Value::Error(TOO_MANY.into());
        }
        match access.users.check(&user, password) {
            Some(permissions) => {
                self.user = Some((user, permissions.clone()));
                Value::Simple("OK".into())
            }
            None => {
                access.failures.failed();
                warn!(peer = %self.peer, %user, "RESP authentication failed");
                Value::Error(WRONGPASS.into())
            }
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
    let (kind, keys) = classify(name, args.len());
    let allowed = match kind {
        Kind::Neither => true,
        Kind::Read => permissions.read,
        Kind::Write => permissions.write,
    };
    if !allowed {
        let shown: String = String::from_utf8_lossy(name).chars().take(64).collect();
        return Some(Value::Error(format!(
            "NOPERM User {user} has no permissions to run the '{shown}' command"
        )));
    }
    let outside = keys.iter().any(|&i| match args.get(i) {
        Some(Value::Bulk(Some(key))) => !permissions
            .keys
            .iter()
            .any(|pattern| glob_match(pattern.as_bytes(), key)),
        _ => false,
    });
    outside.then(|| Value::Error("NOPERM No permissions to access a key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn acl_errors_never_quote_a_password() {
        let err = Users::parse_acl("user x on >averyveryverylongsecretword ~* +@al").unwrap_err();
        assert_eq!(
            err,
            AclError::UnknownRule {
                line: 1,
                rule: "+@al".into()
            }
        );
        let err = Users::parse_acl("user x on averyveryverylongsecretword").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(matches!(
            Users::parse_acl("# nobody\n"),
            Err(AclError::Empty)
        ));
        assert!(!format!("{:?}", Users::parse_acl(ACL).unwrap()).contains("s3cret"));
    }

    #[test]
    fn globs_match_as_redis_key_patterns_do() {
        for (pattern, key, matches) in [
            ("*", "anything", true),
            ("cache:*", "cache:1", true),
            ("cache:*", "cache", false),
            ("a?c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(
                glob_match(pattern.as_bytes(), key.as_bytes()),
                matches,
                "{pattern} {key}"
            );
        }
    }
}
