//! The SQLite file: schema versions and their migrations, recording a finished run, and reading
//! cells and their raw samples back.
//!
//! One connection per command; every write is one transaction, so a harness killed while
//! recording leaves the file as it was before the run. A locked file is waited for briefly
//! ([`BUSY_WAIT`]), then reported, never waited on forever.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::metrics::{browser_build, LoadContext, LoadKind, Phase, RunSummary, Sample};

use super::{CellKey, CellRun, HistoryError};

/// How long a write waits for another process's lock before giving up.
pub const BUSY_WAIT: Duration = Duration::from_millis(1500);

/// Each schema version's SQL, applied in order; `PRAGMA user_version` says how many are in.
/// Append only: a released migration is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: runs, their cells (one per model x browser x backend x adapter x threads) and every
    // measured sample, so trends test raw samples even after the run folder is gone.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        started_at TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        command TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        complete INTEGER NOT NULL
    );
    CREATE TABLE cells (
        id INTEGER PRIMARY KEY,
        run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        model TEXT NOT NULL,
        task TEXT NOT NULL,
        browser TEXT NOT NULL,
        browser_version TEXT NOT NULL,
        backend TEXT NOT NULL,
        adapter TEXT NOT NULL,
        threads INTEGER NOT NULL,
        weights TEXT NOT NULL,
        runs INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        p50_ms REAL NOT NULL,
        p95_ms REAL NOT NULL,
        p99_ms REAL NOT NULL,
        throughput_per_s REAL NOT NULL,
        utilization REAL,
        samples_csv TEXT NOT NULL
    );
    CREATE INDEX cells_by_key ON cells(model, browser, backend);
    CREATE TABLE samples (
        cell INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
        page_ms REAL NOT NULL,
        service_ms REAL NOT NULL,
        started_ms REAL NOT NULL
    );
    CREATE INDEX samples_by_cell ON samples(cell);",
    // 2: the rest of a cell's identity, its load context (how the run loaded it: `isolated`,
    // `routed`, `sharded`, `under_faults`; `unknown` for the cells recorded before, which are
    // then compared with nothing), and end-to-end latency kept apart from service time: per
    // cell its percentiles, per sample its scheduled start and latency (NULL before: version 1
    // kept only page and service time, so an old sample's latency is not known).
    "ALTER TABLE cells ADD COLUMN load TEXT NOT NULL DEFAULT 'unknown';
    ALTER TABLE cells ADD COLUMN clients INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cells ADD COLUMN rate_per_s REAL;
    ALTER TABLE cells ADD COLUMN e2e_p50_ms REAL;
    ALTER TABLE cells ADD COLUMN e2e_p95_ms REAL;
    ALTER TABLE cells ADD COLUMN e2e_p99_ms REAL;
    ALTER TABLE samples ADD COLUMN scheduled_ms REAL;
    ALTER TABLE samples ADD COLUMN latency_ms REAL;",
];

/// Every table and the columns this version reads and writes, checked after migrating: a file
/// whose `user_version` says one thing and whose tables say another is refused by name.
const TABLES: &[(&str, &[&str])] = &[
    (
        "runs",
        &[
            "id",
            "run_id",
            "started_at",
            "started_ms",
            "command",
            "run_dir",
            "complete",
        ],
    ),
    (
        "cells",
        &[
            "id",
            "run",
            "model",
            "task",
            "browser",
            "browser_version",
            "backend",
            "adapter",
            "threads",
            "weights",
            "runs",
            "failed",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "throughput_per_s",
            "utilization",
            "samples_csv",
            "load",
            "clients",
            "rate_per_s",
            "e2e_p50_ms",
            "e2e_p95_ms",
            "e2e_p99_ms",
        ],
    ),
    (
        "samples",
        &[
            "cell",
            "page_ms",
            "service_ms",
            "started_ms",
            "scheduled_ms",
            "latency_ms",
        ],
    ),
];

/// The schema version this build writes.
pub fn schema_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// An open history file.
#[derive(Debug)]
pub struct History {
    conn: Connection,
    path: PathBuf,
}

