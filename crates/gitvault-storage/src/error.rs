use std::io;

/// What kind of failure a storage operation met; decides retries and exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    /// The destination is full (ENOSPC, quota).
    NoSpace,
    PermissionDenied,
    /// Worth retrying: timeouts, resets, throttling.
    Transient,
    /// The store cannot do this at all (e.g. lock objects): asking again will not help.
    Unsupported,
    Other,
}

/// A storage failure, naming the operation, the object and the store. `message` already says
/// what the underlying IO error said, so that error is kept for inspection, not as a `source`
/// (which would print it twice).
#[derive(Debug)]
pub struct StorageError {
    pub kind: ErrorKind,
    pub op: &'static str,
    /// The object, relative to the store; empty when the store itself is concerned.
    pub path: String,
    pub store: String,
    pub message: String,
    pub io: Option<io::Error>,
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{} {}: {}", self.op, self.store, self.message)
        } else {
            write!(f, "{} {} in {}: {}", self.op, self.path, self.store, self.message)
        }
    }
}

impl std::error::Error for StorageError {}

impl StorageError {
    pub fn from_io(op: &'static str, path: &str, store: &str, err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::NoSpace,
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
            io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::ConnectionReset => {
                ErrorKind::Transient
            }
            _ => ErrorKind::Other,
        };
        let message = match kind {
            ErrorKind::NoSpace => format!("{err} (free some space on the destination, then run the command again)"),
            ErrorKind::PermissionDenied => format!("{err} (check the permissions of the vault directory)"),
            _ => err.to_string(),
        };
        Self { kind, op, path: path.to_string(), store: store.to_string(), message, io: Some(err) }
    }

    /// The store cannot do `op` at all; `message` says why and what would.
    pub fn unsupported(op: &'static str, path: &str, store: &str, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Unsupported,
            op,
            path: path.to_string(),
            store: store.to_string(),
            message: message.into(),
            io: None,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}
