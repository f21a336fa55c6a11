//! Objects: which exist, and packing the new ones into self-contained pack files.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
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
pub(crate) const IDX_FANOUT_END: usize = 8 + 256 * 4;

impl Git {
    /// The subset of `oids` present in `repo`, checked by one `git cat-file --batch-check`
    /// process however many ids there are.
    pub fn existing_objects(&self, repo: &Path, oids: &[ObjectId]) -> Result<HashSet<ObjectId>, Error> {
        if oids.is_empty() {
            return Ok(HashSet::new());
        }
        let input = revs_stdin(oids, &[]);
        let output = self
            .cmd(Some(repo))
            .args(["cat-file", "--buffer", "--batch-check=%(objectname)"])
            .input(input.into_bytes())
            .run()?;
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
        Ok(self.pack_objects_streaming(repo, include, exclude, out_dir, |_| Ok(()))?.map(|p| p.files))
    }

    /// [`Git::pack_objects`], handing the pack's bytes to `consume` *while git writes them*, so
    /// that storing the pack overlaps with building it. `consume` runs on this thread and reads
    /// until end of file, which comes when git has finished.
    ///
    /// The repository is only read: git writes its temporary pack into `out_dir`, reaching the
    /// repository's objects as an alternate, so a read-only source can be backed up. What
    /// `consume` saw is checked against the finished pack (length, header and trailing
    /// checksum); [`StreamedPack::streamed`] is false when they differ (git rewrote its header,
    /// which it does only in unusual cases), and the caller must then use the file instead.
    pub fn pack_objects_streaming<T>(
        &self,
        repo: &Path,
        include: &[ObjectId],
        exclude: &[ObjectId],
        out_dir: &Path,
        consume: impl FnOnce(&mut dyn Read) -> std::io::Result<T>,
    ) -> Result<Option<StreamedPack<T>>, Error> {
        if include.is_empty() {
            return Ok(None);
        }
        let present = self.existing_objects(repo, exclude)?;
        let exclude: Vec<ObjectId> = exclude.iter().filter(|oid| present.contains(*oid)).cloned().collect();
        let input = revs_stdin(include, &exclude);

        // git runs inside the repository, so every path given to it must be absolute.
        let out_dir = std::path::absolute(out_dir).map_err(|e| Error::io(out_dir, e))?;
        let odb = out_dir.join("odb");
        let tmp_dir = odb.join("pack");
        fs::create_dir_all(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
        let objects = self.objects_dir(repo)?;
        let base = out_dir.join("pack");
        let (mut child, command) = self
            .cmd(Some(repo))
            .args([
                // Only .pack and .idx are wanted; a .rev file would be left behind unused.
                "-c",
                "pack.writeReverseIndex=false",
                // A user's size limit would split the output into several packs.
                "-c",
                "pack.packSizeLimit=0",
                // This is a temporary copy on its way into the vault, which makes the stored
                // copy durable itself: syncing this one only costs time.
                "-c",
                "core.fsync=none",
                "pack-objects",
                "--revs",
                "--delta-base-offset",
                // git uses reachability bitmaps by default only when packing to stdout (as for
                // a clone or a bundle); a pack written to disk would otherwise walk every
                // object and take about 1.5x as long on a repository that has bitmaps.
                "--use-bitmap-index",
                "-q",
            ])
            .arg(&base)
            .env_path("GIT_OBJECT_DIRECTORY", &odb)
            .env_path("GIT_ALTERNATE_OBJECT_DIRECTORIES", &objects)
            .spawn()?;

        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let child = std::sync::Mutex::new(child);
        let (consumed, streamed, out, err) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || stdin.write_all(input.as_bytes()));
            let out = scope.spawn(move || crate::command::read_all(stdout));
            let err = scope.spawn(move || crate::command::read_all(stderr));
            let mut reader = GrowingPack::new(&tmp_dir, &child);
            let consumed = consume(&mut reader);
            if consumed.is_err() {
                // Nobody wants the pack any more.
                let _ = child.lock().map(|mut c| c.kill());
            }
            let streamed = reader.seen();
            let _ = writer.join();
            (consumed, streamed, out.join(), err.join())
        });
        let status =
            child.into_inner().map_err(|_| Error::Parse { what: "git child", line: "poisoned".into() })?.wait();
        let status = status.map_err(|source| Error::Spawn { program: self.program().to_path_buf(), source })?;
        let stdout = out.ok().and_then(Result::ok).unwrap_or_default();
        let stderr = err.ok().and_then(Result::ok).unwrap_or_default();
        if !status.success() {
            let _ = fs::remove_dir_all(&odb);
            return Err(crate::command::failed(command, repo, status, &stderr));
        }
        let consumed = consumed.map_err(|e| Error::io(&base, e))?;
        let _ = fs::remove_dir_all(&odb);
        let checksum = String::from_utf8_lossy(&stdout).trim().to_string();
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
        let streamed = streamed.matches(&pack)?;
        Ok(Some(StreamedPack { files: PackFiles { pack, index, checksum, objects }, streamed, consumed }))
    }

    /// The absolute objects directory of a repository (bare or not; for a linked worktree, the
    /// main repository's, which its objects live in).
    pub(crate) fn objects_dir(&self, repo: &Path) -> Result<PathBuf, Error> {
        let dir =
            self.cmd(Some(repo)).args(["rev-parse", "--path-format=absolute", "--git-path", "objects"]).run_text()?;
        Ok(PathBuf::from(dir))
    }
}

