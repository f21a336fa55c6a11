//! The encrypted file format shared by every object in a vault except `config` and key slots.
//!
//! ```text
//! header (32 bytes, plaintext, authenticated):
//!   0..8   magic "GITVAULT"
//!   8      envelope version (1)
//!   9      kind (1 pack, 2 pack index, 3 snapshot, 4 ledger entry)
//!   10     compression (0 none, 1 zstd)
//!   11..13 reserved, zero
//!   13..32 STREAM nonce prefix (19 random bytes)
//! body: the (optionally zstd-compressed) content cut into 1 MiB chunks, each sealed with
//!   XChaCha20-Poly1305 under the vault's data key, nonce = prefix ‖ u32 BE chunk counter ‖
//!   last-chunk flag (STREAM, "BE32" flavour), associated data = header ‖ the object's id in
//!   ASCII. Every chunk but the last holds exactly 1 MiB; the last holds less (possibly 0).
//! ```
//!
//! Binding the header and the id into every chunk means a file cannot be truncated, extended,
//! re-labelled as another kind, or moved under another name without failing authentication.
//! Pack data is stored without compression because git already deflates it.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, mpsc};

use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20::XChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use poly1305::Poly1305;
use poly1305::universal_hash::UniversalHash;

use crate::FormatError;
use crate::ids::Mac;
use crate::keys::{DataKey, MacKey};

pub const MAGIC: [u8; 8] = *b"GITVAULT";
pub const ENVELOPE_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 32;
pub const NONCE_PREFIX_LEN: usize = 19;
/// Plaintext bytes per chunk (of the compressed stream when compression is on).
pub const CHUNK_SIZE: usize = 1 << 20;
pub const TAG_LEN: usize = 16;
const SEALED_CHUNK: usize = CHUNK_SIZE + TAG_LEN;

/// What an envelope holds; part of the authenticated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Pack = 1,
    PackIndex = 2,
    Snapshot = 3,
    LedgerEntry = 4,
    /// A deletion mark of `prune` (format version 2).
    Mark = 5,
    /// A pending-pack record of an interrupted backup (format version 2).
    Pending = 6,
    /// The content of a Git LFS object (format version 3).
    LfsObject = 7,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pack => "pack",
            Kind::PackIndex => "pack index",
            Kind::Snapshot => "snapshot",
            Kind::LedgerEntry => "ledger entry",
            Kind::Mark => "deletion mark",
            Kind::Pending => "pending pack",
            Kind::LfsObject => "LFS object",
        }
    }
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::Pack,
            2 => Kind::PackIndex,
            3 => Kind::Snapshot,
            4 => Kind::LedgerEntry,
            5 => Kind::Mark,
            6 => Kind::Pending,
            7 => Kind::LfsObject,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

/// zstd level for metadata (JSON, pack indexes): fast, and these are small.
const ZSTD_LEVEL: i32 = 3;

fn header(kind: Kind, compression: Compression, prefix: &[u8; NONCE_PREFIX_LEN]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8] = ENVELOPE_VERSION;
    h[9] = kind as u8;
    h[10] = compression as u8;
    h[13..].copy_from_slice(prefix);
    h
}

fn aad(header: &[u8; HEADER_LEN], id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + id.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(id.as_bytes());
    aad
}

fn stream(key: &DataKey, prefix: &[u8; NONCE_PREFIX_LEN]) -> StreamBE32<XChaCha20Poly1305> {
    let aead = XChaCha20Poly1305::new(&key.0.into());
    StreamBE32::from_aead(aead, &(*prefix).into())
}

/// The nonce of chunk `counter`: the envelope's prefix, the counter (big-endian) and the
/// last-chunk flag, as `StreamBE32` builds it.
fn chunk_nonce(prefix: &[u8; NONCE_PREFIX_LEN], counter: u32, last: bool) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    nonce[NONCE_PREFIX_LEN..23].copy_from_slice(&counter.to_be_bytes());
    nonce[23] = u8::from(last);
    nonce
}

/// Check a sealed chunk's tag without decrypting it. XChaCha20-Poly1305 authenticates the
/// ciphertext, not the plaintext (RFC 8439 §2.8, with XChaCha20's extended nonce): the Poly1305
/// key is the first 32 bytes of the keystream under the chunk's nonce, and the tag covers the
/// associated data and the ciphertext, each zero-padded to 16 bytes, then both lengths as
/// 64-bit little-endian numbers. So one keystream block and a Poly1305 pass prove the chunk
/// exactly what opening it would — without the keystream over the body.
fn check_tag(key: &DataKey, nonce: &[u8; 24], aad: &[u8], sealed: &[u8]) -> io::Result<()> {
    let Some(split) = sealed.len().checked_sub(TAG_LEN) else {
        return Err(io_err(FormatError::Truncated));
    };
    let (ciphertext, tag) = sealed.split_at(split);
    let mut poly_key = [0u8; 32];
    XChaCha20::new(&key.0.into(), nonce.into()).apply_keystream(&mut poly_key);
    let mut mac = Poly1305::new(&poly_key.into());
    mac.update_padded(aad);
    mac.update_padded(ciphertext);
    let mut lengths = [0u8; 16];
    lengths[..8].copy_from_slice(&(aad.len() as u64).to_le_bytes());
    lengths[8..].copy_from_slice(&(ciphertext.len() as u64).to_le_bytes());
    mac.update(&[lengths.into()]);
    let tag: [u8; TAG_LEN] = tag.try_into().expect("split off TAG_LEN bytes");
    // `verify` compares in constant time.
    mac.verify(&tag.into()).map_err(|_| io_err(FormatError::Authentication))
}

