//! Consolidation: rewrite what the kept snapshots of a repository need into new packs, so that
//! packs written by forgotten snapshots stop being referenced and `prune` can dispose of them.
//!
//! Without it, an incremental-forever history never frees anything: every kept incremental's
//! chain reaches back to the first full backup, through packs of snapshots long forgotten
//! (which may hold objects of force-pushed or deleted branches that must be disposable).
//! Consolidating a repository installs every pack its kept snapshots need into a scratch
//! repository and writes, along the kept snapshots in time order, one pack per snapshot: all
//! the objects of the oldest, then what each next one adds. Every kept snapshot is then
//! rewritten with its new chain under a new id — same time, host, refs and HEAD — recorded in
//! the ledger, and the old one forgotten with a `forget` entry that names its replacement.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use gitvault_format::ids::{SnapshotId, paths};
use gitvault_format::ledger::Event;
use gitvault_format::snapshot::{PackRecord, Snapshot};
use gitvault_git::Git;
use serde::Serialize;

use crate::error::Result;
use crate::ops::backup::{pack_and_store, tips};
use crate::ops::restore::Scratch;
use crate::progress::Progress;
use crate::vault::Vault;

/// When to consolidate a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Once its kept snapshots depend on at least this many packs written by snapshots that
    /// are gone.
    StalePacks(usize),
    /// Whenever they depend on any.
    Always,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConsolidatedRepo {
    pub name: String,
    /// Kept snapshots holding the repository (all rewritten).
    pub snapshots: usize,
    /// Packs of forgotten snapshots the old chains depended on.
    pub stale_packs: usize,
    /// New packs written (with `dry_run`: none).
    pub packs_written: usize,
    pub bytes_written: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Replacement {
    pub old: SnapshotId,
    pub new: SnapshotId,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsolidationReport {
    pub repositories: Vec<ConsolidatedRepo>,
    pub replaced: Vec<Replacement>,
    pub ledger_entry: Option<u64>,
}

/// The packs of a chain written by snapshots no longer in the vault.
fn stale<'a>(chain: &'a [PackRecord], live: &HashSet<SnapshotId>) -> impl Iterator<Item = &'a PackRecord> {
    chain.iter().filter(|p| !live.contains(&p.snapshot))
}

