//! A repository whose objects are one pack: a full backup can store that pack as it is.
//!
//! A freshly cloned, fetched-once or `git gc`-ed repository keeps every object in a single
//! pack. When the objects the backup wants are exactly that pack's, having `git pack-objects`
//! write them again only costs time (it re-checks and re-hashes every object, then writes an
//! index). [`Git::sole_pack`] says when the pack can be taken as it is, and
//! [`SolePack::pack_reader`] reads it while checking every byte against what its index
//! records, so a damaged source pack is never stored as if it were whole.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha1::Digest;

use crate::pack::{IDX_FANOUT_END, parse_idx_object_count, revs_stdin};
use crate::{Error, Git, ObjectId, PackFiles};

/// The most objects a pack may hold for [`SolePack::pack_reader`] to check them one by one
/// (their offsets and CRCs take 32 MiB); larger packs are hashed whole.
pub const MAX_CRC_OBJECTS: u64 = 2_000_000;

/// The only pack of a repository, opened, holding exactly the objects a backup wants.
#[derive(Debug)]
pub struct SolePack {
    /// The pack and index in the repository's `objects/pack/` (read, never written).
    pub files: PackFiles,
    pack: fs::File,
    index: fs::File,
    hash_len: usize,
}

impl Git {
    /// The repository's pack when it holds exactly the objects reachable from `include`: the
    /// repository has one pack (not a partial clone's promisor pack), no loose objects, no
    /// alternates, and the objects reachable from `include` are as many as the pack holds —
    /// so they are the pack's objects. `None` when any of that does not hold, or `include` is
    /// empty.
    ///
    /// The files are opened before anything is checked: a `git gc` running meanwhile
    /// replaces them under new names, and the opened ones keep the checked content.
    pub fn sole_pack(&self, repo: &Path, include: &[ObjectId]) -> Result<Option<SolePack>, Error> {
        let Some(sole) = self.sole_pack_candidate(repo, include)? else { return Ok(None) };
        Ok(self.confirm_sole_pack(repo, include, &sole)?.then_some(sole))
    }

    /// [`Git::sole_pack`] but for its last and slowest step, counting the objects `include`
    /// reaches: the pack when everything else holds, to be confirmed by
    /// [`Git::confirm_sole_pack`] — which can run while the pack is already being read.
    pub fn sole_pack_candidate(&self, repo: &Path, include: &[ObjectId]) -> Result<Option<SolePack>, Error> {
        let Some(first) = include.first() else { return Ok(None) };
        let hash_len = first.as_str().len() / 2;
        let objects = self.objects_dir(repo)?;
        let not = |why: &str| {
            tracing::debug!(repo = %repo.display(), why, "git writes a new pack");
            Ok(None)
        };
        if has_alternates(&objects)? {
            return not("the repository borrows objects from another (alternates)");
        }
        let pack_dir = objects.join("pack");
        let Some(stem) = only_pack(&pack_dir)? else { return not("not exactly one pack") };
        let pack_path = pack_dir.join(format!("{stem}.pack"));
        let index_path = pack_dir.join(format!("{stem}.idx"));
        let (pack, index) = match (fs::File::open(&pack_path), fs::File::open(&index_path)) {
            (Ok(p), Ok(i)) => (p, i),
            // Replaced by a concurrent gc, or an index is missing: let git decide.
            _ => return not("the pack or its index could not be opened"),
        };
        let Some(checksum) = stem.strip_prefix("pack-").filter(|c| c.len() == 2 * hash_len) else {
            return not("the pack is not named after its checksum");
        };
        let Some(count) = check_files(&pack, &index, &pack_path, &index_path, checksum, hash_len)? else {
            return not("the pack or its index is not one git wrote in this format");
        };
        if has_loose_objects(&objects)? {
            return not("the repository has loose objects");
        }
        let files = PackFiles { pack: pack_path, index: index_path, checksum: checksum.to_string(), objects: count };
        Ok(Some(SolePack { files, pack, index, hash_len }))
    }

    /// Whether the objects reachable from `include` are as many as `sole` holds — so they are
    /// its objects — and it is still the repository's only pack.
    pub fn confirm_sole_pack(&self, repo: &Path, include: &[ObjectId], sole: &SolePack) -> Result<bool, Error> {
        let not = |why: &str| {
            tracing::debug!(repo = %repo.display(), why, "git writes a new pack");
            Ok(false)
        };
        if self.reachable_count(repo, include)? != sole.files.objects {
            return not("the pack holds objects the backup does not want");
        }
        let Some(pack_dir) = sole.files.pack.parent() else { return not("the pack has no directory") };
        let stem = sole.files.pack.file_stem().map(|s| s.to_string_lossy().into_owned());
        if only_pack(pack_dir)? != stem {
            return not("the packs changed while they were checked");
        }
        Ok(true)
    }