fn io_err(e: FormatError) -> io::Error {
    io::Error::other(e)
}

/// The format error inside an IO error produced by this module, if any.
pub fn as_format_error(e: &io::Error) -> Option<&FormatError> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<FormatError>())
}

/// What sealing produced: the content's keyed hash and its sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// Keyed hash of the uncompressed content.
    pub mac: Mac,
    /// Bytes of uncompressed content.
    pub plain_size: u64,
    /// Bytes of the envelope as stored.
    pub stored_size: u64,
}

/// How re-opened chunks are proven to hold the content written: compared byte for byte with
/// the chunk (no compression), or decompressed again and hashed (zstd).
enum Check {
    Exact,
    Zstd(Box<zstd::stream::write::Decoder<'static, HashSink>>),
}

struct HashSink(blake3::Hasher);
impl Write for HashSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Threads sealing chunks beside the thread that feeds the content: sealing is independent per
/// chunk (the counter is part of the nonce), so a large pack is encrypted on every core while
/// the next chunks are read.
fn parallel_chunks() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4)
}

type Stream = StreamBE32<XChaCha20Poly1305>;

/// What seals the chunks of one envelope: the AEAD under the data key, and the nonce prefix.
struct ChunkKey {
    aead: XChaCha20Poly1305,
    prefix: [u8; NONCE_PREFIX_LEN],
}

