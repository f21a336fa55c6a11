//! Integration tests of gitvault-git against the real git program.
//!
//! Every repository is built by scripted git commands in a temporary directory, with a fixed
//! identity and an empty global configuration, so results do not depend on the machine.

mod fixture;
mod mirror;
mod pack;
mod refs;
mod repo;
mod source;
#[cfg(unix)]
mod ssh;
