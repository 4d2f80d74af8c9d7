//! A single read/write register holding a string, initially empty.
//!
//! In the JSON-lines format its operations are `"read"` (with `output`) and `"write"` (with
//! `value`); `key` is ignored, since there is only one register.

use crate::model::Model;

/// A request to the register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    Read,
    Write(String),
}

impl RegisterInput {
    pub fn write(value: impl Into<String>) -> Self {
        RegisterInput::Write(value.into())
    }
}

/// The sequential register. Its output is the value read; a write's output is ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = String;
    type Input = RegisterInput;
    type Output = String;

    fn init(&self) -> String {
        String::new()
    }

    fn step(
        &self,
        state: &String,
        input: &RegisterInput,
        output: Option<&String>,
    ) -> Option<String> {
        match input {
            RegisterInput::Read => match output {
                Some(read) if read != state => None,
                _ => Some(state.clone()),
            },
            RegisterInput::Write(value) => Some(value.clone()),
        }
    }

    fn is_read_only(&self, input: &RegisterInput) -> bool {
        *input == RegisterInput::Read
    }

    fn describe_operation(&self, input: &RegisterInput, output: Option<&String>) -> String {
        match (input, output) {
            (RegisterInput::Read, Some(read)) => format!("read → {read:?}"),
            (RegisterInput::Read, None) => "read → ?".to_string(),
            (RegisterInput::Write(value), _) => format!("write({value:?})"),
        }
    }

    fn describe_state(&self, state: &String) -> String {
        format!("{state:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_the_last_write() {
        let m = RegisterModel;
        let s = m.step(&m.init(), &RegisterInput::write("a"), None).unwrap();
        assert_eq!(
            m.step(&s, &RegisterInput::Read, Some(&"a".to_string())),
            Some(s.clone())
        );
        assert_eq!(m.step(&s, &RegisterInput::Read, Some(&String::new())), None);
    }
}
