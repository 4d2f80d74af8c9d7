//! What one connection is (its id, name and open transaction) and the commands the front
//! answers itself: PING, ECHO, QUIT, HELLO, CLIENT, SELECT, COMMAND and INFO, the
//! transaction commands (MULTI, EXEC, DISCARD), and the guard against cross-protocol
//! requests. Everything else is a keyspace command ([`synod_keyspace::Command`]) for the
//! backend, or unknown.
//!
//! Sans-I/O: [`Connection::step`] turns one command into a [`Step`]; the server runs it.

use synod_keyspace::{Command, Parsed, Refusal, Reply};

use crate::commands;
use crate::value::Value;

/// The Redis version the front reports (HELLO, INFO): the command set and replies follow
/// Redis 7.0, whose replies the differential test compares against.
pub const REDIS_VERSION: &str = "7.0.0";

/// One connection's state.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    name: Option<Vec<u8>>,
    /// The commands of an open MULTI, and whether one of them was refused when queued
    /// (then EXEC discards the transaction, as Redis does).
    multi: Option<Transaction>,
}

#[derive(Debug, Default)]
struct Transaction {
    queued: Vec<Queued>,
    refused: bool,
}

/// A queued command: answered by the front, or by the store.
#[derive(Debug)]
enum Queued {
    Local(Value),
    Store(Command),
}

/// What the server does for one command.
#[derive(Debug)]
pub enum Step {
    /// Answers at once.
    Reply(Value),
    /// Runs a command in the store. `splice`: for an EXEC, where the replies the front
    /// gave itself go among the store's replies (`None`: the store's next).
    Run {
        command: Command,
        splice: Option<Vec<Option<Value>>>,
    },
    /// INFO: needs the store's key count and the replica's replication state.
    Info { sections: Vec<String> },
    /// QUIT: answers OK, then closes.
    Quit,
    /// An HTTP request (`POST`, `Host:`) sent to the Redis port: closes without a reply.
    CrossProtocol(String),
}

impl Connection {
    pub fn new(id: u64) -> Self {
        Connection {
            id,
            name: None,
            multi: None,
        }
    }

    /// What to do for `args` (the command's name, then its arguments).
    pub fn step(&mut self, args: Vec<Vec<u8>>) -> Step {
        let Some(first) = args.first() else {
            return Step::Reply(error("ERR empty command"));
        };
        let name = String::from_utf8_lossy(first).to_ascii_lowercase();
        if name == "post" || name == "host:" {
            return Step::CrossProtocol(name);
        }
        match (name.as_str(), self.multi.is_some()) {
            ("multi", true) => return Step::Reply(error("ERR MULTI calls can not be nested")),
            ("multi", false) if args.len() == 1 => {
                self.multi = Some(Transaction::default());
                return Step::Reply(ok());
            }
            ("exec", false) => return Step::Reply(error("ERR EXEC without MULTI")),
            ("discard", false) => return Step::Reply(error("ERR DISCARD without MULTI")),
            ("exec" | "discard", true) if args.len() == 1 => {
                let transaction = self.multi.take().unwrap_or_default();
                return match name.as_str() {
                    "discard" => Step::Reply(ok()),
                    _ if transaction.refused => Step::Reply(error(
                        "EXECABORT Transaction discarded because of previous errors.",
                    )),
                    _ => exec(transaction.queued),
                };
            }
            ("quit", _) => return Step::Quit,
            _ => {}
        }
        let step = match Command::parse(args.clone()) {
            Parsed::Command(command) => Step::Run {
                command,
                splice: None,
            },
            Parsed::Refused(refusal) => {
                if matches!(refusal, Refusal::Arity(_)) && self.multi.is_some() {
                    return self.refuse_queued(Value::Error(refusal.to_string()));
                }
                Step::Reply(Value::Error(refusal.to_string()))
            }
            Parsed::NotKeyspace => match self.front_command(&name, &args) {
                Some(step) => step,
                None => return self.refuse_queued(unknown(&args)),
            },
        };
        let Some(transaction) = &mut self.multi else {
            return step;
        };
        match step {
            Step::Reply(value) => transaction.queued.push(Queued::Local(value)),
            Step::Run { command, .. } => transaction.queued.push(Queued::Store(command)),
            Step::Info { .. } => {
                return self.refuse_queued(error("ERR INFO is not supported inside MULTI"))
            }
            other @ (Step::Quit | Step::CrossProtocol(_)) => return other,
        }
        Step::Reply(Value::Simple("QUEUED".into()))
    }

