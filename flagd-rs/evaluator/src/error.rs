//! Load-time diagnostics and errors: every problem names the flag and the JSON pointer.

use std::fmt;

use crate::load::Format;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The document still loads (flagd only warns about schema violations).
    Warning,
    /// The document is rejected as a whole.
    Error,
}

/// One problem found in a flag document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Whether the problem rejects the document.
    pub severity: Severity,
    /// The key of the flag the problem is in, when it is inside a flag.
    pub flag: Option<String>,
    /// JSON pointer (RFC 6901) of the offending value inside the document.
    pub pointer: String,
    /// What is wrong, in one line.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn error(flag: Option<&str>, pointer: String, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            flag: flag.map(str::to_owned),
            pointer,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{level}: ")?;
        if let Some(flag) = &self.flag {
            write!(f, "flag `{flag}`: ")?;
        }
        let pointer = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{} (at {pointer})", self.message)
    }
}

/// Why a flag document was rejected as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The document is larger than [`crate::LoadOptions::max_document_bytes`].
    #[error("document is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the document.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The bytes are not valid JSON or YAML (for example a half-written file).
    #[error("invalid {format}: {message}")]
    Syntax {
        /// The format the document was parsed as.
        format: Format,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The document parsed but breaks a rule that makes flagd reject it.
    #[error("{}", summarize(.diagnostics))]
    Rejected {
        /// Every problem found, errors first.
        diagnostics: Vec<Diagnostic>,
    },
}

impl LoadError {
    /// All diagnostics carried by the error (a syntax or size error yields one).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            LoadError::Rejected { diagnostics } => diagnostics.clone(),
            other => vec![Diagnostic::error(None, String::new(), other.to_string())],
        }
    }
}

fn summarize(diagnostics: &[Diagnostic]) -> String {
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    match errors.len() {
        0 => "document rejected".to_owned(),
        1 => format!("document rejected: {}", errors.join("")),
        n => format!("document rejected ({n} errors): {}", errors.join("; ")),
    }
}

/// Escapes one JSON pointer reference token (RFC 6901).
pub(crate) fn pointer_token(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains(['~', '/']) {
        std::borrow::Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        std::borrow::Cow::Borrowed(token)
    }
}
