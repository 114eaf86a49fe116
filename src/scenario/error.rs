//! The one error type of the `scenario` layer.
//!
//! Input: failures found while reading, parsing, deserializing or validating a scenario. Output:
//! [`ScenarioError`], whose Display is `file:line:col: key.path: message` (the message names the
//! bad value). Errors about scenarios built in code carry no file and print `key.path: message`.

/// The key path printed for errors about the document as a whole.
pub const TOP_LEVEL: &str = "(top level)";

/// Everything that can be wrong with a scenario. Every variant carries the same five fields:
/// `file` (`None` for scenarios built in code), `line` and `col` (1-based; 0 when unknown),
/// `path` (the YAML key path, e.g. `workload.duration` or `models[1].name`) and `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{}", render(file.as_deref(), *line, *col, path, message))]
    Io {
        /// The file as given.
        file: Option<String>,
        /// Always 0.
        line: usize,
        /// Always 0.
        col: usize,
        /// Always empty.
        path: String,
        /// What went wrong, with the OS error.
        message: String,
    },
    /// The text is not YAML this format accepts: bad syntax, tabs, duplicate keys, anchors,
    /// tags, several documents, an empty file.
    #[error("{}", render(file.as_deref(), *line, *col, path, message))]
    Syntax {
        /// The file, when the scenario came from one.
        file: Option<String>,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// Key path of the enclosing value.
        path: String,
        /// What the parser found.
        message: String,
    },
    /// The YAML does not fit the schema: an unknown key, a wrong type, an unknown enum value, a
    /// missing key, a malformed duration.
    #[error("{}", render(file.as_deref(), *line, *col, path, message))]
    Type {
        /// The file, when the scenario came from one.
        file: Option<String>,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// Key path of the offending key or value.
        path: String,
        /// What is wrong, naming the bad value and what was expected.
        message: String,
    },
    /// The values parse but do not make sense together: an unknown model, min > max, more
    /// shards than workers, a threshold for a model that is not run, and so on.
    #[error("{}", render(file.as_deref(), *line, *col, path, message))]
    Invalid {
        /// The file, when the scenario came from one.
        file: Option<String>,
        /// 1-based line (0 for scenarios built in code).
        line: usize,
        /// 1-based column (0 for scenarios built in code).
        col: usize,
        /// Key path of the offending value.
        path: String,
        /// What is wrong, naming the bad value.
        message: String,
    },
}

fn render(file: Option<&str>, line: usize, col: usize, path: &str, message: &str) -> String {
    let mut out = String::new();
    if let Some(file) = file {
        out.push_str(file);
        if line > 0 {
            out.push_str(&format!(":{line}:{col}"));
        }
        out.push_str(": ");
    }
    if !path.is_empty() {
        out.push_str(path);
        out.push_str(": ");
    }
    out.push_str(message);
    out
}

impl ScenarioError {
    fn fields(&self) -> (&Option<String>, usize, usize, &str, &str) {
        match self {
            Self::Io {
                file,
                line,
                col,
                path,
                message,
            }
            | Self::Syntax {
                file,
                line,
                col,
                path,
                message,
            }
            | Self::Type {
                file,
                line,
                col,
                path,
                message,
            }
            | Self::Invalid {
                file,
                line,
                col,
                path,
                message,
            } => (file, *line, *col, path, message),
        }
    }

    /// The file the scenario came from, if any.
    pub fn file(&self) -> Option<&str> {
        self.fields().0.as_deref()
    }

    /// The 1-based line, 0 when unknown.
    pub fn line(&self) -> usize {
        self.fields().1
    }

    /// The 1-based column, 0 when unknown.
    pub fn col(&self) -> usize {
        self.fields().2
    }

    /// The key path, e.g. `workload.duration`.
    pub fn path(&self) -> &str {
        self.fields().3
    }

    /// The message without location and path.
    pub fn message(&self) -> &str {
        self.fields().4
    }

    /// True for read failures.
    pub fn is_io(&self) -> bool {
        matches!(self, Self::Io { .. })
    }

    /// True for YAML syntax problems.
    pub fn is_syntax(&self) -> bool {
        matches!(self, Self::Syntax { .. })
    }

    /// True for schema problems (unknown keys, wrong types, bad durations).
    pub fn is_type(&self) -> bool {
        matches!(self, Self::Type { .. })
    }

    /// True for semantic validation problems.
    pub fn is_invalid(&self) -> bool {
        matches!(self, Self::Invalid { .. })
    }

    /// A semantic error without a file location (scenarios built in code).
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            file: None,
            line: 0,
            col: 0,
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error placed in `file` at `line:col` (1-based).
    pub(crate) fn located(mut self, at_file: &str, at_line: usize, at_col: usize) -> Self {
        match &mut self {
            Self::Io { file, .. } => *file = Some(at_file.to_owned()),
            Self::Syntax {
                file, line, col, ..
            }
            | Self::Type {
                file, line, col, ..
            }
            | Self::Invalid {
                file, line, col, ..
            } => {
                *file = Some(at_file.to_owned());
                *line = at_line;
                *col = at_col;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_line_col_path_and_message() {
        let e = ScenarioError::invalid("workload.duration", "'30' has no unit").located(
            "scenarios/x.yaml",
            7,
            15,
        );
        assert_eq!(
            e.to_string(),
            "scenarios/x.yaml:7:15: workload.duration: '30' has no unit"
        );
        assert_eq!((e.line(), e.col(), e.path()), (7, 15, "workload.duration"));
        let bare = ScenarioError::invalid("workload.concurrency", "must be at least 1");
        assert_eq!(bare.to_string(), "workload.concurrency: must be at least 1");
        assert!(bare.file().is_none() && bare.is_invalid());
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<ScenarioError>();
    }
}
