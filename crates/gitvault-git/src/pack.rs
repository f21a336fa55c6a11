//! Objects: which exist, and packing the new ones into self-contained pack files.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Error, Git, ObjectId};

/// A pack and its index written by [`Git::pack_objects`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackFiles {
    /// `<out_dir>/pack-<checksum>.pack`.
    pub pack: PathBuf,
    /// `<out_dir>/pack-<checksum>.idx`.
    pub index: PathBuf,
    /// The pack's trailing checksum in hex, as printed by `git pack-objects`; a repository
    /// expects the files named `pack-<checksum>.pack` / `.idx` in `objects/pack/`.
    pub checksum: String,
    /// Number of objects in the pack.
    pub objects: u64,
}

/// Magic and version of a pack index v2, the only version git writes.
const IDX_V2_HEADER: [u8; 8] = [0xff, b't', b'O', b'c', 0, 0, 0, 2];
/// Header, then the fanout table: 256 big-endian u32, the last one being the object count.
const IDX_FANOUT_END: usize = 8 + 256 * 4;

impl Git {
    /// The subset of `oids` present in `repo`, checked by one `git cat-file --batch-check`
    /// process however many ids there are.
    pub fn existing_objects(&self, repo: &Path, oids: &[ObjectId]) -> Result<HashSet<ObjectId>, Error> {
        if oids.is_empty() {
            return Ok(HashSet::new());
        }
        let mut input = String::with_capacity(oids.len() * 65);
        for oid in oids {
            input.push_str(oid.as_str());
            input.push('\n');
        }
        let output =
            self.cmd(Some(repo)).args(["cat-file", "--batch-check=%(objectname)"]).input(input.into_bytes()).run()?;
        // cat-file answers one line per input line, in order.
        let lines: Vec<&[u8]> = output.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        if lines.len() != oids.len() {
            return Err(Error::Parse {
                what: "cat-file --batch-check answer",
                line: format!("{} lines for {} object ids", lines.len(), oids.len()),
            });
        }
        Ok(oids
            .iter()
            .zip(lines)
            .filter(|(_, line)| !line.ends_with(b" missing"))
            .map(|(oid, _)| oid.clone())
            .collect())
    }

    /// Packs every object reachable from `include` and not from `exclude` into a pack and
    /// index in `out_dir` (created if missing).
    ///
    /// The pack is never thin: deltas only use bases inside the pack, so it can be installed
    /// on its own next to the packs of earlier runs. Exclude ids missing from `repo` are
    /// dropped first (git would refuse them); that can only make the pack bigger, never leave
    /// an object out. Include ids must exist. Returns `None` when there is nothing to pack.
    pub fn pack_objects(
        &self,
        repo: &Path,
        include: &[ObjectId],
        exclude: &[ObjectId],
        out_dir: &Path,
    ) -> Result<Option<PackFiles>, Error> {
        if include.is_empty() {
            return Ok(None);
        }
        let present = self.existing_objects(repo, exclude)?;
        let mut input = String::new();
        for oid in include {
            input.push_str(oid.as_str());
            input.push('\n');
        }
        for oid in exclude.iter().filter(|oid| present.contains(*oid)) {
            input.push('^');
            input.push_str(oid.as_str());
            input.push('\n');
        }

        fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
        // git runs inside the repository, so the destination must not be relative.
        let base = std::path::absolute(out_dir).map_err(|e| Error::io(out_dir, e))?.join("pack");
        let checksum = self
            .cmd(Some(repo))
            .args([
                // Only .pack and .idx are wanted; a .rev file would be left behind unused.
                "-c",
                "pack.writeReverseIndex=false",
                // A user's size limit would split the output into several packs.
                "-c",
                "pack.packSizeLimit=0",
                "pack-objects",
                "--revs",
                "--delta-base-offset",
                "-q",
            ])
            .arg(&base)
            .input(input.into_bytes())
            .run_text()?;
        if ObjectId::parse(&checksum).is_err() {
            return Err(Error::Parse { what: "pack-objects checksum", line: checksum });
        }

        let pack = out_dir.join(format!("pack-{checksum}.pack"));
        let index = out_dir.join(format!("pack-{checksum}.idx"));
        let objects = idx_object_count(&index)?;
        if objects == 0 {
            for path in [&pack, &index] {
                fs::remove_file(path).map_err(|e| Error::io(path, e))?;
            }
            return Ok(None);
        }
        Ok(Some(PackFiles { pack, index, checksum, objects }))
    }
}

/// Number of objects in a pack, read from the last fanout entry of its v2 index.
fn idx_object_count(path: &Path) -> Result<u64, Error> {
    let mut head = [0u8; IDX_FANOUT_END];
    fs::File::open(path).and_then(|mut file| file.read_exact(&mut head)).map_err(|e| Error::io(path, e))?;
    parse_idx_object_count(&head).map_err(|reason| Error::InvalidPackIndex { path: path.to_path_buf(), reason })
}

fn parse_idx_object_count(head: &[u8; IDX_FANOUT_END]) -> Result<u64, &'static str> {
    if head[..8] != IDX_V2_HEADER {
        return Err("not a version 2 pack index");
    }
    let mut last = [0u8; 4];
    last.copy_from_slice(&head[IDX_FANOUT_END - 4..]);
    Ok(u64::from(u32::from_be_bytes(last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_count_is_the_last_fanout_entry() {
        let mut head = [0u8; IDX_FANOUT_END];
        head[..8].copy_from_slice(&IDX_V2_HEADER);
        head[IDX_FANOUT_END - 4..].copy_from_slice(&70_000u32.to_be_bytes());
        assert_eq!(parse_idx_object_count(&head), Ok(70_000));
        head[7] = 1;
        assert!(parse_idx_object_count(&head).is_err());
    }
}
