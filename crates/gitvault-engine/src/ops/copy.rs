//! Copy: replicate snapshots from one vault into another, transferring only what the
//! destination lacks.
//!
//! Two vaults normally have their own master keys, so nothing is copied byte for byte: each data
//! object is decrypted from the source (authenticated, and checked against the MAC its snapshot
//! records) and sealed again under the destination's key. A destination created with the
//! source's keys (`init --keys-from`) takes the stored bytes as they are, every chunk's
//! authentication tag checked on the way, so a damaged object is never copied (see
//! [`transfer_as_is`]). Ids are random, not derived from
//! content, and an envelope binds only its header and its id string, so a data object keeps its
//! data id and a snapshot its snapshot id: "does the destination have it" is a question about
//! names. A copied snapshot is the source's document with each data reference's `mac` and
//! `size` recomputed for the destination, and nothing else changed.
//!
//! Commit order in the destination is the backup's: data objects (durable) → the snapshot (the
//! commit point) → its ledger entry. An interrupted copy therefore leaves at most data objects no
//! snapshot references, or a snapshot its ledger does not record; the next copy reuses the
//! first (decrypting them once to learn their MACs, instead of transferring them again) and
//! records the second.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::mpsc;

use gitvault_format::FormatError;
use gitvault_format::envelope::{AuthenticatedReader, Compression, Kind, OpenReader};
use gitvault_format::ids::{DataId, SnapshotId, paths};
use gitvault_format::keys::MacKey;
use gitvault_format::ledger::Event;
use gitvault_format::snapshot::{DataRef, PackRecord, Snapshot};
use gitvault_storage::ErrorKind;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::vault::{Vault, damaged_or_io, resolve_snapshot};

#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyReport {
    /// The source vault, as its store describes itself.
    pub from: String,
    /// The destination vault.
    pub to: String,
    /// Snapshots written into the destination, oldest first.
    pub snapshots_copied: Vec<SnapshotId>,
    /// Selected snapshots the destination already held.
    pub snapshots_skipped: Vec<SnapshotId>,
    /// Snapshots the destination held but its ledger did not record (a copy interrupted
    /// between the snapshot and its ledger entry); they are recorded now.
    pub snapshots_recorded: Vec<SnapshotId>,
    /// Data objects decrypted from the source and sealed into the destination.
    pub data_transferred: u64,
    /// Data objects the destination already held (counted once each).
    pub data_skipped: u64,
    /// Of those skipped, objects no destination snapshot referenced yet (left by an interrupted
    /// copy): decrypted in the destination to recover their MAC instead of being sent again.
    pub data_rechecked: u64,
    /// Plaintext bytes of the transferred data objects.
    pub bytes_transferred: u64,
    /// Bytes stored in the destination for them (envelopes).
    pub bytes_written: u64,
    /// The destination holds the source's keys (`init --keys-from`): data objects were written
    /// as they are stored in the source (checked on the way), not sealed again.
    pub same_keys: bool,
}

/// Copy the snapshots `queries` select from `from` (ids, unique prefixes or `latest`; all of
/// them when empty) into `to`, which must already be a vault.
pub fn copy(from: &Vault, to: &Vault, queries: &[String], progress: &dyn Progress) -> Result<CopyReport> {
    let source_snaps = from.snapshots()?;
    let selected = select(&source_snaps, queries)?;
    // Refuse before storing anything if the destination's ledger cannot take entries.
    to.ledger_head()?;
    match to.remove_incomplete() {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(count = removed.len(), "removed temporaries of interrupted writers")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not clean up temporaries of interrupted writers"),
    }
    let mut dest = Destination::scan(from, to)?;
    let mut report =
        CopyReport { from: from.location(), to: to.location(), same_keys: dest.same_keys, ..CopyReport::default() };
    for snap in selected {
        if dest.forgotten.contains(&snap.id) {
            // The destination forgot it on purpose (its own retention): copying it again would
            // undo that, and its next prune would delete it as an interrupted forget.
            report.snapshots_skipped.push(snap.id);
            continue;
        }
        if dest.snapshots.contains(&snap.id) {
            report.snapshots_skipped.push(snap.id);
            if !dest.recorded.contains(&snap.id) {
                record_unrecorded(to, &snap.id, &mut report)?;
            }
            continue;
        }
        let label = format!("snapshot {}", snap.id.short());
        copy_snapshot(from, to, snap, &mut dest, &mut report, progress)
            .map_err(|source| Error::Copy { what: label.clone(), source: Box::new(source) })?;
        progress.finish(&label);
    }
    Ok(report)
}

