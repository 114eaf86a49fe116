//! [`LoadContext`]: how a run loaded the cells it measured, the part of a cell's identity that
//! its model, browser and backend do not say. The browsers' wasm runs at 3.5-3.8x native on an
//! idle machine and up to 7.9x under load (ARCHITECTURE.md); a user's history, which pooled the
//! two, called bert-base on Chromium's wasm "+160%, REGRESSION" between a matrix run and a
//! `run --concurrent-models` run (issue 25).
//!
//! Inputs: set once per run from its scenario (`app`), carried in `run.json` as `load`. Read
//! by the history and `compare` through [`super::CellKey`]. Imports only std and serde.
//!
//! A run that does not say (a `run.json` or a history row written before this field existed)
//! has the context [`LoadKind::Unknown`], which is never comparable, not even with another
//! unknown: two unknown runs may be one isolated and one under load, which is the mistake this
//! type exists to prevent. Treating two unknowns as alike was rejected for that reason; it
//! would also have kept the old, mixed series of a history alive in `--fail-on-regression`.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// Which kind of load a run put on its cells.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LoadKind {
    /// Not recorded (a run from before load contexts were): comparable with nothing.
    #[default]
    Unknown,
    /// A matrix run: one cell at a time, nothing else computing in its browser.
    Isolated,
    /// A routed run: every model at once over the pool, `clients` requests in flight.
    Routed,
    /// A sharded run: one model split across browsers as a pipeline.
    Sharded,
    /// Faults were injected during the run (a routed or sharded run under `stress` or a
    /// scenario with `faults`): recoveries, standbys and retries share the machine.
    UnderFaults,
    /// A generation (`generate`): a language model writing one token at a time, its cache
    /// kept in the pages; each cell is one shard's decode step.
    Generation,
}

impl LoadKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [LoadKind; 6] = [
        Self::Isolated,
        Self::Routed,
        Self::Sharded,
        Self::UnderFaults,
        Self::Generation,
        Self::Unknown,
    ];

    /// `isolated`, `routed`, `sharded`, `under_faults`, `generation` or `unknown`, as stored and
    /// printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Isolated => "isolated",
            Self::Routed => "routed",
            Self::Sharded => "sharded",
            Self::UnderFaults => "under_faults",
            Self::Generation => "generation",
        }
    }

    /// The kind named `s` (as [`Self::as_str`] writes it), if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How a run loaded its cells: the kind, the requests it kept in flight and, in an open loop,
/// the arrival rate. Two cells are measured alike only when their contexts are equal and known
/// ([`Self::is_known`]).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct LoadContext {
    /// The kind of load.
    pub context: LoadKind,
    /// Closed loop: concurrent clients; open loop: most requests in flight (0 when unknown).
    #[serde(default)]
    pub clients: u32,
    /// Open loop only: requests started per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
}

impl LoadContext {
    /// The context of a run that did not record one.
    pub const UNKNOWN: LoadContext = LoadContext {
        context: LoadKind::Unknown,
        clients: 0,
        rate_per_s: None,
    };

    /// A closed loop of `clients` under `context`.
    pub fn closed(context: LoadKind, clients: u32) -> Self {
        Self {
            context,
            clients,
            rate_per_s: None,
        }
    }

    /// Whether the run recorded its context. An unknown context is comparable with nothing.
    pub fn is_known(&self) -> bool {
        self.context != LoadKind::Unknown
    }

    /// Whether cells measured under `self` and `other` may be pooled or compared: the same
    /// known context.
    pub fn comparable(&self, other: &Self) -> bool {
        self.is_known() && self == other
    }

    fn rate_bits(&self) -> Option<u64> {
        self.rate_per_s.map(f64::to_bits)
    }
}

// Equality, order and hash over the rate's bits, so a context can be part of a map key (a rate
// is a number the user gave, never computed, so equal rates have equal bits).
impl PartialEq for LoadContext {
    fn eq(&self, other: &Self) -> bool {
        (self.context, self.clients, self.rate_bits())
            == (other.context, other.clients, other.rate_bits())
    }
}

impl Eq for LoadContext {}

impl PartialOrd for LoadContext {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LoadContext {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.context, self.clients)
            .cmp(&(other.context, other.clients))
            .then_with(|| match (self.rate_per_s, other.rate_per_s) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            })
    }
}

impl Hash for LoadContext {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.context, self.clients, self.rate_bits()).hash(state);
    }
}

/// `isolated`, `isolated x2`, `routed x4`, `routed 5/s x4`, `under_faults x4`, `unknown`: the
/// kind, the clients when they are not the matrix's one, the arrival rate of an open loop.
impl std::fmt::Display for LoadContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.context.as_str())?;
        if !self.is_known() {
            return Ok(());
        }
        if let Some(rate) = self.rate_per_s {
            write!(f, " {rate}/s")?;
        }
        if self.clients != 1 || self.context != LoadKind::Isolated {
            write!(f, " x{}", self.clients)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_comparable_with_nothing_not_even_unknown() {
        let isolated = LoadContext::closed(LoadKind::Isolated, 1);
        assert!(isolated.comparable(&isolated));
        assert!(!LoadContext::UNKNOWN.comparable(&LoadContext::UNKNOWN));
        assert!(!LoadContext::UNKNOWN.comparable(&isolated));
        assert!(!isolated.comparable(&LoadContext::UNKNOWN));
    }

    #[test]
    fn clients_and_rates_are_part_of_the_context() {
        let four = LoadContext::closed(LoadKind::Routed, 4);
        assert!(!four.comparable(&LoadContext::closed(LoadKind::Routed, 2)));
        assert!(!four.comparable(&LoadContext::closed(LoadKind::UnderFaults, 4)));
        let open = LoadContext {
            rate_per_s: Some(5.0),
            ..four
        };
        assert!(!four.comparable(&open));
        assert!(open.comparable(&open));
        assert_eq!(open.to_string(), "routed 5/s x4");
        assert_eq!(four.to_string(), "routed x4");
        assert_eq!(
            LoadContext::closed(LoadKind::Isolated, 1).to_string(),
            "isolated"
        );
        assert_eq!(LoadContext::UNKNOWN.to_string(), "unknown");
    }

    #[test]
    fn contexts_and_kinds_read_back() {
        let c: LoadContext =
            serde_json::from_str(r#"{"context": "routed", "clients": 4}"#).unwrap();
        assert_eq!(c, LoadContext::closed(LoadKind::Routed, 4));
        for k in LoadKind::ALL {
            assert_eq!(LoadKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(LoadKind::parse("loaded"), None);
    }
}
