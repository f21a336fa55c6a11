//! End-to-end tests of the `gitvault` binary against real git repositories.

mod bad_input;
mod catalog;
mod chain;
mod common;
mod config;
mod copy;
mod crash;
mod destinations;
mod forge;
mod golden;
mod lock;
mod metadata;
mod metadata_bitbucket;
mod metadata_gitea;
mod metadata_gitlab;
mod resume;
mod retention;
mod s3;
mod serve;
mod sftp;
mod storage_check;
mod tamper;
mod to_forge;
mod to_forge_gitea;
mod to_forge_gitlab;
