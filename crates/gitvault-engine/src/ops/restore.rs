//! Restore: rebuild bare repositories whose refs are exactly a snapshot's.
//!
//! Self-contained packs are stored with their indexes, so installing one is decryption and
//! copying into `objects/pack/`: no `git index-pack`, no delta resolution. Thin packs (format
//! version 5: the packs after the first of a chain) go through `git index-pack --fix-thin`, in
//! chain order, so that the bases they delta against are in the repository already.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use gitvault_format::envelope::Kind;
use gitvault_format::ids::{SnapshotId, paths};
use gitvault_format::ledger::Event;
use gitvault_format::snapshot::{HeadRecord, PackRecord, RepoSnapshot, Snapshot};
use gitvault_git::{Git, Head, ObjectFormat, ObjectId, Ref, RefState};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::vault::Vault;

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Restore into an existing, non-empty bare repository (its refs are replaced).
    pub force: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoredRepo {
    pub name: String,
    pub path: PathBuf,
    pub refs: usize,
    pub packs: usize,
    pub objects: u64,
    /// Git LFS objects put into `lfs/objects/`.
    pub lfs_objects: usize,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub snapshot: SnapshotId,
    pub repositories: Vec<RestoredRepo>,
}

/// Does `name` match `query`: the full name, or a suffix of it starting after `/` or `:`.
pub fn name_matches(name: &str, query: &str) -> bool {
    name == query || name.strip_suffix(query).is_some_and(|rest| rest.ends_with('/') || rest.ends_with(':'))
}

/// The repositories of `snap` that `query` selects (all when there is no query).
pub fn select_repos<'a>(snap: &'a Snapshot, query: Option<&str>) -> Result<Vec<&'a RepoSnapshot>> {
    let Some(query) = query else { return Ok(snap.repositories.iter().collect()) };
    if let Some(exact) = snap.repositories.iter().find(|r| r.name == query) {
        return Ok(vec![exact]);
    }
    let found: Vec<_> = snap.repositories.iter().filter(|r| name_matches(&r.name, query)).collect();
    match found.len() {
        1 => Ok(found),
        0 => Err(Error::RepoNotFound {
            snapshot: snap.id.short(),
            query: query.into(),
            available: snap.repositories.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
        }),
        _ => Err(Error::AmbiguousRepo {
            snapshot: snap.id.short(),
            query: query.into(),
            candidates: found.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
        }),
    }
}

pub(crate) fn object_format(s: &str) -> ObjectFormat {
    if s == "sha256" { ObjectFormat::Sha256 } else { ObjectFormat::Sha1 }
}

/// The ref state a snapshot records, in git's terms.
pub(crate) fn ref_state(repo: &RepoSnapshot) -> Result<RefState> {
    let refs = repo
        .refs
        .iter()
        .map(|r| Ok(Ref { name: r.name.clone(), oid: ObjectId::parse(&r.oid)? }))
        .collect::<Result<Vec<_>>>()?;
    let head = match &repo.head {
        Some(HeadRecord::Symbolic(s)) => Some(Head::Symbolic(s.clone())),
        Some(HeadRecord::Detached(o)) => Some(Head::Detached(ObjectId::parse(o)?)),
        None => None,
    };
    Ok(RefState { object_format: object_format(&repo.object_format), head, refs })
}