/// Object ids as `git rev-list --stdin` and friends read them: one per line, each of
/// `exclude` prefixed with `^`.
pub(crate) fn revs_stdin(include: &[ObjectId], exclude: &[ObjectId]) -> String {
    let mut input = String::with_capacity((include.len() + exclude.len()) * 66);
    for (prefix, oids) in [("", include), ("^", exclude)] {
        for oid in oids {
            input.push_str(prefix);
            input.push_str(oid.as_str());
            input.push('\n');
        }
    }
    input
}

/// What [`Git::pack_objects_streaming`] produced.
pub struct StreamedPack<T> {
    pub files: PackFiles,
    /// True when the bytes handed to `consume` are exactly the finished pack file.
    pub streamed: bool,
    /// What `consume` returned.
    pub consumed: T,
}

/// Reads git's temporary pack file while git is still writing it: at the end of what is
/// written so far it waits, and it reports end of file only once git has exited.
struct GrowingPack<'a> {
    dir: &'a Path,
    child: &'a std::sync::Mutex<std::process::Child>,
    file: Option<fs::File>,
    seen: Seen,
}

/// Enough of a pack stream to recognise it again and to read its header and trailer: length,
/// first and last bytes.
#[derive(Default)]
pub(crate) struct Seen {
    len: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
}

/// A pack's header: `PACK`, version, object count.
const SEEN_HEAD: usize = 12;
/// The longest trailing checksum (SHA-256).
const SEEN_TAIL: usize = 32;

impl Seen {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.head.len() < SEEN_HEAD {
            let take = (SEEN_HEAD - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        self.tail.extend_from_slice(&bytes[bytes.len().saturating_sub(SEEN_TAIL)..]);
        if self.tail.len() > SEEN_TAIL {
            self.tail.drain(..self.tail.len() - SEEN_TAIL);
        }
    }

    /// Whether `path` holds the stream seen: same length, header and trailing checksum.
    fn matches(&self, path: &Path) -> Result<bool, Error> {
        let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
        if len != self.len || len < (SEEN_HEAD + SEEN_TAIL) as u64 {
            return Ok(false);
        }
        let mut head = vec![0u8; SEEN_HEAD];
        let mut tail = vec![0u8; SEEN_TAIL];
        use std::io::Seek;
        f.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
        f.seek(std::io::SeekFrom::End(-(SEEN_TAIL as i64))).map_err(|e| Error::io(path, e))?;
        f.read_exact(&mut tail).map_err(|e| Error::io(path, e))?;
        Ok(head == self.head && tail == self.tail)
    }

    /// The object count in the header of a whole pack stream whose trailing checksum is
    /// `hash_len` bytes, or what is wrong with it.
    pub(crate) fn pack_object_count(&self, hash_len: usize) -> Result<u64, String> {
        let h = &self.head;
        let complete = self.len >= (SEEN_HEAD + hash_len) as u64 && h.len() == SEEN_HEAD;
        if !complete || &h[..4] != b"PACK" || h[4..7] != [0, 0, 0] || !matches!(h[7], 2 | 3) {
            return Err(format!("not a whole pack ({} bytes)", self.len));
        }
        Ok(u64::from(u32::from_be_bytes([h[8], h[9], h[10], h[11]])))
    }

