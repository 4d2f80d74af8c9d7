//! An incremental RESP2 parser: it keeps its state across reads, so every byte is examined
//! once however the input is split, and parsing is linear in the input. It never panics:
//! malformed input is a [`ParseError`] (the connection closes), a value above the size policy
//! is [`Parsed::Refused`] at once and the rest of it is skipped without being stored (the
//! connection stays usable).
//!
//! Memory held for one value is bounded by [`ParseLimits::max_command`] plus one line: bulk
//! payloads move out of the input buffer as they arrive, a refused value's bytes are dropped
//! as they arrive, and every element is charged [`ELEMENT_COST`] bytes besides its payload.

use synod_node::limits::{Limits, TooLarge, MAX_VALUE_CEILING};
use thiserror::Error;

use crate::value::Value;

/// Most elements in one array.
pub const MAX_ELEMENTS: usize = 1024 * 1024;
/// Deepest nesting of arrays.
pub const MAX_DEPTH: usize = 32;
/// Longest line (simple string, error, integer, length header or inline command).
const MAX_LINE: usize = 64 * 1024;
/// A bulk length above this is not a value too large but nonsense (Redis' own
/// `proto-max-bulk-len` default): a protocol error, rather than gigabytes to skip.
const PROTO_MAX_BULK: i64 = 512 * 1024 * 1024;
/// What an element costs besides its payload (the `Value`, its allocation), charged against
/// [`ParseLimits::max_command`] so a million empty strings are bounded like one long one.
pub const ELEMENT_COST: usize = 32;

/// Why bytes are not RESP.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("line too long")]
    LineTooLong,
    #[error("invalid length or integer {0:?}")]
    BadNumber(String),
    #[error("bulk string of {0} bytes exceeds the limit")]
    BulkTooLong(i64),
    #[error("array of {0} elements exceeds the limit")]
    ArrayTooLong(i64),
    #[error("arrays nested too deeply")]
    TooDeep,
    #[error("bulk string not terminated by CRLF")]
    MissingCrlf,
    #[error("line is not valid UTF-8")]
    NotUtf8,
    /// Only from the one-shot [`parse`], which has no connection to keep usable.
    #[error("{0}")]
    Refused(TooLarge),
}

/// The sizes one parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest bulk string; a longer one is refused as a value too large.
    pub max_bulk: usize,
    /// Largest value in total: payloads, lines, and [`ELEMENT_COST`] per element.
    pub max_command: usize,
}

impl ParseLimits {
    /// What a server with the size policy `limits` accepts from a client.
    pub fn commands(limits: &Limits) -> Self {
        ParseLimits {
            max_bulk: limits.max_value(),
            max_command: limits.max_command(),
        }
    }

    /// What a client accepts from a server: any value a server may be configured to store.
    pub fn replies() -> Self {
        ParseLimits::commands(&Limits::CEILING)
    }
}

/// One complete value, or the refusal of one that is too large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Value(Value),
    /// The value being received is above the limits; its remaining bytes are skipped and
    /// it never becomes a [`Parsed::Value`]. Reported as soon as it is known.
    Refused(TooLarge),
}

/// Where the parser is inside the current value.
#[derive(Debug)]
enum State {
    /// Expecting a line: a type byte and its header, or an inline command.
    Line,
    /// Receiving a bulk payload: `left` bytes to go; `data` is `None` while skipping.
    Bulk { left: usize, data: Option<Vec<u8>> },
    /// Expecting the CRLF after a bulk payload.
    BulkEnd { data: Option<Vec<u8>> },
}

/// An array being filled.
#[derive(Debug)]
struct Open {
    left: usize,
    items: Vec<Value>,
}

/// The incremental parser of one connection. Feed it bytes with [`feed`](Self::feed), take
/// values with [`next`](Self::next). After an error it must not be used again.
#[derive(Debug)]
pub struct Parser {
    limits: ParseLimits,
    /// Bytes received and not yet consumed start at `start`.
    buf: Vec<u8>,
    start: usize,
    /// Bytes after `start` already searched for a line end without finding one.
    scanned: usize,
    state: State,
    stack: Vec<Open>,
    /// Bytes of the current top-level value so far, as announced by its headers (so a value
    /// is refused as soon as a header shows it will not fit).
    value_bytes: usize,
    /// Payload bytes and element costs actually stored for the current top-level value.
    stored: usize,
    /// The current top-level value was refused: its remaining bytes are dropped.
    refused: bool,
    /// A refusal to report once the step that found it is applied.
    pending: Option<TooLarge>,
    /// Bytes consumed since the parser was made (what [`parse`] reports).
    consumed: usize,
}