    /// How many objects are reachable from `tips` (answered from the reachability bitmap
    /// when the repository has one).
    fn reachable_count(&self, repo: &Path, tips: &[ObjectId]) -> Result<u64, Error> {
        let input = revs_stdin(tips, &[]);
        let out = self
            .cmd(Some(repo))
            .args(["rev-list", "--objects", "--use-bitmap-index", "--count", "--stdin"])
            .input(input.into_bytes())
            .run_text()?;
        out.trim().parse().map_err(|_| Error::Parse { what: "rev-list --count", line: out })
    }
}

impl SolePack {
    /// The pack's bytes, checked as they are read (see [`VerifiedReader::verified`]) the way
    /// git checks packed data it copies from one pack into another without inflating it: each
    /// object's bytes against the CRC-32 its version 2 index records for them, the 12-byte
    /// header against the index's object count, and the trailing checksum against the pack's
    /// name and the checksum the index records. Every byte of the file is covered, at a tenth
    /// of the cost of hashing it all again with SHA-1. The objects' offsets are held in memory
    /// (16 bytes each): a pack of more than [`MAX_CRC_OBJECTS`] is hashed whole instead.
    pub fn pack_reader(&self) -> Result<VerifiedReader<'_>, Error> {
        if self.files.objects > MAX_CRC_OBJECTS {
            return self.hashed_pack_reader();
        }
        let check = Check::Objects(ObjectCrcs::new(self.object_crcs()?, self.files.objects));
        VerifiedReader::new(&self.pack, &self.files.pack, self.hash_len, check, Some(self.checksum()?))
    }

    /// The pack's bytes, hashed as they are read: the trailing checksum must equal the hash of
    /// everything before it, and the pack's name (what [`SolePack::pack_reader`] does for a pack
    /// too large to check object by object).
    pub fn hashed_pack_reader(&self) -> Result<VerifiedReader<'_>, Error> {
        let check = Check::Hash(Hasher::new(self.hash_len));
        VerifiedReader::new(&self.pack, &self.files.pack, self.hash_len, check, Some(self.checksum()?))
    }

    /// The pack's checksum (its name) as bytes.
    fn checksum(&self) -> Result<Vec<u8>, Error> {
        let mut expected = vec![0u8; self.hash_len];
        hex::decode_to_slice(&self.files.checksum, &mut expected)
            .map_err(|_| Error::Parse { what: "pack checksum", line: self.files.checksum.clone() })?;
        Ok(expected)
    }

    /// The index's bytes, checked against its own trailing checksum as they are read.
    pub fn index_reader(&self) -> Result<VerifiedReader<'_>, Error> {
        VerifiedReader::new(
            &self.index,
            &self.files.index,
            self.hash_len,
            Check::Hash(Hasher::new(self.hash_len)),
            None,
        )
    }

    /// Where each object starts in the pack and the CRC-32 of its packed bytes, by offset, from
    /// the index: names, then CRCs, then 32-bit offsets (the high bit set: an index into the
    /// table of 64-bit offsets that follows). `None` when the index's tables do not fit it.
    fn object_crcs(&self) -> Result<Option<Vec<(u64, u32)>>, Error> {
        let path = &self.files.index;
        let count = usize::try_from(self.files.objects)
            .map_err(|_| Error::Parse { what: "object count", line: self.files.objects.to_string() })?;
        let mut index = &self.index;
        let len = index.metadata().map_err(|e| Error::io(path, e))?.len();
        let tables = IDX_FANOUT_END as u64 + (count * self.hash_len) as u64;
        let trailers = 2 * self.hash_len as u64;
        let Some(large_len) = len.checked_sub(tables + 8 * count as u64 + trailers) else { return Ok(None) };
        index.seek(SeekFrom::Start(tables)).map_err(|e| Error::io(path, e))?;
        let mut table = vec![0u8; 8 * count];
        index.read_exact(&mut table).map_err(|e| Error::io(path, e))?;
        let mut large = vec![0u8; usize::try_from(large_len).unwrap_or(usize::MAX).min(1 << 30)];
        index.read_exact(&mut large).map_err(|e| Error::io(path, e))?;
        let (crcs, offsets) = table.split_at(4 * count);
        let word = |b: &[u8], i: usize| u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let mut regions = Vec::with_capacity(count);
        for i in 0..count {
            let small = word(offsets, i);
            let offset = if small & 0x8000_0000 == 0 {
                u64::from(small)
            } else {
                let at = 8 * (small & 0x7fff_ffff) as usize;
                let Some(bytes) = large.get(at..at + 8) else { return Ok(None) };
                u64::from_be_bytes(bytes.try_into().expect("eight bytes"))
            };
            regions.push((offset, word(crcs, i)));
        }
        regions.sort_unstable();
        Ok(Some(regions))
    }
}

