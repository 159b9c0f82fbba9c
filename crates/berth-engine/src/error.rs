//! The engine's error type: a kind the API edge maps to an HTTP status, and a Docker-style message.

use std::fmt;

/// What went wrong, coarsely: the API server chooses the HTTP status from this alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named object does not exist (404).
    NotFound,
    /// The request clashes with the current state: name in use, container running (409).
    Conflict,
    /// The request itself is malformed (400).
    InvalidArgument,
    /// Nothing to do (304).
    NotModified,
    /// Not allowed (403).
    Forbidden,
    /// Anything else (500).
    Internal,
}

/// An engine error: its kind and a lowercase, Docker-worded message.
#[derive(Debug, thiserror::Error)]
pub struct EngineError {
    kind: ErrorKind,
    msg: String,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl EngineError {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self { kind, msg: msg.into() }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.msg
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, msg)
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, msg)
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, msg)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, msg)
    }
    /// Prefix the message with context, keeping the kind.
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        Self { kind: self.kind, msg: format!("{ctx}: {}", self.msg) }
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<serde_json::Error> for EngineError {
    fn from(e: serde_json::Error) -> Self {
        Self::invalid(e.to_string())
    }
}

impl From<redb::Error> for EngineError {
    fn from(e: redb::Error) -> Self {
        Self::internal(format!("metadata: {e}"))
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for EngineError {
            fn from(e: $t) -> Self { Self::internal(format!("metadata: {e}")) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<berth_archive::ArchiveError> for EngineError {
    fn from(e: berth_archive::ArchiveError) -> Self {
        Self::invalid(e.to_string())
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
