//! `samples.csv`: one row per request, columns [`Sample::CSV_COLUMNS`] in that order (the one
//! place they are listed; a test checks the serde field order against it).

use crate::metrics::compare::RunData;
use crate::metrics::Sample;

use super::{ReportError, Reporter};

/// Every request of the run, in issue order.
#[derive(Debug, Clone, Copy)]
pub struct CsvReport;

impl Reporter for CsvReport {
    fn file_name(&self) -> &'static str {
        "samples.csv"
    }

    fn render(&self, run: RunData<'_>) -> Result<Vec<u8>, ReportError> {
        let enc = |e: ::csv::Error| ReportError::Encode {
            format: "csv",
            message: e.to_string(),
        };
        let mut w = ::csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.write_record(Sample::CSV_COLUMNS).map_err(enc)?;
        for s in run.samples {
            w.serialize(s).map_err(enc)?;
        }
        w.into_inner().map_err(|e| ReportError::Encode {
            format: "csv",
            message: e.to_string(),
        })
    }
}

/// Why a `samples.csv` does not read back (the file's path is added by the caller).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamplesError {
    /// The header is not [`Sample::CSV_COLUMNS`].
    #[error("header is '{found}', expected '{}'", Sample::CSV_COLUMNS.join(","))]
    Header {
        /// The header found, comma-joined.
        found: String,
    },
    /// A record is not CSV or not a sample; the csv crate's message names its line and field.
    #[error(transparent)]
    Row(#[from] ::csv::Error),
}

/// Parses a `samples.csv`.
///
/// # Errors
/// [`SamplesError`] naming the line and column that is wrong, or the header that does not
/// match.
pub fn parse(bytes: &[u8]) -> Result<Vec<Sample>, SamplesError> {
    let mut r = ::csv::Reader::from_reader(bytes);
    let header = r.headers()?.clone();
    // Files written before `cause` existed end one column earlier; their rows read as causes
    // unknown.
    let older = &Sample::CSV_COLUMNS[..Sample::CSV_COLUMNS.len() - 1];
    if header.iter().ne(Sample::CSV_COLUMNS) && header.iter().ne(older.iter().copied()) {
        return Err(SamplesError::Header {
            found: header.iter().collect::<Vec<_>>().join(","),
        });
    }
    r.deserialize()
        .map(|row| row.map_err(SamplesError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Phase;

    #[test]
    fn round_trips_and_quotes() {
        let s = Sample {
            seq: 3,
            model: "bert-tiny".into(),
            browser: "chromium".into(),
            worker: "chromium#1".into(),
            backend: "wasm".into(),
            phase: Phase::Measure,
            scheduled_ms: 1.5,
            started_ms: 1.75,
            latency_ms: 12.25,
            service_ms: 12.0,
            page_ms: 10.125,
            ok: false,
            error: "page: \"boom\", again".into(),
            attempt: 2,
            cause: None,
        };
        let summary: crate::metrics::RunSummary = serde_json::from_str(
            r#"{"schema_version":1,"run_id":"r","command":"c","started_at":"","finished_at":"",
            "complete":true,"environment":{"harness_version":"","os":"","cpus":1,"browsers":[]},
            "requests":{"issued":1,"succeeded":0,"failed":1,"lost":0},"results":[],"faults":[],
            "recovery_events":[],"thresholds":[]}"#,
        )
        .unwrap();
        let bytes = CsvReport
            .render(RunData {
                summary: &summary,
                samples: std::slice::from_ref(&s),
            })
            .unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(&Sample::CSV_COLUMNS.join(",")), "{text}");
        assert_eq!(parse(&bytes).unwrap(), vec![s]);
        let bad = parse(b"seq,model\n1,x\n").unwrap_err();
        assert!(matches!(bad, SamplesError::Header { .. }), "{bad:?}");
        assert!(bad.to_string().contains("expected"), "{bad}");
    }

    #[test]
    fn serde_field_order_is_the_csv_column_order() {
        let v = serde_json::to_value(Sample {
            seq: 0,
            model: String::new(),
            browser: String::new(),
            worker: String::new(),
            backend: String::new(),
            phase: Phase::First,
            scheduled_ms: 0.0,
            started_ms: 0.0,
            latency_ms: 0.0,
            service_ms: 0.0,
            page_ms: 0.0,
            ok: true,
            error: String::new(),
            attempt: 1,
            cause: None,
        })
        .unwrap();
        // serde_json without preserve_order sorts keys, so compare as sets plus the CSV writer
        // check above (which parses by header name and round-trips every field).
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut cols = Sample::CSV_COLUMNS.to_vec();
        keys.sort_unstable();
        cols.sort_unstable();
        assert_eq!(keys, cols);
    }
}
