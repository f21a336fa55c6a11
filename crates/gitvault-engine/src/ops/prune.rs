//! Prune: delete the data no snapshot needs any more, in two phases (FORMAT.md §9.4).
//!
//! Each run (1) finishes interrupted `forget`s, (2) deletes, under every deletion mark that has
//! aged past its grace period on the storage's clock, the listed files that are still
//! unreferenced — after a ledger `prune` entry naming them — and (3) writes a new mark listing
//! the data that is unreferenced now. Nothing is deleted the first time it is found
//! unreferenced, so a backup running meanwhile, which may be about to reference it, is safe
//! (it never builds on marked data, and re-checks before committing when it ran long).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use gitvault_format::envelope::Kind;
use gitvault_format::ids::{DataId, MarkId, SnapshotId, paths};
use gitvault_format::ledger::Event;
use gitvault_format::mark::{MIN_GRACE_SECONDS, Mark};
use gitvault_format::snapshot::PackRecord;
use gitvault_format::timestamp;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lock::LockedFile;
use crate::ops::consolidate::consolidate;
pub use crate::ops::consolidate::{ConsolidationReport, When};
use crate::progress::Progress;
use crate::vault::Vault;

/// The default grace period of new marks.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// By default a repository is consolidated once its kept snapshots lean on this many packs of
/// forgotten snapshots.
pub const DEFAULT_CONSOLIDATE_AFTER: usize = 16;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// How long new marks wait before their files may go (at least one hour).
    pub grace: Duration,
    /// When to rewrite a repository's chains so that packs of forgotten snapshots can go.
    pub consolidate: When,
    /// Report only; write and delete nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self { grace: DEFAULT_GRACE, consolidate: When::StalePacks(DEFAULT_CONSOLIDATE_AFTER), dry_run: false }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MarkReport {
    pub mark: MarkId,
    pub data_files: usize,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub mark: MarkId,
    /// Files deleted (with `dry_run`: that would be).
    pub deleted_files: usize,
    pub deleted_bytes: u64,
    /// Files the mark listed that a snapshot references again (kept).
    pub kept_referenced: usize,
    /// Unreferenced files left in place because they are locked; the mark stays for them.
    pub locked_files: usize,
    pub ledger_entry: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PendingMark {
    pub mark: MarkId,
    pub data_files: usize,
    /// Age on the storage's clock.
    pub age_seconds: u64,
    /// How long until a prune may act on it.
    pub ripe_in_seconds: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Snapshot files a `forget` recorded but did not get to delete, deleted now.
    pub finished_forgets: Vec<SnapshotId>,
    /// Repositories whose packs were rewritten so that forgotten history can go.
    pub consolidated: ConsolidationReport,
    /// Marks whose grace period had passed, and what went under each.
    pub swept: Vec<SweepReport>,
    /// Marks still waiting.
    pub pending: Vec<PendingMark>,
    /// Pending-pack records of interrupted backups removed because nothing is left to resume:
    /// their packs are referenced by a snapshot now, or gone.
    pub pending_removed: usize,
    /// The mark this run wrote for data unreferenced now (none when there is none).
    pub marked: Option<MarkReport>,
    /// Unreferenced data files written less than an hour ago (storage clock), left for a later
    /// run: most likely they belong to a backup still running.
    pub young_unreferenced: usize,
    pub referenced_files: usize,
    pub referenced_bytes: u64,
    /// Files that would have been deleted but are locked (Object Lock): left in place, and
    /// deleted by a prune after their lock has expired.
    pub locked: Vec<LockedFile>,
}

