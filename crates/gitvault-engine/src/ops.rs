//! One engine operation per module.

pub mod backup;
pub mod consolidate;
pub mod copy;
pub mod diff;
pub mod forget;
pub mod keys;
pub mod prune;
pub mod restore;
pub mod upgrade;
pub mod verify;