impl Parser {
    pub fn new(limits: ParseLimits) -> Self {
        Parser {
            limits,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            state: State::Line,
            stack: Vec::new(),
            value_bytes: 0,
            stored: 0,
            refused: false,
            pending: None,
            consumed: 0,
        }
    }

    /// Adds received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for values not yet complete: unconsumed input, and what is stored of the
    /// current value. Bounded by `max_command` plus one line plus the last `feed`.
    pub fn buffered(&self) -> usize {
        let payload = match &self.state {
            State::Bulk { data, .. } | State::BulkEnd { data } => {
                data.as_ref().map_or(0, Vec::capacity)
            }
            State::Line => 0,
        };
        self.buf.len() - self.start + payload + self.stored
    }

    /// Whether the parser is in the middle of a value.
    pub fn mid_value(&self) -> bool {
        self.buf.len() > self.start || !self.stack.is_empty() || !matches!(self.state, State::Line)
    }

    /// The next complete value, or refusal, from the bytes fed so far; `Ok(None)` when more
    /// bytes are needed.
    pub fn take(&mut self) -> Result<Option<Parsed>, ParseError> {
        loop {
            let step = match std::mem::replace(&mut self.state, State::Line) {
                State::Line => self.line()?,
                State::Bulk { left, data } => self.bulk(left, data),
                State::BulkEnd { data } => self.bulk_end(data)?,
            };
            let complete = match step {
                Step::NeedMore => {
                    self.compact();
                    return Ok(None);
                }
                Step::Continue => None,
                Step::Done(value) => self.finish(value),
            };
            if let Some(why) = self.pending.take() {
                return Ok(Some(Parsed::Refused(why)));
            }
            if let Some(value) = complete {
                return Ok(Some(Parsed::Value(value)));
            }
        }
    }

