//! Opening, creating and unlocking a vault, and reading and writing its encrypted objects.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use gitvault_format::config::VaultConfig;
use gitvault_format::envelope::{self, Compression, Kind, OpenReader, SealWriter};
use gitvault_format::ids::{DataId, KeySlotId, Mac, SnapshotId, paths};
use gitvault_format::keys::{DataKey, KdfParams, KeySlot, MacKey, MasterKey, Passphrase};
use gitvault_format::snapshot::{DataRef, PackRecord, Snapshot};
use gitvault_format::{FORMAT_VERSION, FormatError};
use gitvault_storage::{ErrorKind, Store};

use crate::error::{Error, Result};

/// Where the engine may keep local, disposable state (mirrors, scratch space, the last ledger
/// head this machine saw), and who is acting.
#[derive(Clone, Debug)]
pub struct Context {
    pub cache_dir: PathBuf,
    pub host: String,
    /// Who acts (`user@host`, `schedule:POLICY`, `token:NAME`): written into the ledger entries
    /// of vaults of format version 4 and later (FORMAT.md §8).
    pub actor: Option<String>,
}

/// A vault whose `config` has been read but whose key is not known: it can only be unlocked.
pub struct LockedVault {
    store: Arc<dyn Store>,
    config: VaultConfig,
}

/// An unlocked vault: every operation of the engine starts from one.
pub struct Vault {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: VaultConfig,
    pub(crate) data_key: DataKey,
    pub(crate) mac_key: MacKey,
    pub(crate) master: MasterKey,
    /// The key slot the passphrase opened.
    pub(crate) slot: KeySlotId,
    pub(crate) ctx: Context,
    /// No operation may delete or overwrite anything (see [`Vault::set_append_only`]).
    pub(crate) append_only: bool,
    /// How written files are locked (see [`Vault::set_lock`]).
    pub(crate) lock: crate::lock::LockState,
}

impl LockedVault {
    /// Read the vault's `config`, refusing what is not a vault or is too new.
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        let location = store.describe();
        let bytes = match store.read(paths::CONFIG) {
            Ok(b) => b,
            Err(e) if e.kind == ErrorKind::NotFound => return Err(Error::NotAVault { path: location }),
            Err(e) => return Err(e.into()),
        };
        let config = VaultConfig::from_json(&bytes).map_err(|e| match e {
            FormatError::NewerVersion { found, supported } => {
                Error::NewerFormat { path: location.clone(), found, supported }
            }
            _ => Error::NotAVault { path: location.clone() },
        })?;
        Ok(Self { store, config })
    }

    /// Create a new vault with one passphrase key slot.
    pub fn init(store: Arc<dyn Store>, passphrase: &Passphrase, kdf: KdfParams, ctx: Context) -> Result<Vault> {
        Self::init_with_master(store, passphrase, kdf, ctx, MasterKey::generate()?)
    }

    /// Create a new vault that holds `source`'s master key (under its own id, ledger and key
    /// slot): its data objects can be the very bytes of the source's, so `copy` moves them as
    /// they are instead of decrypting and sealing them again. Anyone who can open one of the
    /// two vaults can read both.
    pub fn init_sharing_keys(
        store: Arc<dyn Store>,
        passphrase: &Passphrase,
        kdf: KdfParams,
        ctx: Context,
        source: &Vault,
    ) -> Result<Vault> {
        Self::init_with_master(store, passphrase, kdf, ctx, source.master.clone())
    }

    fn init_with_master(
        store: Arc<dyn Store>,
        passphrase: &Passphrase,
        kdf: KdfParams,
        ctx: Context,
        master: MasterKey,
    ) -> Result<Vault> {
        let config = VaultConfig::new(gitvault_format::ids::VaultId::random()?);
        let slot = KeySlot::seal(&config.id, &master, passphrase, kdf)?;
        // Config last: a directory with a config is a complete vault (key slot and init entry
        // present); an interrupted init leaves a directory that is not a vault at all.
        store.put_new(&paths::key_slot(&slot.id), &slot.to_json())?;
        let vault = Vault::from_master(store, config, master, slot.id, ctx);
        vault.append_ledger(gitvault_format::ledger::Event::Init { vault: vault.config.id, key_slot: slot.id })?;
        vault.store.put_new(paths::CONFIG, &vault.config.to_json())?;
        Ok(vault)
    }

    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    pub fn key_slots(&self) -> Result<Vec<KeySlot>> {
        read_key_slots(self.store.as_ref())
    }

    /// Unlock with a master key already opened from `slot` — a copy of one of this vault's key
    /// slots kept by the caller, opened while the storage was still being reached — provided
    /// the vault still holds exactly that slot. Otherwise hands the vault back for a normal
    /// [`LockedVault::unlock`].
    pub fn unlock_with(self, slot: &KeySlot, master: MasterKey, ctx: Context) -> std::result::Result<Vault, Self> {
        let held = matches!(self.key_slots(), Ok(slots) if slots.iter().any(|s| s.to_json() == slot.to_json()));
        if held { Ok(Vault::from_master(self.store, self.config, master, slot.id, ctx)) } else { Err(self) }
    }

    /// Unlock with the master key of `other` when this vault holds the same one (a replica made
    /// with `init --keys-from`, or the vault it was made from): proven by opening this vault's
    /// first ledger entry — the `init` entry, which names this vault — under that key, so no
    /// key derivation runs. Otherwise hands the vault back for a normal [`LockedVault::unlock`].
    /// Whoever holds `other` holds this vault's key, so no passphrase of this one is asked for.
    pub fn unlock_as_replica_of(self, other: &Vault, ctx: Context) -> std::result::Result<Vault, Self> {
        let candidate =
            Vault::from_master(Arc::clone(&self.store), self.config.clone(), other.master.clone(), other.slot, ctx);
        match candidate.read_entry(1, &paths::ledger(1)) {
            Ok((entry, _)) => match entry.event {
                gitvault_format::ledger::Event::Init { vault, key_slot } if vault == candidate.config.id => {
                    Ok(Vault { slot: key_slot, ..candidate })
                }
                _ => Err(self),
            },
            Err(_) => Err(self),
        }
    }

    /// Try the passphrase on every key slot.
    pub fn unlock(self, passphrase: &Passphrase, ctx: Context) -> Result<Vault> {
        let location = self.store.describe();
        let slots = self.key_slots()?;
        if slots.is_empty() {
            return Err(Error::NoKeySlots { path: location });
        }
        for slot in &slots {
            if let Some(master) = slot.open(&self.config.id, passphrase)? {
                return Ok(Vault::from_master(self.store, self.config, master, slot.id, ctx));
            }
        }
        Err(Error::WrongPassphrase { path: location })
    }
}

