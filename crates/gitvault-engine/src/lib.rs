//! The gitvault engine: creating and unlocking vaults, backing git repositories up into them,
//! restoring, comparing and verifying snapshots, and managing keys.
//!
//! The engine writes through [`gitvault_storage::Store`] and never knows which backend is
//! behind it; it talks to git only through [`gitvault_git`]; it knows nothing about forges,
//! HTTP, the CLI or SQLite. Settings arrive as plain parameters: it reads no environment.

pub mod error;
pub mod ledger;
mod lfs;
pub mod lock;
mod marks;
pub mod ops;
mod pending;
pub mod progress;
mod scratch;
pub mod vault;

pub use error::{Error, Result};
pub use lock::LockPolicy;
pub use vault::{Context, LockedVault, Vault, resolve_snapshot};
