//! An incremental RESP2 parser that never panics: malformed input is a [`ParseError`],
//! incomplete input is `Ok(None)`.

use thiserror::Error;

use crate::value::Value;

/// Largest bulk string accepted, in bytes (Redis' default `proto-max-bulk-len` is 512 MB; a
/// KV front has no use for more than this).
pub const MAX_BULK: usize = 64 * 1024 * 1024;
/// Most elements in one array.
pub const MAX_ELEMENTS: usize = 1024 * 1024;
/// Deepest nesting of arrays.
pub const MAX_DEPTH: usize = 32;
/// Longest line (simple string, error, integer, length header or inline command).
const MAX_LINE: usize = 64 * 1024;

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
}

/// Parses one value from the start of `buf`. Returns the value and the number of bytes it
/// took, `Ok(None)` if `buf` holds only a prefix of a value, or an error.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ParseError> {
    parse_at(buf, 0, 0)
}

/// The line starting at `pos` (without CRLF) and the position after it.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    let rest = buf.get(pos..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end > MAX_LINE => Err(ParseError::LineTooLong),
        Some(end) => Ok(Some((&rest[..end], pos + end + 2))),
        None if rest.len() > MAX_LINE => Err(ParseError::LineTooLong),
        None => Ok(None),
    }
}

fn text(bytes: &[u8]) -> Result<String, ParseError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ParseError::NotUtf8)
}

fn number(bytes: &[u8]) -> Result<i64, ParseError> {
    let text = text(bytes)?;
    text.parse().map_err(|_| ParseError::BadNumber(text))
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Value, usize)>, ParseError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((body, next)) = line(buf, pos + 1)? else {
        return Ok(None);
    };
    let value = match kind {
        b'+' => Value::Simple(text(body)?),
        b'-' => Value::Error(text(body)?),
        b':' => Value::Integer(number(body)?),
        b'$' => {
            let len = number(body)?;
            if len == -1 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            let size = usize::try_from(len)
                .ok()
                .filter(|&n| n <= MAX_BULK)
                .ok_or(ParseError::BulkTooLong(len))?;
            let end = next + size;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ParseError::MissingCrlf);
            }
            return Ok(Some((Value::bulk(&buf[next..end]), end + 2)));
        }
        b'*' => {
            let len = number(body)?;
            if len == -1 {
                return Ok(Some((Value::Array(None), next)));
            }
            if depth >= MAX_DEPTH {
                return Err(ParseError::TooDeep);
            }
            let count = usize::try_from(len)
                .ok()
                .filter(|&n| n <= MAX_ELEMENTS)
                .ok_or(ParseError::ArrayTooLong(len))?;
            // Grow as elements actually arrive: the header alone must not allocate much.
            let mut items = Vec::with_capacity(count.min(64));
            let mut at = next;
            for _ in 0..count {
                let Some((item, after)) = parse_at(buf, at, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                at = after;
            }
            return Ok(Some((Value::Array(Some(items)), at)));
        }
        // Anything else is an inline command: words separated by spaces, ended by CRLF.
        _ => {
            let Some((whole, after)) = line(buf, pos)? else {
                return Ok(None);
            };
            let words = whole
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .map(Value::bulk)
                .collect();
            return Ok(Some((Value::Array(Some(words)), after)));
        }
    };
    Ok(Some((value, next)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn rejects_malformed_and_oversized_input() {
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
}