pub(crate) fn consolidate(
    vault: &Vault,
    when: When,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<ConsolidationReport> {
    let snaps = vault.snapshots()?;
    let live: HashSet<SnapshotId> = snaps.iter().map(|s| s.id).collect();

    // Which repositories qualify, and their stale packs.
    let mut by_name: BTreeMap<&str, Vec<&Snapshot>> = BTreeMap::new();
    for s in &snaps {
        for r in &s.repositories {
            by_name.entry(r.name.as_str()).or_default().push(s);
        }
    }
    let mut chosen: Vec<(&str, usize)> = Vec::new();
    // Consolidation replaces every snapshot holding the repository; a locked one cannot go, so
    // its repository waits until the lock ends (its old packs are locked too, and could not go
    // anyway).
    let locks = vault.lock_check(std::time::SystemTime::now())?;
    for (name, holders) in &by_name {
        let formats: BTreeSet<&str> =
            holders.iter().filter_map(|s| s.repo(name)).map(|r| r.object_format.as_str()).collect();
        if formats.len() != 1 {
            tracing::info!(repo = name, "not consolidating a repository backed up in two object formats");
            continue;
        }
        let stale_packs: BTreeSet<_> = holders
            .iter()
            .filter_map(|s| s.repo(name))
            .flat_map(|r| stale(&r.chain, &live))
            .map(|p| p.pack.id)
            .collect();
        let due = match when {
            When::Always => !stale_packs.is_empty(),
            When::StalePacks(n) => n > 0 && stale_packs.len() >= n,
        };
        if due {
            let mut locked = None;
            for s in holders {
                if let Some(l) = locks.locked(vault, &paths::snapshot(&s.id))? {
                    locked = Some(l);
                    break;
                }
            }
            match locked {
                Some(l) => {
                    tracing::info!(repo = name, snapshot = %l.path, until = %l.until, "not consolidating: a snapshot holding the repository is locked")
                }
                None => chosen.push((name, stale_packs.len())),
            }
        }
    }
    let mut report = ConsolidationReport::default();
    if chosen.is_empty() {
        return Ok(report);
    }

    // Every snapshot holding a chosen repository gets a new id; packs name the new snapshot.
    let chosen_names: HashSet<&str> = chosen.iter().map(|(n, _)| *n).collect();
    let mut new_ids: HashMap<SnapshotId, SnapshotId> = HashMap::new();
    for s in &snaps {
        if s.repositories.iter().any(|r| chosen_names.contains(r.name.as_str())) {
            new_ids.insert(s.id, SnapshotId::random()?);
        }
    }
    let mut new_chains: HashMap<(SnapshotId, String), Vec<PackRecord>> = HashMap::new();
    let git = Git::new();
    for (name, stale_count) in &chosen {
        let holders = &by_name[name];
        let mut entry = ConsolidatedRepo {
            name: name.to_string(),
            snapshots: holders.len(),
            stale_packs: *stale_count,
            packs_written: 0,
            bytes_written: 0,
        };
        if dry_run {
            report.repositories.push(entry);
            continue;
        }
        let format = holders[0].repo(name).map(|r| r.object_format.clone()).unwrap_or_default();
        let scratch = Scratch::new(vault, &format)?;
        let mut installed = HashSet::new();
        progress.start(name, "consolidating", None);
        for s in holders {
            for p in s.repo(name).map(|r| r.chain.as_slice()).unwrap_or_default() {
                if installed.insert(p.pack.id) {
                    scratch.install(vault, p)?;
                }
            }
        }
        let mut chain: Vec<PackRecord> = Vec::new();
        let mut previous = BTreeSet::new();
        for s in holders {
            let repo = s.repo(name).expect("holders hold the repository");
            let include = tips(&repo.refs, repo.head.as_ref())?;
            let new_id = new_ids[&s.id];
            if !include.is_subset(&previous)
                && let Some(pack) =
                    pack_and_store(vault, &git, name, scratch.path(), &include, &previous, new_id, progress)?
            {
                entry.packs_written += 1;
                entry.bytes_written += pack.stored_size();
                chain.push(pack);
            }
            new_chains.insert((s.id, name.to_string()), chain.clone());
            previous = include;
        }
        progress.finish(name);
        report.repositories.push(entry);
    }
    if dry_run {
        return Ok(report);
    }

    // New snapshots first (each recorded), then the old ones forgotten in one entry.
    let mut old_ids = Vec::new();
    let mut replaced_by = Vec::new();
    for s in &snaps {
        let Some(&new_id) = new_ids.get(&s.id) else { continue };
        let mut rewritten = s.clone();
        rewritten.id = new_id;
        for r in &mut rewritten.repositories {
            if let Some(chain) = new_chains.remove(&(s.id, r.name.clone())) {
                r.chain = chain;
            }
        }
        let mac = vault.write_snapshot(&rewritten)?;
        vault.append_ledger(Event::Snapshot {
            snapshot: new_id,
            mac,
            repositories: rewritten.repositories.iter().map(|r| r.name.clone()).collect(),
            recovered: false,
        })?;
        old_ids.push(s.id);
        replaced_by.push(new_id);
        report.replaced.push(Replacement { old: s.id, new: new_id });
    }
    let entry = vault.append_ledger(Event::Forget {
        snapshots: old_ids.clone(),
        reason: "consolidated".into(),
        replaced_by,
    })?;
    report.ledger_entry = Some(entry.seq);
    for id in &old_ids {
        vault.store.delete(&paths::snapshot(id))?;
    }
    Ok(report)
}
