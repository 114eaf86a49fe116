//! The error type of the scenario deserializer, with messages in the format's own words.
//!
//! Input: serde's error constructors. Output: [`DeError`], whose messages name the bad value and
//! what was expected without serde jargon (`unknown key 'x'; expected one of: ...`, `expected a
//! whole number (0 or more), found 'six'`), placed later at a key path and position.

use std::fmt;

use serde::de::{self, Unexpected};

use super::yaml::Mark;

/// A deserialization failure, placed at the innermost node that reported it.
#[derive(Debug, Clone)]
pub(crate) struct DeError {
    pub message: String,
    pub at: Option<(String, Mark)>,
}

impl DeError {
    pub(crate) fn place(mut self, path: &str, mark: Mark) -> Self {
        if self.at.is_none() {
            self.at = Some((path.to_owned(), mark));
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

fn plain_expected(exp: &dyn de::Expected) -> String {
    let e = exp.to_string();
    match e.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list".into(),
        s if s.starts_with("struct ") || s == "a map" => "a mapping (key: value)".into(),
        _ => e,
    }
}

pub(crate) fn plain_unexpected(u: &Unexpected<'_>) -> String {
    match u {
        Unexpected::Str(s) => format!("'{s}'"),
        Unexpected::Unsigned(n) => format!("'{n}'"),
        Unexpected::Signed(n) => format!("'{n}'"),
        Unexpected::Float(n) => format!("'{n}'"),
        Unexpected::Bool(b) => format!("'{b}'"),
        Unexpected::Unit => "nothing (an empty value)".into(),
        Unexpected::Map => "a mapping".into(),
        Unexpected::Seq => "a list".into(),
        other => other.to_string(),
    }
}

pub(crate) fn one_of(expected: &[&str]) -> String {
    if expected.is_empty() {
        "no keys are allowed here".into()
    } else {
        format!("expected one of: {}", expected.join(", "))
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            at: None,
        }
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!(
            "expected {}, found {}",
            plain_expected(exp),
            plain_unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!(
            "{} is out of range; expected {}",
            plain_unexpected(&unexp),
            plain_expected(exp)
        ))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Self::custom(format!("expected {exp}, found {len} items"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format!("unknown value '{variant}'; {}", one_of(expected)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format!("unknown key '{field}'; {}", one_of(expected)))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("missing key '{field}'"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format!("key '{field}' is given twice"))
    }
}
