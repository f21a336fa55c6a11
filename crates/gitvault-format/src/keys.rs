//! Keys: a random master key, the subkeys derived from it, and the passphrase key slots that
//! wrap it. Changing a passphrase rewrites one small key slot file, never the data.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::FormatError;
use crate::ids::{KeySlotId, Mac, VaultId};

/// A passphrase. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Passphrase(String);

impl Passphrase {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(****)")
    }
}

/// The 256-bit master key of a vault. Everything else is derived from it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

/// The key that encrypts every envelope (see [`crate::envelope`]).
#[derive(Clone)]
pub struct DataKey(pub(crate) [u8; 32]);

/// The key of the keyed BLAKE3 hashes that prove content (`mac` fields, ledger chain).
#[derive(Clone)]
pub struct MacKey([u8; 32]);

macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(****)", stringify!($t))
            }
        }
        impl Drop for $t {
            fn drop(&mut self) {
                // Best effort: keys should not linger in freed memory.
                self.0.iter_mut().for_each(|b| *b = 0);
            }
        }
    )*};
}
redacted_debug!(MasterKey, DataKey, MacKey);

/// BLAKE3 `derive_key` contexts: fixed forever for format version 1.
const DATA_KEY_CONTEXT: &str = "gitvault v1 2026-11-28 envelope encryption key";
const MAC_KEY_CONTEXT: &str = "gitvault v1 2026-11-28 content mac key";

impl MasterKey {
    pub fn generate() -> Result<Self, FormatError> {
        let mut k = [0u8; 32];
        crate::random_bytes(&mut k)?;
        Ok(Self(k))
    }
    pub fn data_key(&self) -> DataKey {
        DataKey(blake3::derive_key(DATA_KEY_CONTEXT, &self.0))
    }
    pub fn mac_key(&self) -> MacKey {
        MacKey(blake3::derive_key(MAC_KEY_CONTEXT, &self.0))
    }
}

impl MacKey {
    /// A streaming keyed hasher; feed it plaintext, then [`MacKey::finish`].
    pub fn hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.0)
    }
    pub fn finish(hasher: &blake3::Hasher) -> Mac {
        Mac::from_bytes(*hasher.finalize().as_bytes())
    }
    pub fn mac(&self, bytes: &[u8]) -> Mac {
        Mac::from_bytes(*blake3::keyed_hash(&self.0, bytes).as_bytes())
    }

    /// The preferred data id of the LFS object `oid` (its SHA-256 in lowercase hex) in this
    /// vault (FORMAT.md §7.6): one name per object, so that repositories and snapshots share
    /// it, and a keyed one, so that the name tells nothing about the content.
    pub fn lfs_data_id(&self, oid: &str) -> crate::ids::DataId {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(LFS_ID_CONTEXT);
        h.update(oid.as_bytes());
        crate::ids::DataId::from_bytes(*h.finalize().as_bytes())
    }
}

/// Prefix of the keyed hash that names LFS objects (FORMAT.md §7.6).
pub const LFS_ID_CONTEXT: &[u8] = b"gitvault lfs object id v1\0";

const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;

/// Argon2id parameters, recorded in every key slot so that each slot can be opened on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// The format version from which new key slots have two Argon2 lanes (FORMAT.md §4); older
/// vaults get slots of one lane.
pub const TWO_LANES_VERSION: u32 = 5;

impl Default for KdfParams {
    /// 128 MiB, 3 passes, 2 lanes computed on two threads: 0.18–0.20 s per unlock on the
    /// project's 2-core machines (one lane took 0.27–0.34 s for the same work; 64 MiB took
    /// 0.12 s, 256 MiB 0.7–1 s with one lane), inside the 0.2–0.5 s budget.
    fn default() -> Self {
        Self { memory_kib: 128 * 1024, iterations: 3, parallelism: 2 }
    }
}

impl KdfParams {
    /// Derive a 32-byte key-encryption key from a passphrase.
    fn derive(&self, passphrase: &Passphrase, salt: &[u8]) -> Result<[u8; 32], FormatError> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| FormatError::Kdf(e.to_string()))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into(passphrase.expose().as_bytes(), salt, &mut out)
            .map_err(|e| FormatError::Kdf(e.to_string()))?;
        Ok(out)
    }
}

/// A key slot file (`keys/<id>`), stored as plaintext JSON: it holds only the KDF inputs and
/// the master key encrypted under the passphrase-derived key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySlot {
    pub version: u32,
    pub id: KeySlotId,
    pub kdf: KdfSpec,
    /// Always `"xchacha20poly1305"` in version 1.
    pub cipher: String,
    /// Base64 (standard, padded) of the 24-byte nonce.
    pub nonce: String,
    /// Base64 of the 32-byte master key encrypted and authenticated (48 bytes with the tag).
    pub wrapped_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfSpec {
    /// Always `"argon2id"` (version 0x13) in format version 1.
    pub algorithm: String,
    #[serde(flatten)]
    pub params: KdfParams,
    /// Base64 of the 32-byte random salt.
    pub salt: String,
}

