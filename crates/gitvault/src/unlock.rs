//! Unlocking a vault without waiting twice: the key derivation (Argon2id, about 0.3 s by
//! design) runs while the storage is being reached.
//!
//! After each unlock the key slot that opened the vault is kept in the local cache, keyed by
//! the destination as the user wrote it. Key slots are plaintext in the vault (a salt, KDF
//! parameters and the wrapped master key), so the cache holds nothing the vault does not. The
//! next unlock of that destination starts deriving from the cached slot at once, in a thread,
//! while the main thread connects (ssh, HTTPS) and reads `config` and the key slots; the early
//! result is used only if the vault still holds exactly that slot under the same vault id.
//! Otherwise — or with no cache — it is the normal unlock.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use gitvault_engine::{Context, LockedVault, Vault};
use gitvault_format::ids::VaultId;
use gitvault_format::keys::{KeySlot, Passphrase};
use gitvault_storage::Store;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Cached {
    vault: VaultId,
    slot: KeySlot,
}

fn cache_path(ctx: &Context, destination: &str) -> PathBuf {
    let mut h = DefaultHasher::new();
    destination.hash(&mut h);
    ctx.cache_dir.join("destinations").join(format!("{:016x}.json", h.finish()))
}

/// Reach the storage with `open` (which may connect: ssh, HTTPS) and unlock the vault there;
/// `destination` is the vault as the user gave it.
pub fn unlock(
    open: impl FnOnce() -> Result<Arc<dyn Store>>,
    destination: &str,
    pass: &Passphrase,
    ctx: &Context,
) -> Result<Vault> {
    let path = cache_path(ctx, destination);
    let cached: Option<Cached> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let (locked, early) = std::thread::scope(|s| {
        let early = cached.map(|c| {
            s.spawn(move || {
                let master = c.slot.open(&c.vault, pass).ok().flatten();
                master.map(|m| (c.vault, c.slot, m))
            })
        });
        let locked = open().and_then(|store| Ok(LockedVault::open(store)?));
        (locked, early.and_then(|h| h.join().ok().flatten()))
    });
    let locked = locked?;
    let vault = match early {
        Some((id, slot, master)) if id == locked.config().id => match locked.unlock_with(&slot, master, ctx.clone()) {
            Ok(vault) => return Ok(vault),
            Err(locked) => {
                tracing::debug!("the cached key slot is no longer in the vault: unlocking anew");
                locked.unlock(pass, ctx.clone())?
            }
        },
        Some(_) => {
            tracing::debug!("the cached key slot belongs to another vault: unlocking anew");
            locked.unlock(pass, ctx.clone())?
        }
        None => locked.unlock(pass, ctx.clone())?,
    };
    remember_at(&vault, &path);
    Ok(vault)
}

/// Keep the slot that opened `vault` (or that `init` made) for the next unlock of
/// `destination`; failing to only costs time.
pub fn remember(vault: &Vault, destination: &str, ctx: &Context) {
    remember_at(vault, &cache_path(ctx, destination));
}

fn remember_at(vault: &Vault, path: &PathBuf) {
    let Ok(Some(slot)) = vault.current_key_slot() else { return };
    let Ok(id) = vault.id().parse::<VaultId>() else { return };
    let bytes = serde_json::to_vec(&Cached { vault: id, slot }).expect("a key slot serializes");
    let write = || -> std::io::Result<()> {
        let dir = path.parent().expect("the cache path has a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.tmp", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        tracing::debug!(path = %path.display(), error = %e, "could not keep the key slot for the next unlock");
    }
}