/// The snapshots to copy, oldest first, each once.
fn select<'a>(snaps: &'a [Snapshot], queries: &[String]) -> Result<Vec<&'a Snapshot>> {
    if queries.is_empty() {
        return Ok(snaps.iter().collect());
    }
    let mut wanted = BTreeSet::new();
    for q in queries {
        wanted.insert(resolve_snapshot(snaps, q)?.id);
    }
    Ok(snaps.iter().filter(|s| wanted.contains(&s.id)).collect())
}

/// What the destination holds, learnt once at the start and kept up to date while copying.
struct Destination {
    /// When the marks were read (before anything else) and what they listed: see
    /// `Vault::guard_commit`.
    started: std::time::Instant,
    marked: HashSet<DataId>,
    /// Snapshots a `forget` entry of the destination's ledger removed.
    forgotten: HashSet<SnapshotId>,
    /// Every snapshot file (readable or not: a damaged one is never overwritten).
    snapshots: HashSet<SnapshotId>,
    /// Snapshots the ledger records.
    recorded: HashSet<SnapshotId>,
    /// Data references valid in the destination, by id.
    known: HashMap<DataId, DataRef>,
    /// Every data file with its stored size, including those no snapshot references.
    listed: HashMap<String, u64>,
    /// Data ids already counted in the report.
    counted: HashSet<DataId>,
    /// The two vaults hold the same keys: data objects move as they are.
    same_keys: bool,
}

impl Destination {
    fn scan(from: &Vault, to: &Vault) -> Result<Self> {
        // Marks first: data referenced by a snapshot seen after this cannot go before the
        // grace period of a mark written later (FORMAT.md §9.4).
        let started = std::time::Instant::now();
        let marked = to.marked_data()?;
        let snapshots = to.snapshot_ids()?.into_iter().collect();
        let mut recorded = HashSet::new();
        let mut forgotten = HashSet::new();
        for e in to.read_ledger()? {
            match e.entry.map(|(entry, _)| entry.event) {
                Ok(Event::Snapshot { snapshot, .. }) => {
                    recorded.insert(snapshot);
                }
                Ok(Event::Forget { snapshots, .. }) => forgotten.extend(snapshots),
                _ => {}
            }
        }
        let mut known = HashMap::new();
        for s in to.snapshots()? {
            for d in s.repositories.iter().flat_map(gitvault_format::snapshot::RepoSnapshot::data_refs) {
                known.entry(d.id).or_insert(*d);
            }
        }
        let listed = to.store.list(paths::DATA_DIR)?.into_iter().map(|o| (o.path, o.size)).collect();
        let same_keys = from.shares_keys_with(to);
        Ok(Self { started, marked, forgotten, snapshots, recorded, known, listed, counted: HashSet::new(), same_keys })
    }

    /// The destination's reference for the source's data object `src`, transferring it if the
    /// destination does not hold it yet.
    fn ensure(
        &mut self,
        from: &Vault,
        to: &Vault,
        src: &DataRef,
        kind: Kind,
        report: &mut CopyReport,
        progress: &dyn Progress,
    ) -> Result<DataRef> {
        if let Some(known) = self.known.get(&src.id) {
            if known.plain_size != src.plain_size {
                return Err(same_id_differs(to, &src.id));
            }
            if self.counted.insert(src.id) {
                report.data_skipped += 1;
            }
            return Ok(*known);
        }
        let path = paths::data(&src.id);
        let copied = match self.listed.get(&path) {
            Some(&size) => recheck(to, src, kind, size)?,
            None => match if self.same_keys {
                transfer_as_is(from, to, src, kind, progress)
            } else {
                transfer(from, to, src, kind, progress)
            } {
                Ok(r) => {
                    report.data_transferred += 1;
                    report.bytes_transferred += r.plain_size;
                    report.bytes_written += r.size;
                    self.counted.insert(src.id);
                    r
                }
                // Another copy into the same destination stored it first.
                Err(Error::Storage(e)) if e.kind == ErrorKind::AlreadyExists => {
                    let size = to.store.stat(&path)?.unwrap_or_default();
                    recheck(to, src, kind, size)?
                }
                Err(e) => return Err(e),
            },
        };
        if self.counted.insert(src.id) {
            report.data_skipped += 1;
            report.data_rechecked += 1;
        }
        self.known.insert(src.id, copied);
        self.listed.insert(path, copied.size);
        Ok(copied)
    }
}

fn same_id_differs(to: &Vault, id: &DataId) -> Error {
    Error::Damaged {
        path: format!("{} in {}", paths::data(id), to.location()),
        source: FormatError::Invalid {
            what: "data object",
            detail: "holds content of another size than the source's object of the same id".into(),
        },
    }
}

