//! Thin packs: the objects new since an earlier state, with deltas against objects of that
//! state, and their installation into a repository that holds it.
//!
//! A self-contained pack stores a large file edited a little whole again; a thin pack stores
//! the edit as a delta against the file's older version, which the pack itself does not hold
//! (as `git bundle` and `git fetch` send). Such a pack can only be installed where those bases
//! are: [`Git::index_pack_thin`] completes it there with the bases it needs and indexes it.

use std::io::{Read, Write};
use std::path::Path;

use crate::command::read_all;
use crate::pack::{SeenReader, revs_stdin};
use crate::{Error, Git, ObjectId};

/// What [`Git::pack_objects_thin`] produced.
pub struct ThinPack<T> {
    /// The pack's trailing checksum in hex (the checksum of the thin pack as written, not of
    /// the completed pack an installation makes of it).
    pub checksum: String,
    /// Objects in the pack, as its header counts them: the bases it deltas against are not.
    pub objects: u64,
    /// What `consume` returned.
    pub consumed: T,
}

impl Git {
    /// Packs every object reachable from `include` and not from `exclude` into a thin pack
    /// whose deltas may use objects reachable from `exclude` as bases, handing its bytes to
    /// `consume` as git writes them (to stdout: nothing is written to disk, and the repository
    /// is only read). `consume` runs on this thread and reads until end of file.
    ///
    /// Exclude ids missing from `repo` are dropped first, as for [`Git::pack_objects`]. Returns
    /// `None` when there is nothing to pack (what `consume` returned is then dropped).
    pub fn pack_objects_thin<T>(
        &self,
        repo: &Path,
        include: &[ObjectId],
        exclude: &[ObjectId],
        consume: impl FnOnce(&mut dyn Read) -> std::io::Result<T>,
    ) -> Result<Option<ThinPack<T>>, Error> {
        let Some(first) = include.first() else { return Ok(None) };
        let hash_len = first.as_str().len() / 2;
        let present = self.existing_objects(repo, exclude)?;
        let exclude: Vec<ObjectId> = exclude.iter().filter(|oid| present.contains(*oid)).cloned().collect();
        let input = revs_stdin(include, &exclude);
        // The arguments `git bundle create` gives: the same pack a bundle of these revisions holds.
        let (mut child, command) = self
            .cmd(Some(repo))
            .args(["pack-objects", "--revs", "--stdout", "--thin", "--delta-base-offset", "-q"])
            .spawn()?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (consumed, seen, err) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || stdin.write_all(input.as_bytes()));
            let err = scope.spawn(move || read_all(stderr));
            let mut reader = SeenReader::new(&mut stdout);
            let consumed = consume(&mut reader);
            if consumed.is_err() {
                // Nobody wants the pack any more.
                let _ = child.kill();
            }
            let _ = writer.join();
            (consumed, reader.seen, err.join())
        });
        drop(stdout);
        let status = child.wait().map_err(|source| Error::Spawn { program: self.program().to_path_buf(), source })?;
        let stderr = err.ok().and_then(Result::ok).unwrap_or_default();
        if !status.success() {
            return Err(crate::command::failed(command, repo, status, &stderr));
        }
        let consumed = consumed.map_err(|e| Error::io(repo, e))?;
        let objects =
            seen.pack_object_count(hash_len).map_err(|line| Error::Parse { what: "pack-objects --stdout", line })?;
        if objects == 0 {
            return Ok(None);
        }
        Ok(Some(ThinPack { checksum: hex::encode(seen.trailer(hash_len)), objects, consumed }))
    }

    /// Installs a pack, thin or not, into `repo`'s `objects/pack/` with
    /// `git index-pack --stdin --fix-thin`: git checks every object, appends the bases the
    /// pack deltas against (which `repo` must hold) and writes its index. `pack` is read to
    /// its end on this thread. Returns the checksum the installed pack is named after.
    pub fn index_pack_thin(&self, repo: &Path, pack: &mut dyn Read) -> Result<String, Error> {
        let (mut child, command) = self
            .cmd(Some(repo))
            .args([
                // Like the packs a restore copies in: no fsync per file (a restore of a long
                // chain would otherwise wait on three syncs per pack), and no .rev file.
                "-c",
                "core.fsync=none",
                "-c",
                "pack.writeReverseIndex=false",
                "index-pack",
                "--stdin",
                "--fix-thin",
            ])
            .spawn()?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (fed, out, err) = std::thread::scope(|scope| {
            let out = scope.spawn(move || read_all(stdout));
            let err = scope.spawn(move || read_all(stderr));
            let fed = std::io::copy(pack, &mut stdin);
            if fed.is_err() {
                let _ = child.kill();
            }
            drop(stdin);
            (fed, out.join(), err.join())
        });
        let status = child.wait().map_err(|source| Error::Spawn { program: self.program().to_path_buf(), source })?;
        let stdout = out.ok().and_then(Result::ok).unwrap_or_default();
        let stderr = err.ok().and_then(Result::ok).unwrap_or_default();
        // A read error is the caller's to report: git only saw a pack that stopped short.
        fed.map_err(|e| Error::io(repo, e))?;
        if !status.success() {
            return Err(crate::command::failed(command, repo, status, &stderr));
        }
        // "pack\t<checksum>" (or "keep\t" when git keeps it with a .keep file).
        let line = String::from_utf8_lossy(&stdout).trim().to_string();
        match line.split_once('\t') {
            Some((_, sum)) if ObjectId::parse(sum).is_ok() => Ok(sum.to_string()),
            _ => Err(Error::Parse { what: "index-pack output", line }),
        }
    }
}