pub(crate) fn read_key_slots(store: &dyn Store) -> Result<Vec<KeySlot>> {
    let mut slots = Vec::new();
    for obj in store.list(paths::KEYS_DIR)? {
        let bytes = store.read(&obj.path)?;
        let slot = KeySlot::from_json(&bytes).map_err(|source| Error::Damaged { path: obj.path.clone(), source })?;
        if paths::key_slot(&slot.id) != obj.path {
            return Err(Error::KeySlot { slot: obj.path, problem: "holds another slot's id (renamed?)".into() });
        }
        slots.push(slot);
    }
    slots.sort_by_key(|s| s.id);
    Ok(slots)
}

impl Vault {
    fn from_master(
        store: Arc<dyn Store>,
        config: VaultConfig,
        master: MasterKey,
        slot: KeySlotId,
        ctx: Context,
    ) -> Self {
        Self {
            store,
            config,
            data_key: master.data_key(),
            mac_key: master.mac_key(),
            master,
            slot,
            ctx,
            append_only: false,
            lock: crate::lock::LockState::default(),
        }
    }

    /// Append-only mode, for hosts that should only ever add to a vault: every operation that
    /// would delete or overwrite a vault file (forget, prune, key removal, upgrade, clearing
    /// temporaries of interrupted writers) is refused or skipped.
    pub fn set_append_only(&mut self, on: bool) {
        self.append_only = on;
    }

    pub fn append_only(&self) -> bool {
        self.append_only
    }

    /// Refuse `operation` in append-only mode.
    pub(crate) fn deny_in_append_only(&self, operation: &'static str) -> Result<()> {
        if self.append_only { Err(Error::AppendOnly { operation }) } else { Ok(()) }
    }

    /// Refuse `operation` unless the vault is at least format version `needed`: a vault is
    /// only ever written in its own version (FORMAT.md §11).
    pub(crate) fn require_version(&self, operation: &'static str, needed: u32) -> Result<()> {
        if self.config.version >= needed {
            Ok(())
        } else {
            Err(Error::NeedsUpgrade { path: self.location(), operation, found: self.config.version, needed })
        }
    }

    /// Clear temporaries left by interrupted writers, unless in append-only mode.
    pub(crate) fn remove_incomplete(&self) -> Result<Vec<String>> {
        if self.append_only {
            return Ok(Vec::new());
        }
        Ok(self.store.remove_incomplete()?)
    }

    /// The preferred data id of the Git LFS object `oid` in this vault (FORMAT.md §7.6).
    pub fn lfs_object_id(&self, oid: &str) -> DataId {
        self.mac_key.lfs_data_id(oid)
    }

    pub fn location(&self) -> String {
        self.store.describe()
    }

    pub fn id(&self) -> String {
        self.config.id.to_hex()
    }

    pub fn format_version(&self) -> u32 {
        debug_assert!(self.config.version <= FORMAT_VERSION);
        self.config.version
    }

