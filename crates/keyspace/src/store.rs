//! The store and the commands' effects on it.

use imbl::OrdMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use synod_node::limits::MAX_VALUE_CEILING;

use crate::command::{Command, Condition, Increment};
use crate::glob;
use crate::number;
use crate::reply::Reply;

/// The error a write answers when it would make a string longer than any value may be.
/// The bound is the ceiling, not a replica's configured limit: every replica must decide
/// alike, whatever its flags.
const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// Keys and values (byte strings; a key with no value is absent, which is not the empty
/// value), and the bytes they hold.
///
/// Invariant: `bytes` is the sum of the lengths of every key and value in `data`
/// (checked by [`Keyspace::bytes`] in debug builds). Serialized as the map alone; the count
/// is rebuilt on load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Keyspace {
    data: OrdMap<Vec<u8>, Vec<u8>>,
    bytes: u64,
}

impl Serialize for Keyspace {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::bytes::map::serialize(&self.data, serializer)
    }
}

impl<'de> Deserialize<'de> for Keyspace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let data = crate::bytes::map::deserialize(deserializer)?;
        let bytes = count_bytes(&data);
        Ok(Keyspace { data, bytes })
    }
}

fn count_bytes(data: &OrdMap<Vec<u8>, Vec<u8>>) -> u64 {
    data.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
}