/// Decrypt one pack and its index into `objects/pack/` of a repository. Files are written
/// under temporary names and renamed, so git never sees half a pack.
pub(crate) fn install_pack(vault: &Vault, repo: &Path, pack: &PackRecord, progress: &dyn Progress) -> Result<u64> {
    // The checksum becomes a file name: accept only what a pack trailer can be (hex SHA-1 or
    // SHA-256), so that no snapshot can steer a write outside `objects/pack`.
    let hex = pack.checksum.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex || !(pack.checksum.len() == 40 || pack.checksum.len() == 64) {
        return Err(Error::Damaged {
            path: paths::snapshot(&pack.snapshot),
            source: gitvault_format::FormatError::Invalid {
                what: "pack checksum",
                detail: format!("{:?}", pack.checksum),
            },
        });
    }
    let dir = repo.join("objects").join("pack");
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    if pack.is_thin() {
        return install_thin_pack(vault, repo, pack, progress);
    }
    let mut bytes = 0;
    for (data, kind) in pack.data() {
        let ext = if kind == Kind::Pack { "pack" } else { "idx" };
        let final_path = dir.join(format!("pack-{}.{ext}", pack.checksum));
        if final_path.exists() {
            continue;
        }
        let tmp = dir.join(format!("tmp-gitvault-{}.{ext}", pack.checksum));
        let reader = vault.open_data(data, kind)?;
        let copied = copy_pipelined(reader, &tmp, &paths::data(&data.id), progress);
        if copied.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        copied?;
        fs::rename(&tmp, &final_path).map_err(|e| Error::io(format!("renaming into {}", final_path.display()), e))?;
        bytes += data.plain_size;
    }
    Ok(bytes)
}

/// A thin pack (format version 5) is completed with the bases it deltas against, which the
/// packs installed before it hold, and indexed by `git index-pack --fix-thin`; git checks every
/// object on the way.
fn install_thin_pack(vault: &Vault, repo: &Path, pack: &PackRecord, progress: &dyn Progress) -> Result<u64> {
    let source = paths::data(&pack.pack.id);
    let mut feed = Feed { inner: vault.open_data(&pack.pack, Kind::Pack)?, source: &source, failure: None, progress };
    let installed = Git::new().index_pack_thin(repo, &mut feed);
    if let Some(e) = feed.failure {
        return Err(e);
    }
    installed.map_err(|e| match e {
        // git ran and refused the pack: say which one, and what can be done.
        e @ gitvault_git::Error::Command { .. } => Error::ThinPack { path: source.clone(), source: e },
        other => other.into(),
    })?;
    Ok(pack.pack.plain_size)
}

/// Decrypted pack bytes on their way to git: a read failure is kept to be reported as the
/// vault's (damaged data names its file), not as git's complaint about a short pack.
struct Feed<'a, R> {
    inner: R,
    source: &'a str,
    failure: Option<Error>,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Feed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.progress.bytes(n as u64);
                Ok(n)
            }
            Err(e) => {
                self.failure = Some(crate::vault::damaged_or_io(self.source, e));
                Err(std::io::Error::other("reading the pack from the vault failed"))
            }
        }
    }
}

/// Decrypt on one thread while writing on another: a restore then costs about the larger of
/// the two, not their sum. At most a few chunks are in flight, so memory stays bounded.
fn copy_pipelined(mut reader: impl Read + Send, dest: &Path, source: &str, progress: &dyn Progress) -> Result<()> {
    let file = fs::File::create(dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || -> Result<()> {
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let n = reader.read(&mut buf).map_err(|e| crate::vault::damaged_or_io(source, e))?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if tx.send(buf).is_err() {
                    return Ok(()); // the writer stopped; its error is the one to report
                }
            }
        });
        let written = (|| -> Result<()> {
            for buf in rx {
                out.write_all(&buf).map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
                progress.bytes(buf.len() as u64);
            }
            out.flush().map_err(|e| Error::io(format!("writing {}", dest.display()), e))
        })();
        let produced =
            producer.join().unwrap_or_else(|_| Err(Error::io("decrypting", std::io::Error::other("panicked"))));
        produced.and(written)
    })
}

/// A throw-away bare repository in the cache directory, for questions only git can answer.
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new(vault: &Vault, format: &str) -> Result<Self> {
        let dir = crate::scratch::scratch_dir(vault.context(), "scratch")?;
        Git::new().init_bare(dir.path(), object_format(format))?;
        Ok(Self { dir })
    }
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
    pub(crate) fn install(&self, vault: &Vault, pack: &PackRecord) -> Result<()> {
        install_pack(vault, self.path(), pack, &crate::progress::NoProgress).map(|_| ())
    }
}

