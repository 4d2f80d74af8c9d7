//! The built-in applications (`wc`, `ii`, `grep`) and the [`Registry`] that turns an
//! [`AppSpec`] into a running application, in the coordinator and in every worker.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::app::{App, AppSpec, MapInput};
use crate::error::{MrError, Result};

/// Calls `f` for every word of `text`: a maximal run of alphabetic characters. ASCII is the
/// common case and is checked byte-wise; other characters are decoded.
pub fn for_each_word<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    let bytes = text.as_bytes();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (alpha, len) = if b < 0x80 {
            (b.is_ascii_alphabetic(), 1)
        } else {
            match text[i..].chars().next() {
                Some(c) => (c.is_alphabetic(), c.len_utf8()),
                None => break,
            }
        };
        match (alpha, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                f(&text[s..i]);
                start = None;
            }
            _ => {}
        }
        i += len;
    }
    if let Some(s) = start {
        f(&text[s..]);
    }
}

fn parse_count(v: &[u8]) -> u64 {
    // Values come from our own map/combine; anything else counts as zero rather than panic.
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Word count: `word<TAB>count`.
pub struct WordCount;

impl App for WordCount {
    fn map(&self, input: &MapInput<'_>, emit: &mut dyn FnMut(&[u8], &[u8])) {
        // Counting inside the map call (in-mapper combining) emits each distinct word once
        // per chunk instead of once per occurrence.
        let text = String::from_utf8_lossy(input.contents);
        // Owned keys, not slices of the chunk: a few thousand distinct words packed in the
        // heap stay in cache, while slices would scatter every key comparison over the
        // whole chunk (tens of MiB).
        let mut counts: HashMap<String, u64> = HashMap::new();
        for_each_word(&text, |w| match counts.get_mut(w) {
            Some(n) => *n += 1,
            None => {
                counts.insert(w.to_owned(), 1);
            }
        });
        for (word, n) in counts {
            emit(word.as_bytes(), n.to_string().as_bytes());
        }
    }

    fn reduce(&self, _key: &[u8], values: &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8> {
        values
            .map(|v| parse_count(&v))
            .sum::<u64>()
            .to_string()
            .into_bytes()
    }

    fn has_combiner(&self) -> bool {
        true
    }
}

/// Inverted index: `word<TAB>N name1,name2,...` with the names of the files containing the
/// word, sorted and without repeats.
pub struct InvertedIndex;

impl App for InvertedIndex {
    fn map(&self, input: &MapInput<'_>, emit: &mut dyn FnMut(&[u8], &[u8])) {
        let text = String::from_utf8_lossy(input.contents);
        let mut words = HashSet::new();
        for_each_word(&text, |w| {
            words.insert(w);
        });
        for w in words {
            emit(w.as_bytes(), input.name.as_bytes());
        }
    }

    fn reduce(&self, _key: &[u8], values: &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8> {
        let names: BTreeSet<Vec<u8>> = values.collect();
        let mut out = format!("{} ", names.len()).into_bytes();
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(n);
        }
        out
    }
}

/// Grep: every line matching a regular expression, keyed by `file:line`.
pub struct Grep {
    re: regex::bytes::Regex,
}

impl Grep {
    pub fn new(pattern: &str) -> Result<Self> {
        let re = regex::bytes::Regex::new(pattern)
            .map_err(|e| MrError::App(format!("bad --pattern {pattern:?}: {e}")))?;
        Ok(Grep { re })
    }
}

impl App for Grep {
    fn map(&self, input: &MapInput<'_>, emit: &mut dyn FnMut(&[u8], &[u8])) {
        let first = input.first_line.unwrap_or(1);
        let body = input.contents.strip_suffix(b"\n").unwrap_or(input.contents);
        if input.contents.is_empty() {
            return;
        }
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            if self.re.is_match(line) {
                let key = format!("{}:{}", input.name, first + i as u64);
                emit(key.as_bytes(), line);
            }
        }
    }

    fn reduce(&self, _key: &[u8], values: &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8> {
        // One line per key, unless the same file was given twice; then the lines are equal.
        values.next().unwrap_or_default()
    }

    fn needs_line_numbers(&self) -> bool {
        true
    }
}

/// Builds an application from its spec.
pub type AppFactory = fn(&AppSpec) -> Result<Arc<dyn App>>;

/// The applications a process knows by name. Workers and the coordinator must agree on it;
/// a program with its own applications adds them with [`Registry::with`].
#[derive(Clone)]
pub struct Registry {
    apps: BTreeMap<String, AppFactory>,
}

impl Registry {
    /// `wc`, `ii` and `grep`.
    pub fn builtin() -> Self {
        Registry {
            apps: BTreeMap::new(),
        }
        .with("wc", |_| Ok(Arc::new(WordCount)))
        .with("ii", |_| Ok(Arc::new(InvertedIndex)))
        .with("grep", |spec| {
            let pattern = spec
                .pattern
                .as_deref()
                .ok_or_else(|| MrError::App("grep needs --pattern".into()))?;
            Ok(Arc::new(Grep::new(pattern)?))
        })
    }

    pub fn with(mut self, name: &str, factory: AppFactory) -> Self {
        self.apps.insert(name.to_string(), factory);
        self
    }

    pub fn build(&self, spec: &AppSpec) -> Result<Arc<dyn App>> {
        let factory = self
            .apps
            .get(&spec.name)
            .ok_or_else(|| MrError::UnknownApp(spec.name.clone()))?;
        factory(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        let mut v = Vec::new();
        for_each_word(s, |w| v.push(w));
        v
    }

    #[test]
    fn words_are_alphabetic_runs() {
        assert_eq!(
            words("And and, x1y  Ünïcødé日本 z"),
            ["And", "and", "x", "y", "Ünïcødé日本", "z"]
        );
        assert_eq!(words(""), Vec::<&str>::new());
        assert_eq!(words("123 !"), Vec::<&str>::new());
        // An invalid byte, decoded lossily, becomes U+FFFD and separates words.
        let lossy = String::from_utf8_lossy(b"ab\xffcd");
        assert_eq!(words(&lossy), ["ab", "cd"]);
    }

    #[test]
    fn registry_builds_builtins_and_rejects_unknown() {
        let r = Registry::builtin();
        assert!(r.build(&AppSpec::new("wc")).is_ok());
        assert!(matches!(
            r.build(&AppSpec::new("nope")),
            Err(MrError::UnknownApp(_))
        ));
        assert!(r.build(&AppSpec::new("grep")).is_err());
        let bad = AppSpec {
            name: "grep".into(),
            pattern: Some("(".into()),
        };
        assert!(matches!(r.build(&bad), Err(MrError::App(_))));
    }
}
