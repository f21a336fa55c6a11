//! Backup: turn each source's refs and new objects into a pack in the vault, then commit a
//! snapshot that records every ref and the chain of packs that rebuilds it.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gitvault_format::envelope::{Compression, Kind};
use gitvault_format::ids::{DataId, PendingId, SnapshotId, paths};
use gitvault_format::ledger::Event;
use gitvault_format::pending::Pending;
use gitvault_format::snapshot::{
    BackupType, HeadRecord, PackRecord, RefRecord, RepoFailure, RepoSnapshot, Snapshot, THIN_PACK_VERSION,
};
use gitvault_format::timestamp;
use gitvault_git::{Git, Head, HttpAuth, ObjectId, RefState, SolePack, SourceKind};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ops::diff::{RefChange, ancestry_in, ref_changes};
use crate::progress::Progress;
use crate::vault::{Context, DataWriter, Vault};

/// A source as it may be shown: any credentials in a URL removed.
pub use gitvault_git::redact_source as redact;

/// One thing to back up: a path or URL, and optionally the name to file it under.
#[derive(Clone, Debug, Default)]
pub struct SourceSpec {
    pub source: String,
    pub name: Option<String>,
    /// An HTTP header git sends to the source's host (a forge token); never stored.
    pub auth: Option<HttpAuth>,
    /// A source that may not exist (a wiki that is enabled but was never created): when the
    /// remote answers "not found" it is skipped, not failed.
    pub optional: bool,
    /// Ref prefixes left out (`refs/pull/`): neither fetched nor recorded.
    pub exclude_refs: Vec<String>,
    /// Known to have failed before the run (a forge account that could not be listed): the
    /// error is recorded as this source's failure in every vault.
    pub failed: Option<String>,
    /// The HTTP(S) URL of the repository for Git LFS when `source` is not one (a clone over
    /// SSH): LFS objects are fetched from `<lfs_url>/info/lfs`, and `auth` goes to its host.
    pub lfs_url: Option<String>,
}

impl SourceSpec {
    pub fn new(source: impl Into<String>, name: Option<String>) -> Self {
        Self { source: source.into(), name, ..Self::default() }
    }

    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| gitvault_git::source_name(&self.source))
    }

    fn excluded(&self, refname: &str) -> bool {
        self.exclude_refs.iter().any(|p| refname.starts_with(p.as_str()))
    }
}

#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// `None`: full for a repository never backed up, incremental otherwise.
    pub backup_type: Option<BackupType>,
    /// A run that lasted this long re-checks, before committing, that nothing it builds on was
    /// marked or deleted by a prune meanwhile (FORMAT.md §9.4 requires it after 1800 s; checking
    /// sooner only costs a listing). Capped at [`RECHECK_AFTER`].
    pub recheck_after: Duration,
    /// Sources read and packed at the same time (at least 1).
    pub jobs: usize,
    /// Set (by a signal handler) to stop cleanly: repositories being backed up are finished,
    /// the others are recorded as failed with [`INTERRUPTED`], and the snapshot is committed.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The start of the error recorded for a repository left out because the run was asked to stop.
pub const INTERRUPTED: &str = "interrupted: gitvault was asked to stop before this repository";

/// FORMAT.md §9.4: a backup that ran for more than this re-checks before committing.
pub const RECHECK_AFTER: Duration = Duration::from_secs(gitvault_format::mark::MIN_GRACE_SECONDS / 2);

