//! The commands, parsed from a RESP argument list with Redis's own error texts.

use std::fmt;

use serde::{Deserialize, Serialize};
use synod_node::limits::{Limits, TooLarge, MAX_KEY_BYTES};

use crate::number;
use crate::reply::Reply;

/// A `SET`'s condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Condition {
    /// `NX`: only if the key has no value.
    Absent,
    /// `XX`: only if it has one.
    Present,
}

/// What `INCRBY` (and its family) adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Increment {
    Integer(i64),
    /// `INCRBYFLOAT`'s increment, as the bits of an `f64` (so the command stays `Eq`).
    Float(u64),
}

/// One string or keyspace command, as a service logs and applies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    Get {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
    },
    /// `SET` (and `GETSET`, which is `SET ... GET`).
    Set {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::bytes")]
        value: Vec<u8>,
        condition: Option<Condition>,
        /// Answer the old value instead of OK.
        get: bool,
    },
    /// `SETNX`: answers 1 or 0.
    SetNx {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::bytes")]
        value: Vec<u8>,
    },
    GetDel {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
    },
    Append {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::bytes")]
        value: Vec<u8>,
    },
    Strlen {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
    },
    GetRange {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        start: i64,
        end: i64,
    },
    SetRange {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        offset: u64,
        #[serde(with = "crate::bytes")]
        value: Vec<u8>,
    },
    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`, `INCRBYFLOAT`.
    Incr {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        by: Increment,
    },
    /// `MSET`, or `MSETNX` (`only_if_none`: set all only if none exists; answers 1 or 0).
    MSet {
        #[serde(with = "crate::bytes::pairs")]
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        only_if_none: bool,
    },
    MGet {
        #[serde(with = "crate::bytes::list")]
        keys: Vec<Vec<u8>>,
    },
    /// `DEL` and `UNLINK`.
    Del {
        #[serde(with = "crate::bytes::list")]
        keys: Vec<Vec<u8>>,
    },
    Exists {
        #[serde(with = "crate::bytes::list")]
        keys: Vec<Vec<u8>>,
    },
    Type {
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
    },
    /// `SCAN cursor [MATCH pattern] [COUNT count]`; the cursor is a position in key order.
    Scan {
        cursor: u64,
        #[serde(with = "crate::bytes::option")]
        pattern: Option<Vec<u8>>,
        count: u64,
    },
    Keys {
        #[serde(with = "crate::bytes")]
        pattern: Vec<u8>,
    },
    DbSize,
    /// A `MULTI` ... `EXEC` transaction: applied as one, with nothing in between; answers
    /// the array of its commands' replies. Never nested.
    Exec {
        commands: Vec<Command>,
    },
}

/// What [`Command::parse`] made of an argument list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Command(Command),
    /// A keyspace command with wrong arguments (or an option synod refuses).
    Refused(Refusal),
    /// Not a keyspace command: a connection command for the front, or an unknown one.
    NotKeyspace,
}

/// Why a keyspace command's arguments were refused; displayed as Redis words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong number of arguments for the command (its lowercase name).
    Arity(String),
    Syntax,
    NotInteger,
    NotFloat,
    DecrementOverflow,
    InvalidCursor,
    OffsetOutOfRange,
    /// An expiry option or command (`EX`, `EXPIRE`, ...): synod's keys never expire.
    Expiry(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Arity(name) => write!(f, "ERR wrong number of arguments for '{name}' command"),
            Refusal::Syntax => f.write_str("ERR syntax error"),
            Refusal::NotInteger => f.write_str("ERR value is not an integer or out of range"),
            Refusal::NotFloat => f.write_str("ERR value is not a valid float"),
            Refusal::DecrementOverflow => f.write_str("ERR decrement would overflow"),
            Refusal::InvalidCursor => f.write_str("ERR invalid cursor"),
            Refusal::OffsetOutOfRange => f.write_str("ERR offset is out of range"),
            Refusal::Expiry(what) => write!(
                f,
                "ERR '{what}' is not supported: synod keys never expire (see docs/running.md)"
            ),
        }
    }
}

impl From<Refusal> for Reply {
    fn from(refusal: Refusal) -> Reply {
        Reply::Error(refusal.to_string())
    }
}

/// The expiry commands, refused by name.
const EXPIRY_COMMANDS: &[&str] = &[
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "ttl",
    "pttl",
    "persist",
    "expiretime",
    "pexpiretime",
    "setex",
    "psetex",
    "getex",
];

impl Command {
    /// The command `args` spell (`args[0]` is its name, in any case).
    pub fn parse(args: Vec<Vec<u8>>) -> Parsed {
        let Some(name) = args.first().map(|n| n.to_ascii_lowercase()) else {
            return Parsed::NotKeyspace;
        };
        let Ok(name) = String::from_utf8(name) else {
            return Parsed::NotKeyspace;
        };
        let args = args.into_iter().skip(1).collect::<Vec<_>>();
        match parse_named(&name, args) {
            Some(Ok(command)) => Parsed::Command(command),
            Some(Err(refusal)) => Parsed::Refused(refusal),
            None => Parsed::NotKeyspace,
        }
    }

    /// The command's name, for messages (`GETSET` shows as `SET`, which it is).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Get { .. } => "GET",
            Command::Set { .. } => "SET",
            Command::SetNx { .. } => "SETNX",
            Command::GetDel { .. } => "GETDEL",
            Command::Append { .. } => "APPEND",
            Command::Strlen { .. } => "STRLEN",
            Command::GetRange { .. } => "GETRANGE",
            Command::SetRange { .. } => "SETRANGE",
            Command::Incr { .. } => "INCRBY",
            Command::MSet {
                only_if_none: false,
                ..
            } => "MSET",
            Command::MSet { .. } => "MSETNX",
            Command::MGet { .. } => "MGET",
            Command::Del { .. } => "DEL",
            Command::Exists { .. } => "EXISTS",
            Command::Type { .. } => "TYPE",
            Command::Scan { .. } => "SCAN",
            Command::Keys { .. } => "KEYS",
            Command::DbSize => "DBSIZE",
            Command::Exec { .. } => "EXEC",
        }
    }

    /// The keys the command reads or writes, in argument order (a shard function routes by
    /// them). `SCAN`, `KEYS` and `DBSIZE` name none: they range over the whole store.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Command::Get { key }
            | Command::Set { key, .. }
            | Command::SetNx { key, .. }
            | Command::GetDel { key }
            | Command::Append { key, .. }
            | Command::Strlen { key }
            | Command::GetRange { key, .. }
            | Command::SetRange { key, .. }
            | Command::Incr { key, .. }
            | Command::Type { key } => vec![key],
            Command::MSet { pairs, .. } => pairs.iter().map(|(k, _)| k.as_slice()).collect(),
            Command::MGet { keys } | Command::Del { keys } | Command::Exists { keys } => {
                keys.iter().map(Vec::as_slice).collect()
            }
            Command::Scan { .. } | Command::Keys { .. } | Command::DbSize => Vec::new(),
            Command::Exec { commands } => commands.iter().flat_map(Command::keys).collect(),
        }
    }

    /// Whether the command may change the store (reads can be answered without the log).
    pub fn writes(&self) -> bool {
        match self {
            Command::Get { .. }
            | Command::Strlen { .. }
            | Command::GetRange { .. }
            | Command::MGet { .. }
            | Command::Exists { .. }
            | Command::Type { .. }
            | Command::Scan { .. }
            | Command::Keys { .. }
            | Command::DbSize => false,
            Command::Exec { commands } => commands.iter().any(Command::writes),
            _ => true,
        }
    }

    /// The most bytes of keys and values the command may add to the store: what
    /// `--max-memory` weighs (0 for reads and deletions, which are always served).
    pub fn added_bytes(&self) -> u64 {
        /// The longest text of an `i64` or of a formatted float increment's result.
        const NUMBER_TEXT: usize = 24;
        let bytes = match self {
            Command::Set { key, value, .. }
            | Command::SetNx { key, value }
            | Command::Append { key, value } => key.len() + value.len(),
            Command::SetRange { key, offset, value } => {
                key.len() + (*offset as usize).saturating_add(value.len())
            }
            Command::Incr { key, .. } => key.len() + NUMBER_TEXT,
            Command::MSet { pairs, .. } => pairs.iter().map(|(k, v)| k.len() + v.len()).sum(),
            Command::Exec { commands } => {
                return commands.iter().map(Command::added_bytes).sum();
            }
            _ => 0,
        };
        bytes as u64
    }

    /// Bytes of keys and values the command carries.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Command::Set { key, value, .. }
            | Command::SetNx { key, value }
            | Command::Append { key, value }
            | Command::SetRange { key, value, .. } => key.len() + value.len(),
            Command::MSet { pairs, .. } => pairs.iter().map(|(k, v)| k.len() + v.len()).sum(),
            Command::Scan { pattern, .. } => pattern.as_ref().map_or(0, Vec::len),
            Command::Keys { pattern } => pattern.len(),
            Command::Exec { commands } => commands.iter().map(Command::payload_bytes).sum(),
            other => other.keys().iter().map(|k| k.len()).sum(),
        }
    }

    /// Refuses a command above `limits`: a key above [`MAX_KEY_BYTES`], a value (or the
    /// string a `SETRANGE` would make) above the largest value, or keys and values together
    /// above one key and one value (a command is one log entry).
    pub fn check_size(&self, limits: &Limits) -> Result<(), TooLarge> {
        for key in self.keys() {
            limits.check(key.len(), 0)?;
        }
        let check_value = |len: usize| limits.check(0, len);
        match self {
            Command::Set { value, .. }
            | Command::SetNx { value, .. }
            | Command::Append { value, .. } => check_value(value.len())?,
            Command::SetRange { offset, value, .. } => {
                check_value((*offset as usize).saturating_add(value.len()))?
            }
            Command::MSet { pairs, .. } => {
                for (_, value) in pairs {
                    check_value(value.len())?;
                }
            }
            Command::Exec { commands } => {
                for command in commands {
                    command.check_size(limits)?;
                }
            }
            _ => {}
        }
        let total = self.payload_bytes();
        let most = limits.max_value() + MAX_KEY_BYTES;
        if total > most {
            return Err(TooLarge::Command {
                size: total as u64,
                limit: most as u64,
            });
        }
        Ok(())
    }
}

/// The command `name` with `args`, `None` if `name` is no keyspace command.
fn parse_named(name: &str, args: Vec<Vec<u8>>) -> Option<Result<Command, Refusal>> {
    if EXPIRY_COMMANDS.contains(&name) {
        return Some(Err(Refusal::Expiry(name.to_ascii_uppercase())));
    }
    match build(name, args) {
        Err(Refusal::Arity(unknown)) if unknown.is_empty() => None,
        other => Some(other),
    }
}

/// Takes argument `i` out of `args`.
fn take(args: &mut [Vec<u8>], i: usize) -> Vec<u8> {
    std::mem::take(&mut args[i])
}

/// The command `name` with `args`; an unknown name is refused with an empty arity name.
fn build(name: &str, mut args: Vec<Vec<u8>>) -> Result<Command, Refusal> {
    let arity = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(Refusal::Arity(name.to_owned()))
        }
    };
    let n = args.len();
    match name {
        "get" | "getdel" | "strlen" | "type" => {
            arity(n == 1)?;
            let key = take(&mut args, 0);
            Ok(match name {
                "get" => Command::Get { key },
                "getdel" => Command::GetDel { key },
                "strlen" => Command::Strlen { key },
                _ => Command::Type { key },
            })
        }
        "set" => {
            arity(n >= 2)?;
            let (mut condition, mut get) = (None, false);
            for option in &args[2..] {
                let upper = option.to_ascii_uppercase();
                match upper.as_slice() {
                    b"NX" | b"XX" if condition.is_some() => return Err(Refusal::Syntax),
                    b"NX" => condition = Some(Condition::Absent),
                    b"XX" => condition = Some(Condition::Present),
                    b"GET" => get = true,
                    b"EX" | b"PX" | b"EXAT" | b"PXAT" | b"KEEPTTL" => {
                        return Err(Refusal::Expiry(String::from_utf8_lossy(&upper).into()))
                    }
                    _ => return Err(Refusal::Syntax),
                }
            }
            Ok(Command::Set {
                key: take(&mut args, 0),
                value: take(&mut args, 1),
                condition,
                get,
            })
        }
        "getset" | "setnx" | "append" => {
            arity(n == 2)?;
            let (key, value) = (take(&mut args, 0), take(&mut args, 1));
            Ok(match name {
                "getset" => Command::Set {
                    key,
                    value,
                    condition: None,
                    get: true,
                },
                "setnx" => Command::SetNx { key, value },
                _ => Command::Append { key, value },
            })
        }
        "getrange" | "substr" => {
            arity(n == 3)?;
            let start = integer(&args[1])?;
            let end = integer(&args[2])?;
            Ok(Command::GetRange {
                key: take(&mut args, 0),
                start,
                end,
            })
        }
        "setrange" => {
            arity(n == 3)?;
            let offset =
                u64::try_from(integer(&args[1])?).map_err(|_| Refusal::OffsetOutOfRange)?;
            Ok(Command::SetRange {
                key: take(&mut args, 0),
                offset,
                value: take(&mut args, 2),
            })
        }
        "incr" | "decr" => {
            arity(n == 1)?;
            let by = if name == "incr" { 1 } else { -1 };
            Ok(Command::Incr {
                key: take(&mut args, 0),
                by: Increment::Integer(by),
            })
        }
        "incrby" | "decrby" => {
            arity(n == 2)?;
            let mut by = integer(&args[1])?;
            if name == "decrby" {
                by = by.checked_neg().ok_or(Refusal::DecrementOverflow)?;
            }
            Ok(Command::Incr {
                key: take(&mut args, 0),
                by: Increment::Integer(by),
            })
        }
        "incrbyfloat" => {
            arity(n == 2)?;
            let by = number::float(&args[1]).ok_or(Refusal::NotFloat)?;
            Ok(Command::Incr {
                key: take(&mut args, 0),
                by: Increment::Float(by.to_bits()),
            })
        }
        "mset" | "msetnx" => {
            arity(n >= 2 && n.is_multiple_of(2))?;
            let mut items = args.into_iter();
            let mut pairs = Vec::with_capacity(n / 2);
            while let (Some(key), Some(value)) = (items.next(), items.next()) {
                pairs.push((key, value));
            }
            Ok(Command::MSet {
                pairs,
                only_if_none: name == "msetnx",
            })
        }
        "mget" | "del" | "unlink" | "exists" => {
            arity(n >= 1)?;
            let keys = args;
            Ok(match name {
                "mget" => Command::MGet { keys },
                "exists" => Command::Exists { keys },
                _ => Command::Del { keys },
            })
        }
        "scan" => {
            arity(n >= 1)?;
            let cursor = std::str::from_utf8(&args[0])
                .ok()
                .and_then(|c| c.parse::<u64>().ok())
                .ok_or(Refusal::InvalidCursor)?;
            let (mut pattern, mut count) = (None, 10);
            let mut options = args[1..].chunks(2);
            for option in options.by_ref() {
                let [word, value] = option else {
                    return Err(Refusal::Syntax);
                };
                match word.to_ascii_uppercase().as_slice() {
                    b"MATCH" => pattern = Some(value.clone()),
                    b"COUNT" => {
                        count = integer(value)?;
                        if count < 1 {
                            return Err(Refusal::Syntax);
                        }
                    }
                    _ => return Err(Refusal::Syntax),
                }
            }
            Ok(Command::Scan {
                cursor,
                pattern: pattern.filter(|p| p.as_slice() != b"*"),
                count: count as u64,
            })
        }
        "keys" => {
            arity(n == 1)?;
            Ok(Command::Keys {
                pattern: take(&mut args, 0),
            })
        }
        "dbsize" => {
            arity(n == 0)?;
            Ok(Command::DbSize)
        }
        _ => Err(Refusal::Arity(String::new())),
    }
}

fn integer(text: &[u8]) -> Result<i64, Refusal> {
    number::integer(text).ok_or(Refusal::NotInteger)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&[u8]]) -> Parsed {
        Command::parse(words.iter().map(|w| w.to_vec()).collect())
    }

    #[test]
    fn options_and_errors_are_read_as_redis_reads_them() {
        assert_eq!(
            parse(&[b"set", b"k", b"v", b"nx", b"get"]),
            Parsed::Command(Command::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                condition: Some(Condition::Absent),
                get: true
            })
        );
        assert_eq!(
            parse(&[b"SET", b"k", b"v", b"NX", b"XX"]),
            Parsed::Refused(Refusal::Syntax)
        );
        assert_eq!(
            parse(&[b"SET", b"k", b"v", b"EX", b"10"]),
            Parsed::Refused(Refusal::Expiry("EX".into()))
        );
        assert_eq!(
            parse(&[b"MSET", b"a", b"b", b"c"]),
            Parsed::Refused(Refusal::Arity("mset".into()))
        );
        assert_eq!(
            parse(&[b"DECRBY", b"k", b"-9223372036854775808"]),
            Parsed::Refused(Refusal::DecrementOverflow)
        );
        assert_eq!(
            parse(&[b"SCAN", b"x"]),
            Parsed::Refused(Refusal::InvalidCursor)
        );
        assert_eq!(
            parse(&[b"SCAN", b"0", b"COUNT", b"0"]),
            Parsed::Refused(Refusal::Syntax)
        );
        assert_eq!(
            parse(&[b"TTL", b"k"]),
            Parsed::Refused(Refusal::Expiry("TTL".into()))
        );
        assert_eq!(parse(&[b"PING"]), Parsed::NotKeyspace);
        assert_eq!(parse(&[b"NOSUCH", b"k"]), Parsed::NotKeyspace);
    }

    #[test]
    fn sizes_are_checked_per_key_and_value_and_in_total() {
        let limits = Limits::new(1024).unwrap();
        let set = |value: usize| Command::Set {
            key: b"k".to_vec(),
            value: vec![0; value],
            condition: None,
            get: false,
        };
        assert!(set(1024).check_size(&limits).is_ok());
        assert!(matches!(
            set(1025).check_size(&limits),
            Err(TooLarge::Value { .. })
        ));
        let range = Command::SetRange {
            key: b"k".to_vec(),
            offset: 1024,
            value: b"x".to_vec(),
        };
        assert!(matches!(
            range.check_size(&limits),
            Err(TooLarge::Value { .. })
        ));
        let many = Command::MSet {
            pairs: (0..200).map(|i| (vec![i as u8], vec![0; 1000])).collect(),
            only_if_none: false,
        };
        assert!(matches!(
            many.check_size(&limits),
            Err(TooLarge::Command { .. })
        ));
    }
}
