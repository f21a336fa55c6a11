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
    Other,
}

/// A storage failure, naming the operation, the object and the store.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path} in {store}: {message}")]
pub struct StorageError {
    pub kind: ErrorKind,
    pub op: &'static str,
    pub path: String,
    pub store: String,
    pub message: String,
    #[source]
    pub source: Option<io::Error>,
}

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
        Self { kind, op, path: path.to_string(), store: store.to_string(), message, source: Some(err) }
    }

    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}