impl Default for BackupOptions {
    fn default() -> Self {
        Self { backup_type: None, recheck_after: RECHECK_AFTER, jobs: 1, cancel: None }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RepoReport {
    pub name: String,
    pub source: String,
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    pub base: Option<SnapshotId>,
    pub refs: usize,
    pub objects_added: u64,
    /// Stored (encrypted) bytes this backup added for the repository.
    pub bytes_added: u64,
    /// Stored bytes of packs an interrupted earlier run had stored, used instead of storing
    /// them again (included in `bytes_added`).
    pub bytes_resumed: u64,
    /// Git LFS objects the snapshot holds for the repository, and how many this run stored
    /// (their bytes are in `bytes_added`).
    pub lfs_objects: usize,
    pub lfs_added: u64,
    /// LFS objects the history points to that could not be fetched (or, in a vault older than
    /// format version 3, stored): the backup holds the rest, and the run counts as partial.
    pub lfs_missing: usize,
    /// Ref changes since the repository's previous snapshot.
    pub changes: Vec<RefChange>,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    /// The snapshot written; `None` when every source failed.
    pub snapshot: Option<SnapshotId>,
    #[serde(with = "time::serde::rfc3339")]
    pub time: time::OffsetDateTime,
    pub repositories: Vec<RepoReport>,
    pub failures: Vec<RepoFailure>,
    /// Optional sources that do not exist upstream (wikis never created).
    pub skipped: Vec<Skipped>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub name: String,
    pub source: String,
    pub reason: String,
}

/// Back up every source into one new snapshot. A source that fails is reported in the result
/// (and in the snapshot) without stopping the others.
pub fn backup(
    vault: &Vault,
    sources: &[SourceSpec],
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    backup_many(&[vault], sources, opts, progress)?.pop().expect("one result per vault")
}

/// Back up every source into each of `vaults`, one new snapshot in each: one result per vault,
/// in order. A vault that fails does not stop the others, and a source that fails in one vault
/// is reported there without stopping the others.
///
/// The source side is done once for the run: each source's refs are read (and a remote source
/// fetched into its mirror, in the first vault's cache) once, so every vault records the same
/// refs. Each vault then packs against its own history, so each holds a complete chain of its
/// own and restores on its own. Snapshot ids are drawn per vault.
pub fn backup_many(
    vaults: &[&Vault],
    sources: &[SourceSpec],
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<Vec<Result<BackupReport>>> {
    let mut names = BTreeSet::new();
    for s in sources {
        let name = s.name();
        if !names.insert(name.clone()) {
            return Err(Error::DuplicateName { name });
        }
    }
    let Some(first) = vaults.first() else { return Ok(Vec::new()) };
    let runs: Vec<Result<Run>> = vaults.iter().map(|v| Run::start(v)).collect();
    let time = timestamp::now();
    let git = Git::new();
    let skipped = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    // Each worker takes the next source, reads it once and backs it up into every vault.
    let work = || {
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(spec) = sources.get(index) else { break };
            if runs.iter().all(|r| r.is_err()) {
                break; // no vault to write to: do not fetch for nothing
            }
            let name = spec.name();
            let stopping = opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
            let failed = if stopping { Some(INTERRUPTED.to_string()) } else { spec.failed.clone() };
            if let Some(error) = failed {
                for run in runs.iter().filter_map(|r| r.as_ref().ok()) {
                    run.record(index, &name, spec, Err(error.clone()));
                }
                continue;
            }
            progress.start(&name, "reading refs", None);
            let started = Instant::now();
            let git = match &spec.auth {
                Some(auth) => git.with_http_auth(spec.lfs_url.as_deref().unwrap_or(&spec.source), auth),
                None => git.clone(),
            };
            let prepared = prepare(&first.ctx, &git, spec);
            let prepare_time = started.elapsed();
            if let Err(e) = &prepared
                && spec.optional
                && matches!(e, Error::Git(g) if g.is_remote_not_found())
            {
                tracing::info!(repo = %name, "optional source does not exist upstream: skipped");
                let reason = "does not exist upstream".to_string();
                let source = gitvault_git::redact_source(&spec.source);
                skipped.lock().expect("skipped lock").push((index, Skipped { name: name.clone(), source, reason }));
                progress.finish(&name);
                continue;
            }
            for run in runs.iter().filter_map(|r| r.as_ref().ok()) {
                let result = match &prepared {
                    Ok(source) => {
                        let job = Job { name: &name, spec, source, prepare_time };
                        backup_repo(run, &git, &job, opts, progress).map_err(|e| crate::error::chain(&e))
                    }
                    Err(e) => Err(crate::error::chain(e)),
                };
                run.record(index, &name, spec, result);
            }
            progress.finish(&name);
        }
    };
    let workers = opts.jobs.clamp(1, sources.len().max(1));
    if workers == 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(work);
            }
        });
    }
    let mut skipped = skipped.into_inner().expect("skipped lock");
    skipped.sort_by_key(|(i, _)| *i);
    let skipped: Vec<Skipped> = skipped.into_iter().map(|(_, s)| s).collect();
    Ok(runs
        .into_iter()
        .map(|r| r.and_then(|run| run.commit(time, opts.recheck_after.min(RECHECK_AFTER), skipped.clone())))
        .collect())
}

