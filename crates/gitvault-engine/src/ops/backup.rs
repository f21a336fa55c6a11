//! Backup: turn each source's refs and new objects into a pack in the vault, then commit a
//! snapshot that records every ref and the chain of packs that rebuilds it.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gitvault_format::envelope::{Compression, Kind};
use gitvault_format::ids::{DataId, SnapshotId, paths};
use gitvault_format::ledger::Event;
use gitvault_format::mark::MIN_GRACE_SECONDS;
use gitvault_format::snapshot::{BackupType, HeadRecord, PackRecord, RefRecord, RepoFailure, RepoSnapshot, Snapshot};
use gitvault_format::timestamp;
use gitvault_git::{Git, Head, ObjectId, RefState, SourceKind};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ops::diff::{RefChange, ancestry_in, ref_changes};
use crate::progress::Progress;
use crate::vault::Vault;

/// One thing to back up: a path or URL, and optionally the name to file it under.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    pub source: String,
    pub name: Option<String>,
}

impl SourceSpec {
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| gitvault_git::source_name(&self.source))
    }
}

#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// `None`: full for a repository never backed up, incremental otherwise.
    pub backup_type: Option<BackupType>,
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
}

/// Back up every source into one new snapshot. A source that fails is reported in the result
/// (and in the snapshot) without stopping the others.
pub fn backup(
    vault: &Vault,
    sources: &[SourceSpec],
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let mut names = BTreeSet::new();
    for s in sources {
        let name = s.name();
        if !names.insert(name.clone()) {
            return Err(Error::DuplicateName { name });
        }
    }
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
            // A base must not lean on data a prune may delete: a snapshot referencing marked data
            // (committed while that mark was written) is not built upon.
            let leans = s
                .repositories
                .iter()
                .flat_map(|r| &r.chain)
                .any(|p| marked.contains(&p.pack.id) || marked.contains(&p.index.id));
            if leans {
                tracing::info!(snapshot = %s.id.short(), "not building on a snapshot whose data a prune has marked");
            }
            !leans
        })
        .collect();
    let id = SnapshotId::random()?;
    let time = timestamp::now();
    let git = Git::new();
    let mut repos = Vec::new();
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for spec in sources {
        let name = spec.name();
        match backup_repo(vault, &git, &name, spec, &history, id, opts, progress) {
            Ok((repo, report)) => {
                repos.push(repo);
                reports.push(report);
            }
            Err(e) => {
                tracing::warn!(repo = %name, error = %crate::error::chain(&e), "backup of repository failed");
                failures.push(RepoFailure {
                    name,
                    source: gitvault_git::redact_source(&spec.source),
                    error: crate::error::chain(&e),
                });
            }
        }
        progress.finish(&spec.name());
    }
    if repos.is_empty() {
        return Ok(BackupReport { snapshot: None, time, repositories: reports, failures });
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
    if started.elapsed() >= Duration::from_secs(MIN_GRACE_SECONDS / 2) {
        check_still_present(vault, &snap)?;
    }
    // The snapshot file is the commit point: every pack it names is already durable.
    let mac = vault.write_snapshot(&snap)?;
    vault.append_ledger(Event::Snapshot {
        snapshot: id,
        mac,
        repositories: snap.repositories.iter().map(|r| r.name.clone()).collect(),
        recovered: false,
    })?;
    Ok(BackupReport { snapshot: Some(id), time, repositories: reports, failures })
}

/// A backup that ran long may have had data it references marked, or even deleted, by a prune
/// running meanwhile (FORMAT.md §9.4). Before committing, make sure every file is still there
/// and that no mark listing one of them can ripen before the snapshot is written.
fn check_still_present(vault: &Vault, snap: &Snapshot) -> Result<()> {
    let needed: HashSet<DataId> =
        snap.repositories.iter().flat_map(|r| &r.chain).flat_map(|p| [p.pack.id, p.index.id]).collect();
    let now = vault.storage_now()?;
    let margin = Duration::from_secs(MIN_GRACE_SECONDS / 2);
    for m in vault.read_marks()? {
        let hits = m.mark.data.iter().filter(|d| needed.contains(d)).count();
        let safe = m.age(now).is_some_and(|age| age + margin < m.grace());
        if hits > 0 && !safe {
            return Err(Error::Refused(format!(
                "a prune running meanwhile marked {hits} data files this backup builds on for deletion (mark {}), and they may go before the snapshot is written; nothing was committed — run the backup again",
                m.mark.id.short()
            )));
        }
    }
    let present: HashSet<String> = vault.store.list(paths::DATA_DIR)?.into_iter().map(|o| o.path).collect();
    let missing = needed.iter().filter(|d| !present.contains(&paths::data(d))).count();
    if missing > 0 {
        return Err(Error::Refused(format!(
            "{missing} data files this backup builds on were deleted by a prune running meanwhile; nothing was committed — run the backup again"
        )));
    }
    Ok(())
}

