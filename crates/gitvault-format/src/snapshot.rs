//! Snapshots: the complete state of every repository of one backup run, and the chain of
//! packs needed to rebuild each. A snapshot file is the commit point of a backup.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::FormatError;
use crate::envelope::Kind;
use crate::ids::{DataId, Mac, SnapshotId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    pub id: SnapshotId,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub host: String,
    pub gitvault_version: String,
    pub repositories: Vec<RepoSnapshot>,
    /// Sources that failed in this run; their earlier snapshots are untouched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<RepoFailure>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Every object reachable from every ref.
    Full,
    /// Objects not reachable from the refs of the repository's most recent full backup.
    Diff,
    /// Objects not reachable from the refs of the repository's most recent backup.
    Incr,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSnapshot {
    /// Stable name, e.g. `acme/api`; successive backups of one source share it.
    pub name: String,
    /// The source as given, with any credentials removed.
    pub source: String,
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    /// The snapshot whose refs bounded this backup (none for a full backup).
    pub base: Option<SnapshotId>,
    /// `sha1` or `sha256`.
    pub object_format: String,
    pub head: Option<HeadRecord>,
    /// Every ref under `refs/`, sorted by name (bytewise).
    pub refs: Vec<RefRecord>,
    /// The packs to install, oldest first, to hold every object the refs reach.
    pub chain: Vec<PackRecord>,
    /// Format version 3: the Git LFS objects the refs' history points to, sorted by `oid`
    /// (present, possibly empty, in version 3 snapshots; absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs: Option<Vec<LfsRecord>>,
}

impl RepoSnapshot {
    /// The LFS objects of the repository (none before format version 3).
    pub fn lfs_objects(&self) -> &[LfsRecord] {
        self.lfs.as_deref().unwrap_or_default()
    }

    /// Every data object a restore of the repository reads: each pack and index of the chain,
    /// then each LFS object.
    pub fn data_refs(&self) -> impl Iterator<Item = &DataRef> {
        self.chain.iter().flat_map(|p| p.data().map(|(d, _)| d)).chain(self.lfs_objects().iter().map(|l| &l.data))
    }

    /// The pack this backup wrote, if it wrote one (the last of the chain, created by `snapshot`).
    pub fn new_pack(&self, snapshot: &SnapshotId) -> Option<&PackRecord> {
        self.chain.last().filter(|p| &p.snapshot == snapshot)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadRecord {
    /// HEAD names a ref (which may not exist yet: an unborn branch).
    Symbolic(String),
    /// HEAD holds an object id.
    Detached(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefRecord {
    pub name: String,
    pub oid: String,
}

/// The format version from which packs after the first of a chain are thin: stored without
/// an index (FORMAT.md §7.3). Older vaults hold only self-contained packs.
pub const THIN_PACK_VERSION: u32 = 5;

/// One git packfile, stored as a data object, with its index as a second one — or, from
/// format version 5, a thin pack without an index (FORMAT.md §7.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackRecord {
    /// The snapshot that wrote this pack.
    pub snapshot: SnapshotId,
    /// The pack's trailing checksum in hex; a self-contained pack is installed as
    /// `pack-<checksum>.{pack,idx}`.
    pub checksum: String,
    /// Objects in the pack (for a thin pack, without the bases it deltas against).
    pub objects: u64,
    pub pack: DataRef,
    /// The pack's index; absent for a thin pack (version 5), whose deltas may use objects of
    /// the packs before it in the chain as bases, and which a restore completes and indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<DataRef>,
}

impl PackRecord {
    pub fn stored_size(&self) -> u64 {
        self.data().map(|(d, _)| d.size).sum()
    }

    /// Whether the pack is thin: installable only where the packs before it in its chain are.
    pub fn is_thin(&self) -> bool {
        self.index.is_none()
    }

    /// The data objects of the pack with their kinds: the pack, then its index if it has one.
    pub fn data(&self) -> impl Iterator<Item = (&DataRef, Kind)> {
        std::iter::once((&self.pack, Kind::Pack)).chain(self.index.as_ref().map(|i| (i, Kind::PackIndex)))
    }
}

/// A Git LFS object (format version 3), stored as one data object of kind 7.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LfsRecord {
    /// The object's SHA-256, lowercase hex: its name in `lfs/objects/` of a repository.
    pub oid: String,
    /// Bytes of the object.
    pub size: u64,
    pub data: DataRef,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRef {
    pub id: DataId,
    /// Keyed hash of the plaintext.
    pub mac: Mac,
    /// Bytes of the stored (encrypted) file.
    pub size: u64,
    /// Bytes of the plaintext.
    pub plain_size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoFailure {
    pub name: String,
    pub source: String,
    pub error: String,
}

impl Snapshot {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a snapshot always serializes")
    }
    pub fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        let s: Self = serde_json::from_slice(bytes).map_err(|source| FormatError::Json { what: "snapshot", source })?;
        if s.version > crate::SNAPSHOT_VERSION {
            return Err(FormatError::NewerVersion { found: s.version, supported: crate::SNAPSHOT_VERSION });
        }
        Ok(s)
    }
    pub fn repo(&self, name: &str) -> Option<&RepoSnapshot> {
        self.repositories.iter().find(|r| r.name == name)
    }
}