std::thread_local! {
    /// Per sealing thread: the chunk opened again, reused from chunk to chunk.
    static REOPENED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A sealed chunk, checked: with [`Check::Exact`] the re-opened chunk was compared on the
/// sealing thread; with zstd it still has to go through the decoder, in order. The content's
/// buffer comes back with it, to be filled again.
struct SealedChunk {
    sealed: Vec<u8>,
    reopened: Option<Vec<u8>>,
    content: Vec<u8>,
}

/// `buf` holding `len` bytes, their values unspecified: a recycled buffer is cut to length
/// (no zeroing), a new one zeroed once.
fn sized(mut buf: Vec<u8>, len: usize) -> Vec<u8> {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    buf.truncate(len);
    buf
}

/// Seal `content` into `out` (a buffer to reuse) and open it again: opening what we are about
/// to store catches a fault in memory or in the cipher before the file exists, rather than on
/// the day of the restore. The cipher reads one buffer and writes the other, so nothing is
/// copied on the way. With `exact` the re-opened chunk is compared here with the content,
/// byte for byte; otherwise it is handed back (zstd: it must be decompressed in order).
fn seal_checked(
    key: &ChunkKey,
    counter: u32,
    last: bool,
    aad: &[u8],
    content: Vec<u8>,
    out: Vec<u8>,
    exact: bool,
) -> io::Result<SealedChunk> {
    let nonce = chunk_nonce(&key.prefix, counter, last).into();
    let len = content.len();
    let mut sealed = sized(out, len + TAG_LEN);
    let (body, tag) = sealed.split_at_mut(len);
    let inout = InOutBuf::new(&content, body).expect("equal lengths");
    let computed =
        key.aead.encrypt_inout_detached(&nonce, aad, inout).map_err(|_| io_err(FormatError::Authentication))?;
    tag.copy_from_slice(&computed);
    REOPENED.with_borrow_mut(|reopened| {
        let mut buf = sized(std::mem::take(reopened), len);
        let (body, tag) = sealed.split_at(len);
        let opened = InOutBuf::new(body, &mut buf).expect("equal lengths");
        let tag: [u8; TAG_LEN] = tag.try_into().expect("TAG_LEN bytes");
        key.aead
            .decrypt_inout_detached(&nonce, aad, opened, &tag.into())
            .map_err(|_| io_err(FormatError::Authentication))?;
        if !exact {
            return Ok(SealedChunk { sealed, reopened: Some(buf), content });
        }
        let same = buf == content;
        *reopened = buf;
        if !same {
            return Err(io_err(FormatError::Invalid {
                what: "envelope",
                detail: "a sealed chunk did not open to its content (memory or cipher fault); nothing was stored"
                    .into(),
            }));
        }
        Ok(SealedChunk { sealed, reopened: None, content })
    })
}

type Task = Box<dyn FnOnce() + Send>;

/// Worker threads sealing or opening chunks, fed through a bounded queue; each task answers on
/// its own channel, so results are taken back in the order the chunks were given.
struct Pool {
    tasks: Option<mpsc::SyncSender<Task>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn start(threads: usize) -> io::Result<Self> {
        let (tasks, queue) = mpsc::sync_channel::<Task>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let mut pool = Self { tasks: Some(tasks), workers: Vec::with_capacity(threads) };
        for _ in 0..threads {
            let queue = Arc::clone(&queue);
            let worker = std::thread::Builder::new().name("gitvault-crypt".into()).spawn(move || {
                loop {
                    let task = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    let Ok(task) = task else { return };
                    task();
                }
            })?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// Run `f` on a worker; its result arrives on the returned channel.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<mpsc::Receiver<io::Result<T>>> {
        let (reply, answer) = mpsc::sync_channel(1);
        // The caller may have given up (an error elsewhere): then nobody is told.
        let task: Task = Box::new(move || {
            let _ = reply.send(f());
        });
        self.tasks
            .as_ref()
            .and_then(|t| t.send(task).ok())
            .ok_or_else(|| io::Error::other("the encryption threads stopped"))?;
        Ok(answer)
    }
}

/// A result already known, in the shape of one a worker will send.
fn answered<T>(result: io::Result<T>) -> mpsc::Receiver<io::Result<T>> {
    let (reply, answer) = mpsc::sync_channel(1);
    let _ = reply.send(result);
    answer
}

/// `buf`, emptied for gathering content again.
fn empty(mut buf: Vec<u8>) -> Vec<u8> {
    buf.clear();
    buf
}

/// Take the next result of a pool, in order.
fn receive<T>(answer: &mpsc::Receiver<io::Result<T>>) -> io::Result<T> {
    answer.recv().map_err(|_| io::Error::other("an encryption thread stopped"))?
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends every worker once it has finished its task.
        self.tasks = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Cuts the (compressed) stream into chunks, seals them, checks they open again, writes them
/// out. Full chunks are sealed on worker threads as soon as they are complete, while the
/// content goes on arriving; at most a few are in flight, so memory stays bounded.
struct ChunkSealer<W: Write> {
    out: W,
    key: Arc<ChunkKey>,
    aad: Arc<Vec<u8>>,
    buf: Vec<u8>,
    counter: u32,
    written: u64,
    check: Check,
    parallel: usize,
    /// Started with the first full chunk: an object of one chunk is sealed on the spot.
    pool: Option<Pool>,
    in_flight: VecDeque<mpsc::Receiver<io::Result<SealedChunk>>>,
    /// Buffers of sealed chunks already written out, for the next chunks' output.
    spare: Vec<Vec<u8>>,
    /// Emptied buffers of chunks already sealed, to gather the next chunks' content.
    empty: Vec<Vec<u8>>,
}

impl<W: Write> ChunkSealer<W> {
    fn next_counter(&mut self) -> io::Result<u32> {
        let counter = self.counter;
        self.counter = counter
            .checked_add(1)
            .ok_or_else(|| io_err(FormatError::Invalid { what: "envelope", detail: "content exceeds 4 PiB".into() }))?;
        Ok(counter)
    }

    /// Seal `chunk`: on the workers, or here when it is the last and nothing is in flight.
    fn push(&mut self, chunk: Vec<u8>, last: bool) -> io::Result<()> {
        let counter = self.next_counter()?;
        let exact = matches!(self.check, Check::Exact);
        if last && self.pool.is_none() {
            let out = self.spare.pop().unwrap_or_default();
            let done = seal_checked(&self.key, counter, last, &self.aad, chunk, out, exact)?;
            return self.emit(done);
        }
        if self.pool.is_none() {
            self.pool = Some(Pool::start(self.parallel)?);
        }
        while self.in_flight.len() > 2 * self.parallel {
            self.collect_one()?;
        }
        let (key, aad) = (Arc::clone(&self.key), Arc::clone(&self.aad));
        let out = self.spare.pop().unwrap_or_default();
        let pool = self.pool.as_ref().expect("started above");
        let answer = pool.run(move || seal_checked(&key, counter, last, &aad, chunk, out, exact))?;
        self.in_flight.push_back(answer);
        Ok(())
    }

    /// Write out the oldest chunk in flight.
    fn collect_one(&mut self) -> io::Result<()> {
        let Some(answer) = self.in_flight.pop_front() else { return Ok(()) };
        let done = receive(&answer)?;
        self.emit(done)
    }

    fn emit(&mut self, done: SealedChunk) -> io::Result<()> {
        if let (Check::Zstd(d), Some(reopened)) = (&mut self.check, &done.reopened) {
            d.write_all(reopened).map_err(|e| io_err(FormatError::Decompress(e)))?;
        }
        self.out.write_all(&done.sealed)?;
        self.written += done.sealed.len() as u64;
        // Both buffers serve again: the sealed one as a chunk's output, the content's to gather
        // the next chunk (or, whole, to read the next one into: see `take_chunk`).
        self.spare.push(done.sealed);
        self.empty.push(done.content);
        Ok(())
    }

    /// Seal `chunk`, a whole chunk of content, as the next chunk without copying it; returns a
    /// chunk-sized buffer for the caller to read the next one into. Only when no content is
    /// gathered yet (else the chunk's bytes go after it, copied).
    fn take_chunk(&mut self, chunk: Vec<u8>) -> io::Result<Vec<u8>> {
        if !self.buf.is_empty() || chunk.len() != CHUNK_SIZE {
            self.write_all(&chunk)?;
            return Ok(chunk);
        }
        self.push(chunk, false)?;
        // A recycled buffer is whole already (a full chunk's content): no zeroing.
        Ok(self.empty.pop().filter(|b| b.len() == CHUNK_SIZE).unwrap_or_else(|| vec![0; CHUNK_SIZE]))
    }

    /// Seal what is left, the last chunk included; returns the hash of the re-decompressed
    /// content when it must still be compared with the content's MAC.
    fn finish(mut self) -> io::Result<(W, u64, Option<blake3::Hasher>)> {
        let rest = std::mem::take(&mut self.buf);
        self.push(rest, true)?;
        while !self.in_flight.is_empty() {
            self.collect_one()?;
        }
        self.pool = None;
        self.out.flush()?;
        let hasher = match self.check {
            Check::Exact => None,
            Check::Zstd(mut d) => {
                d.flush().map_err(|e| io_err(FormatError::Decompress(e)))?;
                Some(d.into_inner().0)
            }
        };
        Ok((self.out, self.written, hasher))
    }
}

impl<W: Write> Write for ChunkSealer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let take = (CHUNK_SIZE - self.buf.len()).min(rest.len());
            if self.buf.capacity() == 0 && rest.len() >= CHUNK_SIZE {
                // A full chunk at once: one allocation (small objects grow their one buffer
                // as content comes).
                self.buf.reserve_exact(CHUNK_SIZE);
            }
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            // A chunk of exactly CHUNK_SIZE is never the last one (the last may be empty), so
            // a full chunk can go out now.
            if self.buf.len() == CHUNK_SIZE {
                let next = self.empty.pop().map_or_else(|| Vec::with_capacity(CHUNK_SIZE), empty);
                let chunk = std::mem::replace(&mut self.buf, next);
                self.push(chunk, false)?;
            }
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[allow(clippy::large_enum_variant)]
enum Stage<W: Write> {
    Plain(ChunkSealer<W>),
    Zstd(Box<zstd::stream::write::Encoder<'static, ChunkSealer<W>>>),
}

/// Encrypts a stream of content into an envelope written to `W`, with bounded memory.
///
/// Call [`SealWriter::finish`]; dropping the writer leaves a partial envelope in `W`, which the
/// caller must discard (storage writers do, by never committing it).
pub struct SealWriter<W: Write> {
    stage: Stage<W>,
    mac: blake3::Hasher,
    plain_size: u64,
}

impl<W: Write> SealWriter<W> {
    pub fn new(
        key: &DataKey,
        mac_key: &MacKey,
        kind: Kind,
        compression: Compression,
        id: &str,
        mut out: W,
    ) -> io::Result<Self> {
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        crate::random_bytes(&mut prefix).map_err(io_err)?;
        let header = header(kind, compression, &prefix);
        out.write_all(&header)?;
        let check = match compression {
            Compression::None => Check::Exact,
            Compression::Zstd => Check::Zstd(Box::new(zstd::stream::write::Decoder::new(HashSink(mac_key.hasher()))?)),
        };
        let parallel = parallel_chunks();
        let sealer = ChunkSealer {
            out,
            key: Arc::new(ChunkKey { aead: XChaCha20Poly1305::new(&key.0.into()), prefix }),
            aad: Arc::new(aad(&header, id)),
            buf: Vec::new(),
            counter: 0,
            written: HEADER_LEN as u64,
            check,
            parallel,
            pool: None,
            in_flight: VecDeque::new(),
            spare: Vec::new(),
            empty: Vec::new(),
        };
        let stage = match compression {
            Compression::None => Stage::Plain(sealer),
            Compression::Zstd => Stage::Zstd(Box::new(zstd::stream::write::Encoder::new(sealer, ZSTD_LEVEL)?)),
        };
        Ok(Self { stage, mac: mac_key.hasher(), plain_size: 0 })
    }

    /// Seal the last chunk, prove the whole envelope opens to the content written, and return
    /// the inner writer with what was sealed.
    pub fn finish(self) -> io::Result<(W, Sealed)> {
        let sealer = match self.stage {
            Stage::Plain(s) => s,
            Stage::Zstd(e) => e.finish()?,
        };
        let (out, stored_size, reopened) = sealer.finish()?;
        let mac = Mac::from_bytes(*self.mac.finalize().as_bytes());
        if let Some(reopened) = reopened
            && Mac::from_bytes(*reopened.finalize().as_bytes()) != mac
        {
            return Err(io_err(FormatError::Invalid {
                what: "envelope",
                detail:
                    "the sealed file did not open to the content written (memory or cipher fault); nothing was stored"
                        .into(),
            }));
        }
        Ok((out, Sealed { mac, plain_size: self.plain_size, stored_size }))
    }

    /// Write `chunk` — [`CHUNK_SIZE`] bytes of content read by the caller — as
    /// [`Write::write_all`] would, but without copying it when it falls on a chunk boundary (it
    /// then becomes the chunk itself); returns a buffer of the same size to read the next
    /// chunk's worth into. Content that is compressed first is copied as usual.
    pub fn write_chunk(&mut self, chunk: Vec<u8>) -> io::Result<Vec<u8>> {
        self.mac.update(&chunk);
        self.plain_size += chunk.len() as u64;
        match &mut self.stage {
            Stage::Plain(s) => s.take_chunk(chunk),
            Stage::Zstd(e) => {
                e.write_all(&chunk)?;
                Ok(chunk)
            }
        }
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = match &mut self.stage {
            Stage::Plain(s) => s.write(data)?,
            Stage::Zstd(e) => e.write(data)?,
        };
        self.mac.update(&data[..n]);
        self.plain_size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a [`ChunkOpener`] does with each chunk.
enum Opening {
    /// Decrypt it (which authenticates it first) and hand out the plaintext.
    Decrypt(Arc<Stream>),
    /// Check its tag only and hand it out as it was read.
    TagOnly(Arc<(DataKey, [u8; NONCE_PREFIX_LEN])>),
}

/// Reads the chunks of an envelope body, authenticating each. Like sealing, opening is
/// independent per chunk: a batch of chunks is read, then opened on every core at once.
struct ChunkOpener<R: Read> {
    input: R,
    opening: Opening,
    aad: Arc<Vec<u8>>,
    /// The opened chunk being read out; `pos` is into it.
    current: Vec<u8>,
    pos: usize,
    /// Chunks read and being opened, in order (a read-ahead of a few chunks).
    in_flight: VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
    counter: u32,
    /// The last chunk (or a failure) has been read from the input.
    input_done: bool,
    parallel: usize,
    /// Started with the first full chunk: an object of one chunk is opened on the spot.
    pool: Option<Pool>,
}

impl<R: Read> ChunkOpener<R> {
    fn new(input: R, opening: Opening, header: &[u8; HEADER_LEN], id: &str) -> Self {
        Self {
            input,
            opening,
            aad: Arc::new(aad(header, id)),
            current: Vec::new(),
            pos: 0,
            in_flight: VecDeque::new(),
            counter: 0,
            input_done: false,
            parallel: parallel_chunks(),
            pool: None,
        }
    }

    /// One sealed chunk from the input: full, or shorter when it is the last.
    fn read_sealed(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; SEALED_CHUNK];
        let mut n = 0;
        while n < SEALED_CHUNK {
            match self.input.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(n);
        Ok(buf)
    }

    /// Read chunks ahead and start opening them, up to a few in flight. A failure to read
    /// takes its place in the queue, so it is reported in order.
    fn fill(&mut self) {
        while !self.input_done && self.in_flight.len() <= 2 * self.parallel {
            let answer = match self.start_next() {
                Ok(answer) => answer,
                Err(e) => {
                    self.input_done = true;
                    answered(Err(e))
                }
            };
            self.in_flight.push_back(answer);
        }
    }

    fn start_next(&mut self) -> io::Result<mpsc::Receiver<io::Result<Vec<u8>>>> {
        let mut chunk = self.read_sealed()?;
        // A chunk shorter than a full one is the last; a body that ends on a full chunk has
        // lost its last one.
        let last = chunk.len() < SEALED_CHUNK;
        if last && chunk.len() < TAG_LEN {
            return Err(io_err(FormatError::Truncated));
        }
        self.input_done = last;
        let counter = self.counter;
        self.counter = counter
            .checked_add(1)
            .ok_or_else(|| io_err(FormatError::Invalid { what: "envelope", detail: "content exceeds 4 PiB".into() }))?;
        let aad = Arc::clone(&self.aad);
        let open: Box<dyn FnOnce() -> io::Result<Vec<u8>> + Send> = match &self.opening {
            Opening::Decrypt(stream) => {
                let stream = Arc::clone(stream);
                Box::new(move || {
                    stream
                        .decrypt_in_place(counter, last, &aad, &mut chunk)
                        .map_err(|_| io_err(FormatError::Authentication))?;
                    Ok(chunk)
                })
            }
            Opening::TagOnly(key) => {
                let key = Arc::clone(key);
                Box::new(move || {
                    check_tag(&key.0, &chunk_nonce(&key.1, counter, last), &aad, &chunk)?;
                    Ok(chunk)
                })
            }
        };
        if last && self.pool.is_none() {
            return Ok(answered(open()));
        }
        if self.pool.is_none() {
            self.pool = Some(Pool::start(self.parallel)?);
        }
        self.pool.as_ref().expect("started above").run(open)
    }
}

impl<R: Read> Read for ChunkOpener<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.current.len() {
                let n = out.len().min(self.current.len() - self.pos);
                out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.fill();
            match self.in_flight.pop_front() {
                Some(answer) => {
                    self.current = receive(&answer)?;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
    }
}

/// Read and check an envelope header; returns its compression.
fn read_header<R: Read>(input: &mut R, expected: Kind) -> io::Result<([u8; HEADER_LEN], Compression)> {
    let mut h = [0u8; HEADER_LEN];
    input
        .read_exact(&mut h)
        .map_err(|e| if e.kind() == io::ErrorKind::UnexpectedEof { io_err(FormatError::Truncated) } else { e })?;
    if h[..8] != MAGIC {
        return Err(io_err(FormatError::BadMagic));
    }
    if h[8] != ENVELOPE_VERSION {
        return Err(io_err(FormatError::NewerVersion { found: h[8].into(), supported: ENVELOPE_VERSION.into() }));
    }
    match Kind::from_byte(h[9]) {
        Some(k) if k == expected => {}
        found => {
            return Err(io_err(FormatError::WrongKind {
                expected: expected.name(),
                found: found.map_or_else(|| format!("unknown ({})", h[9]), |k| k.name().to_string()),
            }));
        }
    }
    let compression = match h[10] {
        0 => Compression::None,
        1 => Compression::Zstd,
        other => {
            return Err(io_err(FormatError::Invalid {
                what: "envelope header",
                detail: format!("compression {other}"),
            }));
        }
    };
    Ok((h, compression))
}

/// A reader of an envelope's content that fails with [`FormatError::Authentication`] on any
/// alteration and, when given the expected MAC, with [`FormatError::Invalid`] at the end if the
/// content's keyed hash differs.
pub struct OpenReader {
    inner: Box<dyn Read + Send>,
    mac: blake3::Hasher,
    expected: Option<Mac>,
    checked: bool,
}

impl OpenReader {
    pub fn new<R: Read + Send + 'static>(
        key: &DataKey,
        mac_key: &MacKey,
        kind: Kind,
        id: &str,
        mut input: R,
        expected: Option<Mac>,
    ) -> io::Result<Self> {
        let (header, compression) = read_header(&mut input, kind)?;
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(&header[13..]);
        let opener = ChunkOpener::new(input, Opening::Decrypt(Arc::new(stream(key, &prefix))), &header, id);
        let inner: Box<dyn Read + Send> = match compression {
            Compression::None => Box::new(opener),
            Compression::Zstd => Box::new(ZstdRead(zstd::stream::read::Decoder::new(opener)?)),
        };
        Ok(Self { inner, mac: mac_key.hasher(), expected, checked: false })
    }
}

/// Maps zstd's errors to [`FormatError::Decompress`] while keeping ours intact.
struct ZstdRead<R: Read>(zstd::stream::read::Decoder<'static, io::BufReader<R>>);
impl<R: Read> Read for ZstdRead<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.0.read(out).map_err(|e| if as_format_error(&e).is_some() { e } else { io_err(FormatError::Decompress(e)) })
    }
}

impl Read for OpenReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.mac.update(&out[..n]);
        if n == 0 && !out.is_empty() && !self.checked {
            self.checked = true;
            if let Some(expected) = self.expected
                && Mac::from_bytes(*self.mac.finalize().as_bytes()) != expected
            {
                return Err(io_err(FormatError::Invalid {
                    what: "content",
                    detail: "its keyed hash differs from the one recorded in the snapshot".into(),
                }));
            }
        }
        Ok(n)
    }
}

/// Reads an envelope as it is stored — header, then sealed chunks — handing out each chunk only
/// once its authentication tag has been checked, without decrypting it (see [`check_tag`]).
/// This is how an envelope moves between two vaults that share keys: the bytes written are
/// exactly the bytes proven authentic under this key, id and kind, in this order, complete.
/// It does not prove the content's MAC (that needs the plaintext: [`OpenReader`]).
pub struct AuthenticatedReader {
    header: [u8; HEADER_LEN],
    header_pos: usize,
    chunks: ChunkOpener<Box<dyn Read + Send>>,
}

impl AuthenticatedReader {
    pub fn new<R: Read + Send + 'static>(key: &DataKey, kind: Kind, id: &str, mut input: R) -> io::Result<Self> {
        let (header, _) = read_header(&mut input, kind)?;
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(&header[13..]);
        let opening = Opening::TagOnly(Arc::new((key.clone(), prefix)));
        let input: Box<dyn Read + Send> = Box::new(input);
        Ok(Self { header, header_pos: 0, chunks: ChunkOpener::new(input, opening, &header, id) })
    }
}

impl Read for AuthenticatedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.header_pos < HEADER_LEN {
            let n = out.len().min(HEADER_LEN - self.header_pos);
            out[..n].copy_from_slice(&self.header[self.header_pos..self.header_pos + n]);
            self.header_pos += n;
            return Ok(n);
        }
        self.chunks.read(out)
    }
}