/// How a [`VerifiedReader`] checks what it reads.
enum Check {
    /// Hash everything before the trailer; the trailer must equal the hash.
    Hash(Hasher),
    /// A pack checked object by object against its index (see [`SolePack::pack_reader`]).
    Objects(ObjectCrcs),
}

/// The state of checking a pack's objects against their CRCs as the pack streams by.
struct ObjectCrcs {
    /// (offset, CRC-32) of each object, by offset; `None` when the index did not describe the
    /// pack (the pack then never verifies).
    regions: Option<Vec<(u64, u32)>>,
    /// The object being read (an index into `regions`), and its CRC so far.
    current: usize,
    crc: crc32fast::Hasher,
    objects: u64,
    header: [u8; 12],
    /// A region's CRC differed.
    bad: bool,
}

impl ObjectCrcs {
    fn new(regions: Option<Vec<(u64, u32)>>, objects: u64) -> Self {
        // The first object follows the 12-byte header; every object starts after the last.
        let regions = regions.filter(|r| r.first().is_some_and(|f| f.0 == 12) && r.windows(2).all(|w| w[0].0 < w[1].0));
        Self { regions, current: 0, crc: crc32fast::Hasher::new(), objects, header: [0; 12], bad: false }
    }

    /// Take in `bytes`, which sit at `pos` in the pack, before its trailer at `body`.
    fn update(&mut self, mut pos: u64, mut bytes: &[u8], body: u64) {
        if pos < 12 {
            let n = bytes.len().min(12 - pos as usize);
            self.header[pos as usize..pos as usize + n].copy_from_slice(&bytes[..n]);
            (pos, bytes) = (pos + n as u64, &bytes[n..]);
        }
        let Some(regions) = &self.regions else { return };
        while !bytes.is_empty() {
            let Some(&(_, expected)) = regions.get(self.current) else {
                self.bad = true; // bytes after the last object's end
                return;
            };
            let end = regions.get(self.current + 1).map_or(body, |r| r.0);
            let n = usize::try_from(end.saturating_sub(pos)).unwrap_or(usize::MAX).min(bytes.len());
            self.crc.update(&bytes[..n]);
            (pos, bytes) = (pos + n as u64, &bytes[n..]);
            if pos == end {
                let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
                self.bad |= crc != expected;
                self.current += 1;
            }
        }
    }

    /// Every object was read and matched, and the header is a pack header for as many objects.
    fn whole(&self) -> bool {
        let version = u32::from_be_bytes([self.header[4], self.header[5], self.header[6], self.header[7]]);
        let count = u32::from_be_bytes([self.header[8], self.header[9], self.header[10], self.header[11]]);
        self.regions.as_ref().is_some_and(|r| self.current == r.len())
            && !self.bad
            && &self.header[..4] == b"PACK"
            && (2..=3).contains(&version)
            && u64::from(count) == self.objects
    }
}

/// Reads a git file that ends in the checksum of everything before it (a pack or a pack
/// index) from its start, hashing as it goes.
pub struct VerifiedReader<'a> {
    file: &'a fs::File,
    path: &'a Path,
    /// Bytes covered by the checksum: the file's length less the checksum.
    body: u64,
    len: u64,
    pos: u64,
    check: Check,
    trailer: Vec<u8>,
    /// What the trailer must equal (a pack's name); a hashed file's trailer must also equal
    /// its hash.
    expected: Option<Vec<u8>>,
}

impl<'a> VerifiedReader<'a> {
    fn new(
        file: &'a fs::File,
        path: &'a Path,
        hash_len: usize,
        check: Check,
        expected: Option<Vec<u8>>,
    ) -> Result<Self, Error> {
        let mut f = file;
        f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Ok(Self {
            file,
            path,
            body: len.saturating_sub(hash_len as u64),
            len,
            pos: 0,
            check,
            trailer: Vec::new(),
            expected,
        })
    }

