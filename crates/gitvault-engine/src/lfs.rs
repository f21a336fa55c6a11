//! Git LFS objects in a vault (FORMAT.md §7.6): found through the pointers in the history a
//! backup covers, fetched into the mirror when missing there, stored once per vault under a
//! keyed name, and put back into `lfs/objects/` of a restored repository.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use gitvault_format::envelope::{Compression, Kind, OpenReader};
use gitvault_format::ids::{DataId, paths};
use gitvault_format::keys::MacKey;
use gitvault_format::snapshot::{DataRef, LfsRecord, RepoSnapshot};
use gitvault_git::{Git, ObjectId, Sha256Check, Sha256Writer, lfs_object_path};
use gitvault_storage::ErrorKind;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::vault::{Vault, damaged_or_io};

/// LFS objects already in the vault, by oid: from the snapshots a run builds on, and those the
/// run itself stored. Shared by the repositories of one run, which may work at the same time:
/// an object one of them is storing is waited for, not stored twice.
pub(crate) struct Known {
    objects: Mutex<HashMap<String, Slot>>,
    changed: Condvar,
}

#[derive(Clone, Copy)]
enum Slot {
    Stored(DataRef),
    Storing,
}

impl Known {
    pub(crate) fn new(objects: impl IntoIterator<Item = (String, DataRef)>) -> Self {
        let objects = objects.into_iter().map(|(oid, d)| (oid, Slot::Stored(d))).collect();
        Self { objects: Mutex::new(objects), changed: Condvar::new() }
    }

    /// The object's data when the vault has it; `None` when the caller is to store it (and
    /// must then call [`Known::stored`], whatever happens).
    fn claim(&self, oid: &str) -> Option<DataRef> {
        let mut objects = self.objects.lock().expect("known lock");
        loop {
            match objects.get(oid) {
                Some(Slot::Stored(d)) => return Some(*d),
                Some(Slot::Storing) => objects = self.changed.wait(objects).expect("known lock"),
                None => {
                    objects.insert(oid.to_string(), Slot::Storing);
                    return None;
                }
            }
        }
    }

    fn stored(&self, oid: &str, data: Option<DataRef>) {
        let mut objects = self.objects.lock().expect("known lock");
        match data {
            Some(d) => objects.insert(oid.to_string(), Slot::Stored(d)),
            None => objects.remove(oid),
        };
        self.changed.notify_all();
    }
}

/// The first format version that holds LFS objects.
pub(crate) const LFS_VERSION: u32 = 3;

/// What one repository's LFS objects came to.
#[derive(Default)]
pub(crate) struct Outcome {
    /// `None` in a vault older than format version 3.
    pub records: Option<Vec<LfsRecord>>,
    /// Objects this run stored, and their stored bytes.
    pub added: u64,
    pub bytes_added: u64,
    /// Objects the history points to that could not be had (not on the LFS server, or the
    /// vault's format is too old to hold them).
    pub missing: Vec<String>,
}

/// Where the repository's objects come from.
pub(crate) struct LfsSource<'a> {
    pub name: &'a str,
    /// The repository read (a local source, or the mirror of a remote one).
    pub git_dir: &'a Path,
    /// The remote's URL, to fetch objects the mirror lacks.
    pub url: Option<&'a str>,
}

/// Find and store the LFS objects of one repository's backup. `base` is the snapshot of the
/// repository the backup builds on, `include` the tips it records.
#[allow(clippy::too_many_arguments)]
/// The LFS objects a repository's backup must hold: those of the base (a base written before
/// version 3 has no list: then the whole history is read), and those pointed to by what is new
/// since. Only reads the source, so it runs while the new pack is written.
pub(crate) fn wanted(
    git: &Git,
    source: &LfsSource,
    base: Option<&RepoSnapshot>,
    include: &[ObjectId],
) -> Result<BTreeSet<String>> {
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut exclude: Vec<ObjectId> = Vec::new();
    if let Some(b) = base.filter(|b| b.lfs.is_some()) {
        wanted.extend(b.lfs_objects().iter().map(|l| l.oid.clone()));
        exclude = crate::ops::backup::tips(&b.refs, b.head.as_ref())?.into_iter().collect();
    }
    let excluded: HashSet<&ObjectId> = exclude.iter().collect();
    if include.iter().any(|o| !excluded.contains(o)) {
        for p in git.lfs_pointers(source.git_dir, include, &exclude)? {
            wanted.insert(p.oid);
        }
    }
    Ok(wanted)
}

