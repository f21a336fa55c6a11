//! The ledger: an append-only, hash-chained log of every snapshot and administrative event.
//!
//! Entry `n` is stored at `ledger/<n in 20 digits>` and holds the keyed hash of entry `n-1`'s
//! plaintext, so removing, reordering or editing an entry breaks the chain. Writers append with
//! a create-only write; the loser of a race re-reads the head and takes the next number.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::FormatError;
use crate::ids::{DataId, KeySlotId, Mac, MarkId, SnapshotId, VaultId};
use crate::keys::MacKey;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    pub seq: u64,
    /// Keyed hash of the previous entry's plaintext; `None` only for entry 1.
    pub prev: Option<Mac>,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub host: String,
    /// Format version 4: who acted (`user@host`, `schedule:POLICY`, `token:NAME`); absent when
    /// the writer did not say, and always absent before version 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    Init {
        vault: VaultId,
        key_slot: KeySlotId,
    },
    Snapshot {
        snapshot: SnapshotId,
        /// Keyed hash of the snapshot file's plaintext.
        mac: Mac,
        repositories: Vec<String>,
        /// True when a later command recorded a snapshot whose writer stopped before it could.
        #[serde(default)]
        recovered: bool,
    },
    KeyAdd {
        key_slot: KeySlotId,
    },
    KeyRemove {
        key_slot: KeySlotId,
    },
    Restore {
        snapshot: SnapshotId,
        repositories: Vec<String>,
    },
    Verify {
        read_data: bool,
        problems: u64,
        /// Format version 2, only when part of the data was read: `"K/N"`, the slice read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_subset: Option<String>,
    },
    /// Format version 2: snapshots removed by `forget`, written before their files are deleted.
    Forget {
        snapshots: Vec<SnapshotId>,
        /// Why: the retention policy applied, that they were named explicitly, or consolidation.
        reason: String,
        /// Present only when `prune` consolidated them: the snapshot that replaces each one, in
        /// the same order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replaced_by: Vec<SnapshotId>,
    },
    /// Format version 2: data files deleted by `prune` under a ripe deletion mark, written
    /// before they are deleted.
    Prune {
        mark: MarkId,
        data: Vec<DataId>,
        /// Stored bytes of those files.
        bytes: u64,
    },
    /// Format version 2: the vault was upgraded from format version `from` to `to`; written
    /// before `config` is replaced.
    Upgrade {
        from: u32,
        to: u32,
    },
    /// Format version 4: an action of the audit trail no other event records (a copy, a change
    /// of configuration, an API token created or revoked, a run triggered through the API...).
    Audit {
        /// What was done, e.g. `copy`, `config_change`, `token_create`, `api_trigger`.
        action: String,
        /// What it was done to.
        target: String,
        /// `ok`, `partial`, `failed` or `denied`.
        outcome: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Init { .. } => "init",
            Event::Snapshot { .. } => "snapshot",
            Event::KeyAdd { .. } => "key_add",
            Event::KeyRemove { .. } => "key_remove",
            Event::Restore { .. } => "restore",
            Event::Verify { .. } => "verify",
            Event::Forget { .. } => "forget",
            Event::Prune { .. } => "prune",
            Event::Upgrade { .. } => "upgrade",
            Event::Audit { .. } => "audit",
        }
    }

    /// The first vault format version in which this event may appear.
    pub fn since_version(&self) -> u32 {
        match self {
            Event::Audit { .. } => 4,
            Event::Forget { .. } | Event::Prune { .. } | Event::Upgrade { .. } => 2,
            Event::Verify { data_subset: Some(_), .. } => 2,
            _ => 1,
        }
    }
}

impl LedgerEntry {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a ledger entry always serializes")
    }
    pub fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        serde_json::from_slice(bytes).map_err(|source| FormatError::Json { what: "ledger entry", source })
    }
    /// The chain hash of an entry: the keyed hash of its plaintext exactly as stored.
    pub fn chain_hash(mac_key: &MacKey, plaintext: &[u8]) -> Mac {
        mac_key.mac(plaintext)
    }
}
