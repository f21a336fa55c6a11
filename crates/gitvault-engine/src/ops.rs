//! One engine operation per module.

pub mod backup;
pub mod copy;
pub mod diff;
pub mod keys;
pub mod restore;
pub mod verify;