impl Keyspace {
    /// `key`'s value, `None` if it has none.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&Vec<u8>> {
        self.data.get(key.as_ref())
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.data.iter()
    }

    /// Bytes of keys and values held: a deterministic function of the commands applied.
    pub fn bytes(&self) -> u64 {
        debug_assert_eq!(self.bytes, count_bytes(&self.data));
        self.bytes
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let (key_len, value_len) = (key.len() as u64, value.len() as u64);
        match self.data.insert(key, value) {
            // The key's bytes were counted already.
            Some(old) => self.bytes = self.bytes - old.len() as u64 + value_len,
            None => self.bytes += key_len + value_len,
        }
    }

    /// Removes `key`'s value; returns it.
    pub fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let old = self.data.remove(key)?;
        self.bytes -= (key.len() + old.len()) as u64;
        Some(old)
    }

    /// Appends `value` to `key`'s value (creating it); returns the new length, or `None`
    /// (changing nothing) if it would exceed [`MAX_VALUE_CEILING`].
    pub fn append(&mut self, key: &[u8], value: &[u8]) -> Option<u64> {
        let old = self.data.get(key).map_or(0, Vec::len);
        let len = old + value.len();
        if len > MAX_VALUE_CEILING {
            return None;
        }
        if let Some(existing) = self.data.get_mut(key) {
            existing.extend_from_slice(value);
            self.bytes += value.len() as u64;
        } else {
            self.put(key.to_vec(), value.to_vec());
        }
        Some(len as u64)
    }

    /// The reply `command` would get, if it is a read (`None` for a write): served without
    /// changing anything.
    pub fn read(&self, command: &Command) -> Option<Reply> {
        let bulk = |key: &[u8]| Reply::Bulk(self.data.get(key).cloned());
        Some(match command {
            Command::Get { key } => bulk(key),
            Command::Strlen { key } => {
                Reply::Integer(self.data.get(key).map_or(0, Vec::len) as i64)
            }
            Command::GetRange { key, start, end } => {
                let value = self.data.get(key).map_or(&[][..], Vec::as_slice);
                Reply::Bulk(Some(range(value, *start, *end).to_vec()))
            }
            Command::MGet { keys } => Reply::Array(keys.iter().map(|k| bulk(k)).collect()),
            Command::Exists { keys } => Reply::Integer(
                keys.iter()
                    .filter(|k| self.data.contains_key(k.as_slice()))
                    .count() as i64,
            ),
            Command::Type { key } => Reply::Status(
                if self.data.contains_key(key.as_slice()) {
                    "string"
                } else {
                    "none"
                }
                .into(),
            ),
            Command::Scan {
                cursor,
                pattern,
                count,
            } => self.scan(*cursor, pattern.as_deref(), *count),
            Command::Keys { pattern } => Reply::Array(
                self.data
                    .keys()
                    .filter(|k| glob::matches(pattern, k))
                    .map(|k| Reply::Bulk(Some(k.clone())))
                    .collect(),
            ),
            Command::DbSize => Reply::Integer(self.data.len() as i64),
            Command::Exec { commands } if !command.writes() => {
                Reply::Array(commands.iter().filter_map(|c| self.read(c)).collect())
            }
            _ => return None,
        })
    }

    /// Performs `command` and returns its reply.
    pub fn apply(&mut self, command: &Command) -> Reply {
        match command {
            Command::Set {
                key,
                value,
                condition,
                get,
            } => {
                let old = self.data.get(key.as_slice()).cloned();
                let allowed = match condition {
                    None => true,
                    Some(Condition::Absent) => old.is_none(),
                    Some(Condition::Present) => old.is_some(),
                };
                if allowed {
                    self.put(key.clone(), value.clone());
                }
                match (get, allowed) {
                    (true, _) => Reply::Bulk(old),
                    (false, true) => Reply::Ok,
                    (false, false) => Reply::Bulk(None),
                }
            }
            Command::SetNx { key, value } => {
                if self.data.contains_key(key.as_slice()) {
                    Reply::Integer(0)
                } else {
                    self.put(key.clone(), value.clone());
                    Reply::Integer(1)
                }
            }
            Command::GetDel { key } => Reply::Bulk(self.remove(key)),
            Command::Append { key, value } => match self.append(key, value) {
                Some(len) => Reply::Integer(len as i64),
                None => Reply::Error(TOO_LONG.into()),
            },
            Command::SetRange { key, offset, value } => self.set_range(key, *offset, value),
            Command::Incr { key, by } => self.increment(key, *by),
            Command::MSet {
                pairs,
                only_if_none,
            } => {
                if *only_if_none
                    && pairs
                        .iter()
                        .any(|(k, _)| self.data.contains_key(k.as_slice()))
                {
                    return Reply::Integer(0);
                }
                for (key, value) in pairs {
                    self.put(key.clone(), value.clone());
                }
                if *only_if_none {
                    Reply::Integer(1)
                } else {
                    Reply::Ok
                }
            }
            Command::Del { keys } => {
                Reply::Integer(keys.iter().filter(|k| self.remove(k).is_some()).count() as i64)
            }
            Command::Exec { commands } => {
                Reply::Array(commands.iter().map(|c| self.apply(c)).collect())
            }
            read => self
                .read(read)
                .expect("every command but the writes above is a read"),
        }
    }

    fn set_range(&mut self, key: &[u8], offset: u64, value: &[u8]) -> Reply {
        let old_len = self.data.get(key).map(Vec::len);
        if value.is_empty() {
            return Reply::Integer(old_len.unwrap_or(0) as i64);
        }
        let end = (offset as usize).saturating_add(value.len());
        if end > MAX_VALUE_CEILING {
            return Reply::Error(TOO_LONG.into());
        }
        let mut new = self.data.get(key).cloned().unwrap_or_default();
        if new.len() < end {
            new.resize(end, 0);
        }
        new[offset as usize..end].copy_from_slice(value);
        let len = new.len();
        self.put(key.to_vec(), new);
        Reply::Integer(len as i64)
    }

    fn increment(&mut self, key: &[u8], by: Increment) -> Reply {
        let old = self.data.get(key);
        let new = match by {
            Increment::Integer(by) => {
                let Some(old) = old.map_or(Some(0), |v| number::integer(v)) else {
                    return Reply::Error("ERR value is not an integer or out of range".into());
                };
                let Some(new) = old.checked_add(by) else {
                    return Reply::Error("ERR increment or decrement would overflow".into());
                };
                self.put(key.to_vec(), new.to_string().into_bytes());
                return Reply::Integer(new);
            }
            Increment::Float(bits) => {
                let Some(old) = old.map_or(Some(0.0), |v| number::float(v)) else {
                    return Reply::Error("ERR value is not a valid float".into());
                };
                let new = old + f64::from_bits(bits);
                if !new.is_finite() {
                    return Reply::Error("ERR increment would produce NaN or Infinity".into());
                }
                number::format_float(new).into_bytes()
            }
        };
        self.put(key.to_vec(), new.clone());
        Reply::Bulk(Some(new))
    }

    /// Up to `count` keys from position `cursor` in key order, those matching `pattern`;
    /// the next cursor is 0 at the end. A key present for the whole scan is returned at
    /// least once only if no key before the cursor is removed meanwhile (docs/running.md).
    fn scan(&self, cursor: u64, pattern: Option<&[u8]>, count: u64) -> Reply {
        let start = usize::try_from(cursor).unwrap_or(usize::MAX);
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let keys: Vec<Reply> = self
            .data
            .keys()
            .skip(start)
            .take(count)
            .filter(|k| pattern.is_none_or(|p| glob::matches(p, k)))
            .map(|k| Reply::Bulk(Some(k.clone())))
            .collect();
        let next = start.saturating_add(count);
        let next = if next >= self.data.len() { 0 } else { next };
        Reply::Array(vec![
            Reply::Bulk(Some(next.to_string().into_bytes())),
            Reply::Array(keys),
        ])
    }
}

