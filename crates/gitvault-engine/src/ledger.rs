//! Appending to and reading the hash-chained ledger.

use std::path::PathBuf;

use gitvault_format::envelope::Kind;
use gitvault_format::ids::{Mac, paths};
use gitvault_format::ledger::{Event, LedgerEntry};
use gitvault_format::timestamp;
use gitvault_storage::ErrorKind;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::vault::Vault;

const MAX_APPEND_ATTEMPTS: u32 = 64;

/// One ledger file as read: the entry with its chain hash, or why it could not be read.
pub struct ReadEntry {
    pub seq: u64,
    pub path: String,
    pub entry: Result<(LedgerEntry, Mac)>,
}

/// The last ledger entry this machine has seen for a vault, kept in the cache directory so that
/// a ledger cut back to an earlier length is noticed even though the chain itself cannot show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenHead {
    pub seq: u64,
    pub hash: Mac,
}

impl Vault {
    fn ledger_seqs(&self) -> Result<Vec<(u64, String)>> {
        let mut seqs: Vec<(u64, String)> = self
            .store
            .list(paths::LEDGER_DIR)?
            .into_iter()
            .filter_map(|o| paths::parse_ledger(&o.path).map(|s| (s, o.path)))
            .collect();
        seqs.sort();
        Ok(seqs)
    }

    pub(crate) fn read_entry(&self, seq: u64, path: &str) -> Result<(LedgerEntry, Mac)> {
        let plain = self.open_small(Kind::LedgerEntry, path, &seq.to_string())?;
        let entry = LedgerEntry::from_json(&plain).map_err(|source| Error::Damaged { path: path.into(), source })?;
        if entry.seq != seq {
            return Err(Error::Damaged {
                path: path.into(),
                source: gitvault_format::FormatError::Invalid {
                    what: "ledger entry",
                    detail: format!("holds number {}", entry.seq),
                },
            });
        }
        Ok((entry, LedgerEntry::chain_hash(&self.mac_key, &plain)))
    }

    /// Every ledger entry in order, each read independently so that one damaged entry does not
    /// hide the others.
    pub fn read_ledger(&self) -> Result<Vec<ReadEntry>> {
        Ok(self
            .ledger_seqs()?
            .into_iter()
            .map(|(seq, path)| {
                let entry = self.read_entry(seq, &path);
                ReadEntry { seq, path, entry }
            })
            .collect())
    }

    /// Append an event, taking the next free number. Two writers racing for a number both land:
    /// the create-only write lets exactly one win, and the other retries on the new head.
    pub fn append_ledger(&self, event: Event) -> Result<LedgerEntry> {
        self.require_version(event.name(), event.since_version())?;
        self.append_ledger_as(event, self.config.version)
    }

    /// Record an action of the audit trail that no other event records (a copy, a configuration
    /// change, an API call). Vaults older than format version 4 have no such event: `Ok(None)`,
    /// and the action is only in the catalog until the vault is upgraded.
    pub fn append_audit(
        &self,
        action: &str,
        target: &str,
        outcome: &str,
        detail: Option<String>,
    ) -> Result<Option<LedgerEntry>> {
        if self.config.version < 4 {
            return Ok(None);
        }
        let event = Event::Audit { action: action.into(), target: target.into(), outcome: outcome.into(), detail };
        self.append_ledger(event).map(Some)
    }

    /// Append as a vault of format `version` would: only `upgrade` writes ahead of the vault's
    /// own version, since its entry comes before the new `config`.
    pub(crate) fn append_ledger_as(&self, event: Event, version: u32) -> Result<LedgerEntry> {
        debug_assert!(event.since_version() <= version);
        for _ in 0..MAX_APPEND_ATTEMPTS {
            let head = self.ledger_head()?;
            let seq = head.map_or(1, |h| h.seq + 1);
            let entry = LedgerEntry {
                seq,
                prev: head.map(|h| h.hash),
                time: timestamp::now(),
                host: self.ctx.host.clone(),
                // The field exists from format version 4 on: older readers would refuse it.
                actor: if version >= 4 { self.ctx.actor.clone() } else { None },
                event: event.clone(),
            };
            let plain = entry.to_json();
            let stored = self.seal_small(Kind::LedgerEntry, &seq.to_string(), &plain)?;
            match self.store.put_new(&paths::ledger(seq), &stored) {
                Ok(()) => {
                    let new_head = SeenHead { seq, hash: LedgerEntry::chain_hash(&self.mac_key, &plain) };
                    self.advance_seen_head(new_head, &|s| match head {
                        Some(h) if h.seq == s => Some(h.hash),
                        _ => self.ledger_hash_at(s),
                    });
                    self.lock_written(&paths::ledger(seq))?;
                    return Ok(entry);
                }
                Err(e) if e.kind == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::LedgerBusy { attempts: MAX_APPEND_ATTEMPTS })
    }

    /// The last ledger entry's number and chain hash. A damaged last entry is an error: nothing
    /// can be appended after it without breaking the chain.
    pub fn ledger_head(&self) -> Result<Option<SeenHead>> {
        match self.ledger_seqs()?.last() {
            Some((seq, path)) => Ok(Some(SeenHead { seq: *seq, hash: self.read_entry(*seq, path)?.1 })),
            None => Ok(None),
        }
    }

    fn ledger_hash_at(&self, seq: u64) -> Option<Mac> {
        self.read_entry(seq, &paths::ledger(seq)).ok().map(|(_, h)| h)
    }

    fn seen_head_path(&self) -> PathBuf {
        self.ctx.cache_dir.join("vaults").join(self.config.id.to_hex()).join("ledger-head.json")
    }

    /// The furthest ledger head this machine has seen, if it has seen this vault before.
    pub fn seen_head(&self) -> Option<SeenHead> {
        let bytes = std::fs::read(self.seen_head_path()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Record `head` as seen — but only if the ledger still holds, unchanged, the entry this
    /// machine saw last (`hash_at` answers what the vault holds at a number). Otherwise the
    /// ledger was cut or rewritten, and the old mark is kept so that every later `verify`
    /// keeps reporting it until someone investigates (and deletes the mark in the cache).
    /// Failing to write the cache only weakens that check, so it is logged, not fatal.
    pub(crate) fn advance_seen_head(&self, head: SeenHead, hash_at: &dyn Fn(u64) -> Option<Mac>) {
        if let Some(seen) = self.seen_head()
            && (seen.seq >= head.seq || hash_at(seen.seq) != Some(seen.hash))
        {
            return;
        }
        let path = self.seen_head_path();
        let write = || -> std::io::Result<()> {
            let dir = path.parent().expect("the cache path has a parent");
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!("ledger-head.{}.tmp", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(&head).expect("a head serializes"))?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "could not record the ledger head in the cache");
        }
    }
}
