//! The `config` file: the only plaintext document besides key slots. It says "this is a
//! gitvault vault, format version N" and carries the vault's random id; nothing else.

use serde::{Deserialize, Serialize};

use crate::ids::VaultId;
use crate::{FORMAT_VERSION, FormatError};

pub const FORMAT_NAME: &str = "gitvault";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Always `"gitvault"`.
    pub format: String,
    pub version: u32,
    pub id: VaultId,
}

impl VaultConfig {
    pub fn new(id: VaultId) -> Self {
        Self { format: FORMAT_NAME.into(), version: FORMAT_VERSION, id }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("config always serializes");
        v.push(b'\n');
        v
    }

    /// Parse, checking the format name and version before anything else so that a vault
    /// written by a newer gitvault gets "upgrade gitvault", not a field-level complaint.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| FormatError::BadMagic)?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(FormatError::BadMagic);
        }
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version > u64::from(FORMAT_VERSION) {
            return Err(FormatError::NewerVersion {
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        serde_json::from_value(value).map_err(|source| FormatError::Json { what: "vault config", source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_version_is_reported_as_such() {
        let json = br#"{"format":"gitvault","version":99,"id":"00","future":true}"#;
        assert!(matches!(VaultConfig::from_json(json), Err(FormatError::NewerVersion { found: 99, .. })));
        assert!(matches!(VaultConfig::from_json(b"{}"), Err(FormatError::BadMagic)));
        let c = VaultConfig::new(VaultId::random().expect("rng"));
        assert_eq!(VaultConfig::from_json(&c.to_json()).expect("parse"), c);
    }
}
