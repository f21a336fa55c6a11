//! The gitvault vault format: everything that is written to storage, as pure functions of bytes.
//!
//! This crate does no IO of its own (it works over `Read`/`Write` it is given), reads no clock
//! except where a caller asks for "now", and knows nothing about backends, git or the CLI. It is
//! the executable form of `FORMAT.md`: when the two disagree, one of them is a bug.
//!
//! - [`ids`]: the names of things (data objects, snapshots, key slots, ledger entries).
//! - [`keys`]: the master key, its derived subkeys and the passphrase key slots that wrap it.
//! - [`envelope`]: the encrypted file format (header + STREAM of XChaCha20-Poly1305 chunks).
//! - [`config`], [`snapshot`], [`ledger`], [`mark`]: the JSON documents stored inside envelopes.

pub mod config;
pub mod envelope;
pub mod ids;
pub mod keys;
pub mod ledger;
pub mod mark;
pub mod metadata;
pub mod pending;
pub mod snapshot;

/// The newest vault format version this build reads, and the one `init` writes. Every older
/// version stays readable; a vault is written only in its own version (FORMAT.md §11).
pub const FORMAT_VERSION: u32 = 5;

/// The version of snapshot documents; unchanged since format version 1.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Errors of decoding or authenticating stored bytes.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a gitvault file (bad magic bytes)")]
    BadMagic,
    #[error("file format version {found} is newer than this gitvault supports ({supported}); upgrade gitvault")]
    NewerVersion { found: u32, supported: u32 },
    #[error("file holds a {found} object where a {expected} was expected")]
    WrongKind { expected: &'static str, found: String },
    #[error("authentication failed: the file was altered, truncated, moved or encrypted with another key")]
    Authentication,
    #[error("file is truncated")]
    Truncated,
    #[error("decompression failed")]
    Decompress(#[source] std::io::Error),
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("malformed {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("wrong passphrase: no key slot of this vault opens with it")]
    WrongPassphrase,
    #[error("key derivation failed: {0}")]
    Kdf(String),
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// Fill `buf` with random bytes from the operating system.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), FormatError> {
    getrandom::fill(buf).map_err(|e| FormatError::Random(e.to_string()))
}

/// RFC 3339 timestamps in UTC, the only time representation of the format.
pub mod timestamp {
    pub use time::OffsetDateTime;
    pub use time::serde::rfc3339;

    /// The current time in UTC with whole-second precision removed of nanoseconds above
    /// milliseconds, so that a round trip through RFC 3339 is exact.
    pub fn now() -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
            .expect("a truncated nanosecond value is in range")
    }

    /// Format as RFC 3339 (e.g. `2026-11-28T18:00:00.123Z`).
    pub fn format(t: OffsetDateTime) -> String {
        t.format(&time::format_description::well_known::Rfc3339).expect("every UTC time formats as RFC 3339")
    }
}
