//! The key/value store model: `get`, `put` and `append` on string keys and values, where a
//! missing key reads as the empty string (as in the course's KV services).
//!
//! Operations on different keys never interact, so the model partitions by key and a state is
//! just the value of one key. The value is shared (`Arc<str>`) because the search copies states
//! into its cache at every step, and most steps (every `get`) leave them unchanged.

use std::sync::Arc;

use crate::model::Model;

/// A request to the KV store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    Get { key: String },
    Put { key: String, value: String },
    Append { key: String, value: String },
}

impl KvInput {
    pub fn get(key: impl Into<String>) -> Self {
        KvInput::Get { key: key.into() }
    }

    pub fn put(key: impl Into<String>, value: impl Into<String>) -> Self {
        KvInput::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn append(key: impl Into<String>, value: impl Into<String>) -> Self {
        KvInput::Append {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn key(&self) -> &str {
        match self {
            KvInput::Get { key } | KvInput::Put { key, .. } | KvInput::Append { key, .. } => key,
        }
    }
}

/// What a KV operation returned: the value read by a `get`. Writes return nothing, so their
/// output is ignored (use an empty string).
pub type KvOutput = String;

/// The sequential KV store.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl Model for KvModel {
    type State = Arc<str>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Arc<str> {
        Arc::from("")
    }

    fn step(
        &self,
        state: &Arc<str>,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Arc<str>> {
        match input {
            KvInput::Get { .. } => match output {
                Some(read) if **read != **state => None,
                _ => Some(Arc::clone(state)),
            },
            KvInput::Put { value, .. } => Some(Arc::from(value.as_str())),
            KvInput::Append { value, .. } => Some(Arc::from(format!("{state}{value}"))),
        }
    }

    fn partition(&self, input: &KvInput) -> String {
        input.key().to_string()
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Get { .. })
    }

    fn describe_operation(&self, input: &KvInput, output: Option<&KvOutput>) -> String {
        match (input, output) {
            (KvInput::Get { key }, Some(read)) => format!("get({key:?}) → {read:?}"),
            (KvInput::Get { key }, None) => format!("get({key:?}) → ?"),
            (KvInput::Put { key, value }, _) => format!("put({key:?}, {value:?})"),
            (KvInput::Append { key, value }, _) => format!("append({key:?}, {value:?})"),
        }
    }

    fn describe_state(&self, state: &Arc<str>) -> String {
        format!("{state:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_follows_the_sequential_store() {
        let m = KvModel;
        let s = m.init();
        assert_eq!(
            m.step(&s, &KvInput::get("k"), Some(&String::new())),
            Some(s.clone())
        );
        assert_eq!(m.step(&s, &KvInput::get("k"), Some(&"x".to_string())), None);
        let s = m.step(&s, &KvInput::put("k", "a"), None).unwrap();
        let s = m
            .step(&s, &KvInput::append("k", "b"), Some(&String::new()))
            .unwrap();
        assert_eq!(&*s, "ab");
        assert_eq!(m.step(&s, &KvInput::get("k"), None), Some(s.clone()));
        assert_eq!(m.partition(&KvInput::append("k2", "b")), "k2");
    }
}