    /// Drops the consumed prefix of the input buffer; what stays is at most one line.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            if self.buf.capacity() > 4 * MAX_LINE {
                self.buf = Vec::new();
            }
        } else if self.start > 0 {
            self.buf.drain(..self.start);
        }
        self.start = 0;
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.consumed += n;
        self.scanned = 0;
    }

    /// Charges `bytes` to the current value, refusing it once it passes `max_command`.
    fn charge(&mut self, bytes: usize) {
        self.value_bytes = self.value_bytes.saturating_add(bytes);
        if self.value_bytes > self.limits.max_command {
            self.refuse(TooLarge::Command {
                size: self.value_bytes as u64,
                limit: self.limits.max_command as u64,
            });
        }
    }

    /// Refuses the current value: what is stored of it is dropped, the rest will be.
    fn refuse(&mut self, why: TooLarge) {
        if self.refused {
            return;
        }
        self.refused = true;
        self.pending = Some(why);
        self.stored = 0;
        for open in &mut self.stack {
            open.items = Vec::new();
        }
    }

    fn line(&mut self) -> Result<Step, ParseError> {
        let Some((len, terminator)) = self.find_line_end()? else {
            return Ok(Step::NeedMore);
        };
        let line = self.buf[self.start..self.start + len].to_vec();
        self.consume(len + terminator);
        self.charge(len + terminator);
        let (kind, body) = (line[0], &line[1..]);
        let value = match kind {
            b'+' => Value::Simple(text(body)?),
            b'-' => Value::Error(text(body)?),
            b':' => Value::Integer(number(body)?),
            b'$' => return self.bulk_header(number(body)?),
            b'*' => return self.array_header(number(body)?),
            // Anything else is an inline command: words separated by spaces.
            _ => Value::Array(Some(
                line.split(|b| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty())
                    .map(Value::bulk)
                    .collect(),
            )),
        };
        Ok(Step::Done(value))
    }

    /// The length of the line at `start` and of its terminator, searching only bytes not
    /// searched before. A line ends with CRLF; an inline command (a top-level line that does
    /// not start with a type byte, what `echo PING | nc` sends) also ends at a bare LF, as in
    /// Redis.
    fn find_line_end(&mut self) -> Result<Option<(usize, usize)>, ParseError> {
        loop {
            let rest = &self.buf[self.start..];
            let inline = self.stack.is_empty()
                && rest
                    .first()
                    .is_some_and(|b| !matches!(b, b'+' | b'-' | b':' | b'$' | b'*'));
            let mut from = self.scanned;
            let mut found = None;
            while let Some(at) = rest[from..].iter().position(|&b| b == b'\n') {
                let newline = from + at;
                if newline > 0 && rest[newline - 1] == b'\r' {
                    found = Some((newline - 1, 2));
                    break;
                }
                if inline {
                    found = Some((newline, 1));
                    break;
                }
                from = newline + 1;
            }
            match found {
                Some((len, _)) if len > MAX_LINE => return Err(ParseError::LineTooLong),
                // An empty line is no value; skip it as Redis does between commands.
                Some((0, terminator)) => self.consume(terminator),
                Some(line) => return Ok(Some(line)),
                None if rest.len() > MAX_LINE + 1 => return Err(ParseError::LineTooLong),
                None => {
                    self.scanned = rest.len();
                    return Ok(None);
                }
            }
        }
    }

    fn bulk_header(&mut self, len: i64) -> Result<Step, ParseError> {
        if len == -1 {
            return Ok(Step::Done(Value::Bulk(None)));
        }
        let size = usize::try_from(len)
            .ok()
            .filter(|_| len <= PROTO_MAX_BULK)
            .ok_or(ParseError::BulkTooLong(len))?;
        if size > self.limits.max_bulk {
            self.refuse(TooLarge::Value {
                size: size as u64,
                limit: self.limits.max_bulk as u64,
            });
        }
        self.charge(size + 2);
        // Grow as bytes arrive: the header alone must not allocate much.
        let data = (!self.refused).then(|| Vec::with_capacity(size.min(64 * 1024)));
        self.state = State::Bulk { left: size, data };
        Ok(Step::Continue)
    }

    fn array_header(&mut self, len: i64) -> Result<Step, ParseError> {
        if len == -1 {
            return Ok(Step::Done(Value::Array(None)));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        let count = usize::try_from(len)
            .ok()
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or(ParseError::ArrayTooLong(len))?;
        if count == 0 {
            return Ok(Step::Done(Value::Array(Some(Vec::new()))));
        }
        self.charge(count.saturating_mul(ELEMENT_COST));
        self.stack.push(Open {
            left: count,
            // Grow as elements actually arrive.
            items: Vec::with_capacity(count.min(64)),
        });
        Ok(Step::Continue)
    }

    fn bulk(&mut self, left: usize, mut data: Option<Vec<u8>>) -> Step {
        let take = left.min(self.buf.len() - self.start);
        if let Some(data) = &mut data {
            data.extend_from_slice(&self.buf[self.start..self.start + take]);
        }
        self.consume(take);
        if take < left {
            self.state = State::Bulk {
                left: left - take,
                data,
            };
            return Step::NeedMore;
        }
        self.state = State::BulkEnd { data };
        Step::Continue
    }

    fn bulk_end(&mut self, data: Option<Vec<u8>>) -> Result<Step, ParseError> {
        match self.buf.get(self.start..self.start + 2) {
            None => {
                self.state = State::BulkEnd { data };
                Ok(Step::NeedMore)
            }
            Some(b"\r\n") => {
                self.consume(2);
                Ok(Step::Done(Value::Bulk(data)))
            }
            Some(_) => Err(ParseError::MissingCrlf),
        }
    }

    /// Puts a complete element into its array; returns the top-level value once complete
    /// (`None` for a refused one, whose refusal is reported instead).
    fn finish(&mut self, mut value: Value) -> Option<Value> {
        loop {
            let Some(open) = self.stack.last_mut() else {
                let refused = std::mem::take(&mut self.refused);
                self.value_bytes = 0;
                self.stored = 0;
                return (!refused).then_some(value);
            };
            open.left -= 1;
            if !self.refused {
                self.stored += ELEMENT_COST + payload_len(&value);
                open.items.push(value);
            }
            if open.left > 0 {
                return None;
            }
            let done = self.stack.pop().map(|o| o.items).unwrap_or_default();
            value = Value::Array(Some(done));
        }
    }
}

