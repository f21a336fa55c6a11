//! Upgrade a vault to the newest format version this gitvault writes (FORMAT.md §11).
//!
//! Older gitvault versions refuse an upgraded vault, so this only happens when asked. The ledger
//! records it first; then `config` is replaced, atomically where the storage can.

use gitvault_format::FORMAT_VERSION;
use gitvault_format::config::VaultConfig;
use gitvault_format::ids::paths;
use gitvault_format::ledger::Event;
use serde::Serialize;

use crate::error::Result;
use crate::vault::Vault;

#[derive(Clone, Debug, Serialize)]
pub struct UpgradeReport {
    pub from: u32,
    pub to: u32,
    /// False when the vault already was at the newest version.
    pub upgraded: bool,
}

pub fn upgrade(vault: &mut Vault) -> Result<UpgradeReport> {
    let from = vault.config.version;
    if from >= FORMAT_VERSION {
        return Ok(UpgradeReport { from, to: from, upgraded: false });
    }
    vault.deny_in_append_only("upgrade")?;
    let config = VaultConfig { version: FORMAT_VERSION, ..vault.config.clone() };
    vault.append_ledger_as(Event::Upgrade { from, to: FORMAT_VERSION }, FORMAT_VERSION)?;
    vault.store.replace(paths::CONFIG, &config.to_json())?;
    vault.config = config;
    Ok(UpgradeReport { from, to: FORMAT_VERSION, upgraded: true })
}
