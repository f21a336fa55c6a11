//! Pending packs (format version 2): what a backup stored for a repository before its snapshot,
//! so that a backup interrupted later (a kill, a network cut) can be resumed without sending
//! those packs again.
//!
//! A pending record names the packs a run stored for one repository beyond its base's chain,
//! and the ref tips they cover: together with the base's chain they hold every object
//! reachable from those tips. A later backup of the same repository on the same base may use
//! them as if they were part of the base (FORMAT.md §9.5).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::FormatError;
use crate::ids::{PendingId, SnapshotId};
use crate::snapshot::PackRecord;

/// The version of pending-pack documents.
pub const PENDING_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub version: u32,
    pub id: PendingId,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub host: String,
    /// The repository name, as in snapshots.
    pub name: String,
    pub object_format: String,
    /// The snapshot whose entry for `name` was the base (null: a full backup).
    pub base: Option<SnapshotId>,
    /// Object ids (ref tips and a detached HEAD) whose reachable objects the base's chain and
    /// `packs` hold together.
    pub tips: Vec<String>,
    /// The packs, oldest first; each `snapshot` field names the snapshot the interrupted run
    /// meant to write (which may not exist).
    pub packs: Vec<PackRecord>,
}

impl Pending {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a pending record always serializes")
    }
    pub fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        let p: Self =
            serde_json::from_slice(bytes).map_err(|source| FormatError::Json { what: "pending pack", source })?;
        if p.version > PENDING_VERSION {
            return Err(FormatError::NewerVersion { found: p.version, supported: PENDING_VERSION });
        }
        Ok(p)
    }
}
