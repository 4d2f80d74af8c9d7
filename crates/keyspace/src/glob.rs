//! Redis's glob patterns (`stringmatchlen`), for `SCAN ... MATCH` and `KEYS`: `*`, `?`,
//! `[abc]`, `[^a-z]`, and `\` to escape, over bytes.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    // Work is bounded: the recursion for `*` is replaced by remembering the last star
    // (the classic backtracking matcher), so a pattern cannot take exponential time.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                star = Some((p, t));
                p += 1;
                continue;
            }
            if let Some(next) = match_one(pattern, p, text[t]) {
                p = next;
                t += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// If the pattern element at `p` matches `byte`, the index of the next element.
fn match_one(pattern: &[u8], p: usize, byte: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == byte).then_some(p + 2),
        b'[' => class(pattern, p + 1, byte),
        literal => (literal == byte).then_some(p + 1),
    }
}

/// A `[...]` class starting after its `[` at `p`: the index after its `]` if `byte` is in it.
fn class(pattern: &[u8], mut p: usize, byte: u8) -> Option<usize> {
    let negated = pattern.get(p) == Some(&b'^');
    if negated {
        p += 1;
    }
    let mut found = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            found |= pattern[p + 1] == byte;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (lo, hi) = (
                pattern[p].min(pattern[p + 2]),
                pattern[p].max(pattern[p + 2]),
            );
            found |= (lo..=hi).contains(&byte);
            p += 3;
        } else {
            found |= pattern[p] == byte;
            p += 1;
        }
    }
    // An unclosed class runs to the end of the pattern, as in Redis.
    let next = (p + 1).min(pattern.len());
    (found != negated).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_as_in_redis() {
        let yes: &[(&[u8], &[u8])] = &[
            (b"*", b""),
            (b"*", b"anything"),
            (b"h?llo", b"hello"),
            (b"h*llo", b"heeeello"),
            (b"h[ae]llo", b"hallo"),
            (b"h[^e]llo", b"hallo"),
            (b"h[a-b]llo", b"hbllo"),
            (b"\\*", b"*"),
            (b"d1:*", b"d1:\x00\xff"),
        ];
        for (p, t) in yes {
            assert!(matches(p, t), "{p:?} {t:?}");
        }
        let no: &[(&[u8], &[u8])] = &[
            (b"h[^e]llo", b"hello"),
            (b"h?llo", b"hllo"),
            (b"a*b", b"ac"),
            (b"\\*", b"x"),
            (b"", b"x"),
        ];
        for (p, t) in no {
            assert!(!matches(p, t), "{p:?} {t:?}");
        }
    }

    #[test]
    fn many_stars_take_linear_time() {
        let pattern = [b"*a".repeat(50), b"b".to_vec()].concat();
        assert!(!matches(&pattern, &b"a".repeat(10_000)));
    }
}