impl History {
    /// Opens (creating if needed) the history at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// [`HistoryError`] naming the file: not a database, locked, made by a newer version,
    /// or the disk refused the write.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| HistoryError::at(path, e))?;
        }
        let conn = Connection::open(path).map_err(|e| HistoryError::at(path, e))?;
        Self::setup(conn, path)
    }

    /// Opens an existing history to read it (migrating an older schema forward first).
    ///
    /// # Errors
    /// As [`History::open`]; [`HistoryError::Missing`] when there is no file.
    pub fn open_read(path: &Path) -> Result<Self, HistoryError> {
        if !path.is_file() {
            return Err(HistoryError::Missing {
                path: path.display().to_string(),
            });
        }
        // Read-write without create: a history from an older version is migrated forward
        // here too, so `history` works on it before the next run records.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| HistoryError::at(path, e))?;
        Self::setup(conn, path)
    }

    fn setup(conn: Connection, path: &Path) -> Result<Self, HistoryError> {
        let at = |e| HistoryError::at(path, e);
        conn.busy_timeout(BUSY_WAIT).map_err(at)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(at)?;
        let mut h = Self {
            conn,
            path: path.to_path_buf(),
        };
        h.migrate()?;
        Ok(h)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), HistoryError> {
        let path = self.path.clone();
        let at = |e| HistoryError::at(&path, e);
        // The first read of the file: a file that is not a database fails here.
        let version: u32 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(at)?;
        if version > schema_version() {
            return Err(HistoryError::Newer {
                path: path.display().to_string(),
                found: version,
                known: schema_version(),
            });
        }
        if version < schema_version() {
            let tx = self.conn.transaction().map_err(at)?;
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                // A file whose tables are not those of its version fails here first (a
                // column to add exists already, a table to alter does not).
                tx.execute_batch(sql)
                    .map_err(|e| match HistoryError::at(&path, e) {
                        HistoryError::Other { path, message } => HistoryError::Schema {
                            path,
                            version,
                            message: format!("migrating to version {}: {message}", i + 1),
                        },
                        other => other,
                    })?;
            }
            tx.pragma_update(None, "user_version", schema_version())
                .map_err(at)?;
            tx.commit().map_err(at)?;
        }
        self.check_tables(version)
    }

    /// Refuses a file whose tables lack a column this version uses.
    fn check_tables(&self, version: u32) -> Result<(), HistoryError> {
        let at = |e| HistoryError::at(&self.path, e);
        for (table, columns) in TABLES {
            let mut stmt = self
                .conn
                .prepare(&format!("PRAGMA table_info({table})"))
                .map_err(at)?;
            let have: Vec<String> = stmt
                .query_map([], |r| r.get::<_, String>(1))
                .map_err(at)?
                .collect::<Result<_, _>>()
                .map_err(at)?;
            let missing: Vec<&str> = columns
                .iter()
                .copied()
                .filter(|c| !have.iter().any(|h| h == c))
                .collect();
            if !missing.is_empty() {
                return Err(HistoryError::Schema {
                    path: self.path.display().to_string(),
                    version,
                    message: if have.is_empty() {
                        format!("no table '{table}'")
                    } else {
                        format!("table '{table}' has no column {}", missing.join(", "))
                    },
                });
            }
        }
        Ok(())
    }

    /// Records a finished run: its cells (one per result row with measured samples) and their
    /// measured samples, in one transaction. A run recorded again (a resumed run finishing)
    /// replaces its earlier record. Returns the number of cells recorded.
    ///
    /// # Errors
    /// [`HistoryError`] naming the file; nothing is half-written.
    pub fn record(
        &mut self,
        summary: &RunSummary,
        samples: &[Sample],
        run_dir: &Path,
    ) -> Result<usize, HistoryError> {
        let path = self.path.clone();
        let at = |e| HistoryError::at(&path, e);
        let started_ms = humantime::parse_rfc3339_weak(&summary.started_at)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        let tx = self.conn.transaction().map_err(at)?;
        tx.execute("DELETE FROM runs WHERE run_id = ?1", [&summary.run_id])
            .map_err(at)?;
        tx.execute(
            "INSERT INTO runs (run_id, started_at, started_ms, command, run_dir, complete)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                summary.run_id,
                summary.started_at,
                started_ms,
                summary.command,
                run_dir.display().to_string(),
                summary.complete
            ],
        )
        .map_err(at)?;
        let run = tx.last_insert_rowid();
        let csv = run_dir.join("samples.csv").display().to_string();
        let mut cells = 0;
        for row in &summary.results {
            let measured: Vec<&Sample> = samples
                .iter()
                .filter(|s| {
                    s.phase == Phase::Measure
                        && s.ok
                        && s.page_ms > 0.0
                        && s.model == row.model
                        && s.browser == row.browser
                        && s.backend == row.backend
                })
                .collect();
            if measured.is_empty() {
                continue;
            }
            let version = summary
                .environment
                .browsers
                .iter()
                .find(|b| b.kind == row.browser)
                .map_or(String::new(), |b| b.version.clone());
            let key = CellKey::of(summary, row);
            let utilization = utilization_of(summary, row);
            tx.execute(
                "INSERT INTO cells (run, model, task, browser, browser_version, backend, adapter,
                    threads, weights, runs, failed, p50_ms, p95_ms, p99_ms, throughput_per_s,
                    utilization, samples_csv, load, clients, rate_per_s, e2e_p50_ms, e2e_p95_ms,
                    e2e_p99_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
                params![
                    run,
                    key.model,
                    row.task,
                    key.browser,
                    version,
                    key.backend,
                    key.adapter,
                    key.threads,
                    row.weights,
                    measured.len() as i64,
                    row.failed as i64,
                    row.latency_ms.p50,
                    row.latency_ms.p95,
                    row.latency_ms.p99,
                    row.throughput_per_s,
                    utilization,
                    csv,
                    key.load.context.as_str(),
                    key.load.clients,
                    key.load.rate_per_s,
                    row.round_trip_ms.p50,
                    row.round_trip_ms.p95,
                    row.round_trip_ms.p99,
                ],
            )
            .map_err(at)?;
            let cell = tx.last_insert_rowid();
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO samples (cell, page_ms, service_ms, latency_ms, scheduled_ms,
                        started_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(at)?;
            for s in measured {
                insert
                    .execute(params![
                        cell,
                        s.page_ms,
                        s.service_ms,
                        s.latency_ms,
                        s.scheduled_ms,
                        s.started_ms
                    ])
                    .map_err(at)?;
            }
            cells += 1;
        }
        tx.commit().map_err(at)?;
        Ok(cells)
    }

    /// Every recorded cell started at or after `since_ms` (unix ms), oldest run first, without
    /// samples.
    ///
    /// # Errors
    /// [`HistoryError`] naming the file; [`HistoryError::Schema`] for a load context this
    /// version does not know.
    pub fn cells(&self, since_ms: i64) -> Result<Vec<CellRun>, HistoryError> {
        let at = |e| HistoryError::at(&self.path, e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.id, r.run_id, r.started_at, r.started_ms, r.run_dir, c.model, c.task,
                        c.browser, c.browser_version, c.backend, c.adapter, c.threads, c.weights,
                        c.runs, c.failed, c.p50_ms, c.p95_ms, c.p99_ms, c.throughput_per_s,
                        c.utilization, c.samples_csv, c.load, c.clients, c.rate_per_s,
                        c.e2e_p50_ms, c.e2e_p95_ms, c.e2e_p99_ms
                 FROM cells c JOIN runs r ON r.id = c.run
                 WHERE r.started_ms >= ?1
                 ORDER BY r.started_ms, r.id, c.id",
            )
            .map_err(at)?;
        let rows = stmt
            .query_map([since_ms], |r| {
                let load: String = r.get(21)?;
                let version: String = r.get(8)?;
                Ok((
                    load,
                    CellRun {
                        id: r.get(0)?,
                        run_id: r.get(1)?,
                        started_at: r.get(2)?,
                        started_ms: r.get(3)?,
                        run_dir: r.get(4)?,
                        key: CellKey {
                            model: r.get(5)?,
                            browser: r.get(7)?,
                            backend: r.get(9)?,
                            adapter: r.get(10)?,
                            threads: r.get(11)?,
                            build: browser_build(&version),
                            load: LoadContext {
                                context: LoadKind::Unknown,
                                clients: r.get(22)?,
                                rate_per_s: r.get(23)?,
                            },
                        },
                        task: r.get(6)?,
                        browser_version: version,
                        weights: r.get(12)?,
                        runs: r.get::<_, i64>(13)? as u64,
                        failed: r.get::<_, i64>(14)? as u64,
                        p50_ms: r.get(15)?,
                        p95_ms: r.get(16)?,
                        p99_ms: r.get(17)?,
                        e2e_p50_ms: r.get(24)?,
                        e2e_p95_ms: r.get(25)?,
                        e2e_p99_ms: r.get(26)?,
                        throughput_per_s: r.get(18)?,
                        utilization: r.get(19)?,
                        samples_csv: r.get(20)?,
                    },
                ))
            })
            .map_err(at)?;
        let mut out = Vec::new();
        for row in rows {
            let (load, mut cell) = row.map_err(at)?;
            cell.key.load.context = LoadKind::parse(&load).ok_or_else(|| HistoryError::Schema {
                path: self.path.display().to_string(),
                version: schema_version(),
                message: format!(
                    "cell of run {} has load '{load}', not one of {}",
                    cell.run_id,
                    LoadKind::ALL.map(LoadKind::as_str).join(", ")
                ),
            })?;
            out.push(cell);
        }
        Ok(out)
    }

    /// The measured samples of one cell, as `compare` takes them: `page_ms` (the page's
    /// `session.run`), `service_ms` (issued to answer) and `latency_ms` (scheduled start to
    /// answer) each read back as itself. A sample recorded before schema version 2 has no
    /// latency or scheduled start: both read back as NaN (never as the service time), and the
    /// end-to-end tests leave such samples out.
    ///
    /// # Errors
    /// [`HistoryError`] naming the file.
    pub fn samples(&self, cell: &CellRun) -> Result<Vec<Sample>, HistoryError> {
        let at = |e| HistoryError::at(&self.path, e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT page_ms, service_ms, latency_ms, scheduled_ms, started_ms
                 FROM samples WHERE cell = ?1 ORDER BY rowid",
            )
            .map_err(at)?;
        let rows = stmt
            .query_map([cell.id], |r| {
                Ok((
                    r.get::<_, f64>(0)?,
                    r.get::<_, f64>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, f64>(4)?,
                ))
            })
            .map_err(at)?;
        let mut out = Vec::new();
        for (i, row) in rows.enumerate() {
            let (page_ms, service_ms, latency_ms, scheduled_ms, started_ms) = row.map_err(at)?;
            out.push(Sample {
                seq: i as u64,
                model: cell.key.model.clone(),
                browser: cell.key.browser.clone(),
                worker: String::new(),
                backend: cell.key.backend.clone(),
                phase: Phase::Measure,
                scheduled_ms: scheduled_ms.unwrap_or(f64::NAN),
                started_ms,
                latency_ms: latency_ms.unwrap_or(f64::NAN),
                service_ms,
                page_ms,
                ok: true,
                error: String::new(),
                attempt: 1,
                cause: None,
            });
        }
        Ok(out)
    }

    /// How many runs are recorded.
    ///
    /// # Errors
    /// [`HistoryError`] naming the file.
    pub fn run_count(&self) -> Result<u64, HistoryError> {
        self.conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))
            .optional()
            .map(|n| n.unwrap_or(0) as u64)
            .map_err(|e| HistoryError::at(&self.path, e))
    }
}

/// The mean utilization of the workers that served `row`.
fn utilization_of(summary: &RunSummary, row: &crate::metrics::ResultRow) -> Option<f64> {
    let u: Vec<f64> = summary
        .workers
        .iter()
        .filter(|w| row.workers.contains(&w.id))
        .map(|w| w.utilization)
        .collect();
    (!u.is_empty()).then(|| u.iter().sum::<f64>() / u.len() as f64)
}