/// A damaged-file error that says which vault the file is in (a copy reads two).
fn in_vault(vault: &Vault, e: Error) -> Error {
    match e {
        Error::Damaged { path, source } => Error::Damaged { path: format!("{path} in {}", vault.location()), source },
        other => other,
    }
}

/// Decrypt `src` from the source (on its own thread) while sealing it into the destination
/// under the same id. Memory stays bounded: a few 1 MiB buffers are in flight.
fn transfer(from: &Vault, to: &Vault, src: &DataRef, kind: Kind, progress: &dyn Progress) -> Result<DataRef> {
    let path = paths::data(&src.id);
    let mut reader = from.open_data(src, kind).map_err(|e| in_vault(from, e))?;
    // The reference writer's choice: packs are already deflated by git; indexes compress well.
    let compression = if kind == Kind::Pack { Compression::None } else { Compression::Zstd };
    let mut writer = to.begin_data_as(src.id, kind, compression)?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let (produced, written) = std::thread::scope(|scope| {
        let producer = scope.spawn(move || -> Result<()> {
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let n = reader.read(&mut buf).map_err(|e| in_vault(from, damaged_or_io(&path, e)))?;
                if n == 0 {
                    // End of content: the MAC recorded in the source's snapshot has been checked.
                    return Ok(());
                }
                buf.truncate(n);
                if tx.send(buf).is_err() {
                    return Ok(()); // the writer stopped; its error is the one to report
                }
            }
        });
        let written = writer.copy_from(to, &mut ChannelReader::new(rx), &mut |n| progress.bytes(n));
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(Error::io("decrypting", std::io::Error::other("the decrypting thread panicked"))));
        (produced, written)
    });
    // The source's failure first: a channel that closed early looks like a short object to the
    // writer, which must then never be committed (dropping it discards it).
    produced?;
    written?;
    let copied = writer.commit(to)?;
    if copied.plain_size != src.plain_size {
        return Err(Error::Damaged {
            path: format!("{} in {}", paths::data(&src.id), from.location()),
            source: FormatError::Invalid {
                what: "data object",
                detail: format!("holds {} bytes, {} recorded", copied.plain_size, src.plain_size),
            },
        });
    }
    Ok(copied)
}

/// Copy `src` between two vaults that share their keys: its stored bytes are valid in the
/// destination as they are, so they are written there unchanged — each chunk only once its
/// authentication tag has been checked under the object's id and kind ([`AuthenticatedReader`],
/// tags checked on every core, no decryption), so a damaged or altered source object is never
/// committed. The content's MAC is not recomputed: a chunk's tag already proves it is what the
/// key's holder sealed under this id, and `verify --read-data` checks MACs. Memory stays
/// bounded: a few 1 MiB chunks are in flight.
fn transfer_as_is(from: &Vault, to: &Vault, src: &DataRef, kind: Kind, progress: &dyn Progress) -> Result<DataRef> {
    let path = paths::data(&src.id);
    let input = from.store.open_read(&path)?;
    let mut reader = AuthenticatedReader::new(&from.data_key, kind, &src.id.to_hex(), input)
        .map_err(|e| in_vault(from, damaged_or_io(&path, e)))?;
    let mut out = to.store.create(&path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut sent = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // Dropping the writer discards what it wrote.
            Err(e) => return Err(in_vault(from, damaged_or_io(&path, e))),
        };
        out.write_all(&buf[..n])
            .map_err(|e| gitvault_storage::StorageError::from_io("write", &path, &to.store.describe(), e))?;
        sent += n as u64;
        progress.bytes(n as u64);
    }
    if sent != src.size {
        return Err(Error::Damaged {
            path: format!("{path} in {}", from.location()),
            source: FormatError::Invalid {
                what: "data object",
                detail: format!("is {sent} bytes, {} recorded", src.size),
            },
        });
    }
    let size = out.commit()?;
    to.lock_written(&path)?;
    Ok(DataRef { id: src.id, mac: src.mac, size, plain_size: src.plain_size })
}

/// Plaintext arriving from the decrypting thread.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        Self { rx, buf: Vec::new(), pos: 0 }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A data object the destination holds but no destination snapshot references (an interrupted
/// copy stored it): decrypt it there, which authenticates it under its id, and compute its MAC
/// under the destination's key. Reading it back is cheaper than sending it again, and on a
/// remote destination it costs download, not upload.
fn recheck(to: &Vault, src: &DataRef, kind: Kind, stored_size: u64) -> Result<DataRef> {
    let path = paths::data(&src.id);
    let input = to.store.open_read(&path)?;
    let mut reader = OpenReader::new(&to.data_key, &to.mac_key, kind, &src.id.to_hex(), input, None)
        .map_err(|e| in_vault(to, damaged_or_io(&path, e)))?;
    let mut hasher = to.mac_key.hasher();
    let mut plain_size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| in_vault(to, damaged_or_io(&path, e)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        plain_size += n as u64;
    }
    if plain_size != src.plain_size {
        return Err(same_id_differs(to, &src.id));
    }
    Ok(DataRef { id: src.id, mac: MacKey::finish(&hasher), size: stored_size, plain_size })
}

