//! The front's command table, for `COMMAND` (COUNT, INFO, DOCS, LIST): what clients such as
//! redis-cli ask to learn the commands' arity, flags, keys and one-line help.

use crate::value::Value;

/// One supported command: name, arity (negative: at least that many words), flags, first
/// key, last key, key step, group and summary, as Redis 7 describes them.
struct Spec {
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
        group,
        summary,
    }
}

const R: &[&str] = &["readonly", "fast"];
const W: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "denyoom", "fast"];
const ONE: (i64, i64, i64) = (1, 1, 1);
const NONE: (i64, i64, i64) = (0, 0, 0);

const TABLE: &[Spec] = &[
    spec("get", 2, R, ONE, "string", "Get the value of a key"),
    spec(
        "set",
        -3,
        W,
        ONE,
        "string",
        "Set the string value of a key (NX, XX, GET)",
    ),
    spec(
        "getset",
        3,
        WF,
        ONE,
        "string",
        "Set a key's value and return its old value",
    ),
    spec(
        "getdel",
        2,
        &["write", "fast"],
        ONE,
        "string",
        "Get a key's value and delete the key",
    ),
    spec(
        "setnx",
        3,
        WF,
        ONE,
        "string",
        "Set a key's value only if it has none",
    ),
    spec("append", 3, WF, ONE, "string", "Append a value to a key"),
    spec(
        "strlen",
        2,
        R,
        ONE,
        "string",
        "Get the length of a key's value",
    ),
    spec(
        "getrange",
        4,
        &["readonly"],
        ONE,
        "string",
        "Get a substring of a key's value",
    ),
    spec(
        "substr",
        4,
        &["readonly"],
        ONE,
        "string",
        "Get a substring of a key's value",
    ),
    spec(
        "setrange",
        4,
        W,
        ONE,
        "string",
        "Overwrite part of a key's value at an offset",
    ),
    spec(
        "incr",
        2,
        WF,
        ONE,
        "string",
        "Increment a key's integer value by one",
    ),
    spec(
        "decr",
        2,
        WF,
        ONE,
        "string",
        "Decrement a key's integer value by one",
    ),
    spec(
        "incrby",
        3,
        WF,
        ONE,
        "string",
        "Increment a key's integer value",
    ),
    spec(
        "decrby",
        3,
        WF,
        ONE,
        "string",
        "Decrement a key's integer value",
    ),
    spec(
        "incrbyfloat",
        3,
        WF,
        ONE,
        "string",
        "Increment a key's float value",
    ),
    spec(
        "mset",
        -3,
        W,
        (1, -1, 2),
        "string",
        "Set several keys (one replica group)",
    ),
    spec(
        "msetnx",
        -3,
        W,
        (1, -1, 2),
        "string",
        "Set several keys only if none exists",
    ),
    spec(
        "mget",
        -2,
        R,
        (1, -1, 1),
        "string",
        "Get the values of several keys",
    ),
    spec("del", -2, &["write"], (1, -1, 1), "generic", "Delete keys"),
    spec(
        "unlink",
        -2,
        &["write", "fast"],
        (1, -1, 1),
        "generic",
        "Delete keys",
    ),
    spec(
        "exists",
        -2,
        R,
        (1, -1, 1),
        "generic",
        "Count the keys that exist",
    ),
    spec(
        "type",
        2,
        R,
        ONE,
        "generic",
        "The type of a key's value (string or none)",
    ),
    spec(
        "scan",
        -2,
        &["readonly"],
        NONE,
        "generic",
        "Iterate over the keys",
    ),
    spec(
        "keys",
        2,
        &["readonly"],
        NONE,
        "generic",
        "Find the keys matching a pattern",
    ),
    spec("dbsize", 1, R, NONE, "server", "The number of keys"),
    spec(
        "multi",
        1,
        &["fast"],
        NONE,
        "transactions",
        "Start a transaction",
    ),
    spec(
        "exec",
        1,
        &[],
        NONE,
        "transactions",
        "Apply a transaction as one log entry",
    ),
    spec(
        "discard",
        1,
        &["fast"],
        NONE,
        "transactions",
        "Drop a transaction",
    ),
    spec("ping", -1, &["fast"], NONE, "connection", "Ping the server"),
    spec("echo", 2, &["fast"], NONE, "connection", "Echo a message"),
    spec(
        "quit",
        -1,
        &["fast"],
        NONE,
        "connection",
        "Close the connection",
    ),
    spec(
        "hello",
        -1,
        &["fast"],
        NONE,
        "connection",
        "Handshake (RESP2 only)",
    ),
    spec(
        "client",
        -2,
        &[],
        NONE,
        "connection",
        "CLIENT ID, GETNAME, SETNAME, SETINFO",
    ),
    spec(
        "select",
        2,
        &["fast"],
        NONE,
        "connection",
        "Select database 0 (the only one)",
    ),
    spec("command", -1, &[], NONE, "server", "Describe the commands"),
    spec(
        "info",
        -1,
        &[],
        NONE,
        "server",
        "Server, replication and keyspace information",
    ),
    spec(
        "config",
        -2,
        &[],
        NONE,
        "server",
        "CONFIG GET of save, appendonly, databases, maxmemory",
    ),
];