fn is_empty_dir(p: &Path) -> bool {
    fs::read_dir(p).map(|mut d| d.next().is_none()).unwrap_or(false)
}

/// Restore the selected repositories of `snap` under `target`.
pub fn restore(
    vault: &Vault,
    snap: &Snapshot,
    repo_query: Option<&str>,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let repos = select_repos(snap, repo_query)?;
    let single = repo_query.is_some() || snap.repositories.len() == 1;
    let mut plan = Vec::new();
    for repo in &repos {
        let path = if single { target.to_path_buf() } else { target.join(format!("{}.git", repo.name)) };
        if path.exists() && !is_empty_dir(&path) && !opts.force {
            return Err(Error::TargetNotEmpty { path: path.display().to_string() });
        }
        plan.push((*repo, path));
    }
    let git = Git::new();
    let mut report = RestoreReport { snapshot: snap.id, repositories: Vec::new() };
    for (repo, path) in plan {
        progress.start(&repo.name, "restoring", Some(repo.data_refs().map(|d| d.plain_size).sum()));
        let restored = restore_one(vault, &git, repo, &path, progress)?;
        progress.finish(&repo.name);
        report.repositories.push(restored);
    }
    // The restore has succeeded by now; a vault that cannot take the record (read-only
    // media, an immutable bucket) must not turn it into a failure.
    if let Err(e) = vault.append_ledger(Event::Restore {
        snapshot: snap.id,
        repositories: report.repositories.iter().map(|r| r.name.clone()).collect(),
    }) {
        tracing::warn!(error = %crate::error::chain(&e), "the restore could not be recorded in the vault's ledger");
    }
    Ok(report)
}

fn restore_one(
    vault: &Vault,
    git: &Git,
    repo: &RepoSnapshot,
    path: &Path,
    progress: &dyn Progress,
) -> Result<RestoredRepo> {
    let state = ref_state(repo)?;
    // Build beside the target and rename at the end: a restore that fails half-way leaves no
    // half-restored repository where the user expects a good one.
    let existing = path.exists() && !is_empty_dir(path);
    let work = if existing {
        path.to_path_buf()
    } else {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "repo".into());
        let w = parent.join(format!(".{name}.gitvault-partial-{}", std::process::id()));
        if w.exists() {
            fs::remove_dir_all(&w).map_err(|e| Error::io(format!("removing {}", w.display()), e))?;
        }
        git.init_bare(&w, state.object_format)?;
        w
    };
    let result = (|| -> Result<u64> {
        let mut bytes = 0;
        for pack in &repo.chain {
            bytes += install_pack(vault, &work, pack, progress)?;
        }
        // Where git-lfs looks in a bare repository: a clone of it checks LFS files out.
        bytes += crate::lfs::restore(vault, repo, &work, progress)?;
        git.write_refs(&work, &state)?;
        Ok(bytes)
    })();
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            if !existing {
                let _ = fs::remove_dir_all(&work);
            }
            return Err(e);
        }
    };
    if !existing {
        if path.exists() {
            fs::remove_dir(path).map_err(|e| Error::io(format!("replacing empty {}", path.display()), e))?;
        }
        fs::rename(&work, path)
            .map_err(|e| Error::io(format!("moving the restored repository to {}", path.display()), e))?;
    }
    Ok(RestoredRepo {
        name: repo.name.clone(),
        path: path.to_path_buf(),
        refs: repo.refs.len(),
        packs: repo.chain.len(),
        objects: repo.chain.iter().map(|p| p.objects).sum(),
        lfs_objects: repo.lfs_objects().len(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn repo_names_match_by_full_name_or_component_suffix() {
        assert!(name_matches("github:acme/api", "github:acme/api"));
        assert!(name_matches("github:acme/api", "acme/api"));
        assert!(name_matches("github:acme/api", "api"));
        assert!(!name_matches("github:acme/api", "pi"));
        assert!(!name_matches("github:acme/api", "me/api"));
    }
}