    pub fn current_slot(&self) -> KeySlotId {
        self.slot
    }

    /// The key slot that opened the vault for this command, as stored.
    pub fn current_key_slot(&self) -> Result<Option<KeySlot>> {
        Ok(read_key_slots(self.store.as_ref())?.into_iter().find(|s| s.id == self.slot))
    }

    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Whether `other` holds the same master key (one was created from the other with
    /// [`LockedVault::init_sharing_keys`]). Compared through a keyed hash of a constant, so no
    /// key material is compared or leaves the keys.
    pub fn shares_keys_with(&self, other: &Vault) -> bool {
        const PROBE: &[u8] = b"gitvault: do these vaults share their keys?";
        self.mac_key.mac(PROBE) == other.mac_key.mac(PROBE)
    }

    /// Start a new data object; feed it with [`DataWriter::copy_from`], then commit it.
    pub(crate) fn begin_data(&self, kind: Kind, compression: Compression) -> Result<DataWriter> {
        self.begin_data_as(DataId::random()?, kind, compression)
    }

    /// Start a data object under a given id (a copy keeps the id the object has in its source
    /// vault); the object must not exist yet.
    pub(crate) fn begin_data_as(&self, id: DataId, kind: Kind, compression: Compression) -> Result<DataWriter> {
        let path = paths::data(&id);
        let out = self.store.create(&path)?;
        let sealer = SealWriter::new(&self.data_key, &self.mac_key, kind, compression, &id.to_hex(), out)
            .map_err(|e| self.write_error(&path, e))?;
        Ok(DataWriter { id, path, kind, sealer })
    }

    /// Encrypt `input` into a new data object. `on_bytes` is told how many plaintext bytes went.
    pub(crate) fn write_data(
        &self,
        kind: Kind,
        compression: Compression,
        input: &mut dyn Read,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<DataRef> {
        let mut w = self.begin_data(kind, compression)?;
        w.copy_from(self, input, on_bytes)?;
        w.commit(self)
    }

    /// An IO error while sealing is either the destination failing (keep its storage meaning,
    /// e.g. "no space") or the format check failing.
    fn write_error(&self, path: &str, e: std::io::Error) -> Error {
        match envelope::as_format_error(&e) {
            Some(_) => Error::Io { context: format!("sealing {path}"), source: e },
            None => gitvault_storage::StorageError::from_io("write", path, &self.store.describe(), e).into(),
        }
    }

    /// Stream a data object's plaintext; the reader fails on any alteration or MAC mismatch.
    pub(crate) fn open_data(&self, data: &DataRef, kind: Kind) -> Result<OpenReader> {
        let path = paths::data(&data.id);
        let input = self.store.open_read(&path)?;
        OpenReader::new(&self.data_key, &self.mac_key, kind, &data.id.to_hex(), input, Some(data.mac))
            .map_err(|e| damaged_or_io(&path, e))
    }

    pub(crate) fn seal_small(&self, kind: Kind, id: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        Ok(envelope::seal_bytes(&self.data_key, &self.mac_key, kind, Compression::Zstd, id, plaintext)?.0)
    }

    pub(crate) fn open_small(&self, kind: Kind, path: &str, id: &str) -> Result<Vec<u8>> {
        let stored = self.store.read(path)?;
        envelope::open_bytes(&self.data_key, &self.mac_key, kind, id, &stored)
            .map_err(|source| Error::Damaged { path: path.to_string(), source })
    }

    /// Read one snapshot and the keyed hash of its plaintext (which the ledger records).
    pub fn read_snapshot(&self, id: &SnapshotId) -> Result<(Snapshot, Mac)> {
        let path = paths::snapshot(id);
        let plain = self.open_small(Kind::Snapshot, &path, &id.to_hex())?;
        let snap = Snapshot::from_json(&plain).map_err(|source| Error::Damaged { path: path.clone(), source })?;
        if &snap.id != id {
            return Err(Error::Damaged {
                path,
                source: FormatError::Invalid { what: "snapshot", detail: "its id differs from its file name".into() },
            });
        }
        for repo in &snap.repositories {
            let problem = if repo.chain.first().is_some_and(PackRecord::is_thin) {
                "the first pack of a chain is thin (it has no earlier packs to take its bases from)"
            } else if self.config.version < gitvault_format::snapshot::THIN_PACK_VERSION
                && repo.chain.iter().any(PackRecord::is_thin)
            {
                "a pack has no index, which only format version 5 allows"
            } else {
                continue;
            };
            return Err(Error::Damaged {
                path,
                source: FormatError::Invalid {
                    what: "snapshot",
                    detail: format!("repository {}: {problem}", repo.name),
                },
            });
        }
        Ok((snap, self.mac_key.mac(&plain)))
    }

    /// Write a snapshot: the commit point of a backup. Returns the keyed hash of its plaintext.
    /// With a lock policy, every data object the snapshot's chains reference is locked at
    /// least as long as the snapshot first, so a locked snapshot is never restorable in part.
    pub(crate) fn write_snapshot(&self, snap: &Snapshot) -> Result<Mac> {
        let plain = snap.to_json();
        let stored = self.seal_small(Kind::Snapshot, &snap.id.to_hex(), &plain)?;
        self.extend_locks(
            snap.repositories
                .iter()
                .flat_map(gitvault_format::snapshot::RepoSnapshot::data_refs)
                .map(|d| paths::data(&d.id)),
        )?;
        let path = paths::snapshot(&snap.id);
        self.store.put_new(&path, &stored)?;
        self.lock_written(&path)?;
        Ok(self.mac_key.mac(&plain))
    }

    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        let mut ids = Vec::new();
        for obj in self.store.list(paths::SNAPSHOTS_DIR)? {
            let name = obj.path.strip_prefix(paths::SNAPSHOTS_DIR).unwrap_or(&obj.path);
            match name.parse::<SnapshotId>() {
                Ok(id) => ids.push(id),
                Err(_) => tracing::warn!(path = %obj.path, "ignoring a file that is not a snapshot"),
            }
        }
        Ok(ids)
    }

    /// Every readable snapshot, oldest first. A damaged snapshot is skipped with a warning, so
    /// that one bad file never blocks restoring or backing up the others; `verify` reports it.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let mut snaps = Vec::new();
        for id in self.snapshot_ids()? {
            match self.read_snapshot(&id) {
                Ok((s, _)) => snaps.push(s),
                Err(e @ Error::Damaged { .. }) => {
                    tracing::warn!(snapshot = %id.short(), error = %e, "skipping a damaged snapshot; run `gitvault verify`")
                }
                Err(e) => return Err(e),
            }
        }
        snaps.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(snaps)
    }
}