/// Store (or find already stored) the `wanted` LFS objects of a repository.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backup(
    vault: &Vault,
    git: &Git,
    source: &LfsSource,
    base: Option<&RepoSnapshot>,
    wanted: BTreeSet<String>,
    known: &Known,
    marked: &HashSet<DataId>,
    progress: &dyn Progress,
) -> Result<Outcome> {
    if vault.config.version < LFS_VERSION {
        if !wanted.is_empty() {
            tracing::warn!(
                repo = source.name,
                objects = wanted.len(),
                "the repository points to Git LFS objects, which this vault's format version cannot hold: run `gitvault upgrade`"
            );
        }
        return Ok(Outcome { records: None, missing: wanted.into_iter().collect(), ..Outcome::default() });
    }
    let from_base: HashMap<&str, &LfsRecord> =
        base.map(|b| b.lfs_objects().iter().map(|l| (l.oid.as_str(), l)).collect()).unwrap_or_default();
    let mut out = Outcome { records: Some(Vec::new()), ..Outcome::default() };
    let mut records = Vec::with_capacity(wanted.len());
    let mut fetched = false;
    for oid in wanted {
        if let Some(r) = from_base.get(oid.as_str()).filter(|r| !marked.contains(&r.data.id)) {
            records.push((*r).clone());
            continue;
        }
        if let Some(data) = known.claim(&oid) {
            records.push(LfsRecord { oid, size: data.plain_size, data });
            continue;
        }
        let file = lfs_object_path(source.git_dir, &oid);
        if !file.is_file()
            && let (Some(url), false) = (source.url, fetched)
        {
            fetched = true;
            progress.start(source.name, "fetching LFS objects", None);
            match git.lfs_fetch(source.git_dir, url) {
                Ok(()) => {}
                Err(e @ gitvault_git::Error::LfsMissing) => {
                    known.stored(&oid, None);
                    return Err(e.into());
                }
                // Objects missing on the server make git-lfs fail; what it got is used.
                Err(e) => tracing::warn!(repo = source.name, error = %e, "git lfs fetch reported errors"),
            }
        }
        if !file.is_file() {
            known.stored(&oid, None);
            out.missing.push(oid);
            continue;
        }
        progress.start(source.name, "storing LFS objects", None);
        let stored = store(vault, &oid, &file, marked, progress);
        known.stored(&oid, stored.as_ref().ok().map(|(d, _)| *d));
        let (data, written) = stored?;
        if written {
            out.added += 1;
            out.bytes_added += data.size;
        }
        records.push(LfsRecord { oid, size: data.plain_size, data });
    }
    if !out.missing.is_empty() {
        tracing::warn!(
            repo = source.name,
            missing = out.missing.len(),
            first = %out.missing[0],
            "LFS objects the history points to could not be fetched; the backup holds the others"
        );
    }
    out.records = Some(records);
    Ok(out)
}

/// Store the object `oid` from `file`, under its keyed name (FORMAT.md §7.6) unless that name
/// is marked for deletion or holds something else, and then under a random one. Also says
/// whether it was written (rather than found stored already).
fn store(
    vault: &Vault,
    oid: &str,
    file: &Path,
    marked: &HashSet<DataId>,
    progress: &dyn Progress,
) -> Result<(DataRef, bool)> {
    let id = vault.mac_key.lfs_data_id(oid);
    if !marked.contains(&id) {
        if vault.store.stat(&paths::data(&id))?.is_some() {
            // An interrupted run stored it and no snapshot says so yet: read it back (cheaper
            // than sending it again, and it proves the stored copy).
            match read_back(vault, id, oid) {
                Ok(data) => return Ok((data, false)),
                Err(e) => tracing::warn!(%oid, error = %e, "a stored LFS object is unusable; storing it again"),
            }
        } else {
            match write(vault, id, oid, file, progress) {
                Err(Error::Storage(e)) if e.kind == ErrorKind::AlreadyExists => {
                    // Another backup stored it meanwhile.
                    if let Ok(data) = read_back(vault, id, oid) {
                        return Ok((data, false));
                    }
                }
                other => return other.map(|d| (d, true)),
            }
        }
    }
    Ok((write(vault, DataId::random()?, oid, file, progress)?, true))
}

