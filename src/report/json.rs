//! `run.json`: the report contract (ARCHITECTURE.md), validated by `schemas/run.schema.json`.

use crate::metrics::RunSummary;

use super::{ReportError, Reporter};

/// Pretty-printed JSON of the whole summary.
#[derive(Debug, Clone, Copy)]
pub struct JsonReport;

impl Reporter for JsonReport {
    fn file_name(&self) -> &'static str {
        "run.json"
    }

    fn render(&self, summary: &RunSummary) -> Result<Vec<u8>, ReportError> {
        let mut v = serde_json::to_vec_pretty(summary).map_err(|e| ReportError::Encode {
            format: "json",
            message: e.to_string(),
        })?;
        v.push(b'\n');
        Ok(v)
    }
}
