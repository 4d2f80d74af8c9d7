//! Numbers in string values and arguments, read and written exactly as Redis does, so
//! `INCR`, `INCRBYFLOAT` and the integer arguments accept and refuse the same texts.

/// The integer `text` spells, by Redis's rules (`string2ll`): an optional `-`, then digits
/// with no leading zero ("0" itself aside), no sign `+`, no spaces, within `i64`.
pub fn integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut magnitude: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        // i64::MIN's magnitude is one more than i64::MAX.
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// The float `text` spells (Redis's `strtold` rules as far as a 64-bit float goes): no
/// leading space, the whole text used, not NaN.
pub fn float(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    if text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| !v.is_nan())
}

/// `value` as `INCRBYFLOAT` writes it: plain decimal, no exponent, no trailing zeros.
pub fn format_float(value: f64) -> String {
    // Rust's shortest round-trip form never uses an exponent for `{}`.
    let text = format!("{value}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_read_as_redis_reads_them() {
        assert_eq!(integer(b"0"), Some(0));
        assert_eq!(integer(b"-7"), Some(-7));
        assert_eq!(integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"007",
            b"+5",
            b" 1",
            b"1 ",
            b"3.5",
            b"9223372036854775808",
            b"-9223372036854775809",
        ] {
            assert_eq!(integer(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats_are_read_and_written_in_plain_decimal() {
        assert_eq!(float(b"1e3"), Some(1000.0));
        assert_eq!(float(b" 1"), None);
        assert_eq!(float(b"nan"), None);
        assert_eq!(float(b"abc"), None);
        assert_eq!(format_float(4.5), "4.5");
        assert_eq!(format_float(1004.0), "1004");
        assert_eq!(format_float(1e20), "100000000000000000000");
        assert_eq!(format_float(1e-5), "0.00001");
    }
}
