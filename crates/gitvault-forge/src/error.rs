//! What can go wrong talking to a forge. Messages name the forge, the account or repository,
//! and what to do; a token never appears in them.

use crate::ForgeKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(
        "{forge} rejected the credentials for {what} ({message}): the token is missing, expired or revoked; set {hint}"
    )]
    Unauthorized { forge: ForgeKind, what: String, message: String, hint: &'static str },
    #[error("{forge}: {what} not found, or the token cannot see it ({message})")]
    NotFound { forge: ForgeKind, what: String, message: String },
    #[error("{forge} refused {what}: HTTP {status} ({message})")]
    Http { forge: ForgeKind, what: String, status: u16, message: String },
    #[error("cannot reach {forge} at {url}")]
    Unreachable {
        forge: ForgeKind,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "{forge} rate limit: the next request is allowed in {wait_seconds} s, more than the {max_seconds} s gitvault waits; run again later"
    )]
    RateLimitTooLong { forge: ForgeKind, wait_seconds: u64, max_seconds: u64 },
    #[error("{forge}: unexpected answer for {what}: {detail}")]
    Parse { forge: ForgeKind, what: String, detail: String },
    #[error("writing metadata under {}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid glob {pattern:?}: {detail}")]
    Glob { pattern: String, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
