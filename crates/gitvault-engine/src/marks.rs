//! Deletion marks (FORMAT.md §9.4) and the storage's clock they are aged on.
//!
//! `prune` deletes in two phases: it first writes a mark listing the data no snapshot
//! references, and only a later run deletes what is still unreferenced once the mark has aged
//! past its grace period. Ages are read from the storage's modification times, never from the
//! machines' clocks, so writers whose clocks disagree still agree on how old a mark is.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use gitvault_format::envelope::Kind;
use gitvault_format::ids::{DataId, MarkId, paths};
use gitvault_format::mark::{MIN_GRACE_SECONDS, Mark};

use crate::error::{Error, Result};
use crate::vault::Vault;

/// A mark as found in `marks/`.
pub(crate) struct FoundMark {
    pub path: String,
    pub mark: Mark,
    /// The storage's modification time of the mark file.
    pub modified: Option<SystemTime>,
}

impl FoundMark {
    /// How old the mark is at `now` (both by the storage's clock).
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        self.modified.map(|m| now.duration_since(m).unwrap_or_default())
    }

    /// The grace period the mark asked for.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.mark.grace_seconds)
    }
}

impl Vault {
    /// Every deletion mark, with its storage time. A mark that cannot be read is an error: its
    /// candidates are unknown, and building on any of them could lose data.
    pub(crate) fn read_marks(&self) -> Result<Vec<FoundMark>> {
        let mut found = Vec::new();
        for obj in self.store.list(paths::MARKS_DIR)? {
            let Some(id) = obj.path.strip_prefix(paths::MARKS_DIR).and_then(|n| n.parse::<MarkId>().ok()) else {
                tracing::warn!(path = %obj.path, "ignoring a file that is not a deletion mark");
                continue;
            };
            let plain = self.open_small(Kind::Mark, &obj.path, &id.to_hex())?;
            let mark = Mark::from_json(&plain).map_err(|source| Error::Damaged { path: obj.path.clone(), source })?;
            if mark.id != id {
                return Err(Error::Damaged {
                    path: obj.path,
                    source: gitvault_format::FormatError::Invalid {
                        what: "deletion mark",
                        detail: "its id differs from its file name".into(),
                    },
                });
            }
            found.push(FoundMark { path: obj.path, mark, modified: obj.modified });
        }
        Ok(found)
    }

    /// Every data id some mark lists.
    pub(crate) fn marked_data(&self) -> Result<HashSet<DataId>> {
        Ok(self.read_marks()?.into_iter().flat_map(|m| m.mark.data).collect())
    }

    /// The storage's clock now: the modification time of a tiny object written and removed
    /// for the purpose (under `tmp/`, which readers ignore).
    pub(crate) fn storage_now(&self) -> Result<SystemTime> {
        let mut rnd = [0u8; 12];
        gitvault_format::random_bytes(&mut rnd)?;
        let host: String = self.ctx.host.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let path = format!("tmp/{host}-{}-{}.clock.tmp", std::process::id(), hex::encode(rnd));
        self.store.put_new(&path, b"")?;
        let listed = self.store.list("tmp/");
        // In append-only mode even this probe stays (a later cleaner of temporaries takes it).
        if !self.append_only {
            let _ = self.store.delete(&path);
        }
        let modified = listed?.into_iter().find(|o| o.path == path).and_then(|o| o.modified);
        modified.ok_or_else(|| {
            Error::Refused(format!(
                "{} does not report modification times, which prune needs to age its deletion marks safely",
                self.location()
            ))
        })
    }

    /// Before committing a snapshot that references `needed`, for a writer that read the marks
    /// (then the snapshots it builds on) at `started` and saw `marked` then (FORMAT.md §9.4):
    /// when it ran for `recheck_after` or more (at most half the minimum grace period), or
    /// builds on data that was marked, check that no mark listing its data can ripen within the
    /// next half of the minimum grace period, and that nothing it needs is gone. `what` names
    /// the writer.
    pub(crate) fn guard_commit(
        &self,
        needed: HashSet<DataId>,
        started: Instant,
        recheck_after: Duration,
        marked: &HashSet<DataId>,
        what: &str,
    ) -> Result<()> {
        let margin = Duration::from_secs(MIN_GRACE_SECONDS / 2);
        if started.elapsed() < recheck_after.min(margin) && needed.is_disjoint(marked) {
            return Ok(());
        }
        let now = self.storage_now()?;
        for m in self.read_marks()? {
            let hits = m.mark.data.iter().filter(|d| needed.contains(d)).count();
            let safe = m.age(now).is_some_and(|age| age + margin < m.grace());
            if hits > 0 && !safe {
                return Err(Error::Refused(format!(
                    "{hits} data files this {what} builds on are marked for deletion by a prune (mark {}) and may go before its snapshot is written; nothing was committed — run the {what} again (after the next prune, data deleted meanwhile is sent again)",
                    m.mark.id.short()
                )));
            }
        }
        let present: HashSet<String> = self.store.list(paths::DATA_DIR)?.into_iter().map(|o| o.path).collect();
        let missing = needed.iter().filter(|d| !present.contains(&paths::data(d))).count();
        if missing > 0 {
            return Err(Error::Refused(format!(
                "{missing} data files this {what} builds on were deleted by a prune running meanwhile; nothing was committed — run the {what} again"
            )));
        }
        Ok(())
    }
}