/// One vault's part of a backup run.
struct Run<'a> {
    vault: &'a Vault,
    /// When the marks were read, before the history: see `Vault::guard_commit`.
    started: Instant,
    history: Vec<Snapshot>,
    /// Pending packs of interrupted runs that may be resumed (none of their data marked).
    pending: Vec<Pending>,
    /// Data a prune marked for deletion when the run started: never built upon.
    marked: HashSet<DataId>,
    /// LFS objects the vault holds (from the history, then from this run), by oid.
    lfs_known: crate::lfs::Known,
    id: SnapshotId,
    /// What the workers found, each tagged with its source's position so that the snapshot
    /// lists repositories in the order given, however the work interleaved.
    outcomes: Mutex<Outcomes>,
}

#[derive(Default)]
struct Outcomes {
    /// Pending records this run used or wrote: removed once its snapshot is committed.
    pending_done: Vec<PendingId>,
    repos: Vec<(usize, RepoSnapshot)>,
    reports: Vec<(usize, RepoReport)>,
    failures: Vec<(usize, RepoFailure)>,
}

impl<'a> Run<'a> {
    fn start(vault: &'a Vault) -> Result<Self> {
        // Refuse before storing anything if the ledger cannot take the snapshot's entry.
        vault.ledger_head()?;
        crate::scratch::remove_stale(&vault.ctx);
        match vault.remove_incomplete() {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(count = removed.len(), "removed temporaries of interrupted writers")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not clean up temporaries of interrupted writers"),
        }
        // Read marks before snapshots: a snapshot that is live now keeps its data until it is
        // forgotten, and anything marked after this point cannot go before the grace period.
        let started = Instant::now();
        let marked = vault.marked_data()?;
        let history: Vec<Snapshot> = vault
            .snapshots()?
            .into_iter()
            .filter(|s| {
                // A base must not lean on data a prune may delete: a snapshot referencing marked
                // data (committed while that mark was written) is not built upon.
                let leans = s.repositories.iter().flat_map(RepoSnapshot::data_refs).any(|d| marked.contains(&d.id));
                if leans {
                    tracing::info!(snapshot = %s.id.short(), "not building on a snapshot whose data a prune has marked");
                }
                !leans
            })
            .collect();
        let pending: Vec<Pending> = vault
            .read_pending()?
            .into_iter()
            .filter(|p| p.packs.iter().flat_map(PackRecord::data).all(|(d, _)| !marked.contains(&d.id)))
            .collect();
        let lfs_known = crate::lfs::Known::new(
            history
                .iter()
                .flat_map(|s| &s.repositories)
                .flat_map(RepoSnapshot::lfs_objects)
                .map(|l| (l.oid.clone(), l.data)),
        );
        let id = SnapshotId::random()?;
        Ok(Self { vault, started, history, pending, marked, lfs_known, id, outcomes: Mutex::new(Outcomes::default()) })
    }

    /// A repository's outcome in this vault; a failure comes as its message (a source that
    /// could not be read fails in every vault with the same one).
    fn record(
        &self,
        index: usize,
        name: &str,
        spec: &SourceSpec,
        result: Result<(RepoSnapshot, RepoReport, Vec<PendingId>), String>,
    ) {
        let mut out = self.outcomes.lock().expect("outcomes lock");
        match result {
            Ok((repo, report, done)) => {
                out.repos.push((index, repo));
                out.reports.push((index, report));
                out.pending_done.extend(done);
            }
            Err(error) => {
                tracing::warn!(repo = %name, vault = %self.vault.location(), error = %error, "backup of repository failed");
                out.failures.push((
                    index,
                    RepoFailure { name: name.to_string(), source: gitvault_git::redact_source(&spec.source), error },
                ));
            }
        }
    }