fn slot_aad(vault: &VaultId, slot: &KeySlotId) -> Vec<u8> {
    let mut aad = b"gitvault key slot v1\0".to_vec();
    aad.extend_from_slice(vault.as_bytes());
    aad.extend_from_slice(slot.as_bytes());
    aad
}

impl KeySlot {
    /// Wrap `master` under `passphrase` in a new slot of vault `vault`.
    pub fn seal(
        vault: &VaultId,
        master: &MasterKey,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<Self, FormatError> {
        let id = KeySlotId::random()?;
        let mut salt = [0u8; 32];
        crate::random_bytes(&mut salt)?;
        let mut nonce = [0u8; 24];
        crate::random_bytes(&mut nonce)?;
        let kek = params.derive(passphrase, &salt)?;
        let cipher = XChaCha20Poly1305::new(&kek.into());
        let wrapped = cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: &master.0, aad: &slot_aad(vault, &id) })
            .map_err(|_| FormatError::Authentication)?;
        Ok(Self {
            version: 1,
            id,
            kdf: KdfSpec { algorithm: "argon2id".into(), params, salt: B64.encode(salt) },
            cipher: "xchacha20poly1305".into(),
            nonce: B64.encode(nonce),
            wrapped_key: B64.encode(wrapped),
        })
    }

    /// Unwrap the master key; `Ok(None)` when the passphrase does not open this slot.
    pub fn open(&self, vault: &VaultId, passphrase: &Passphrase) -> Result<Option<MasterKey>, FormatError> {
        let invalid = |detail: &str| FormatError::Invalid { what: "key slot", detail: detail.into() };
        if self.version != 1 {
            return Err(FormatError::NewerVersion { found: self.version, supported: 1 });
        }
        if self.kdf.algorithm != "argon2id" || self.cipher != "xchacha20poly1305" {
            return Err(invalid("unknown KDF or cipher"));
        }
        // Slot files are not authenticated before they are opened: refuse parameters that would
        // make unlocking exhaust memory or time (4 GiB, 64 passes are far above any default).
        let p = self.kdf.params;
        if p.memory_kib > MAX_MEMORY_KIB || p.iterations > MAX_ITERATIONS || p.parallelism > MAX_PARALLELISM {
            return Err(invalid("KDF parameters beyond the accepted maximum (4 GiB, 64 passes, 16 lanes)"));
        }
        let salt = B64.decode(&self.kdf.salt).map_err(|_| invalid("salt is not base64"))?;
        let nonce: [u8; 24] = B64
            .decode(&self.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| invalid("nonce is not 24 bytes of base64"))?;
        let wrapped = B64.decode(&self.wrapped_key).map_err(|_| invalid("wrapped key is not base64"))?;
        let kek = self.kdf.params.derive(passphrase, &salt)?;
        let cipher = XChaCha20Poly1305::new(&kek.into());
        match cipher.decrypt(&XNonce::from(nonce), Payload { msg: &wrapped, aad: &slot_aad(vault, &self.id) }) {
            Ok(key) => {
                let key: [u8; 32] = key.try_into().map_err(|_| invalid("wrapped key is not 32 bytes"))?;
                Ok(Some(MasterKey(key)))
            }
            Err(_) => Ok(None),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a key slot always serializes")
    }
    pub fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        serde_json::from_slice(bytes).map_err(|source| FormatError::Json { what: "key slot", source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEAK: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

    /// FORMAT.md §12: the LFS object id vector, under the master key 00 01 … 1f.
    #[test]
    fn lfs_object_ids_match_the_test_vector() {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::try_from(i).expect("small");
        }
        let mac_key = MasterKey(k).mac_key();
        // SHA-256 of "hello".
        let id = mac_key.lfs_data_id("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(id.to_hex(), "0f0a8772e2342fc42c3a80c79b7fbb0358834f224180dd131417fd596fa2baf4");
    }

    #[test]
    fn key_slot_opens_with_right_passphrase_only() {
        let vault = VaultId::random().expect("rng");
        let master = MasterKey::generate().expect("rng");
        let slot = KeySlot::seal(&vault, &master, &Passphrase::new("correct horse"), WEAK).expect("seal");
        let slot = KeySlot::from_json(&slot.to_json()).expect("json");
        let opened = slot.open(&vault, &Passphrase::new("correct horse")).expect("open").expect("key");
        assert_eq!(opened.0, master.0);
        assert!(slot.open(&vault, &Passphrase::new("wrong")).expect("open").is_none());
        // A slot copied into another vault does not open there.
        let other = VaultId::random().expect("rng");
        assert!(slot.open(&other, &Passphrase::new("correct horse")).expect("open").is_none());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let p = Passphrase::new("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
        let k = MasterKey::generate().expect("rng");
        assert_eq!(format!("{k:?}"), "MasterKey(****)");
    }
}
