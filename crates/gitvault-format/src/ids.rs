//! Names of stored things. Ids are random (LFS objects: a keyed hash), so a name says nothing
//! about what it holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::FormatError;

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name([u8; $len]);

        impl $name {
            /// A new random id.
            pub fn random() -> Result<Self, FormatError> {
                let mut b = [0u8; $len];
                crate::random_bytes(&mut b)?;
                Ok(Self(b))
            }
            /// The id in lowercase hex, as used in file names and JSON.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex digits, for people.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<Self, FormatError> {
                let invalid = || FormatError::Invalid {
                    what: stringify!($name),
                    detail: format!("{s:?} is not {} lowercase hex digits", $len * 2),
                };
                if s.len() != $len * 2 || s.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(invalid());
                }
                let mut b = [0u8; $len];
                hex::decode_to_slice(s, &mut b).map_err(|_| invalid())?;
                Ok(Self(b))
            }
        }
        impl TryFrom<String> for $name {
            type Error = FormatError;
            fn try_from(s: String) -> Result<Self, FormatError> {
                s.parse()
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_hex()
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

random_id!(
    /// A data object (a pack, a pack index, an LFS object) in `data/`.
    DataId, 32
);

impl DataId {
    /// An id from its bytes: LFS objects are named by a keyed hash (FORMAT.md §7.6).
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
}
random_id!(
    /// A snapshot in `snapshots/`.
    SnapshotId, 32
);
random_id!(
    /// A passphrase key slot in `keys/`.
    KeySlotId, 16
);
random_id!(
    /// A deletion mark in `marks/` (format version 2).
    MarkId, 16
);
random_id!(
    /// A pending-pack record in `pending/` (format version 2).
    PendingId, 16
);
random_id!(
    /// The identity of a vault, fixed at `init`.
    VaultId, 16
);

/// A keyed BLAKE3 hash (see [`crate::keys::MacKey`]): proves content without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mac([u8; 32]);

impl Mac {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}
impl FromStr for Mac {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b)
            .map_err(|_| FormatError::Invalid { what: "mac", detail: format!("{s:?} is not 64 hex digits") })?;
        Ok(Self(b))
    }
}
impl TryFrom<String> for Mac {
    type Error = FormatError;
    fn try_from(s: String) -> Result<Self, FormatError> {
        s.parse()
    }
}
impl From<Mac> for String {
    fn from(m: Mac) -> String {
        m.to_hex()
    }
}
impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({})", &self.to_hex()[..8])
    }
}

/// Where each kind of file lives in the vault; the single source of truth for paths.
pub mod paths {
    use super::{DataId, KeySlotId, MarkId, PendingId, SnapshotId};

    pub const CONFIG: &str = "config";
    pub const KEYS_DIR: &str = "keys/";
    pub const DATA_DIR: &str = "data/";
    pub const SNAPSHOTS_DIR: &str = "snapshots/";
    pub const LEDGER_DIR: &str = "ledger/";
    /// Deletion marks of `prune` (format version 2).
    pub const MARKS_DIR: &str = "marks/";
    /// Packs of interrupted backups, for resuming (format version 2).
    pub const PENDING_DIR: &str = "pending/";

    pub fn data(id: &DataId) -> String {
        let hex = id.to_hex();
        format!("data/{}/{}", &hex[..2], hex)
    }
    pub fn snapshot(id: &SnapshotId) -> String {
        format!("snapshots/{id}")
    }
    pub fn mark(id: &MarkId) -> String {
        format!("marks/{id}")
    }
    pub fn pending(id: &PendingId) -> String {
        format!("pending/{id}")
    }
    pub fn key_slot(id: &KeySlotId) -> String {
        format!("keys/{id}")
    }
    /// Ledger entries are numbered from 1; the name is the number in 20 decimal digits so
    /// that names sort in numeric order.
    pub fn ledger(seq: u64) -> String {
        format!("ledger/{seq:020}")
    }
    /// The sequence number of a ledger file name (`ledger/00000000000000000007` → 7); entries
    /// are numbered from 1, so `…0000` is not a ledger entry.
    pub fn parse_ledger(path: &str) -> Option<u64> {
        let name = path.strip_prefix(LEDGER_DIR)?;
        (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse().ok()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex_and_reject_garbage() {
        let id = SnapshotId::random().expect("rng");
        assert_eq!(id.to_hex().parse::<SnapshotId>().expect("parse"), id);
        assert!("xyz".parse::<SnapshotId>().is_err());
        assert!(id.to_hex().to_uppercase().parse::<SnapshotId>().is_err());
        assert_eq!(paths::parse_ledger(&paths::ledger(42)), Some(42));
        assert_eq!(paths::parse_ledger("ledger/42"), None);
    }
}
