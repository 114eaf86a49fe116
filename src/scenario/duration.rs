//! Durations in scenario files: strings with a unit (`30s`, `250ms`, `5m`, `1h 30m`).
//!
//! Input: a YAML scalar. Output: a [`Duration`], or a [`DurationError`] naming the bad value.
//! A bare number (`30`) has no unit and a negative value (`-5s`) is no length of time: both are
//! errors.
//! Serialises back to the shortest exact form (`90s`, `250ms`, `5m`).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Why a duration string was refused. The message names the value and shows a valid form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Nothing but whitespace.
    #[error("a duration is empty; write it like 30s or 5m")]
    Empty,
    /// A leading minus sign: no length of time.
    #[error("'{text}' is negative; a duration is a length of time like 30s or 250ms")]
    Negative {
        /// The value as written.
        text: String,
    },
    /// A bare number, without a unit.
    #[error("'{text}' has no unit; write it like {number}s or 5m")]
    NoUnit {
        /// The value as written.
        text: String,
        /// The number, trimmed (shown with an `s` as the suggestion).
        number: String,
    },
    /// Not humantime's syntax (an unknown unit, a stray character).
    #[error("'{text}' is not a duration ({source}); write it like 30s, 250ms, 5m or 1h 30m")]
    Invalid {
        /// The value as written.
        text: String,
        /// humantime's reason.
        #[source]
        source: humantime::DurationError,
    },
}

/// Parses `30s`, `250ms`, `5m`, `1h 30m` (humantime syntax).
///
/// # Errors
/// [`DurationError`] naming the value: empty, negative, unit missing, or not a duration.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    if t.starts_with('-') {
        return Err(DurationError::Negative {
            text: text.to_owned(),
        });
    }
    if t.parse::<f64>().is_ok() {
        return Err(DurationError::NoUnit {
            text: text.to_owned(),
            number: t.to_owned(),
        });
    }
    humantime::parse_duration(t).map_err(|source| DurationError::Invalid {
        text: text.to_owned(),
        source,
    })
}

/// Formats a duration in the largest unit that keeps it exact: `5m`, `90s`, `250ms`, `15us`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    const UNITS: [(u128, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if nanos == 0 {
        return "0s".into();
    }
    for (size, unit) in UNITS {
        if nanos % size == 0 {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration like 30s, 250ms or 5m")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "'{v}' has no unit; write it like {v}s or 5m"
        )))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        if v < 0 {
            Err(E::custom(format!(
                "'{v}' is negative and has no unit; a duration is a length of time like 30s"
            )))
        } else {
            self.visit_u64(v.unsigned_abs())
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        if v < 0.0 {
            Err(E::custom(format!(
                "'{v}' is negative and has no unit; a duration is a length of time like 30s"
            )))
        } else {
            Err(E::custom(format!(
                "'{v}' has no unit; write it like 30s, 250ms or 5m"
            )))
        }
    }
}

/// `#[serde(with = "duration")]` for `Duration` fields.
///
/// # Errors
/// Never fails for the built-in serializers.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// `#[serde(with = "duration")]` for `Duration` fields.
///
/// # Errors
/// A message naming the bad value.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// The JSON Schema of a duration string.
pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*[a-zA-Z]+\\s*)+$",
        "description": "A length of time with a unit: 250ms, 30s, 5m, 1h 30m.",
        "examples": ["30s", "250ms", "5m"]
    })
}

/// `#[serde(with = "duration::opt")]` for `Option<Duration>` fields.
pub mod opt {
    use super::*;

    /// Serialises `Some` as a duration string (pair with `skip_serializing_if`).
    ///
    /// # Errors
    /// Never fails for the built-in serializers.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format(*d)),
            None => s.serialize_none(),
        }
    }

    struct OptVisitor;

    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration like 30s, 250ms or 5m")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::deserialize(d).map(Some)
        }
    }

    /// Reads an optional duration string.
    ///
    /// # Errors
    /// A message naming the bad value.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_option(OptVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_bare_or_negative() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        let bare = parse("30").unwrap_err();
        assert!(matches!(bare, DurationError::NoUnit { .. }), "{bare:?}");
        assert_eq!(
            bare.to_string(),
            "'30' has no unit; write it like 30s or 5m"
        );
        let negative = parse("-5s").unwrap_err();
        assert!(
            matches!(negative, DurationError::Negative { .. }),
            "{negative:?}"
        );
        assert!(negative.to_string().contains("negative"));
        let word = parse("soon").unwrap_err();
        assert!(matches!(word, DurationError::Invalid { .. }), "{word:?}");
        assert!(word.to_string().contains("'soon'"), "{word}");
        assert_eq!(parse(" "), Err(DurationError::Empty));
    }

    #[test]
    fn formats_exactly_and_round_trips() {
        for d in [
            0,
            1,
            999,
            1_000,
            250_000_000,
            30_000_000_000,
            300_000_000_000,
        ] {
            let d = Duration::from_nanos(d);
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_secs(300)), "5m");
    }
}