/// A source ready to pack from: a repository directory (the source itself when local, a
/// mirror in the cache otherwise) and the refs read from it.
struct Prepared {
    path: PathBuf,
    state: RefState,
    /// Held while the mirror is in use, so two runs never fetch into one mirror at once.
    _lock: Option<fs::File>,
}

fn prepare(vault: &Vault, git: &Git, source: &str) -> Result<Prepared> {
    match gitvault_git::classify_source(source)? {
        SourceKind::Local(path) => {
            let state = git.read_refs(&path)?;
            Ok(Prepared { path, state, _lock: None })
        }
        SourceKind::Remote(url) => {
            let dir = vault.ctx.cache_dir.join("mirrors");
            fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let key = blake3::hash(gitvault_git::redact_source(&url).as_bytes()).to_hex();
            let mirror = dir.join(format!("{}.git", &key[..32]));
            let lock_path = dir.join(format!("{}.lock", &key[..32]));
            let lock =
                fs::File::create(&lock_path).map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
            lock.lock().map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
            // Refs first: a no-change backup then costs one ref listing and no fetch.
            let remote = git.ls_remote(&url)?;
            let current = mirror.join("HEAD").exists().then(|| git.read_refs(&mirror).ok()).flatten();
            let state = match current {
                Some(c) if c.refs == remote.refs && c.head == remote.head => c,
                _ => git.sync_mirror(&mirror, &url, remote.object_format, remote.head.as_ref())?,
            };
            Ok(Prepared { path: mirror, state, _lock: Some(lock) })
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

#[allow(clippy::too_many_arguments)]
fn backup_repo(
    vault: &Vault,
    git: &Git,
    name: &str,
    spec: &SourceSpec,
    history: &[Snapshot],
    snapshot: SnapshotId,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<(RepoSnapshot, RepoReport)> {
    let started = Instant::now();
    progress.start(name, "reading refs", None);
    let source = prepare(vault, git, &spec.source)?;
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
    let exclude = match base {
        Some((_, b)) => tips(&b.refs, b.head.as_ref())?,
        None => BTreeSet::new(),
    };
    // Every tip already in the base means every object is too: no pack, and no git call.
    let new_pack = if include.is_subset(&exclude) {
        None
    } else {
        pack_and_store(vault, git, name, &source.path, &include, &exclude, snapshot, progress)?
    };

    let mut chain = base.map(|(_, b)| b.chain.clone()).unwrap_or_default();
    let (objects_added, bytes_added) = new_pack.as_ref().map_or((0, 0), |p| (p.objects, p.stored_size()));
    chain.extend(new_pack);

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
        changes,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
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
    };
    Ok((repo, report))
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
    let tmp = crate::scratch::scratch_dir(&vault.ctx, "pack")?;
    progress.start(name, "packing", None);
    let include: Vec<_> = include.iter().cloned().collect();
    let exclude: Vec<_> = exclude.iter().cloned().collect();
    // The pack is sealed into the vault while git is still writing it: on two cores the
    // encryption runs beside git instead of after it.
    let mut failure: Option<Error> = None;
    let streamed = git.pack_objects_streaming(repo, &include, &exclude, tmp.path(), |reader| {
        let result = vault.begin_data(Kind::Pack, Compression::None).and_then(|mut w| {
            w.copy_from(vault, reader, &mut |n| progress.bytes(n))?;
            Ok(w)
        });
        result.map_err(|e| {
            failure = Some(e);
            std::io::Error::other("storing the pack failed")
        })
    });
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
    Ok(Some(PackRecord { snapshot, checksum: files.checksum, objects: files.objects, pack, index }))
}
