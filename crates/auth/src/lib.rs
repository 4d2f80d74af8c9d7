//! Who may do what on a synod client port, for both client protocols: Redis's `requirepass`
//! and a subset of its ACL users, checked the same way whether a client speaks RESP
//! (`synod_resp::auth`, with Redis's replies) or synod's native protocol (`synod_net`, whose
//! clients send [`Credentials`] when they connect).
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
//! A user may read, write, or both, and only keys matching its patterns (Redis's globs). A
//! request says what it [`Need`]s; [`Permissions::allow`] answers with a typed [`Denied`].
//!
//! Failed authentications are logged (the user name and the client's address, never the
//! password) and rate-limited server-wide: past [`FAILURES_PER_SECOND`] (with a burst of
//! [`FAILURE_BURST`]) an attempt is refused without its password being checked, which
//! bounds how fast anyone can guess. Passwords are compared in constant time.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use synod_keyspace::glob;
use thiserror::Error;
use tracing::warn;

/// Failed authentications a server checks per second, on average...
pub const FAILURES_PER_SECOND: f64 = 10.0;
/// ...and at most in a burst.
pub const FAILURE_BURST: f64 = 20.0;

/// What a user may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    /// Glob patterns (Redis's) of the keys it may touch.
    pub keys: Vec<String>,
}

/// What a request needs to be allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need<'a> {
    /// Nothing: it touches no data (a ping, a status query).
    Nothing,
    /// To read these keys (none: a command that ranges over the store, such as `SCAN`).
    Read(Vec<&'a [u8]>),
    /// To write these keys (and read them).
    Write(Vec<&'a [u8]>),
    /// To change the cluster itself (its membership, or a sharded cluster's assignment of
    /// shards to groups): a user who may read and write every key (`~*`), as only Redis's
    /// `+@all` users may run its administrative commands.
    Administer,
    /// To be a member of the cluster: a message only replicas send one another.
    Member,
}

/// Why a request was refused to an authenticated client. Travels in replies, so a client
/// gets the reason as a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Error)]
pub enum Denied {
    #[error("user {user} may not {what}")]
    Kind { user: String, what: Activity },
    #[error("user {user} may not touch a key of this request")]
    Key { user: String },
    #[error("only members of the cluster may send this message")]
    MemberOnly,
}

/// What a user was refused to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Activity {
    Read,
    Write,
    Administer,
}

impl Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Activity::Read => "read",
            Activity::Write => "write",
            Activity::Administer => "change the cluster's configuration",
        })
    }
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

    /// Whether `user`, holding these permissions, may do what `need` says.
    pub fn allow(&self, user: &str, need: &Need<'_>) -> Result<(), Denied> {
        let (allowed, what, keys) = match need {
            Need::Nothing => return Ok(()),
            Need::Member => return Err(Denied::MemberOnly),
            Need::Administer => {
                let everything = self.read && self.write && self.keys.iter().any(|k| k == "*");
                return match everything {
                    true => Ok(()),
                    false => Err(Denied::Kind {
                        user: user.into(),
                        what: Activity::Administer,
                    }),
                };
            }
            Need::Read(keys) => (self.read, Activity::Read, keys),
            Need::Write(keys) => (self.write, Activity::Write, keys),
        };
        if !allowed {
            return Err(Denied::Kind {
                user: user.into(),
                what,
            });
        }
        if keys.iter().all(|key| self.may_touch(key)) {
            Ok(())
        } else {
            Err(Denied::Key { user: user.into() })
        }
    }

    /// Whether `key` matches one of the user's patterns.
    pub fn may_touch(&self, key: &[u8]) -> bool {
        self.keys
            .iter()
            .any(|pattern| glob::matches(pattern.as_bytes(), key))
    }
}

