//! [`WebnnUse`]: what a webnn cell proves about WebNN doing its work - onnxruntime's logged
//! partitioning and the page's own count of WebNN graphs built and dispatched - and the verdict
//! that fails a cell in which WebNN took nothing or did not say.

use serde::{Deserialize, Serialize};

/// How a webnn cell ran: its WebNN context's device, how the WebNN execution provider took the
/// graph (what it did not take runs on onnxruntime-web's CPU EP, in wasm), and what the WebNN
/// API itself saw: graphs built at session creation and dispatched by each run. A webnn cell in
/// which WebNN took nothing, or did not say, fails (`failure`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebnnUse {
    /// `cpu`, `gpu` or `npu`: the `MLContext` device asked for.
    pub device_type: String,
    /// The partitioning, as onnxruntime's log and the page's WebNN witness gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<WebnnGraph>,
    /// Successful runs of the cell on WebNN (first, warm-up and measured).
    #[serde(default)]
    pub runs: u64,
    /// Of those, the runs that dispatched at least one WebNN graph (counted in the page by
    /// wrapping `MLContext.dispatch`).
    #[serde(default)]
    pub runs_dispatched: u64,
    /// Why this cell does not count as a WebNN cell, when it does not: WebNN took no node, or
    /// its coverage is unknown, or a run dispatched no WebNN graph. Fails the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl WebnnUse {
    /// Why the cell does not count as WebNN, from what was seen; `None` when it does.
    pub fn judge(&self) -> Option<String> {
        let Some(g) = &self.graph else {
            return Some("the page did not say how WebNN took the graph".into());
        };
        match (g.supported, g.nodes, g.graphs_built) {
            (None, _, _) | (_, None, _) => Some(
                "WebNN coverage unknown: onnxruntime's log did not say how the WebNN EP \
                 partitioned the graph"
                    .into(),
            ),
            (_, _, None) => {
                Some("WebNN coverage unproven: this page cannot watch MLGraphBuilder.build".into())
            }
            (Some(0), Some(n), _) => Some(format!(
                "WebNN took none of the graph's {n} nodes: every node ran on wasm"
            )),
            (_, _, Some(0)) => {
                Some("WebNN built no graph at session creation: every node ran on wasm".into())
            }
            _ if self.runs_dispatched < self.runs => Some(format!(
                "{} of {} runs dispatched no WebNN graph",
                self.runs - self.runs_dispatched,
                self.runs
            )),
            _ => None,
        }
    }
}

/// How the WebNN execution provider partitioned a graph: onnxruntime's `GetCapability` log
/// (`None` where it did not say) and the page's count of `MLGraphBuilder.build` calls during
/// the session's creation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebnnGraph {
    /// Partitions WebNN took.
    pub partitions: Option<u64>,
    /// Nodes in the graph (after onnxruntime's graph optimizations).
    pub nodes: Option<u64>,
    /// Nodes WebNN took.
    pub supported: Option<u64>,
    /// Operator types left to the CPU EP, with how many nodes of each.
    #[serde(default)]
    pub unsupported_ops: Vec<OpCount>,
    /// `MLGraphBuilder.build` calls while the session was created (`None`: the page could not
    /// watch them).
    #[serde(default)]
    pub graphs_built: Option<u64>,
}

/// An operator type and a node count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpCount {
    /// ONNX operator type, e.g. `Erf`.
    pub op: String,
    /// Nodes of it.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webnn_cell_counts_only_when_webnn_took_nodes_and_every_run_used_it() {
        let graph = |supported: Option<u64>, built: Option<u64>| WebnnGraph {
            partitions: Some(1),
            nodes: Some(89),
            supported,
            unsupported_ops: Vec::new(),
            graphs_built: built,
        };
        let cell = |g: Option<WebnnGraph>, runs: u64, dispatched: u64| WebnnUse {
            device_type: "cpu".into(),
            graph: g,
            runs,
            runs_dispatched: dispatched,
            failure: None,
        };
        // Partial coverage, every run dispatching: a WebNN cell.
        assert_eq!(cell(Some(graph(Some(88), Some(1))), 4, 4).judge(), None);
        let fails = |w: WebnnUse, why: &str| {
            let got = w.judge().unwrap_or_default();
            assert!(got.contains(why), "{got}");
        };
        fails(
            cell(Some(graph(Some(0), Some(0))), 4, 0),
            "none of the graph's 89",
        );
        fails(cell(Some(graph(None, Some(1))), 4, 4), "coverage unknown");
        fails(cell(Some(graph(Some(88), None)), 4, 4), "unproven");
        fails(cell(Some(graph(Some(88), Some(0))), 4, 4), "built no graph");
        fails(cell(Some(graph(Some(88), Some(1))), 4, 3), "1 of 4 runs");
        fails(cell(None, 4, 4), "did not say");
    }
}