/// A data object being written: nothing is visible in the vault until [`DataWriter::commit`];
/// dropping it discards what was written.
pub(crate) struct DataWriter {
    id: DataId,
    path: String,
    kind: Kind,
    sealer: SealWriter<Box<dyn gitvault_storage::ObjectWriter>>,
}

impl DataWriter {
    /// Copy all of `input` in.
    pub(crate) fn copy_from(
        &mut self,
        vault: &Vault,
        input: &mut dyn Read,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<()> {
        // Whole chunks are read into buffers that become the chunks themselves (no copy).
        let mut buf = vec![0u8; gitvault_format::envelope::CHUNK_SIZE];
        loop {
            let mut n = 0;
            while n < buf.len() {
                match input.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(read) => n += read,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(format!("reading the {} to store", self.kind.name()), e)),
                }
            }
            let whole = n == buf.len();
            if whole {
                buf = self.sealer.write_chunk(buf).map_err(|e| vault.write_error(&self.path, e))?;
            } else {
                self.sealer.write_all(&buf[..n]).map_err(|e| vault.write_error(&self.path, e))?;
            }
            on_bytes(n as u64);
            if !whole {
                return Ok(());
            }
        }
    }

    /// Seal the last chunk, check the object opens, and make it durable and visible.
    pub(crate) fn commit(self, vault: &Vault) -> Result<DataRef> {
        let (out, sealed) = self.sealer.finish().map_err(|e| vault.write_error(&self.path, e))?;
        let size = out.commit()?;
        debug_assert_eq!(size, sealed.stored_size);
        vault.lock_written(&self.path)?;
        Ok(DataRef { id: self.id, mac: sealed.mac, size, plain_size: sealed.plain_size })
    }
}

pub(crate) fn damaged_or_io(path: &str, e: std::io::Error) -> Error {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<FormatError>() {
            Ok(f) => Error::Damaged { path: path.to_string(), source: *f },
            Err(other) => Error::io(format!("reading {path}"), std::io::Error::other(other)),
        },
        None => Error::Damaged { path: path.to_string(), source: FormatError::Truncated },
    }
}

/// Find a snapshot by full id, unique prefix, or `latest`.
pub fn resolve_snapshot<'a>(snaps: &'a [Snapshot], query: &str) -> Result<&'a Snapshot> {
    if query == "latest" {
        return snaps.last().ok_or(Error::NoSnapshots);
    }
    let q = query.to_ascii_lowercase();
    let matches: Vec<&Snapshot> = snaps.iter().filter(|s| !q.is_empty() && s.id.to_hex().starts_with(&q)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::SnapshotNotFound { query: query.into() }),
        many => Err(Error::AmbiguousSnapshot {
            query: query.into(),
            candidates: many.iter().map(|s| s.id.short()).collect::<Vec<_>>().join(", "),
        }),
    }
}