/// `GETRANGE`'s slice of `value`, with Redis's treatment of negative and outlying indices.
fn range(value: &[u8], start: i64, end: i64) -> &[u8] {
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0).min(len - 1);
    if start > end || len == 0 {
        return &[];
    }
    &value[start as usize..=end as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Parsed;

    /// Applies the commands `lines` spell (words split on spaces) and returns the replies.
    fn run(store: &mut Keyspace, lines: &[&str]) -> Vec<Reply> {
        lines
            .iter()
            .map(|line| {
                let args = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
                match Command::parse(args) {
                    Parsed::Command(command) => store.apply(&command),
                    Parsed::Refused(refusal) => refusal.into(),
                    Parsed::NotKeyspace => panic!("{line}: not a keyspace command"),
                }
            })
            .collect()
    }

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    fn error(text: &str) -> Reply {
        Reply::Error(text.into())
    }

    #[test]
    fn string_commands_answer_as_redis_does() {
        let mut store = Keyspace::default();
        let replies = run(
            &mut store,
            &[
                "GET k",
                "SET k v NX",
                "SET k w NX",
                "SET k w XX GET",
                "GETSET k x",
                "SETNX k y",
                "APPEND k yz",
                "STRLEN k",
                "GETRANGE k -2 -1",
                "GETRANGE k 5 1",
                "SETRANGE n 2 ab",
                "GETDEL n",
                "GETDEL n",
                "TYPE k",
                "TYPE n",
            ],
        );
        assert_eq!(
            replies,
            vec![
                Reply::Bulk(None),
                Reply::Ok,
                Reply::Bulk(None),
                bulk("v"),
                bulk("w"),
                Reply::Integer(0),
                Reply::Integer(3),
                Reply::Integer(3),
                bulk("yz"),
                bulk(""),
                Reply::Integer(4),
                Reply::Bulk(Some(b"\0\0ab".to_vec())),
                Reply::Bulk(None),
                Reply::Status("string".into()),
                Reply::Status("none".into()),
            ]
        );
        assert_eq!(store.bytes(), 4);
    }

    #[test]
    fn counters_refuse_what_redis_refuses() {
        let mut store = Keyspace::default();
        let replies = run(
            &mut store,
            &[
                "INCR c",
                "INCRBY c 41",
                "DECR c",
                "SET t abc",
                "INCR t",
                "SET m 9223372036854775807",
                "INCR m",
                "INCRBYFLOAT f 1.5",
                "INCRBYFLOAT f 1e3",
                "INCRBYFLOAT t 1",
                "INCRBYFLOAT f abc",
            ],
        );
        assert_eq!(
            replies,
            vec![
                Reply::Integer(1),
                Reply::Integer(42),
                Reply::Integer(41),
                Reply::Ok,
                error("ERR value is not an integer or out of range"),
                Reply::Ok,
                error("ERR increment or decrement would overflow"),
                bulk("1.5"),
                bulk("1001.5"),
                error("ERR value is not a valid float"),
                error("ERR value is not a valid float"),
            ]
        );
    }

    #[test]
    fn keyspace_commands_see_every_key_once() {
        let mut store = Keyspace::default();
        let replies = run(
            &mut store,
            &[
                "MSET a 1 b 2 c 3",
                "MSETNX c 9 d 4",
                "MGET a x c",
                "EXISTS a a x",
                "DEL a x a",
                "DBSIZE",
                "KEYS [bc]",
                "SCAN 0 COUNT 1",
                "SCAN 1 MATCH c",
            ],
        );
        assert_eq!(
            replies,
            vec![
                Reply::Ok,
                Reply::Integer(0),
                Reply::Array(vec![bulk("1"), Reply::Bulk(None), bulk("3")]),
                Reply::Integer(2),
                Reply::Integer(1),
                Reply::Integer(2),
                Reply::Array(vec![bulk("b"), bulk("c")]),
                Reply::Array(vec![bulk("1"), Reply::Array(vec![bulk("b")])]),
                Reply::Array(vec![bulk("0"), Reply::Array(vec![bulk("c")])]),
            ]
        );
    }

    #[test]
    fn a_string_is_never_made_longer_than_the_ceiling() {
        let mut store = Keyspace::default();
        let far = Command::SetRange {
            key: b"k".to_vec(),
            offset: MAX_VALUE_CEILING as u64,
            value: b"x".to_vec(),
        };
        assert_eq!(store.apply(&far), error(TOO_LONG));
        store.put(b"k".to_vec(), vec![b'a'; MAX_VALUE_CEILING - 1]);
        assert_eq!(store.append(b"k", b"bc"), None);
        assert_eq!(store.append(b"k", b"b"), Some(MAX_VALUE_CEILING as u64));
        assert_eq!(store.bytes(), MAX_VALUE_CEILING as u64 + 1);
    }

    #[test]
    fn a_transaction_applies_its_commands_in_order() {
        let mut store = Keyspace::default();
        let exec = Command::Exec {
            commands: vec![
                Command::Incr {
                    key: b"n".to_vec(),
                    by: Increment::Integer(2),
                },
                Command::Get { key: b"n".to_vec() },
            ],
        };
        assert_eq!(
            store.apply(&exec),
            Reply::Array(vec![Reply::Integer(2), bulk("2")])
        );
    }
}
