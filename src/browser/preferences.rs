//! [`Preferences`]: which browser kind each model type prefers (audio -> firefox, vision ->
//! chromium, text_embedding -> chromium-shell), and how a preferred kind fits the kinds a pool can
//! launch (an absent Chromium-family kind falls back to a Chromium-family sibling).
//!
//! Plain data and pure lookups, shared by the router (`pool::router`, which adds the reasons)
//! and the flag compiler (`scenario::flags`), so neither keeps a copy of the table. Imports only
//! the browser and model kinds.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::models::Task;

use super::BrowserKind;

/// Browser preference per model type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preferences(pub BTreeMap<Task, BrowserKind>);

impl Default for Preferences {
    /// audio -> firefox, vision -> chromium, text_embedding -> chromium-shell (its WebNN ran
    /// all-MiniLM-L6-v2 2.1x faster than wasm in Chromium here), else a Chromium sibling.
    fn default() -> Self {
        Self(BTreeMap::from([
            (Task::Audio, BrowserKind::Firefox),
            (Task::Vision, BrowserKind::Chromium),
            (Task::TextEmbedding, BrowserKind::ChromiumShell),
        ]))
    }
}

/// How a wanted browser kind fits the kinds a pool can launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The kind itself is launchable.
    Exact(BrowserKind),
    /// It is not, but this Chromium-family sibling is.
    Sibling(BrowserKind),
    /// Neither it nor a sibling is launchable.
    Absent,
}

/// How `kind` fits `launchable`.
pub fn fit(kind: BrowserKind, launchable: &[BrowserKind]) -> Fit {
    if launchable.contains(&kind) {
        return Fit::Exact(kind);
    }
    let sibling = kind
        .is_chromium_family()
        .then(|| launchable.iter().copied().find(|k| k.is_chromium_family()))
        .flatten();
    sibling.map_or(Fit::Absent, Fit::Sibling)
}

impl Preferences {
    /// The launchable browser kind `task` models prefer, or `None` when no preference applies.
    pub fn browser_for(&self, task: Task, launchable: &[BrowserKind]) -> Option<BrowserKind> {
        match fit(*self.0.get(&task)?, launchable) {
            Fit::Exact(k) | Fit::Sibling(k) => Some(k),
            Fit::Absent => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BrowserKind::{Chromium, Edge, Firefox};

    #[test]
    fn an_absent_edge_falls_back_to_chromium_but_an_absent_firefox_to_nothing() {
        let p = Preferences::default();
        assert_eq!(
            p.browser_for(Task::TextEmbedding, &[Firefox, Chromium]),
            Some(Chromium)
        );
        assert_eq!(p.browser_for(Task::Audio, &[Chromium]), None);
        assert_eq!(
            p.browser_for(Task::Audio, &[Chromium, Firefox]),
            Some(Firefox)
        );
        assert_eq!(p.browser_for(Task::TextGeneration, &[Chromium]), None);
        assert_eq!(fit(Edge, &[Edge]), Fit::Exact(Edge));
    }
}
