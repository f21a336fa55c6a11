//! Passphrase key slots: add, list, remove — without rewriting any data.

use gitvault_format::ids::{KeySlotId, paths};
use gitvault_format::keys::{KdfParams, KeySlot, Passphrase, TWO_LANES_VERSION};
use gitvault_format::ledger::Event;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::vault::{Vault, read_key_slots};

#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    pub id: KeySlotId,
    /// True for the slot the passphrase of this command opened.
    pub current: bool,
    pub kdf: KdfParams,
}

pub fn list_keys(vault: &Vault) -> Result<Vec<KeyInfo>> {
    Ok(read_key_slots(vault.store.as_ref())?
        .into_iter()
        .map(|s| KeyInfo { id: s.id, current: s.id == vault.current_slot(), kdf: s.kdf.params })
        .collect())
}

/// Wrap the vault's master key under another passphrase.
pub fn add_key(vault: &Vault, passphrase: &Passphrase, kdf: KdfParams) -> Result<KeySlotId> {
    // A vault is written in its own version: before version 5, slots have one lane.
    let kdf = if vault.config.version < TWO_LANES_VERSION { KdfParams { parallelism: 1, ..kdf } } else { kdf };
    let slot = KeySlot::seal(&vault.config.id, vault.master(), passphrase, kdf)?;
    vault.store.put_new(&paths::key_slot(&slot.id), &slot.to_json())?;
    vault.append_ledger(Event::KeyAdd { key_slot: slot.id })?;
    Ok(slot.id)
}

/// Remove the slot whose id starts with `query`. The last slot, and the slot that opened the
/// vault for this command, cannot be removed.
pub fn remove_key(vault: &Vault, query: &str) -> Result<KeySlotId> {
    vault.deny_in_append_only("key remove")?;
    let slots = read_key_slots(vault.store.as_ref())?;
    let found: Vec<_> = slots.iter().filter(|s| !query.is_empty() && s.id.to_hex().starts_with(query)).collect();
    let slot = match found.as_slice() {
        [one] => one.id,
        [] => {
            return Err(Error::KeySlot {
                slot: query.into(),
                problem: "does not exist; see `gitvault key list`".into(),
            });
        }
        _ => return Err(Error::KeySlot { slot: query.into(), problem: "is ambiguous; give more digits".into() }),
    };
    if slots.len() == 1 {
        return Err(Error::KeySlot {
            slot: slot.to_hex(),
            problem: "is the last key slot; add another before removing it".into(),
        });
    }
    if slot == vault.current_slot() {
        return Err(Error::KeySlot {
            slot: slot.to_hex(),
            problem: "opened the vault for this command; remove it using another passphrase".into(),
        });
    }
    // Ledger first: if the removal is interrupted, verify finds a slot the ledger says is gone
    // (reported) rather than a slot that vanished without a record.
    vault.append_ledger(Event::KeyRemove { key_slot: slot })?;
    vault.store.delete(&paths::key_slot(&slot))?;
    Ok(slot)
}
