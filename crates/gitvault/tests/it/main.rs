//! End-to-end tests of the `gitvault` binary against real git repositories.

mod bad_input;
mod chain;
mod common;
mod crash;
mod golden;
mod s3;
mod sftp;
mod tamper;