fn write(vault: &Vault, id: DataId, oid: &str, file: &Path, progress: &dyn Progress) -> Result<DataRef> {
    let f = fs::File::open(file).map_err(|e| Error::io(format!("opening {}", file.display()), e))?;
    let mut checked = Sha256Check::new(f);
    let mut w = vault.begin_data_as(id, Kind::LfsObject, Compression::Zstd)?;
    w.copy_from(vault, &mut checked, &mut |n| progress.bytes(n))?;
    if !checked.matches(oid) {
        return Err(Error::io(
            format!("reading the LFS object {}", file.display()),
            std::io::Error::other("its content does not hash to its name (a damaged local LFS store)"),
        ));
    }
    w.commit(vault)
}

/// Open a stored LFS object whose MAC is not known yet, prove it holds `oid`, and describe it.
fn read_back(vault: &Vault, id: DataId, oid: &str) -> Result<DataRef> {
    let path = paths::data(&id);
    let size = vault.store.stat(&path)?.unwrap_or(0);
    let input = vault.store.open_read(&path)?;
    let reader = OpenReader::new(&vault.data_key, &vault.mac_key, Kind::LfsObject, &id.to_hex(), input, None)
        .map_err(|e| damaged_or_io(&path, e))?;
    let mut sink = Sha256Writer::new(MacSink { mac: vault.mac_key.hasher(), len: 0 });
    std::io::copy(&mut { reader }, &mut sink).map_err(|e| damaged_or_io(&path, e))?;
    let (sink, hex) = sink.hex();
    if hex != oid {
        return Err(Error::Damaged {
            path,
            source: gitvault_format::FormatError::Invalid {
                what: "LFS object",
                detail: "its content does not hash to the object id it is stored under".into(),
            },
        });
    }
    Ok(DataRef { id, mac: MacKey::finish(&sink.mac), size, plain_size: sink.len })
}

struct MacSink {
    mac: blake3::Hasher,
    len: u64,
}

impl std::io::Write for MacSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.mac.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Put a repository's LFS objects into `lfs/objects/` of the restored bare repository at
/// `git_dir`, each checked against its SHA-256 on the way. Returns the bytes written.
pub(crate) fn restore(vault: &Vault, repo: &RepoSnapshot, git_dir: &Path, progress: &dyn Progress) -> Result<u64> {
    let mut bytes = 0;
    for l in repo.lfs_objects() {
        let dest = lfs_object_path(git_dir, &l.oid);
        let dir = dest.parent().expect("an object path has a parent");
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let tmp = dir.join(format!(".{}.tmp", l.oid));
        let path = paths::data(&l.data.id);
        let mut reader = vault.open_data(&l.data, Kind::LfsObject)?;
        let f = fs::File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let mut w = Sha256Writer::new(std::io::BufWriter::new(f));
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).map_err(|e| damaged_or_io(&path, e))?;
            if n == 0 {
                break;
            }
            std::io::Write::write_all(&mut w, &buf[..n])
                .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
            progress.bytes(n as u64);
            bytes += n as u64;
        }
        let (f, hex) = w.hex();
        f.into_inner()
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e.into_error()))?
            .sync_all()
            .map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
        if hex != l.oid {
            let _ = fs::remove_file(&tmp);
            return Err(Error::Damaged {
                path,
                source: gitvault_format::FormatError::Invalid {
                    what: "LFS object",
                    detail: format!("it does not hash to {}", l.oid),
                },
            });
        }
        fs::rename(&tmp, &dest).map_err(|e| Error::io(format!("installing {}", dest.display()), e))?;
    }
    Ok(bytes)
}