    /// `reply` to a command that cannot be run; inside MULTI it also dooms the transaction.
    fn refuse_queued(&mut self, reply: Value) -> Step {
        if let Some(transaction) = &mut self.multi {
            transaction.refused = true;
        }
        Step::Reply(reply)
    }

    /// A command the front answers itself, `None` if it is unknown.
    fn front_command(&mut self, name: &str, args: &[Vec<u8>]) -> Option<Step> {
        let arity = || Step::Reply(Value::Error(Refusal::Arity(name.into()).to_string()));
        let n = args.len() - 1;
        Some(match name {
            "ping" => match n {
                0 => Step::Reply(Value::Simple("PONG".into())),
                1 => Step::Reply(Value::bulk(args[1].clone())),
                _ => arity(),
            },
            "echo" if n == 1 => Step::Reply(Value::bulk(args[1].clone())),
            "select" if n == 1 => Step::Reply(match synod_keyspace::integer(&args[1]) {
                Some(0) => ok(),
                Some(_) => error("ERR DB index is out of range"),
                None => error("ERR value is not an integer or out of range"),
            }),
            "hello" => Step::Reply(self.hello(&args[1..])),
            "client" if n >= 1 => Step::Reply(self.client(&args[1..])),
            "command" => Step::Reply(commands::command(&args[1..])),
            "config" if n >= 2 && args[1].eq_ignore_ascii_case(b"get") => {
                Step::Reply(config_get(&args[2..]))
            }
            "info" => Step::Info {
                sections: args[1..]
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                    .collect(),
            },
            "echo" | "select" | "client" => arity(),
            "config" if n == 0 => arity(),
            "config" => Step::Reply(Value::Error(format!(
                "ERR CONFIG {} is not supported: synod is configured by its flags (docs/running.md)",
                String::from_utf8_lossy(&args[1]).to_ascii_uppercase()
            ))),
            _ => return None,
        })
    }

    /// `HELLO [protover [AUTH username password] [SETNAME name]]`, in RESP2 only.
    fn hello(&mut self, args: &[Vec<u8>]) -> Value {
        if let Some(version) = args.first() {
            match synod_keyspace::integer(version) {
                Some(2) => {}
                // RESP3 is not spoken: answered as Redis answers a version it lacks, which
                // a client takes as "stay with RESP2".
                Some(_) => return error("NOPROTO unsupported protocol version"),
                None => return error("ERR Protocol version is not an integer or out of range"),
            }
        }
        let mut options = args.iter().skip(1);
        let mut name = None;
        while let Some(option) = options.next() {
            match option.to_ascii_uppercase().as_slice() {
                b"SETNAME" => match options.next() {
                    Some(value) => name = Some(value.clone()),
                    None => return syntax_option(option),
                },
                b"AUTH" => {
                    return error(
                        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                    )
                }
                _ => return syntax_option(option),
            }
        }
        if let Some(name) = name {
            if let Err(refused) = self.set_name(name) {
                return refused;
            }
        }
        let text = |s: &str| Value::bulk(s.as_bytes().to_vec());
        Value::Array(Some(vec![
            text("server"),
            text("redis"),
            text("version"),
            text(REDIS_VERSION),
            text("proto"),
            Value::Integer(2),
            text("id"),
            Value::Integer(self.id as i64),
            text("mode"),
            text("standalone"),
            text("role"),
            text("master"),
            text("modules"),
            Value::Array(Some(Vec::new())),
        ]))
    }

