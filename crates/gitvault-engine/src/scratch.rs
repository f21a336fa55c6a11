//! Scratch directories in the local cache (packs being built, repositories used to answer
//! ancestry questions). Each is named after the process that owns it, so that one left by a
//! killed process is recognised and removed by the next run instead of filling the disk.

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};
use crate::vault::Context;

fn scratch_root(ctx: &Context) -> std::path::PathBuf {
    ctx.cache_dir.join("tmp")
}

/// A new scratch directory `<cache>/tmp/<purpose>-<pid>-<random>`, removed when dropped.
pub(crate) fn scratch_dir(ctx: &Context, purpose: &str) -> Result<tempfile::TempDir> {
    let parent = scratch_root(ctx);
    fs::create_dir_all(&parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    tempfile::Builder::new()
        .prefix(&format!("{purpose}-{}-", std::process::id()))
        .tempdir_in(&parent)
        .map_err(|e| Error::io(format!("creating a scratch directory in {}", parent.display()), e))
}

/// Remove scratch directories whose owning process is gone. Errors are logged: a leftover
/// costs disk space, not correctness.
pub(crate) fn remove_stale(ctx: &Context) {
    let Ok(entries) = fs::read_dir(scratch_root(ctx)) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(path = %entry.path().display(), "removed scratch left by an interrupted run"),
                Err(e) => tracing::warn!(path = %entry.path().display(), error = %e, "could not remove stale scratch"),
            }
        }
    }
}
