//! Errors of the compose model layer.

use std::path::PathBuf;

/// Coarse class of a [`ComposeError`], so callers can map it to an exit code or HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file could not be read (missing, permission).
    Io,
    /// A file is larger than the bound or expands too many aliases.
    TooLarge,
    /// The YAML itself is malformed.
    Syntax,
    /// Unknown key, bad type or bad value for a key.
    Schema,
    /// A `${VAR:?err}` variable is missing or a `${...}` expression is malformed.
    Interpolation,
    /// `depends_on` / `extends` form a cycle or name an unknown service.
    Dependency,
    /// Invalid project name or other bad invocation input.
    Invalid,
}

/// Error of loading or validating a compose project. Messages name the file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: file is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}{}: {key}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Schema {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
    #[error("{}: {key}: {message}", path.display())]
    Interpolation {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Dependency(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no compose file found in {} or its parents (compose.yaml, docker-compose.yml)", .0.display())]
    NotFound(PathBuf),
}

impl ComposeError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ComposeError::Io { .. } | ComposeError::NotFound(_) => ErrorKind::Io,
            ComposeError::TooLarge { .. } => ErrorKind::TooLarge,
            ComposeError::Syntax { message, .. } if message.contains("repetition limit") => {
                ErrorKind::TooLarge
            }
            ComposeError::Syntax { .. } => ErrorKind::Syntax,
            ComposeError::Schema { .. } => ErrorKind::Schema,
            ComposeError::Interpolation { .. } => ErrorKind::Interpolation,
            ComposeError::Dependency(_) => ErrorKind::Dependency,
            ComposeError::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// Error of expanding one `${...}` string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    /// `${VAR:?msg}` / `${VAR?msg}` with the variable unset (or empty for `:?`).
    #[error("required variable {name} is missing a value: {message}")]
    Required { name: String, message: String },
    /// Unterminated `${`, empty or invalid name, nesting too deep.
    #[error("invalid interpolation format for {0:?}")]
    Format(String),
}