    fn commit(
        self,
        time: time::OffsetDateTime,
        recheck_after: Duration,
        skipped: Vec<Skipped>,
    ) -> Result<BackupReport> {
        let Self { vault, started, id, outcomes, .. } = self;
        let Outcomes { pending_done, repos, reports, failures } = outcomes.into_inner().expect("outcomes lock");
        let (repos, reports, failures) = (in_order(repos), in_order(reports), in_order(failures));
        if repos.is_empty() {
            return Ok(BackupReport { snapshot: None, time, repositories: reports, failures, skipped });
        }
        let snap = Snapshot {
            version: gitvault_format::SNAPSHOT_VERSION,
            id,
            time,
            host: vault.ctx.host.clone(),
            gitvault_version: env!("CARGO_PKG_VERSION").to_string(),
            repositories: repos,
            failures: failures.clone(),
        };
        let needed = snap.repositories.iter().flat_map(RepoSnapshot::data_refs).map(|d| d.id);
        vault.guard_commit(needed.collect(), started, recheck_after, &HashSet::new(), "backup")?;
        // The snapshot file is the commit point: every pack it names is already durable.
        let mac = vault.write_snapshot(&snap)?;
        vault.append_ledger(Event::Snapshot {
            snapshot: id,
            mac,
            repositories: snap.repositories.iter().map(|r| r.name.clone()).collect(),
            recovered: false,
        })?;
        // The snapshot now holds what the pending records offered.
        vault.remove_pending(&pending_done);
        Ok(BackupReport { snapshot: Some(id), time, repositories: reports, failures, skipped })
    }
}

/// Items tagged with their source's position, in that order.
fn in_order<T>(mut v: Vec<(usize, T)>) -> Vec<T> {
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, x)| x).collect()
}

/// A source ready to pack from: a repository directory (the source itself when local, a
/// mirror in the cache otherwise) and the refs read from it.
struct Prepared {
    path: PathBuf,
    /// The remote URL of a mirrored source (credentials and all: never shown).
    url: Option<String>,
    state: RefState,
    /// Held while the mirror is in use, so two runs never fetch into one mirror at once.
    _lock: Option<fs::File>,
}

fn prepare(ctx: &Context, git: &Git, spec: &SourceSpec) -> Result<Prepared> {
    let mut prepared = prepare_unfiltered(ctx, git, spec)?;
    prepared.state.refs.retain(|r| !spec.excluded(&r.name));
    Ok(prepared)
}

fn prepare_unfiltered(ctx: &Context, git: &Git, spec: &SourceSpec) -> Result<Prepared> {
    match gitvault_git::classify_source(&spec.source)? {
        SourceKind::Local(path) => {
            let state = git.read_refs(&path)?;
            Ok(Prepared { path, url: None, state, _lock: None })
        }
        SourceKind::Remote(url) => {
            let dir = ctx.cache_dir.join("mirrors");
            fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let key = blake3::hash(gitvault_git::redact_source(&url).as_bytes()).to_hex();
            let mirror = dir.join(format!("{}.git", &key[..32]));
            let lock_path = dir.join(format!("{}.lock", &key[..32]));
            let lock =
                fs::File::create(&lock_path).map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
            lock.lock().map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
            // Refs first: a no-change backup then costs one ref listing and no fetch.
            let mut remote = git.ls_remote(&url)?;
            remote.refs.retain(|r| !spec.excluded(&r.name));
            let mut current = mirror.join("HEAD").exists().then(|| git.read_refs(&mirror).ok()).flatten();
            if let Some(c) = current.as_mut() {
                c.refs.retain(|r| !spec.excluded(&r.name));
            }
            let state = match current {
                Some(c) if c.refs == remote.refs && c.head == remote.head => c,
                _ => git.sync_mirror(&mirror, &url, remote.object_format, remote.head.as_ref(), &spec.exclude_refs)?,
            };
            Ok(Prepared { path: mirror, url: Some(url), state, _lock: Some(lock) })
        }
    }
}

