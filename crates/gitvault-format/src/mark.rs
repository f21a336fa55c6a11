//! Deletion marks (format version 2): the first phase of `prune`'s two-phase deletion.
//!
//! A mark lists the data files that no snapshot referenced when it was written. A later `prune`
//! deletes those still unreferenced, once the mark has aged past the grace period on the
//! storage's own clock (FORMAT.md §9.4); until then a backup that needs one of them simply does
//! not build on it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::FormatError;
use crate::ids::{DataId, MarkId};

/// The version of mark documents.
pub const MARK_VERSION: u32 = 1;

/// No mark may be acted on before it is this old, measured on the storage's clock: the bound a
/// backup relies on to know that nothing it builds on can vanish while it runs (§9.4).
pub const MIN_GRACE_SECONDS: u64 = 3600;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    pub version: u32,
    pub id: MarkId,
    /// When the mark was written, by the writer's clock: informative only; ages are taken from
    /// the storage's modification time.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub host: String,
    /// No `prune` may delete under this mark before it is this old on the storage's clock;
    /// never less than [`MIN_GRACE_SECONDS`]. A backup that builds on a listed file relies on it.
    pub grace_seconds: u64,
    /// The candidates, sorted, without duplicates.
    pub data: Vec<DataId>,
}

impl Mark {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a mark always serializes")
    }
    pub fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        let m: Self =
            serde_json::from_slice(bytes).map_err(|source| FormatError::Json { what: "deletion mark", source })?;
        if m.version > MARK_VERSION {
            return Err(FormatError::NewerVersion { found: m.version, supported: MARK_VERSION });
        }
        if m.grace_seconds < MIN_GRACE_SECONDS {
            return Err(FormatError::Invalid {
                what: "deletion mark",
                detail: format!("grace period {} s is below the minimum {MIN_GRACE_SECONDS} s", m.grace_seconds),
            });
        }
        Ok(m)
    }
}