/// Seal a small object held in memory.
pub fn seal_bytes(
    key: &DataKey,
    mac_key: &MacKey,
    kind: Kind,
    compression: Compression,
    id: &str,
    content: &[u8],
) -> Result<(Vec<u8>, Sealed), FormatError> {
    let mut w = SealWriter::new(key, mac_key, kind, compression, id, Vec::new()).map_err(into_format_error)?;
    w.write_all(content).map_err(into_format_error)?;
    w.finish().map_err(into_format_error)
}

/// Open a small object held in memory.
pub fn open_bytes(
    key: &DataKey,
    mac_key: &MacKey,
    kind: Kind,
    id: &str,
    stored: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let mut r =
        OpenReader::new(key, mac_key, kind, id, io::Cursor::new(stored.to_vec()), None).map_err(into_format_error)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(into_format_error)?;
    Ok(out)
}

fn into_format_error(e: io::Error) -> FormatError {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<FormatError>() {
            Ok(f) => *f,
            Err(other) => FormatError::Decompress(io::Error::other(other)),
        },
        None => FormatError::Truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;
    use proptest::prelude::*;

    fn keys() -> (DataKey, MacKey) {
        let m = MasterKey::generate().expect("rng");
        (m.data_key(), m.mac_key())
    }

    #[test]
    fn round_trip_at_chunk_boundaries() {
        let (k, m) = keys();
        for len in [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 7] {
            let content: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for c in [Compression::None, Compression::Zstd] {
                let (stored, sealed) = seal_bytes(&k, &m, Kind::Pack, c, "id", &content).expect("seal");
                assert_eq!(sealed.stored_size, stored.len() as u64);
                assert_eq!(sealed.plain_size, len as u64);
                assert_eq!(sealed.mac, m.mac(&content));
                assert_eq!(open_bytes(&k, &m, Kind::Pack, "id", &stored).expect("open"), content, "len {len} {c:?}");
            }
        }
    }

    #[test]
    fn whole_chunks_handed_over_seal_as_written_content_does() {
        let (k, m) = keys();
        let content: Vec<u8> = (0..5 * CHUNK_SIZE + 99).map(|i| (i * 13 % 253) as u8).collect();
        // Each way of cutting the content into writes: whole chunks only, whole chunks after a
        // few bytes (off the chunk boundary: copied), and mixed with plain writes.
        let cuts: [&[usize]; 3] = [&[], &[7], &[CHUNK_SIZE, 3, CHUNK_SIZE - 3]];
        for c in [Compression::None, Compression::Zstd] {
            for cut in cuts {
                let mut w = SealWriter::new(&k, &m, Kind::Pack, c, "id", Vec::new()).expect("new");
                let mut rest = &content[..];
                for &n in cut {
                    w.write_all(&rest[..n]).expect("write");
                    rest = &rest[n..];
                }
                let mut buf = vec![0u8; CHUNK_SIZE];
                while rest.len() >= CHUNK_SIZE {
                    buf.copy_from_slice(&rest[..CHUNK_SIZE]);
                    buf = w.write_chunk(buf).expect("write_chunk");
                    assert_eq!(buf.len(), CHUNK_SIZE, "a whole buffer comes back");
                    rest = &rest[CHUNK_SIZE..];
                }
                w.write_all(rest).expect("write the rest");
                let (stored, sealed) = w.finish().expect("finish");
                assert_eq!((sealed.plain_size, sealed.mac), (content.len() as u64, m.mac(&content)));
                let opened = open_bytes(&k, &m, Kind::Pack, "id", &stored).expect("open");
                assert!(opened == content, "{c:?} {cut:?}");
            }
        }
    }

    #[test]
    fn uncompressed_size_is_predictable() {
        let (k, m) = keys();
        let content = vec![9u8; 2 * CHUNK_SIZE];
        let (stored, _) = seal_bytes(&k, &m, Kind::Pack, Compression::None, "id", &content).expect("seal");
        // Two full chunks and an empty last one, each with a tag.
        assert_eq!(stored.len(), HEADER_LEN + 2 * SEALED_CHUNK + TAG_LEN);
    }

    #[test]
    fn wrong_id_kind_key_and_truncation_are_rejected() {
        let (k, m) = keys();
        let content = vec![1u8; CHUNK_SIZE + 10];
        let (stored, _) = seal_bytes(&k, &m, Kind::Snapshot, Compression::Zstd, "aa", &content).expect("seal");
        assert!(matches!(open_bytes(&k, &m, Kind::Snapshot, "bb", &stored), Err(FormatError::Authentication)));
        assert!(matches!(open_bytes(&k, &m, Kind::Pack, "aa", &stored), Err(FormatError::WrongKind { .. })));
        let (k2, _) = keys();
        assert!(matches!(open_bytes(&k2, &m, Kind::Snapshot, "aa", &stored), Err(FormatError::Authentication)));
        for cut in [0, 10, HEADER_LEN, HEADER_LEN + 5, stored.len() - 1] {
            assert!(open_bytes(&k, &m, Kind::Snapshot, "aa", &stored[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = stored.clone();
        longer.push(0);
        assert!(open_bytes(&k, &m, Kind::Snapshot, "aa", &longer).is_err());
    }

    #[test]
    fn chunks_opened_in_batches_keep_their_order_and_are_bound_to_it() {
        let (k, m) = keys();
        let content: Vec<u8> = (0..5 * CHUNK_SIZE + 3).map(|i| (i * 13 % 251) as u8).collect();
        let (stored, _) = seal_bytes(&k, &m, Kind::Pack, Compression::None, "p", &content).expect("seal");
        assert_eq!(open_bytes(&k, &m, Kind::Pack, "p", &stored).expect("open"), content);
        let chunk = |i: usize| HEADER_LEN + i * SEALED_CHUNK..HEADER_LEN + (i + 1) * SEALED_CHUNK;
        // Two chunks swapped, one dropped, the short last one dropped: each is refused.
        let mut swapped = stored.clone();
        let (a, b) = (stored[chunk(1)].to_vec(), stored[chunk(2)].to_vec());
        swapped[chunk(1)].copy_from_slice(&b);
        swapped[chunk(2)].copy_from_slice(&a);
        assert!(open_bytes(&k, &m, Kind::Pack, "p", &swapped).is_err());
        let mut dropped = stored[..chunk(3).start].to_vec();
        dropped.extend_from_slice(&stored[chunk(3).end..]);
        assert!(open_bytes(&k, &m, Kind::Pack, "p", &dropped).is_err());
        assert!(matches!(open_bytes(&k, &m, Kind::Pack, "p", &stored[..chunk(5).start]), Err(FormatError::Truncated)));
    }

    #[test]
    fn expected_mac_is_enforced() {
        let (k, m) = keys();
        let (stored, sealed) = seal_bytes(&k, &m, Kind::Pack, Compression::None, "x", b"hello").expect("seal");
        let read = |mac| {
            let mut r =
                OpenReader::new(&k, &m, Kind::Pack, "x", io::Cursor::new(stored.clone()), Some(mac)).expect("open");
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        };
        assert_eq!(read(sealed.mac).expect("good mac"), b"hello");
        assert!(read(m.mac(b"other")).is_err());
    }

    fn read_authenticated(k: &DataKey, kind: Kind, id: &str, stored: &[u8]) -> io::Result<Vec<u8>> {
        let mut r = AuthenticatedReader::new(k, kind, id, io::Cursor::new(stored.to_vec()))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn tag_only_check_agrees_with_the_aead() {
        let (k, _) = keys();
        let prefix = [7u8; NONCE_PREFIX_LEN];
        let stream = stream(&k, &prefix);
        for (len, counter, last) in
            [(0, 0, true), (1, 0, true), (15, 3, false), (16, 1, true), (17, 9, true), (1000, 2, false)]
        {
            let content: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
            let aad = b"header and id".to_vec();
            let mut sealed = content.clone();
            stream.encrypt_in_place(counter, last, &aad, &mut sealed).expect("seal");
            let nonce = chunk_nonce(&prefix, counter, last);
            check_tag(&k, &nonce, &aad, &sealed).expect("the AEAD's own tag");
            // Every input of the tag matters: the counter, the flag, the AAD, each byte.
            assert!(check_tag(&k, &chunk_nonce(&prefix, counter + 1, last), &aad, &sealed).is_err());
            assert!(check_tag(&k, &chunk_nonce(&prefix, counter, !last), &aad, &sealed).is_err());
            assert!(check_tag(&k, &nonce, b"other", &sealed).is_err());
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= 0x80;
                assert!(check_tag(&k, &nonce, &aad, &bad).is_err(), "byte {i} of {len}");
            }
        }
        assert!(matches!(
            check_tag(&k, &chunk_nonce(&prefix, 0, true), b"", &[0u8; TAG_LEN - 1]).map_err(into_format_error),
            Err(FormatError::Truncated)
        ));
    }

    #[test]
    fn authenticated_reader_hands_out_the_stored_bytes_and_refuses_what_opening_refuses() {
        let (k, m) = keys();
        for len in [0, 5, CHUNK_SIZE, 3 * CHUNK_SIZE + 11] {
            let content: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
            for c in [Compression::None, Compression::Zstd] {
                let (stored, _) = seal_bytes(&k, &m, Kind::Pack, c, "p", &content).expect("seal");
                assert_eq!(read_authenticated(&k, Kind::Pack, "p", &stored).expect("authentic"), stored, "{len} {c:?}");
                assert!(read_authenticated(&k, Kind::Pack, "q", &stored).is_err(), "another id");
                assert!(read_authenticated(&k, Kind::PackIndex, "p", &stored).is_err(), "another kind");
                assert!(read_authenticated(&keys().0, Kind::Pack, "p", &stored).is_err(), "another key");
                for cut in [0, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + TAG_LEN - 1, stored.len() - 1] {
                    assert!(read_authenticated(&k, Kind::Pack, "p", &stored[..cut]).is_err(), "cut at {cut}");
                }
                let mut longer = stored.clone();
                longer.push(0);
                assert!(read_authenticated(&k, Kind::Pack, "p", &longer).is_err());
            }
        }
        // Chunks swapped or dropped.
        let content = vec![3u8; 3 * CHUNK_SIZE + 1];
        let (stored, _) = seal_bytes(&k, &m, Kind::Pack, Compression::None, "p", &content).expect("seal");
        let chunk = |i: usize| HEADER_LEN + i * SEALED_CHUNK..HEADER_LEN + (i + 1) * SEALED_CHUNK;
        let mut swapped = stored.clone();
        let (a, b) = (stored[chunk(0)].to_vec(), stored[chunk(1)].to_vec());
        swapped[chunk(0)].copy_from_slice(&b);
        swapped[chunk(1)].copy_from_slice(&a);
        assert!(read_authenticated(&k, Kind::Pack, "p", &swapped).is_err());
        let mut dropped = stored[..chunk(1).start].to_vec();
        dropped.extend_from_slice(&stored[chunk(1).end..]);
        assert!(read_authenticated(&k, Kind::Pack, "p", &dropped).is_err());
        assert!(read_authenticated(&k, Kind::Pack, "p", &stored[..chunk(3).start]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_flipped_bit_fails_the_tag_only_check(content in proptest::collection::vec(any::<u8>(), 0..3000), bit in any::<usize>(), zstd in any::<bool>()) {
            let (k, m) = keys();
            let c = if zstd { Compression::Zstd } else { Compression::None };
            let (mut stored, _) = seal_bytes(&k, &m, Kind::Pack, c, "7", &content).expect("seal");
            prop_assert_eq!(read_authenticated(&k, Kind::Pack, "7", &stored).expect("authentic"), stored.clone());
            let bit = bit % (stored.len() * 8);
            stored[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(read_authenticated(&k, Kind::Pack, "7", &stored).is_err());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_flipped_bit_is_rejected(content in proptest::collection::vec(any::<u8>(), 0..3000), bit in any::<usize>(), zstd in any::<bool>()) {
            let (k, m) = keys();
            let c = if zstd { Compression::Zstd } else { Compression::None };
            let (mut stored, _) = seal_bytes(&k, &m, Kind::LedgerEntry, c, "7", &content).expect("seal");
            prop_assert_eq!(open_bytes(&k, &m, Kind::LedgerEntry, "7", &stored).expect("open"), content);
            let bit = bit % (stored.len() * 8);
            stored[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(open_bytes(&k, &m, Kind::LedgerEntry, "7", &stored).is_err());
        }
    }
}
