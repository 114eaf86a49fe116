//! The scenario's fault types: what a fault does (`FaultChoice`: one [`Kind`], or `random`),
//! which worker it hits (`FaultTarget`) and when (`Fault`). Plain data with serde and JSON Schema
//! derives, as in `types.rs`, which re-exports them.
//!
//! The kinds themselves are the fault layer's [`Kind`]; `random` is not a kind but the choice
//! of one when the fault fires, so it lives here beside them. The YAML spells both the same
//! way (`kind: hang`, `kind: random` with `kinds: [...]`), so `FaultChoice` reads and writes
//! one name, and `kinds` takes only kinds.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, EnumAccess, VariantAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::duration;
use crate::browser::BrowserKind;
use crate::faults::Kind;

/// What a fault does: one kind, or one drawn when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultChoice {
    /// One of the worker failures (not `page_error` or `corrupt_answer`), chosen with the
    /// fault's seed among `kinds` (default: every kind that fits the target).
    Random,
    /// Always this kind.
    One(Kind),
}

/// Every name `kind:` takes, in the order errors list them: the kinds, then `random`.
const ALL_NAMES: [&str; Kind::ALL.len() + 1] = {
    let mut names = ["random"; Kind::ALL.len() + 1];
    let mut i = 0;
    while i < Kind::ALL.len() {
        names[i] = Kind::ALL[i].as_str();
        i += 1;
    }
    names
};

/// The message for `random` inside `kinds`.
const RANDOM_IN_KINDS: &str = "'random' cannot be one of the kinds random draws from";

impl FaultChoice {
    /// Every name a fault's `kind` takes: the kinds in declaration order, then `random`.
    pub const NAMES: &'static [&'static str] = &ALL_NAMES;

    /// The snake_case name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::One(kind) => kind.as_str(),
        }
    }

    /// The choice named `name` (a kind's snake_case name, or `random`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "random" => Some(Self::Random),
            _ => Kind::from_name(name).map(Self::One),
        }
    }

    /// Whether the fault lasts a while (`duration` applies): a kind that does, or `random`,
    /// which may draw one.
    pub fn has_duration(self) -> bool {
        match self {
            Self::Random => true,
            Self::One(kind) => kind.has_duration(),
        }
    }
}

impl From<Kind> for FaultChoice {
    fn from(kind: Kind) -> Self {
        Self::One(kind)
    }
}

impl fmt::Display for FaultChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FaultChoice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Read as serde reads a unit-only enum, so a bad name fails as before `random` was its own
/// type: `unknown value 'x'; expected one of: kill_browser, ..., random`, at the value.
impl<'de> Deserialize<'de> for FaultChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_enum("FaultKind", FaultChoice::NAMES, ChoiceVisitor)
    }
}

struct ChoiceVisitor;

impl<'de> Visitor<'de> for ChoiceVisitor {
    type Value = FaultChoice;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a fault kind or random")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<FaultChoice, A::Error> {
        let (Name(choice), variant) = data.variant()?;
        variant.unit_variant()?;
        Ok(choice)
    }
}

/// One name, read as serde reads an enum's variant identifier.
struct Name(FaultChoice);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = Name;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fault kind or random")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Name, E> {
                FaultChoice::from_name(s)
                    .map(Name)
                    .ok_or_else(|| E::unknown_variant(s, FaultChoice::NAMES))
            }
        }
        deserializer.deserialize_identifier(NameVisitor)
    }
}

/// The schema is the kinds' list plus `random`, named `FaultKind` as the values of a fault's
/// `kind:` key (the checked-in schema has always called it that).
impl JsonSchema for FaultChoice {
    fn schema_name() -> Cow<'static, str> {
        "FaultKind".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = Kind::json_schema(generator);
        if let Some(serde_json::Value::Array(names)) = schema.get_mut("oneOf") {
            names.push(serde_json::json!({
                "type": "string",
                "const": "random",
                "description": "One of the worker failures above (not `page_error` or \
                                `corrupt_answer`), chosen with\nthe fault's seed.",
            }));
        }
        schema.insert("description".into(), "What a fault does.".into());
        schema
    }
}

/// `kinds`: the kinds a `random` fault draws from. Each item reads as a `kind:` value does (a
/// bad name lists the same names), and `random` there is refused at the item.
mod kinds {
    use super::*;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Kind>, D::Error> {
        Vec::<Drawn>::deserialize(d).map(|items| items.into_iter().map(|Drawn(k)| k).collect())
    }

    struct Drawn(Kind);

    impl<'de> Deserialize<'de> for Drawn {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_enum("FaultKind", FaultChoice::NAMES, DrawnVisitor)
        }
    }

    struct DrawnVisitor;

    impl<'de> Visitor<'de> for DrawnVisitor {
        type Value = Drawn;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a fault kind")
        }

        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Drawn, A::Error> {
            let (Name(choice), variant) = data.variant()?;
            variant.unit_variant()?;
            match choice {
                FaultChoice::One(kind) => Ok(Drawn(kind)),
                FaultChoice::Random => Err(de::Error::custom(RANDOM_IN_KINDS)),
            }
        }
    }
}

/// Which worker a fault hits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// A worker chosen with the fault's seed (default).
    #[default]
    Random,
    /// A worker of this browser kind: `{browser: firefox}`.
    Browser(BrowserKind),
    /// One worker by id, `<browser>#<n>` with n from 1: `{worker: "chromium#1"}`.
    Worker(String),
    /// In a sharded run, the worker hosting this shard (from 0): `{shard: 1}`.
    Shard(u32),
    /// The worker hosting this model: `{model: whisper}`.
    Model(String),
}

/// One fault and its schedule. Give exactly one of `at`, `every` and `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What to do.
    pub kind: FaultChoice,
    /// Once, this long after the measured part starts.
    #[serde(
        default,
        with = "duration::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration::schema")]
    pub at: Option<Duration>,
    /// Periodically, first after one period.
    #[serde(
        default,
        with = "duration::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration::schema")]
    pub every: Option<Duration>,
    /// At random (Poisson) times, this many per minute on average, drawn with `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// At most this many occurrences (for `every` and `rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Seed for random times, kinds and targets (default: the scenario seed plus the index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Which worker (default `random`).
    #[serde(default)]
    pub target: FaultTarget,
    /// How long a hang, disconnect or slowdown lasts (default 5s).
    #[serde(
        default,
        with = "duration::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration::schema")]
    pub duration: Option<Duration>,
    /// `slow` only: latency added to each request (default 250ms).
    #[serde(
        default,
        with = "duration::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration::schema")]
    pub delay: Option<Duration>,
    /// `random` only: the kinds to draw from (default: every kind that fits the target).
    // The schema lists `random` here too, as it always has: the loader reads it and says why
    // it cannot be drawn (at the item, with its line and column).
    #[serde(
        default,
        deserialize_with = "kinds::deserialize",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<FaultChoice>")]
    pub kinds: Vec<Kind>,
}

impl Fault {
    /// A one-shot fault at `at` on a random worker.
    pub fn at(kind: impl Into<FaultChoice>, at: Duration) -> Self {
        Fault {
            kind: kind.into(),
            at: Some(at),
            every: None,
            rate: None,
            count: None,
            seed: None,
            target: FaultTarget::Random,
            duration: None,
            delay: None,
            kinds: Vec::new(),
        }
    }
}