pub fn prune(vault: &Vault, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneReport> {
    if !opts.dry_run {
        vault.deny_in_append_only("prune")?;
        vault.require_version("prune", 2)?;
    }
    if opts.grace < Duration::from_secs(MIN_GRACE_SECONDS) {
        return Err(Error::Refused(format!(
            "the grace period must be at least {} hour: a backup running meanwhile relies on it",
            MIN_GRACE_SECONDS / 3600
        )));
    }
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        finished_forgets: Vec::new(),
        consolidated: ConsolidationReport::default(),
        swept: Vec::new(),
        pending: Vec::new(),
        pending_removed: 0,
        marked: None,
        young_unreferenced: 0,
        referenced_files: 0,
        referenced_bytes: 0,
        locked: Vec::new(),
    };
    // Locked files are never deleted (a delete would only hide them; see lock.rs).
    let locks = vault.lock_check(SystemTime::now())?;

    // (1) Interrupted forgets: the ledger says these snapshots are gone, but a file remains.
    let forgotten = forgotten_snapshots(vault)?;
    for id in vault.snapshot_ids()? {
        if forgotten.contains(&id) {
            if let Some(locked) = locks.locked(vault, &paths::snapshot(&id))? {
                report.locked.push(locked);
                continue;
            }
            if !opts.dry_run {
                vault.store.delete(&paths::snapshot(&id))?;
            }
            report.finished_forgets.push(id);
        }
    }

    // Rewrite chains that lean on forgotten snapshots; their old packs are then unreferenced.
    report.consolidated = consolidate(vault, opts.consolidate, opts.dry_run, progress)?;

    // The storage's clock, taken after reading nothing that the decisions below depend on.
    let now = if opts.dry_run && vault.append_only { SystemTime::now() } else { vault.storage_now()? };
    let marks = vault.read_marks()?;
    // Snapshots are listed after `now`: a snapshot committed before a mark ripened is seen.
    let (referenced, referenced_bytes) = referenced_data(vault)?;
    report.referenced_files = referenced.len();
    report.referenced_bytes = referenced_bytes;
    // Size and storage time of every data file.
    let present: HashMap<DataId, (u64, Option<SystemTime>)> = vault
        .store
        .list(paths::DATA_DIR)?
        .into_iter()
        .filter_map(|o| data_id_of(&o.path).map(|id| (id, (o.size, o.modified))))
        .collect();

    // (2) Sweep the ripe marks.
    let mut still_marked: HashSet<DataId> = HashSet::new();
    // Everything listed by a ripe mark: gone now, or referenced again (then not re-marked).
    let mut swept: HashSet<DataId> = HashSet::new();
    for found in &marks {
        let age = found.age(now);
        let ripe = age.is_some_and(|a| a >= found.grace());
        if !ripe {
            still_marked.extend(found.mark.data.iter().copied());
            let age = age.unwrap_or_default();
            report.pending.push(PendingMark {
                mark: found.mark.id,
                data_files: found.mark.data.len(),
                age_seconds: age.as_secs(),
                ripe_in_seconds: found.grace().saturating_sub(age).as_secs(),
            });
            continue;
        }
        swept.extend(found.mark.data.iter().copied());
        let mut doomed: Vec<DataId> = Vec::new();
        let mut locked_files = 0;
        for d in found.mark.data.iter().filter(|d| present.contains_key(d) && !referenced.contains(d)) {
            match locks.locked(vault, &paths::data(d))? {
                Some(locked) => {
                    locked_files += 1;
                    report.locked.push(locked);
                }
                None => doomed.push(*d),
            }
        }
        let bytes: u64 = doomed.iter().map(|d| present[d].0).sum();
        let kept_referenced = found.mark.data.iter().filter(|d| referenced.contains(d)).count();
        let mut sweep = SweepReport {
            mark: found.mark.id,
            deleted_files: doomed.len(),
            deleted_bytes: bytes,
            kept_referenced,
            locked_files,
            ledger_entry: None,
        };
        if !opts.dry_run {
            if !doomed.is_empty() {
                let entry = vault.append_ledger(Event::Prune { mark: found.mark.id, data: doomed.clone(), bytes })?;
                sweep.ledger_entry = Some(entry.seq);
                for d in &doomed {
                    vault.store.delete(&paths::data(d))?;
                }
            }
            // A mark whose files are not all gone stays, for the prune after their locks expire.
            if locked_files == 0 {
                vault.store.delete(&found.path)?;
            }
        }
        report.swept.push(sweep);
    }

    // (3) Mark what is unreferenced now and not marked yet. Data written in the last hour on
    // the storage's clock is left alone: it most likely belongs to a backup still running.
    let min_age = Duration::from_secs(MIN_GRACE_SECONDS);
    let old_enough =
        |modified: Option<SystemTime>| modified.is_some_and(|m| now.duration_since(m).unwrap_or_default() >= min_age);
    report.young_unreferenced = present
        .iter()
        .filter(|(d, (_, modified))| !referenced.contains(d) && !swept.contains(d) && !old_enough(*modified))
        .count();
    let candidates: Vec<DataId> = present
        .iter()
        .filter(|(d, (_, modified))| {
            !referenced.contains(d) && !still_marked.contains(d) && !swept.contains(d) && old_enough(*modified)
        })
        .map(|(d, _)| *d)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !candidates.is_empty() {
        let id = MarkId::random()?;
        let bytes = candidates.iter().map(|d| present[d].0).sum();
        if !opts.dry_run {
            let mark = Mark {
                version: gitvault_format::mark::MARK_VERSION,
                id,
                time: timestamp::now(),
                host: vault.ctx.host.clone(),
                grace_seconds: opts.grace.as_secs(),
                data: candidates.clone(),
            };
            let stored = vault.seal_small(Kind::Mark, &id.to_hex(), &mark.to_json())?;
            vault.store.put_new(&paths::mark(&id), &stored)?;
        }
        report.marked = Some(MarkReport { mark: id, data_files: candidates.len(), bytes });
    }
    // (4) Pending records with nothing left to resume: every pack referenced now, or gone.
    let (referenced_now, _) = referenced_data(vault)?;
    let still_present: HashSet<DataId> =
        vault.store.list(paths::DATA_DIR)?.into_iter().filter_map(|o| data_id_of(&o.path)).collect();
    for p in vault.read_pending()? {
        let resumable = p
            .packs
            .iter()
            .flat_map(PackRecord::data)
            .map(|(d, _)| d.id)
            .all(|d| still_present.contains(&d) && !referenced_now.contains(&d));
        if !resumable {
            if !opts.dry_run {
                vault.store.delete(&paths::pending(&p.id))?;
            }
            report.pending_removed += 1;
        }
    }
    Ok(report)
}