/// A user name and password, as a client presents them. Its `Debug` never shows the
/// password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub user: String,
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(user: impl Into<String>, password: impl Into<Vec<u8>>) -> Self {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// Why a client was not authenticated. Never names the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Error)]
pub enum AuthFailure {
    #[error("authentication required: this port admits only authenticated clients")]
    Required,
    #[error("invalid user name or password, or the user is disabled")]
    WrongPass,
    #[error("too many failed authentications; try again later")]
    TooManyFailures,
}

/// One user of a port.
#[derive(Clone)]
struct User {
    password: Vec<u8>,
    enabled: bool,
    permissions: Permissions,
}

/// The users of a port.
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

/// The server-wide bound on failed authentications (a token bucket).
#[derive(Debug)]
struct FailureLimit {
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

/// A server's access control: its users and its bound on failures, shared by its ports (a
/// replica's RESP and native ports count failures together).
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

    /// Checks `user`'s `password` for a client at `peer` of the `protocol` port ("RESP",
    /// "native"), logging a failure: the user's permissions, or why not.
    pub fn authenticate(
        &self,
        user: &str,
        password: &[u8],
        peer: &dyn Display,
        protocol: &str,
    ) -> Result<Permissions, AuthFailure> {
        if !self.failures.may_try() {
            warn!(%peer, %user, "{protocol} authentication refused: too many failures");
            return Err(AuthFailure::TooManyFailures);
        }
        match self.users.check(user, password) {
            Some(permissions) => Ok(permissions.clone()),
            None => {
                self.failures.failed();
                warn!(%peer, %user, "{protocol} authentication failed");
                Err(AuthFailure::WrongPass)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACL: &str = "# users\nuser default on >s3cret ~* +@all\nuser reader on >r3ad ~* +@read\n\
                       user cache on >c4che ~cache:* +@all\nuser gone off >x ~* +@all\n";

    fn login(access: &Access, user: &str, password: &str) -> Result<Permissions, AuthFailure> {
        access.authenticate(user, password.as_bytes(), &"test", "test")
    }

    #[test]
    fn users_authenticate_with_their_own_password_only() {
        let access = Access::new(Users::parse_acl(ACL).unwrap());
        assert_eq!(login(&access, "default", "s3cret"), Ok(Permissions::all()));
        assert_eq!(login(&access, "gone", "x"), Err(AuthFailure::WrongPass));
        // Another user's password is no password for this one.
        assert_eq!(
            login(&access, "cache", "s3cret"),
            Err(AuthFailure::WrongPass)
        );
        assert_eq!(
            login(&access, "nobody", "s3cret"),
            Err(AuthFailure::WrongPass)
        );
    }

    #[test]
    fn permissions_answer_what_a_request_needs() {
        let access = Access::new(Users::parse_acl(ACL).unwrap());
        let reader = login(&access, "reader", "r3ad").unwrap();
        let cache = login(&access, "cache", "c4che").unwrap();
        assert_eq!(reader.allow("reader", &Need::Read(vec![b"k"])), Ok(()));
        assert_eq!(
            reader.allow("reader", &Need::Write(vec![b"k"])),
            Err(Denied::Kind {
                user: "reader".into(),
                what: Activity::Write
            })
        );
        assert_eq!(cache.allow("cache", &Need::Write(vec![b"cache:1"])), Ok(()));
        assert_eq!(
            cache.allow("cache", &Need::Read(vec![b"cache:1", b"other"])),
            Err(Denied::Key {
                user: "cache".into()
            })
        );
        assert_eq!(cache.allow("cache", &Need::Nothing), Ok(()));
        assert_eq!(
            Permissions::all().allow("default", &Need::Member),
            Err(Denied::MemberOnly)
        );
        assert_eq!(
            Permissions::all().allow("default", &Need::Administer),
            Ok(())
        );
        for (name, user) in [("reader", &reader), ("cache", &cache)] {
            assert_eq!(
                user.allow(name, &Need::Administer),
                Err(Denied::Kind {
                    user: name.into(),
                    what: Activity::Administer
                })
            );
        }
    }

    #[test]
    fn failures_past_the_burst_are_refused_without_checking() {
        let access = Access::new(Users::require_pass("pw"));
        for _ in 0..FAILURE_BURST as usize {
            assert_eq!(
                login(&access, "default", "guess"),
                Err(AuthFailure::WrongPass)
            );
        }
        assert_eq!(
            login(&access, "default", "pw"),
            Err(AuthFailure::TooManyFailures)
        );
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
        assert!(!format!("{:?}", Credentials::new("u", "s3cret")).contains("s3cret"));
    }
}