    /// Whether the whole file was read and its trailing checksum (and, for a pack, its name)
    /// matched what was read. Call after reading to the end.
    pub fn verified(self) -> bool {
        if self.pos != self.len || self.expected.as_ref().is_some_and(|e| *e != self.trailer) {
            return false;
        }
        match self.check {
            Check::Hash(hasher) => hasher.finish() == self.trailer,
            Check::Objects(objects) => objects.whole(),
        }
    }

    pub fn path(&self) -> &Path {
        self.path
    }

    /// Bytes the reader hands out in all: the file's length when it was opened.
    pub fn total_bytes(&self) -> u64 {
        self.len
    }
}

impl Read for VerifiedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Never past the length checked at the start: a file that grew is not the one checked.
        let left = usize::try_from(self.len - self.pos).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let mut f = self.file;
        let n = f.read(&mut buf[..want])?;
        let hashed = usize::try_from(self.body.saturating_sub(self.pos)).unwrap_or(usize::MAX).min(n);
        match &mut self.check {
            Check::Hash(hasher) => hasher.update(&buf[..hashed]),
            Check::Objects(objects) => objects.update(self.pos, &buf[..hashed], self.body),
        }
        self.trailer.extend_from_slice(&buf[hashed..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    fn new(hash_len: usize) -> Self {
        if hash_len == 32 { Self::Sha256(sha2::Sha256::new()) } else { Self::Sha1(sha1::Sha1::new()) }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(bytes),
            Self::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// Whether `objects/info/alternates` names another object store.
fn has_alternates(objects: &Path) -> Result<bool, Error> {
    let path = objects.join("info/alternates");
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().any(|l| !l.trim().is_empty() && !l.starts_with('#'))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// The name (without extension) of the only `.pack` in `pack_dir`, when there is exactly one
/// and it is not a promisor pack.
fn only_pack(pack_dir: &Path) -> Result<Option<String>, Error> {
    let entries = match fs::read_dir(pack_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(pack_dir, e)),
    };
    let mut stems = Vec::new();
    let mut promisor = false;
    for entry in entries {
        let name = entry.map_err(|e| Error::io(pack_dir, e))?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".pack") {
            stems.push(stem.to_string());
        }
        promisor |= name.ends_with(".promisor");
    }
    Ok(match stems.as_slice() {
        [one] if !promisor => Some(one.clone()),
        _ => None,
    })
}

/// Whether any of the `objects/XX/` fan-out directories holds a loose object.
fn has_loose_objects(objects: &Path) -> Result<bool, Error> {
    for entry in fs::read_dir(objects).map_err(|e| Error::io(objects, e))? {
        let entry = entry.map_err(|e| Error::io(objects, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let dir: PathBuf = entry.path();
            let mut inside = fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            if inside.next().is_some() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The pack's object count when the pack and index agree with each other and with the name:
/// a version 2 index whose recorded pack checksum is `checksum`, a pack of version 2 or 3
/// holding as many objects as the index lists.
fn check_files(
    pack: &fs::File,
    index: &fs::File,
    pack_path: &Path,
    index_path: &Path,
    checksum: &str,
    hash_len: usize,
) -> Result<Option<u64>, Error> {
    let index_len = index.metadata().map_err(|e| Error::io(index_path, e))?.len();
    let pack_len = pack.metadata().map_err(|e| Error::io(pack_path, e))?.len();
    let mut head = [0u8; IDX_FANOUT_END];
    let mut i = index;
    if index_len < (IDX_FANOUT_END + 2 * hash_len) as u64 || i.read_exact(&mut head).is_err() {
        return Ok(None);
    }
    let Ok(count) = parse_idx_object_count(&head) else { return Ok(None) };
    // Names, CRCs and 32-bit offsets for each object, then the two checksums.
    let least = IDX_FANOUT_END as u64 + count * (hash_len as u64 + 8) + 2 * hash_len as u64;
    if index_len < least {
        return Ok(None);
    }
    let mut recorded = vec![0u8; hash_len];
    i.seek(SeekFrom::Start(index_len - 2 * hash_len as u64)).map_err(|e| Error::io(index_path, e))?;
    i.read_exact(&mut recorded).map_err(|e| Error::io(index_path, e))?;
    if hex::encode(&recorded) != checksum {
        return Ok(None);
    }
    let mut header = [0u8; 12];
    let mut p = pack;
    if pack_len < (12 + hash_len) as u64 || p.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let version = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let in_pack = u64::from(u32::from_be_bytes([header[8], header[9], header[10], header[11]]));
    if &header[..4] != b"PACK" || !(2..=3).contains(&version) || in_pack != count {
        return Ok(None);
    }
    Ok(Some(count))
}