fn text(s: &str) -> Value {
    Value::bulk(s.as_bytes().to_vec())
}

fn array(items: Vec<Value>) -> Value {
    Value::Array(Some(items))
}

fn find(name: &[u8]) -> Option<&'static Spec> {
    TABLE
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// A command's `COMMAND INFO` entry, in Redis 7's ten fields.
fn info(s: &Spec) -> Value {
    array(vec![
        text(s.name),
        Value::Integer(s.arity),
        array(s.flags.iter().map(|f| Value::Simple((*f).into())).collect()),
        Value::Integer(s.keys.0),
        Value::Integer(s.keys.1),
        Value::Integer(s.keys.2),
        array(Vec::new()),
        array(Vec::new()),
        array(Vec::new()),
        array(Vec::new()),
    ])
}

/// A command's `COMMAND DOCS` entry (RESP2: a map as a flat array).
fn docs(s: &Spec) -> [Value; 2] {
    [
        text(s.name),
        array(vec![
            text("summary"),
            text(s.summary),
            text("since"),
            text("1.0.0"),
            text("group"),
            text(s.group),
        ]),
    ]
}

/// The reply to `COMMAND` with `args`.
pub fn command(args: &[Vec<u8>]) -> Value {
    let Some(sub) = args.first() else {
        return array(TABLE.iter().map(info).collect());
    };
    let names = &args[1..];
    match sub.to_ascii_lowercase().as_slice() {
        b"count" if names.is_empty() => Value::Integer(TABLE.len() as i64),
        b"list" if names.is_empty() => array(TABLE.iter().map(|s| text(s.name)).collect()),
        b"info" if names.is_empty() => array(TABLE.iter().map(info).collect()),
        b"info" => array(
            names
                .iter()
                .map(|n| find(n).map_or(Value::Array(None), info))
                .collect(),
        ),
        b"docs" if names.is_empty() => array(TABLE.iter().flat_map(docs).collect()),
        b"docs" => array(
            names
                .iter()
                .filter_map(|n| find(n))
                .flat_map(docs)
                .collect(),
        ),
        b"count" | b"list" => Value::Error(format!(
            "ERR wrong number of arguments for 'command|{}' command",
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        )),
        _ => Value::Error(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(sub)
                .chars()
                .take(128)
                .collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyspace_command_of_the_table_parses() {
        for s in TABLE
            .iter()
            .filter(|s| !["connection", "transactions"].contains(&s.group))
        {
            if ["command", "info", "config"].contains(&s.name) {
                continue;
            }
            let mut args = vec![s.name.as_bytes().to_vec()];
            args.extend((1..s.arity.unsigned_abs()).map(|i| i.to_string().into_bytes()));
            assert!(
                !matches!(
                    synod_keyspace::Command::parse(args),
                    synod_keyspace::Parsed::NotKeyspace
                ),
                "{} is in the table but not a keyspace command",
                s.name
            );
        }
    }

    #[test]
    fn command_info_answers_nil_for_an_unknown_name() {
        let reply = command(&[b"INFO".to_vec(), b"get".to_vec(), b"nosuch".to_vec()]);
        let Value::Array(Some(items)) = reply else {
            panic!("an array")
        };
        assert!(matches!(&items[0], Value::Array(Some(fields)) if fields.len() == 10));
        assert_eq!(items[1], Value::Array(None));
    }
}