fn data_id_of(path: &str) -> Option<DataId> {
    path.strip_prefix(paths::DATA_DIR)?.rsplit('/').next()?.parse().ok()
}

/// Every data file some snapshot references, and their stored bytes. A snapshot that cannot be
/// read stops the prune: its references are unknown.
pub(crate) fn referenced_data(vault: &Vault) -> Result<(HashSet<DataId>, u64)> {
    let mut set = HashSet::new();
    let mut bytes = 0;
    for id in vault.snapshot_ids()? {
        let (snap, _) = vault.read_snapshot(&id).map_err(|e| match e {
            Error::Damaged { path, source } => Error::Refused(format!(
                "snapshot file {path} cannot be read ({source}), so what it references is unknown; run `gitvault verify`, and forget or repair it before pruning"
            )),
            other => other,
        })?;
        for d in snap.repositories.iter().flat_map(gitvault_format::snapshot::RepoSnapshot::data_refs) {
            if set.insert(d.id) {
                bytes += d.size;
            }
        }
    }
    Ok((set, bytes))
}

/// Snapshots a ledger `forget` entry removed.
pub(crate) fn forgotten_snapshots(vault: &Vault) -> Result<HashSet<SnapshotId>> {
    let mut set = HashSet::new();
    for e in vault.read_ledger()? {
        if let Ok((entry, _)) = &e.entry
            && let Event::Forget { snapshots, .. } = &entry.event
        {
            set.extend(snapshots.iter().copied());
        }
    }
    Ok(set)
}
