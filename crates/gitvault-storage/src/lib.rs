//! Storage for gitvault vaults: a small trait the engine writes through, and its backends.
//!
//! The engine never knows which backend it talks to. The contract every backend keeps (and the
//! conformance suite in `tests/` checks):
//!
//! - Objects are written once. [`Store::create`] streams a new object that becomes visible,
//!   durably, only when [`ObjectWriter::commit`] returns; a crash or an abort before that leaves
//!   nothing under the object's name (at most an incomplete temporary that
//!   [`Store::remove_incomplete`] clears).
//! - [`Store::put_new`] creates a small object atomically *unless it exists*: of two writers
//!   racing for one name, exactly one wins and the other gets [`ErrorKind::AlreadyExists`].
//! - Paths are `/`-separated, relative to the vault root, never starting with `/`.
//! - Optionally, objects can be locked: a retention date before which nobody holding the
//!   credentials can delete or alter them ([`Store::set_retention`]; S3 Object Lock). Backends
//!   without it say so ([`ErrorKind::Unsupported`]) and hold no locked object.
//!
//! Backends: [`LocalStore`] (a directory or mounted NAS), [`S3Store`] (S3 and S3-compatible
//! servers, through OpenDAL) and [`SftpStore`] (an SFTP server, through the system's OpenSSH
//! client). The local one uses `std::fs` directly because it needs two things OpenDAL's
//! filesystem service does not give: an atomic create-only (`link(2)`) and an fsync of the
//! directory after a rename, without which a committed snapshot could vanish on power loss. The
//! SFTP one is not OpenDAL's sftp service for the same kind of reason (see its module doc).

pub mod check;
mod error;
pub mod faulty;
mod local;
mod opendal;
mod s3lock;
mod sftp;
mod temp;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::io::{Read, Write};
use std::time::SystemTime;

pub use self::opendal::{S3Config, S3Store};
pub use error::{ErrorKind, StorageError};
pub use local::LocalStore;
pub use sftp::{SftpConfig, SftpStore};

/// Whether `path` is a valid object path: `/`-separated, relative, no empty, `.` or `..`
/// component. Every backend refuses anything else, so no path can escape the vault.
pub(crate) fn is_valid_path(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Append what fits of `buf` to `pending`, which holds at most `cap` bytes; returns how much was
/// taken and whether `pending` is now full. Remote writers gather small writes this way so that
/// each batch crosses into their async runtime once.
pub(crate) fn gather(pending: &mut Vec<u8>, cap: usize, buf: &[u8]) -> (usize, bool) {
    if pending.capacity() == 0 {
        pending.reserve_exact(cap);
    }
    let n = buf.len().min(cap - pending.len());
    pending.extend_from_slice(&buf[..n]);
    (n, pending.len() == cap)
}

/// An object as listed: its path, size in bytes, and when the storage last modified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub path: String,
    pub size: u64,
    /// By the storage's own clock (file system mtime, S3 `LastModified`), which is what ages
    /// are measured on: one clock for every writer, whatever their machines' clocks say.
    /// `None` when the backend cannot tell.
    pub modified: Option<std::time::SystemTime>,
}

/// How strictly a retention protects an object, as S3 Object Lock defines the modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    /// Nobody can delete the object or shorten its retention, except a user granted
    /// `s3:BypassGovernanceRetention` who asks for it explicitly.
    Governance,
    /// Nobody can, not even the account's root user, until the date has passed.
    Compliance,
}

impl LockMode {
    /// The name S3 uses on the wire.
    pub fn s3_name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// The mode S3 calls `name` (case-insensitive).
    pub fn from_s3_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        })
    }
}

/// An object's lock: it cannot be deleted or overwritten before `until` (the storage's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    pub until: SystemTime,
}

impl Retention {
    /// Whether the lock still holds at `now`.
    pub fn holds_at(&self, now: SystemTime) -> bool {
        self.until > now
    }
}

/// A vault's storage. Implementations are cheap to share between threads.
pub trait Store: Send + Sync {
    /// What this store is, for messages: `local directory /srv/vault`.
    fn describe(&self) -> String;
    /// Read a whole (small) object.
    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError>;
    /// Stream an object.
    fn open_read(&self, path: &str) -> Result<Box<dyn Read + Send>, StorageError>;
    /// Start writing a new object at `path`, which must not exist.
    fn create(&self, path: &str) -> Result<Box<dyn ObjectWriter>, StorageError>;
    /// Atomically create `path` holding `bytes`, failing with `AlreadyExists` if it exists.
    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Every object under the directory `prefix` (e.g. `data/`), recursively, in no set order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError>;
    /// The size of an object, or `None` if it does not exist.
    fn stat(&self, path: &str) -> Result<Option<u64>, StorageError>;
    /// Remove an object; removing a missing object is not an error.
    fn delete(&self, path: &str) -> Result<(), StorageError>;
    /// Replace a small object with `bytes`, creating it if missing. The only write that
    /// overwrites (used once, by `upgrade`, for `config`). Backends that can make it atomic do;
    /// this default deletes then creates, so an interruption can leave the object missing.
    fn replace(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.delete(path)?;
        self.put_new(path, bytes)
    }
    /// Remove temporaries left by writers that died before committing; returns what went.
    fn remove_incomplete(&self) -> Result<Vec<String>, StorageError>;

    /// Whether objects of this store can be locked ([`Store::set_retention`]). An error of
    /// kind [`ErrorKind::Unsupported`] says why not and what would make it possible.
    fn lock_support(&self) -> Result<(), StorageError> {
        Err(no_lock(self, "lock", ""))
    }
    /// Lock `path` until `retention.until`: from then on the storage refuses to delete or
    /// overwrite it before that date. Only ever lengthens a lock: callers read the current one
    /// with [`Store::retention`] first (S3 refuses to shorten a compliance lock, and a
    /// governance one without a bypass permission gitvault never asks for).
    fn set_retention(&self, path: &str, retention: Retention) -> Result<(), StorageError> {
        let _ = retention;
        Err(no_lock(self, "lock", path))
    }
    /// The lock on `path`, if it has one (expired or not); `None` for a missing object and on
    /// stores that cannot lock.
    fn retention(&self, path: &str) -> Result<Option<Retention>, StorageError> {
        let _ = path;
        Ok(None)
    }
    /// Destroy the object for good, as someone holding the credentials could try to: on a
    /// store that keeps versions (an S3 bucket with Object Lock) a plain [`Store::delete`]
    /// only hides the object behind a delete marker, and this deletes its current version,
    /// which a lock refuses. Elsewhere it is [`Store::delete`]. Used by `storage check` to
    /// prove that a lock holds.
    fn purge(&self, path: &str) -> Result<(), StorageError> {
        self.delete(path)
    }
}

fn no_lock<S: Store + ?Sized>(store: &S, op: &'static str, path: &str) -> StorageError {
    StorageError::unsupported(
        op,
        path,
        &store.describe(),
        "this storage cannot lock objects (Object Lock needs an S3 bucket with Object Lock enabled)",
    )
}

/// A new object being written. Dropping it without [`ObjectWriter::commit`] discards it.
pub trait ObjectWriter: Write + Send {
    /// Make the object durable and visible under its name; returns its size.
    fn commit(self: Box<Self>) -> Result<u64, StorageError>;
}