    /// The last `hash_len` bytes seen: a pack's trailing checksum.
    pub(crate) fn trailer(&self, hash_len: usize) -> &[u8] {
        &self.tail[self.tail.len().saturating_sub(hash_len)..]
    }
}

/// Passes a stream through, keeping what [`Seen`] keeps of it.
pub(crate) struct SeenReader<'a> {
    inner: &'a mut dyn Read,
    pub(crate) seen: Seen,
}

impl<'a> SeenReader<'a> {
    pub(crate) fn new(inner: &'a mut dyn Read) -> Self {
        Self { inner, seen: Seen::default() }
    }
}

impl Read for SeenReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.update(&buf[..n]);
        Ok(n)
    }
}

impl<'a> GrowingPack<'a> {
    fn new(dir: &'a Path, child: &'a std::sync::Mutex<std::process::Child>) -> Self {
        Self { dir, child, file: None, seen: Seen::default() }
    }

    fn seen(self) -> Seen {
        self.seen
    }

    fn git_exited(&self) -> std::io::Result<bool> {
        let mut child = self.child.lock().map_err(|_| std::io::Error::other("git child lock poisoned"))?;
        Ok(child.try_wait()?.is_some())
    }

    fn open_temp(&mut self) -> std::io::Result<()> {
        for entry in fs::read_dir(self.dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with("tmp_pack_") {
                match fs::File::open(entry.path()) {
                    Ok(f) => self.file = Some(f),
                    // git finished and renamed it between listing and opening: nothing was
                    // streamed, and the caller falls back to the finished file.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                return Ok(());
            }
        }
        Ok(())
    }
}

impl Read for GrowingPack<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.file.is_none() {
                // Checked before looking, so that a file created just before git exits is
                // still found on this pass.
                let exited = self.git_exited()?;
                self.open_temp()?;
                if self.file.is_none() {
                    if exited {
                        return Ok(0);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    continue;
                }
            }
            let exited = self.git_exited()?;
            let file = self.file.as_mut().expect("opened above");
            let n = file.read(buf)?;
            if n > 0 {
                self.seen.update(&buf[..n]);
                return Ok(n);
            }
            // At the end of what is written: done only if git had exited before this read.
            if exited {
                return Ok(0);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// Number of objects in a pack, read from the last fanout entry of its v2 index.
fn idx_object_count(path: &Path) -> Result<u64, Error> {
    let mut head = [0u8; IDX_FANOUT_END];
    fs::File::open(path).and_then(|mut file| file.read_exact(&mut head)).map_err(|e| Error::io(path, e))?;
    parse_idx_object_count(&head).map_err(|reason| Error::InvalidPackIndex { path: path.to_path_buf(), reason })
}

pub(crate) fn parse_idx_object_count(head: &[u8; IDX_FANOUT_END]) -> Result<u64, &'static str> {
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

    fn seen(bytes: &[u8], read_size: usize) -> Seen {
        let mut src: &[u8] = bytes;
        let mut reader = SeenReader::new(&mut src);
        let mut buf = vec![0u8; read_size];
        while reader.read(&mut buf).expect("read") > 0 {}
        reader.seen
    }

    #[test]
    fn the_ends_of_a_pack_stream_give_its_count_and_checksum_whatever_the_reads() {
        let mut pack = b"PACK\0\0\0\x02\0\0\x01\x02".to_vec();
        pack.extend(std::iter::repeat_n(7u8, 100));
        pack.extend(1..=20u8);
        for read_size in [1, 5, 13, 64, 4096] {
            let s = seen(&pack, read_size);
            assert_eq!(s.pack_object_count(20), Ok(258), "reads of {read_size}");
            assert_eq!(s.trailer(20), (1..=20u8).collect::<Vec<_>>(), "reads of {read_size}");
        }
        assert!(seen(&pack[..20], 64).pack_object_count(20).is_err(), "too short for a header and a trailer");
        let mut other = pack.clone();
        other[0] = b'K';
        assert!(seen(&other, 64).pack_object_count(20).is_err(), "not a pack");
    }

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