fn copy_snapshot(
    from: &Vault,
    to: &Vault,
    snap: &Snapshot,
    dest: &mut Destination,
    report: &mut CopyReport,
    progress: &dyn Progress,
) -> Result<()> {
    let label = format!("snapshot {}", snap.id.short());
    if to.config.version < crate::lfs::LFS_VERSION && snap.repositories.iter().any(|r| !r.lfs_objects().is_empty()) {
        to.require_version("copying Git LFS objects", crate::lfs::LFS_VERSION)?;
    }
    if snap.repositories.iter().flat_map(|r| &r.chain).any(PackRecord::is_thin) {
        to.require_version("copying thin packs", gitvault_format::snapshot::THIN_PACK_VERSION)?;
    }
    let missing: u64 = snap
        .repositories
        .iter()
        .flat_map(gitvault_format::snapshot::RepoSnapshot::data_refs)
        .filter(|d| !dest.known.contains_key(&d.id))
        .map(|d| d.plain_size)
        .sum();
    progress.start(&label, "copying", Some(missing));
    let mut copied = snap.clone();
    for repo in &mut copied.repositories {
        for pack in &mut repo.chain {
            pack.pack = dest.ensure(from, to, &pack.pack, Kind::Pack, report, progress)?;
            if let Some(index) = &pack.index {
                pack.index = Some(dest.ensure(from, to, index, Kind::PackIndex, report, progress)?);
            }
        }
        if to.config.version < crate::lfs::LFS_VERSION {
            repo.lfs = None; // empty (checked above): an older vault's snapshots have no such field
        }
        for l in repo.lfs.iter_mut().flatten() {
            l.data = dest.ensure(from, to, &l.data, Kind::LfsObject, report, progress)?;
        }
    }
    let needed = copied.repositories.iter().flat_map(gitvault_format::snapshot::RepoSnapshot::data_refs).map(|d| d.id);
    to.guard_commit(needed.collect(), dest.started, crate::ops::backup::RECHECK_AFTER, &dest.marked, "copy")?;
    // The snapshot file is the commit point: every data object it names is durable by now.
    let mac = match to.write_snapshot(&copied) {
        Ok(mac) => mac,
        Err(Error::Storage(e)) if e.kind == ErrorKind::AlreadyExists => {
            // Another copy into the same destination committed it first; it records it too.
            report.snapshots_skipped.push(snap.id);
            dest.snapshots.insert(snap.id);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    dest.snapshots.insert(snap.id);
    // Read it back: the destination must hand out exactly what was written.
    let (back, back_mac) = to.read_snapshot(&snap.id).map_err(|e| in_vault(to, e))?;
    if back != copied || back_mac != mac {
        return Err(Error::Damaged {
            path: format!("{} in {}", paths::snapshot(&snap.id), to.location()),
            source: FormatError::Invalid {
                what: "snapshot",
                detail: "reads back differently from what was written".into(),
            },
        });
    }
    to.append_ledger(Event::Snapshot {
        snapshot: snap.id,
        mac,
        repositories: copied.repositories.iter().map(|r| r.name.clone()).collect(),
        recovered: false,
    })?;
    dest.recorded.insert(snap.id);
    report.snapshots_copied.push(snap.id);
    Ok(())
}

/// A snapshot the destination holds without a ledger record: a copy stopped between the two.
/// It came from a copy (backups name snapshots at random, so no backup wrote this id), so record
/// it now, marked as recovered like `verify` does.
fn record_unrecorded(to: &Vault, id: &SnapshotId, report: &mut CopyReport) -> Result<()> {
    let (snap, mac) = match to.read_snapshot(id) {
        Ok(x) => x,
        Err(e @ Error::Damaged { .. }) => {
            tracing::warn!(snapshot = %id.short(), error = %crate::error::chain(&e), "the destination's copy of this snapshot is damaged; run `gitvault verify` on it");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    to.append_ledger(Event::Snapshot {
        snapshot: *id,
        mac,
        repositories: snap.repositories.iter().map(|r| r.name.clone()).collect(),
        recovered: true,
    })?;
    report.snapshots_recorded.push(*id);
    Ok(())
}
