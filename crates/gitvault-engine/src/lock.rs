//! Object Lock in a vault: what a locked backup writes, and what deletions leave alone.
//!
//! Retention is storage metadata, not part of the format (FORMAT.md §9.6): a vault reads the
//! same whether its files are locked or not. With a [`LockPolicy`] set on a [`Vault`], every
//! file it writes — data objects, snapshots, ledger entries — is locked right after it is
//! written, until the policy's date. Before a snapshot is committed, every data object its
//! chains reference is locked at least as long (older packs, the full backup under a chain of
//! incrementals): a locked snapshot is never restorable only in part.
//!
//! Deletions (`forget`, `prune`, consolidation) ask first and leave a locked file in place, for
//! a later run. They must ask: in an S3 bucket with Object Lock a plain DELETE does not fail on
//! a locked object, it hides it behind a delete marker, which would make a locked snapshot
//! vanish from the vault while its storage is still paid for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use gitvault_storage::{ErrorKind, LockMode, Retention};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::vault::Vault;

/// A lock counts as holding until this long after its date: the date is on the storage's
/// clock, which may run ahead of the clock it is compared with, and deleting an object whose
/// lock still holds would only hide it (see the module doc).
const CLOCK_MARGIN: Duration = Duration::from_secs(600);

/// How the files a vault writes are locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockPolicy {
    pub mode: LockMode,
    /// Every file written is locked until then (one date for a whole run, so that a
    /// snapshot's data is locked exactly as long as the snapshot).
    pub until: SystemTime,
}

impl LockPolicy {
    /// Lock for `days` from now.
    pub fn for_days(days: u32, mode: LockMode) -> Self {
        Self { mode, until: SystemTime::now() + Duration::from_secs(u64::from(days) * 86400) }
    }
}

/// A file a deletion left in place because it is locked.
#[derive(Clone, Debug, Serialize)]
pub struct LockedFile {
    pub path: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: time::OffsetDateTime,
}

/// The vault's lock state: the policy for what it writes, and the locks it set or saw.
#[derive(Default)]
pub(crate) struct LockState {
    policy: Option<LockPolicy>,
    /// Paths known to be locked until at least the given date, so that a run asks the storage
    /// about each file once.
    known: Mutex<HashMap<String, SystemTime>>,
}

impl Vault {
    /// Lock every file this vault writes from now on (`None`: lock nothing). Refused with
    /// [`Error::LockUnavailable`] when the storage cannot lock objects.
    pub fn set_lock(&mut self, policy: Option<LockPolicy>) -> Result<()> {
        if policy.is_some() {
            self.store.lock_support().map_err(|source| match source.kind {
                ErrorKind::Unsupported => Error::LockUnavailable { vault: self.location(), source: Box::new(source) },
                _ => Error::Storage(source),
            })?;
        }
        self.lock = LockState { policy, known: Mutex::new(HashMap::new()) };
        Ok(())
    }

    pub fn lock_policy(&self) -> Option<LockPolicy> {
        self.lock.policy
    }

    /// Lock a file this vault has just written, when a policy is set.
    pub(crate) fn lock_written(&self, path: &str) -> Result<()> {
        let Some(policy) = self.lock.policy else { return Ok(()) };
        self.store.set_retention(path, Retention { mode: policy.mode, until: policy.until })?;
        self.remember_lock(path, policy.until);
        Ok(())
    }

    /// Make sure each of `paths` (existing files a new snapshot depends on) is locked at least
    /// until the policy's date, lengthening shorter locks; never shortens one, and keeps the
    /// stricter mode of the two. Called before the snapshot is committed.
    pub(crate) fn extend_locks(&self, paths: impl IntoIterator<Item = String>) -> Result<()> {
        let Some(policy) = self.lock.policy else { return Ok(()) };
        for path in paths {
            let known = self.lock.known.lock().expect("lock cache poisoned").get(&path).copied();
            if known.is_some_and(|until| until >= policy.until) {
                continue;
            }
            let current = self.store.retention(&path)?;
            match current {
                Some(r) if r.until >= policy.until => self.remember_lock(&path, r.until),
                _ => {
                    let mode = current.map_or(policy.mode, |r| r.mode.max(policy.mode));
                    self.store.set_retention(&path, Retention { mode, until: policy.until })?;
                    tracing::debug!(path = %path, "lengthened the lock of a file a new snapshot depends on");
                    self.remember_lock(&path, policy.until);
                }
            }
        }
        Ok(())
    }

    fn remember_lock(&self, path: &str, until: SystemTime) {
        self.lock.known.lock().expect("lock cache poisoned").insert(path.to_string(), until);
    }

    /// What a deletion needs to know about locks, asked once per run: `now` is the time
    /// locks are compared with (the storage's clock where the caller has read it).
    pub(crate) fn lock_check(&self, now: SystemTime) -> Result<LockCheck> {
        let enabled = match self.store.lock_support() {
            Ok(()) => true,
            Err(e) if e.kind == ErrorKind::Unsupported => false,
            // Cannot tell (e.g. not allowed to read the bucket's configuration): ask per file,
            // which is slower but never deletes a locked file.
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell whether the storage locks objects; checking each file");
                true
            }
        };
        Ok(LockCheck { enabled, now })
    }
}

/// Tells a deletion which files are still locked.
pub(crate) struct LockCheck {
    enabled: bool,
    now: SystemTime,
}

impl LockCheck {
    /// `Some` when `path` is locked now (with a margin for clocks): leave it for a later run.
    pub(crate) fn locked(&self, vault: &Vault, path: &str) -> Result<Option<LockedFile>> {
        if !self.enabled {
            return Ok(None);
        }
        Ok(vault
            .store
            .retention(path)?
            .filter(|r| r.holds_at(self.now.checked_sub(CLOCK_MARGIN).unwrap_or(self.now)))
            .map(|r| LockedFile { path: path.to_string(), until: time::OffsetDateTime::from(r.until) }))
    }
}