    /// `CLIENT ID | GETNAME | SETNAME name | SETINFO attr value`.
    fn client(&mut self, args: &[Vec<u8>]) -> Value {
        let sub = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        let arity = || Value::Error(Refusal::Arity(format!("client|{sub}")).to_string());
        match (sub.as_str(), args.len() - 1) {
            ("id", 0) => Value::Integer(self.id as i64),
            ("getname", 0) => Value::Bulk(self.name.clone()),
            ("setname", 1) => match self.set_name(args[1].clone()) {
                Ok(()) => ok(),
                Err(refused) => refused,
            },
            ("setinfo", 2) => match args[1].to_ascii_lowercase().as_slice() {
                b"lib-name" | b"lib-ver" => ok(),
                _ => Value::Error(format!(
                    "ERR Unrecognized option '{}'",
                    String::from_utf8_lossy(&args[1])
                )),
            },
            ("id" | "getname" | "setname" | "setinfo", _) => arity(),
            _ => Value::Error(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&args[0])
                    .chars()
                    .take(128)
                    .collect::<String>()
            )),
        }
    }

    fn set_name(&mut self, name: Vec<u8>) -> Result<(), Value> {
        if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
            return Err(error(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ));
        }
        // An empty name removes it, as in Redis.
        self.name = (!name.is_empty()).then_some(name);
        Ok(())
    }
}

