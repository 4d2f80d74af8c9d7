//! A minimal blocking Redis-protocol client for tests that talk to a `--resp` front over
//! `std::net::TcpStream`. It encodes and parses with `synod_resp`, the same code the servers
//! use, and turns replies into plain strings for easy assertions.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use synod_resp::{encode, ParseLimits, Parsed, Parser, Value};

/// A RESP reply, with bulk strings decoded as UTF-8.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
}

/// One connection to a RESP front.
pub struct Resp {
    stream: TcpStream,
    /// Replies read but not yet taken.
    parser: Parser,
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Resp {
    /// Connects to `addr` (`HOST:PORT`).
    pub fn connect(addr: &str) -> io::Result<Resp> {
        let stream = TcpStream::connect(addr)?;
        // Longer than synod's default 5 s limit per command, so the front's answer (even an
        // error) comes first.
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Resp {
            stream,
            parser: Parser::new(ParseLimits::replies()),
        })
    }

    /// Connects to `addr` and, with a password, authenticates as the `default` user.
    pub fn connect_as(addr: &str, password: Option<&str>) -> io::Result<Resp> {
        let mut conn = Resp::connect(addr)?;
        if let Some(password) = password {
            match conn.call(&["AUTH", password])? {
                Reply::Simple(ok) if ok == "OK" => {}
                other => return Err(invalid(format!("AUTH answered {other:?}"))),
            }
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply. An error means the connection is unusable.
    pub fn call(&mut self, args: &[&str]) -> io::Result<Reply> {
        let mut replies = self.pipeline(&[args])?;
        replies.pop().ok_or_else(|| invalid("no reply"))
    }

    /// Sends `commands` in one write, as a pipelining client does, and reads their replies.
    pub fn pipeline(&mut self, commands: &[&[&str]]) -> io::Result<Vec<Reply>> {
        let mut out = Vec::new();
        for args in commands {
            let parts = args.iter().map(|a| Value::bulk(a.as_bytes())).collect();
            encode(&Value::Array(Some(parts)), &mut out);
        }
        self.stream.write_all(&out)?;
        (0..commands.len()).map(|_| self.reply()).collect()
    }

    fn reply(&mut self) -> io::Result<Reply> {
        let value = loop {
            match self.parser.take().map_err(invalid)? {
                Some(Parsed::Value(value)) => break value,
                Some(Parsed::Refused(why)) => return Err(invalid(why)),
                None => {}
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.parser.feed(&chunk[..n]);
        };
        Ok(match value {
            Value::Simple(text) => Reply::Simple(text),
            Value::Error(text) => Reply::Error(text),
            Value::Integer(n) => Reply::Integer(n),
            Value::Bulk(bytes) => {
                Reply::Bulk(bytes.map(String::from_utf8).transpose().map_err(invalid)?)
            }
            Value::Array(_) => return Err(invalid("unexpected array reply")),
        })
    }
}

/// `connections` connections spread over `fronts` (authenticated with `password`, if any),
/// each with one command in flight: `incrs` times an `INCR` of `key` followed by a `GET` of
/// it, which must see at least what the `INCR` answered. Returns every `INCR`'s answer,
/// sorted: applied once each, they are exactly 1..=connections*incrs.
pub fn concurrent_incrs(
    fronts: &[String],
    password: Option<&str>,
    connections: usize,
    incrs: usize,
    key: &str,
) -> Vec<i64> {
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let addr = fronts[c % fronts.len()].clone();
            let (password, key) = (password.map(str::to_owned), key.to_owned());
            std::thread::spawn(move || {
                let mut resp = Resp::connect_as(&addr, password.as_deref()).expect("front");
                (0..incrs)
                    .map(|_| {
                        let Reply::Integer(n) = resp.call(&["INCR", &key]).expect("INCR") else {
                            panic!("INCR answered a non-integer");
                        };
                        let Reply::Bulk(Some(seen)) = resp.call(&["GET", &key]).expect("GET")
                        else {
                            panic!("GET of {key} answered nothing");
                        };
                        let seen: i64 = seen.parse().expect("a number");
                        assert!(seen >= n, "GET saw {seen} after INCR answered {n}");
                        n
                    })
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
    let mut all: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    all.sort_unstable();
    all
}