/// The bytes a value holds itself (an array's elements were counted as they arrived).
fn payload_len(value: &Value) -> usize {
    match value {
        Value::Simple(s) | Value::Error(s) => s.len(),
        Value::Bulk(Some(b)) => b.len(),
        Value::Bulk(None) | Value::Integer(_) | Value::Array(_) => 0,
    }
}

/// What one step of the parser found.
enum Step {
    NeedMore,
    Continue,
    Done(Value),
}

fn text(bytes: &[u8]) -> Result<String, ParseError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ParseError::NotUtf8)
}

fn number(bytes: &[u8]) -> Result<i64, ParseError> {
    let text = text(bytes)?;
    text.parse().map_err(|_| ParseError::BadNumber(text))
}

/// Parses one value from the start of `buf`, as a client reads a reply: the value and the
/// number of bytes it took, `Ok(None)` if `buf` holds only a prefix of a value. Each call
/// starts over, so a caller reading a large value piecemeal should keep a [`Parser`].
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ParseError> {
    let mut parser = Parser::new(ParseLimits::replies());
    parser.feed(buf);
    match parser.take()? {
        Some(Parsed::Value(value)) => Ok(Some((value, parser.consumed))),
        Some(Parsed::Refused(why)) => Err(ParseError::Refused(why)),
        None => Ok(None),
    }
}