/// `CONFIG GET pattern...`: the few parameters clients read on connecting (redis-benchmark
/// reads `save` and `appendonly`), as a flat array of names and values; other names match
/// nothing. synod has no configuration to set through RESP: its flags are docs/running.md's.
fn config_get(patterns: &[Vec<u8>]) -> Value {
    const PARAMETERS: &[(&str, &str)] = &[
        ("save", ""),
        ("appendonly", "no"),
        ("databases", "1"),
        ("maxmemory", "0"),
    ];
    let mut found = Vec::new();
    for (name, value) in PARAMETERS {
        if patterns
            .iter()
            .any(|p| synod_keyspace::glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
        {
            found.push(Value::bulk(name.as_bytes().to_vec()));
            found.push(Value::bulk(value.as_bytes().to_vec()));
        }
    }
    Value::Array(Some(found))
}

/// EXEC of `queued`: one store command for all the store's commands (one log entry), with
/// the front's own replies spliced in where they were queued.
fn exec(queued: Vec<Queued>) -> Step {
    let mut commands = Vec::new();
    let mut splice = Vec::with_capacity(queued.len());
    for item in queued {
        match item {
            Queued::Local(value) => splice.push(Some(value)),
            Queued::Store(command) => {
                commands.push(command);
                splice.push(None);
            }
        }
    }
    if commands.is_empty() {
        return Step::Reply(Value::Array(Some(splice.into_iter().flatten().collect())));
    }
    Step::Run {
        command: Command::Exec { commands },
        splice: Some(splice),
    }
}

/// An EXEC's reply: the store's replies (`store`, an array) with the front's spliced in.
pub fn spliced(store: Value, splice: Vec<Option<Value>>) -> Value {
    let Value::Array(Some(replies)) = store else {
        // The store refused the transaction whole (an error): that is the answer.
        return store;
    };
    let mut replies = replies.into_iter();
    let mixed = splice
        .into_iter()
        .map(|local| {
            local.unwrap_or_else(|| {
                replies
                    .next()
                    .unwrap_or_else(|| error("ERR the store gave no reply"))
            })
        })
        .collect();
    Value::Array(Some(mixed))
}

/// The RESP value of a store's reply.
pub fn value_of(reply: Reply) -> Value {
    match reply {
        Reply::Ok => ok(),
        Reply::Status(text) => Value::Simple(text),
        Reply::Error(text) => Value::Error(text),
        Reply::Integer(n) => Value::Integer(n),
        Reply::Bulk(bytes) => Value::Bulk(bytes),
        Reply::Array(items) => Value::Array(Some(items.into_iter().map(value_of).collect())),
    }
}

fn ok() -> Value {
    Value::Simple("OK".into())
}

fn error(text: &str) -> Value {
    Value::Error(text.into())
}

fn syntax_option(option: &[u8]) -> Value {
    Value::Error(format!(
        "ERR Syntax error in HELLO option '{}'",
        String::from_utf8_lossy(option)
    ))
}

/// Redis's answer to an unknown command: its name and the start of its arguments.
fn unknown(args: &[Vec<u8>]) -> Value {
    let name: String = String::from_utf8_lossy(&args[0])
        .chars()
        .take(128)
        .collect();
    let mut shown = String::new();
    for arg in &args[1..] {
        if shown.len() >= 128 {
            break;
        }
        let room = 128 - shown.len();
        let arg: String = String::from_utf8_lossy(arg).chars().take(room).collect();
        shown.push_str(&format!("'{arg}' "));
    }
    Value::Error(format!(
        "ERR unknown command '{name}', with args beginning with: {shown}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|w| w.as_bytes().to_vec()).collect()
    }

    fn reply(step: Step) -> Value {
        match step {
            Step::Reply(value) => value,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_transaction_is_one_store_command_with_local_replies_spliced_in() {
        let mut c = Connection::new(1);
        assert_eq!(reply(c.step(words("MULTI"))), ok());
        assert_eq!(
            reply(c.step(words("INCR n"))),
            Value::Simple("QUEUED".into())
        );
        assert_eq!(reply(c.step(words("PING"))), Value::Simple("QUEUED".into()));
        assert_eq!(
            reply(c.step(words("GET n"))),
            Value::Simple("QUEUED".into())
        );
        let Step::Run { command, splice } = c.step(words("EXEC")) else {
            panic!("EXEC runs in the store");
        };
        assert_eq!(command.keys(), vec![b"n".as_slice(), b"n".as_slice()]);
        let store = Value::Array(Some(vec![Value::Integer(1), Value::bulk(b"1".to_vec())]));
        assert_eq!(
            spliced(store, splice.unwrap()),
            Value::Array(Some(vec![
                Value::Integer(1),
                Value::Simple("PONG".into()),
                Value::bulk(b"1".to_vec())
            ]))
        );
        assert_eq!(
            reply(c.step(words("EXEC"))),
            error("ERR EXEC without MULTI")
        );
    }

    #[test]
    fn a_command_refused_when_queued_discards_the_transaction() {
        let mut c = Connection::new(1);
        c.step(words("MULTI"));
        assert!(matches!(reply(c.step(words("GET"))), Value::Error(_)));
        assert!(matches!(reply(c.step(words("FROB x"))), Value::Error(_)));
        assert_eq!(
            reply(c.step(words("EXEC"))),
            error("EXECABORT Transaction discarded because of previous errors.")
        );
    }

    #[test]
    fn unknown_commands_and_http_are_told_apart() {
        let mut c = Connection::new(1);
        assert_eq!(
            reply(c.step(words("FROB a b"))),
            error("ERR unknown command 'FROB', with args beginning with: 'a' 'b' ")
        );
        assert!(matches!(
            c.step(words("POST / HTTP/1.1")),
            Step::CrossProtocol(_)
        ));
        assert!(matches!(
            c.step(words("Host: localhost")),
            Step::CrossProtocol(_)
        ));
        assert!(matches!(c.step(words("QUIT")), Step::Quit));
    }

    #[test]
    fn client_names_are_kept_and_checked() {
        let mut c = Connection::new(7);
        assert_eq!(reply(c.step(words("CLIENT GETNAME"))), Value::Bulk(None));
        assert_eq!(reply(c.step(words("CLIENT SETNAME app"))), ok());
        assert_eq!(
            reply(c.step(words("CLIENT GETNAME"))),
            Value::bulk(b"app".to_vec())
        );
        assert_eq!(reply(c.step(words("CLIENT ID"))), Value::Integer(7));
        assert!(matches!(
            reply(c.step(vec![
                b"CLIENT".to_vec(),
                b"SETNAME".to_vec(),
                b"a b".to_vec()
            ])),
            Value::Error(_)
        ));
        assert_eq!(
            reply(c.step(words("HELLO 3"))),
            error("NOPROTO unsupported protocol version")
        );
        let Value::Array(Some(hello)) = reply(c.step(words("HELLO 2"))) else {
            panic!("HELLO answers an array")
        };
        assert_eq!(hello.len(), 14);
        assert_eq!(reply(c.step(words("SELECT 0"))), ok());
        assert_eq!(
            reply(c.step(words("CONFIG GET save"))),
            Value::Array(Some(vec![
                Value::bulk(b"save".to_vec()),
                Value::bulk(Vec::new())
            ]))
        );
        assert_eq!(
            reply(c.step(words("SELECT 1"))),
            error("ERR DB index is out of range")
        );
    }
}
