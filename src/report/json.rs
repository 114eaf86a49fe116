//! `run.json`: the report contract (ARCHITECTURE.md), validated by `schemas/run.schema.json`.

use crate::metrics::compare::RunData;

use super::{ReportError, Reporter};

/// Pretty-printed JSON of the whole summary.
#[derive(Debug, Clone, Copy)]
pub struct JsonReport;

impl Reporter for JsonReport {
    fn file_name(&self) -> &'static str {
        "run.json"
    }

    fn render(&self, run: RunData<'_>) -> Result<Vec<u8>, ReportError> {
        let mut v = serde_json::to_vec_pretty(run.summary).map_err(|e| ReportError::Encode {
            format: "json",
            message: e.to_string(),
        })?;
        v.push(b'\n');
        Ok(v)
    }
}