pub(crate) fn tips(refs: &[RefRecord], head: Option<&HeadRecord>) -> Result<BTreeSet<ObjectId>> {
    let mut set = BTreeSet::new();
    for r in refs {
        set.insert(ObjectId::parse(&r.oid)?);
    }
    if let Some(HeadRecord::Detached(oid)) = head {
        set.insert(ObjectId::parse(oid)?);
    }
    Ok(set)
}

fn records(state: &RefState) -> (Vec<RefRecord>, Option<HeadRecord>) {
    let refs = state.refs.iter().map(|r| RefRecord { name: r.name.clone(), oid: r.oid.to_string() }).collect();
    let head = state.head.as_ref().map(|h| match h {
        Head::Symbolic(s) => HeadRecord::Symbolic(s.clone()),
        Head::Detached(o) => HeadRecord::Detached(o.to_string()),
    });
    (refs, head)
}

/// One source of the run, read once and backed up into each vault.
struct Job<'a> {
    name: &'a str,
    spec: &'a SourceSpec,
    source: &'a Prepared,
    /// Time spent reading refs (and fetching), counted in every vault's duration.
    prepare_time: Duration,
}

/// Back up one repository into one vault. Also returns the pending records it used or wrote,
/// to be removed once the snapshot is committed.
fn backup_repo(
    run: &Run,
    git: &Git,
    job: &Job,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<(RepoSnapshot, RepoReport, Vec<PendingId>)> {
    let (vault, history, pending, snapshot) = (run.vault, &run.history, &run.pending, run.id);
    let started = Instant::now();
    let Job { name, spec, source, prepare_time } = *job;
    let (refs, head) = records(&source.state);
    let format = source.state.object_format.as_str().to_string();

    let latest = |pred: &dyn Fn(&RepoSnapshot) -> bool| {
        history
            .iter()
            .rev()
            .find_map(|s| s.repo(name).filter(|r| pred(r) && r.object_format == format).map(|r| (s.id, r)))
    };
    let previous = latest(&|_| true);
    let (backup_type, base) = match opts.backup_type {
        Some(BackupType::Full) => (BackupType::Full, None),
        Some(BackupType::Diff) => match latest(&|r| r.backup_type == BackupType::Full) {
            Some(b) => (BackupType::Diff, Some(b)),
            None => (BackupType::Full, None),
        },
        Some(BackupType::Incr) | None => match previous {
            Some(p) => (BackupType::Incr, Some(p)),
            None => (BackupType::Full, None),
        },
    };

    let include = tips(&refs, head.as_ref())?;
    let mut exclude = match base {
        Some((_, b)) => tips(&b.refs, b.head.as_ref())?,
        None => BTreeSet::new(),
    };
    let lfs_url = spec.lfs_url.as_deref().or(source.url.as_deref());
    let lfs_source = crate::lfs::LfsSource { name, git_dir: &source.path, url: lfs_url };
    let include_list: Vec<ObjectId> = include.iter().cloned().collect();
    let lfs_base = base.map(|(_, b)| b);
    // The LFS pointer scan only reads the source: it runs while the pack is written and sealed.
    let (packed, wanted) = std::thread::scope(|scope| {
        let scan = scope.spawn(|| crate::lfs::wanted(git, &lfs_source, lfs_base, &include_list));
        let packed = (|| -> Result<_> {
            let mut chain = base.map(|(_, b)| b.chain.clone()).unwrap_or_default();
            let mut done = Vec::new();
            let (mut objects_added, mut bytes_added, mut bytes_resumed) = (0, 0, 0);
            // Every tip already in the base means every object is too: no pack, and no git call.
            if !include.is_subset(&exclude) {
                // Packs an interrupted run stored for this repository on the same base: with the
                // base's chain they hold everything their tips reach, so they extend the base.
                let mut resumed: Vec<PackRecord> = Vec::new();
                for p in pending
                    .iter()
                    .filter(|p| p.name == name && p.object_format == format && p.base == base.map(|(id, _)| id))
                {
                    if !pending_data_present(vault, p)? {
                        continue;
                    }
                    for oid in &p.tips {
                        exclude.insert(ObjectId::parse(oid)?);
                    }
                    for pack in &p.packs {
                        if !resumed.iter().any(|r| r.pack.id == pack.pack.id) {
                            resumed.push(PackRecord { snapshot, ..pack.clone() });
                        }
                    }
                    done.push(p.id);
                }
                if !resumed.is_empty() {
                    tracing::info!(repo = %name, packs = resumed.len(), "resuming from packs an interrupted backup stored");
                }
                let new_pack = if include.is_subset(&exclude) {
                    None
                } else {
                    pack_and_store(vault, git, name, &source.path, &include, &exclude, snapshot, progress)?
                };
                for p in resumed.iter().chain(&new_pack) {
                    objects_added += p.objects;
                    bytes_added += p.stored_size();
                }
                bytes_resumed = resumed.iter().map(PackRecord::stored_size).sum();
                if let Some(pack) = new_pack.as_ref().filter(|_| vault.config.version >= 2) {
                    // Should this run stop before its snapshot, the next one starts from here.
                    let mut packs = resumed.clone();
                    packs.push(pack.clone());
                    let tips = include.iter().map(|o| o.to_string()).collect();
                    match vault.write_pending(name, &format, base.map(|(id, _)| id), tips, packs) {
                        Ok(id) => done.push(id),
                        Err(e) => {
                            tracing::warn!(repo = %name, error = %e, "could not record the stored pack for resuming")
                        }
                    }
                }
                chain.extend(resumed);
                chain.extend(new_pack);
            }
            Ok((chain, done, objects_added, bytes_added, bytes_resumed))
        })();
        (packed, scan.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    let (chain, done, objects_added, mut bytes_added, bytes_resumed) = packed?;
    let lfs = crate::lfs::backup(vault, git, &lfs_source, lfs_base, wanted?, &run.lfs_known, &run.marked, progress)?;
    bytes_added += lfs.bytes_added;

    let changes = match previous {
        Some((_, p)) => ref_changes(&p.refs, &refs, &mut ancestry_in(git, &source.path))?,
        None => Vec::new(),
    };
    for c in changes.iter().filter(|c| c.change.is_warning()) {
        tracing::info!(repo = %name, r#ref = %c.name, change = c.change.describe(), "ref changed since the previous backup");
    }
    let redacted = gitvault_git::redact_source(&spec.source);
    let report = RepoReport {
        name: name.to_string(),
        source: redacted.clone(),
        backup_type,
        base: base.map(|(id, _)| id),
        refs: refs.len(),
        objects_added,
        bytes_added,
        bytes_resumed,
        lfs_objects: lfs.records.as_ref().map_or(0, Vec::len),
        lfs_added: lfs.added,
        lfs_missing: lfs.missing.len(),
        changes,
        duration_ms: u64::try_from((prepare_time + started.elapsed()).as_millis()).unwrap_or(u64::MAX),
    };
    let repo = RepoSnapshot {
        name: name.to_string(),
        source: redacted,
        backup_type,
        base: base.map(|(id, _)| id),
        object_format: format,
        head,
        refs,
        chain,
        lfs: lfs.records,
    };
    Ok((repo, report, done))
}

/// Whether every data file of a pending record is still in the vault, whole.
fn pending_data_present(vault: &Vault, p: &Pending) -> Result<bool> {
    for (d, _) in p.packs.iter().flat_map(PackRecord::data) {
        if vault.store.stat(&paths::data(&d.id))? != Some(d.size) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_and_store(
    vault: &Vault,
    git: &Git,
    name: &str,
    repo: &Path,
    include: &BTreeSet<ObjectId>,
    exclude: &BTreeSet<ObjectId>,
    snapshot: SnapshotId,
    progress: &dyn Progress,
) -> Result<Option<PackRecord>> {
    let include: Vec<_> = include.iter().cloned().collect();
    if exclude.is_empty()
        && let Some(record) = store_sole_pack(vault, git, name, repo, &include, snapshot, progress)?
    {
        return Ok(Some(record));
    }
    let exclude: Vec<_> = exclude.iter().cloned().collect();
    if !exclude.is_empty() && vault.config.version >= THIN_PACK_VERSION {
        return store_thin_pack(vault, git, name, repo, &include, &exclude, snapshot, progress);
    }
    let tmp = crate::scratch::scratch_dir(&vault.ctx, "pack")?;
    progress.start(name, "packing", None);
    // The pack is sealed into the vault while git is still writing it: on two cores the
    // encryption runs beside git instead of after it.
    let mut failure: Option<Error> = None;
    let streamed =
        git.pack_objects_streaming(repo, &include, &exclude, tmp.path(), pack_sealer(vault, progress, &mut failure));
    if let Some(e) = failure {
        return Err(e);
    }
    let Some(streamed) = streamed? else { return Ok(None) };
    let files = streamed.files;
    progress.start(name, "storing", None);
    // Pack data is already deflated by git: compressing it again costs time and saves nothing.
    let pack = if streamed.streamed {
        streamed.consumed.commit(vault)?
    } else {
        drop(streamed.consumed);
        let mut f =
            fs::File::open(&files.pack).map_err(|e| Error::io(format!("opening {}", files.pack.display()), e))?;
        vault.write_data(Kind::Pack, Compression::None, &mut f, &mut |n| progress.bytes(n))?
    };
    let mut f = fs::File::open(&files.index).map_err(|e| Error::io(format!("opening {}", files.index.display()), e))?;
    let index = vault.write_data(Kind::PackIndex, Compression::Zstd, &mut f, &mut |_| {})?;
    Ok(Some(PackRecord { snapshot, checksum: files.checksum, objects: files.objects, pack, index: Some(index) }))
}

/// What reads the pack git streams: seals it into a new data object as it comes (git's pack
/// data is already deflated, so it is not compressed again). A storage failure is kept in
/// `failure`, to be reported as itself; git only sees its reader stop.
fn pack_sealer<'a>(
    vault: &'a Vault,
    progress: &'a dyn Progress,
    failure: &'a mut Option<Error>,
) -> impl FnOnce(&mut dyn Read) -> std::io::Result<DataWriter> + 'a {
    move |reader| {
        let result = vault.begin_data(Kind::Pack, Compression::None).and_then(|mut w| {
            w.copy_from(vault, reader, &mut |n| progress.bytes(n))?;
            Ok(w)
        });
        result.map_err(|e| {
            *failure = Some(e);
            std::io::Error::other("storing the pack failed")
        })
    }
}

/// Store the objects new since `exclude` as a thin pack: deltas may use objects the earlier
/// packs of the chain hold as bases (a file edited a little is stored as the edit, as in a
/// `git bundle`), and no index is stored — a restore completes and indexes the pack.
#[allow(clippy::too_many_arguments)]
fn store_thin_pack(
    vault: &Vault,
    git: &Git,
    name: &str,
    repo: &Path,
    include: &[ObjectId],
    exclude: &[ObjectId],
    snapshot: SnapshotId,
    progress: &dyn Progress,
) -> Result<Option<PackRecord>> {
    progress.start(name, "packing", None);
    let mut failure: Option<Error> = None;
    let thin = git.pack_objects_thin(repo, include, exclude, pack_sealer(vault, progress, &mut failure));
    if let Some(e) = failure {
        return Err(e);
    }
    let Some(thin) = thin? else { return Ok(None) };
    progress.start(name, "storing", None);
    let pack = thin.consumed.commit(vault)?;
    Ok(Some(PackRecord { snapshot, checksum: thin.checksum, objects: thin.objects, pack, index: None }))
}

/// Store the source's only pack as it is, when it holds exactly the objects wanted (a full
/// backup of a freshly cloned, fetched-once or gc-ed repository): it is the pack git would
/// write, without the cost of writing it. Both files are checked against their trailing
/// checksums while they are sealed; `None` when this does not apply, or when a file fails its
/// checksum — git then packs the objects itself (and says what is damaged in the source).
fn store_sole_pack(
    vault: &Vault,
    git: &Git,
    name: &str,
    repo: &Path,
    include: &[ObjectId],
    snapshot: SnapshotId,
    progress: &dyn Progress,
) -> Result<Option<PackRecord>> {
    // A check git cannot answer leaves the packing to git, which reports what is wrong.
    let undecided = |e: gitvault_git::Error| {
        tracing::debug!(repo = %name, error = %e, "could not check whether the repository's pack can be stored as it is");
    };
    let Some(sole) = git.sole_pack_candidate(repo, include).unwrap_or_else(|e| {
        undecided(e);
        None
    }) else {
        return Ok(None);
    };
    // Counting the objects the refs reach (the last condition) takes git a while even from a
    // bitmap: the pack is stored meanwhile, and dropped if the count says no.
    let refuted = AtomicBool::new(false);
    let (confirmed, stored) = std::thread::scope(|scope| {
        let confirm = scope.spawn(|| {
            let confirmed = git.confirm_sole_pack(repo, include, &sole).unwrap_or_else(|e| {
                undecided(e);
                false
            });
            refuted.store(!confirmed, Ordering::Relaxed);
            confirmed
        });
        let stored = seal_sole_pack(vault, name, &sole, &refuted, progress);
        (confirm.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), stored)
    });
    if !confirmed {
        return Ok(None); // dropping the writers discards what they wrote
    }
    let Some((pack, index)) = stored? else {
        tracing::warn!(repo = %name, file = %sole.files.pack.display(), "the source's pack does not match its index; git packs the objects again");
        return Ok(None);
    };
    let (pack, index) = (pack.commit(vault)?, index.commit(vault)?);
    tracing::debug!(repo = %name, objects = sole.files.objects, "stored the repository's only pack as it is");
    let (checksum, objects) = (sole.files.checksum.clone(), sole.files.objects);
    Ok(Some(PackRecord { snapshot, checksum, objects, pack, index: Some(index) }))
}

/// Seal the pack and index of `sole` into `vault`, not committed yet; `None` when they do not
/// read whole (see `SolePack::pack_reader`) or `refuted` was set meanwhile.
fn seal_sole_pack(
    vault: &Vault,
    name: &str,
    sole: &SolePack,
    refuted: &AtomicBool,
    progress: &dyn Progress,
) -> Result<Option<(DataWriter, DataWriter)>> {
    let mut pack_in = sole.pack_reader()?;
    progress.start(name, "storing", Some(pack_in.total_bytes()));
    // Pack data is already deflated by git: compressing it again costs time and saves nothing.
    let mut pack = vault.begin_data(Kind::Pack, Compression::None)?;
    let mut until_refuted = Refutable { inner: &mut pack_in, refuted };
    match pack.copy_from(vault, &mut until_refuted, &mut |n| progress.bytes(n)) {
        Err(_) if refuted.load(Ordering::Relaxed) => return Ok(None),
        other => other?,
    }
    let mut index_in = sole.index_reader()?;
    let mut index = vault.begin_data(Kind::PackIndex, Compression::Zstd)?;
    index.copy_from(vault, &mut index_in, &mut |_| {})?;
    Ok((pack_in.verified() && index_in.verified()).then_some((pack, index)))
}

/// A reader that stops with an error once `refuted` is set: the rest is not wanted.
struct Refutable<'a, R> {
    inner: R,
    refuted: &'a AtomicBool,
}

impl<R: Read> Read for Refutable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.refuted.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("not wanted any more"));
        }
        self.inner.read(buf)
    }
}