const _: () = assert!(MAX_VALUE_CEILING as i64 <= PROTO_MAX_BULK);

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ParseLimits {
        ParseLimits {
            max_bulk: 100,
            max_command: 300,
        }
    }

    /// Feeds `bytes` in pieces of `piece` bytes and collects everything parsed.
    fn parse_all(limits: ParseLimits, bytes: &[u8], piece: usize) -> Vec<Parsed> {
        let mut parser = Parser::new(limits);
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece) {
            parser.feed(chunk);
            while let Some(parsed) = parser.take().unwrap() {
                out.push(parsed);
            }
        }
        assert!(!parser.mid_value(), "input ends between values");
        out
    }

    fn command(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let parts = args.iter().map(|a| Value::bulk(*a)).collect();
        crate::value::encode(&Value::Array(Some(parts)), &mut out);
        out
    }

    #[test]
    fn parses_each_kind_and_reports_incomplete_input() {
        let cmd = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let (value, used) = parse(cmd).unwrap().unwrap();
        assert_eq!(used, cmd.len());
        assert_eq!(
            value,
            Value::Array(Some(vec![Value::bulk("GET"), Value::bulk("k")]))
        );
        for cut in 0..cmd.len() {
            assert_eq!(parse(&cmd[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        assert_eq!(parse(b":-7\r\n").unwrap().unwrap().0, Value::Integer(-7));
        assert_eq!(parse(b"$-1\r\n").unwrap().unwrap().0, Value::Bulk(None));
        assert_eq!(
            parse(b"PING  hi\r\n").unwrap().unwrap().0,
            Value::Array(Some(vec![Value::bulk("PING"), Value::bulk("hi")]))
        );
    }

    #[test]
    fn an_inline_command_may_end_at_a_bare_newline_as_netcat_sends_it() {
        let mut input = b"PING\n\nECHO hi\r\n".to_vec();
        input.extend(command(&[b"GET", b"k"]));
        for piece in [1, 3, 4096] {
            let parsed = parse_all(small(), &input, piece);
            let words = |w: &[&str]| {
                Parsed::Value(Value::Array(Some(
                    w.iter().map(|w| Value::bulk(*w)).collect(),
                )))
            };
            assert_eq!(
                parsed,
                [
                    words(&["PING"]),
                    words(&["ECHO", "hi"]),
                    words(&["GET", "k"])
                ],
                "fed {piece} bytes at a time"
            );
        }
        // Inside the protocol proper a line still needs its CR.
        assert!(matches!(
            parse(b"*1\n$4\r\nPING\r\n"),
            Err(ParseError::BadNumber(_))
        ));
    }

    #[test]
    fn rejects_malformed_and_absurd_input() {
        assert!(matches!(parse(b":x\r\n"), Err(ParseError::BadNumber(_))));
        assert!(matches!(
            parse(b"$-5\r\n"),
            Err(ParseError::BulkTooLong(-5))
        ));
        assert!(matches!(
            parse(b"$999999999999\r\n"),
            Err(ParseError::BulkTooLong(_))
        ));
        assert!(matches!(
            parse(b"*99999999999\r\n"),
            Err(ParseError::ArrayTooLong(_))
        ));
        assert_eq!(parse(b"$1\r\nab\r\n"), Err(ParseError::MissingCrlf));
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep), Err(ParseError::TooDeep));
        assert_eq!(
            parse(&vec![b'+'; MAX_LINE + 10]),
            Err(ParseError::LineTooLong)
        );
    }

    #[test]
    fn a_value_too_large_is_refused_at_its_header_and_the_next_command_still_parses() {
        let big = vec![b'x'; 1000];
        let mut input = command(&[b"SET", b"k", &big]);
        input.extend(command(&[b"GET", b"k"]));
        for piece in [1, 7, 4096] {
            let parsed = parse_all(small(), &input, piece);
            assert_eq!(
                parsed,
                vec![
                    Parsed::Refused(TooLarge::Value {
                        size: 1000,
                        limit: 100
                    }),
                    Parsed::Value(Value::Array(Some(vec![
                        Value::bulk("GET"),
                        Value::bulk("k")
                    ]))),
                ],
                "pieces of {piece}"
            );
        }
        // Reported before the value's bytes arrive.
        let mut parser = Parser::new(small());
        parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\n");
        assert!(matches!(
            parser.take(),
            Ok(Some(Parsed::Refused(TooLarge::Value { .. })))
        ));
    }

    #[test]
    fn a_command_too_large_in_total_is_refused_and_skipped() {
        let part = vec![b'y'; 90];
        let input = command(&[b"SET", &part, &part, &part, &part]);
        let parsed = parse_all(small(), &input, 10);
        assert!(
            matches!(
                parsed[..],
                [Parsed::Refused(TooLarge::Command { limit: 300, .. })]
            ),
            "{parsed:?}"
        );
        // Many tiny elements cost their bookkeeping, not just their bytes.
        let many = b"*100\r\n"
            .iter()
            .copied()
            .chain(b"$0\r\n\r\n".repeat(100))
            .collect::<Vec<_>>();
        let parsed = parse_all(small(), &many, 64);
        assert!(matches!(
            parsed[..],
            [Parsed::Refused(TooLarge::Command { .. })]
        ));
    }

    #[test]
    fn memory_held_stays_within_the_command_limit_while_a_flood_arrives() {
        let limits = ParseLimits {
            max_bulk: 64 * 1024,
            max_command: 80 * 1024,
        };
        let mut parser = Parser::new(limits);
        // A hostile client: a thousand elements, each of them near the value limit.
        let mut refusals = 0;
        parser.feed(b"*1000\r\n");
        let element = command(&[&vec![b'z'; 60 * 1024]]);
        let element = &element[4..]; // just the bulk string, without the array header
        for _ in 0..1000 {
            for piece in element.chunks(16 * 1024) {
                parser.feed(piece);
                while let Some(parsed) = parser.take().unwrap() {
                    assert!(matches!(parsed, Parsed::Refused(TooLarge::Command { .. })));
                    refusals += 1;
                }
                assert!(
                    parser.buffered() <= limits.max_command + 16 * 1024 + MAX_LINE,
                    "holds {} bytes",
                    parser.buffered()
                );
            }
        }
        assert_eq!(refusals, 1);
        assert!(!parser.mid_value());
    }

    #[test]
    fn any_split_of_the_input_parses_the_same() {
        let mut input = command(&[b"SET", b"key", b"some value\r\nwith lines"]);
        input.extend(b"PING\r\n");
        input.extend(b"+simple\r\n:42\r\n*-1\r\n*0\r\n");
        let whole = parse_all(ParseLimits::replies(), &input, input.len());
        assert_eq!(whole.len(), 6);
        for piece in 1..input.len() {
            assert_eq!(parse_all(ParseLimits::replies(), &input, piece), whole);
        }
    }
}
