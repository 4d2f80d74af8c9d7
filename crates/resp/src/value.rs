//! RESP2 values and their encoding.

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK\r\n`
    Simple(String),
    /// `-ERR message\r\n`
    Error(String),
    /// `:42\r\n`
    Integer(i64),
    /// `$3\r\nfoo\r\n`, or the nil bulk `$-1\r\n` as `None`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`, or the nil array `*-1\r\n` as `None`.
    Array(Option<Vec<Value>>),
}

impl Value {
    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Self {
        Value::Bulk(Some(bytes.into()))
    }
}

/// Appends the encoding of `value` to `out`. Simple strings and errors must not contain CR or
/// LF; they are replaced by spaces so the output is always well-formed.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    let line = |out: &mut Vec<u8>, prefix: u8, text: &str| {
        out.push(prefix);
        out.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    };
    match value {
        Value::Simple(text) => line(out, b'+', text),
        Value::Error(text) => line(out, b'-', text),
        Value::Integer(n) => line(out, b':', &n.to_string()),
        Value::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
        Value::Bulk(Some(bytes)) => {
            line(out, b'$', &bytes.len().to_string());
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"\r\n");
        }
        Value::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Value::Array(Some(items)) => {
            line(out, b'*', &items.len().to_string());
            for item in items {
                encode(item, out);
            }
        }
    }
}
