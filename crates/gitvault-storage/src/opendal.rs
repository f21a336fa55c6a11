//! A vault in an S3 bucket (AWS or any S3-compatible server), through OpenDAL.
//!
//! OpenDAL is async; the [`Store`] trait is blocking. Each [`S3Store`] owns a small tokio runtime
//! (two worker threads) and blocks on it, so callers never need a runtime of their own. The store
//! must therefore not be used from inside another tokio runtime's async context.
//!
//! Create-only writes rely on conditional writes (`If-None-Match: *`), on `PutObject` for small
//! objects and on `CompleteMultipartUpload` for streamed ones. A server that ignores the header
//! would let a second writer overwrite the first: `gitvault storage check` is meant to catch that.
//!
//! Object Lock (retention) goes around OpenDAL, which does not expose it: see `s3lock.rs`.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use ::opendal::layers::RetryLayer;
use ::opendal::services::S3;
use ::opendal::{Buffer, ErrorKind as OdErrorKind, Operator};

use crate::s3lock::LockClient;
use crate::{ErrorKind, ObjectMeta, ObjectWriter, Retention, StorageError, Store};

/// Size of a multipart upload part and of a ranged read: what a writer or reader holds in memory
/// (times the upload concurrency for a writer).
const CHUNK: usize = 8 << 20;
/// Parts uploaded at once by one writer. A writer holds about `CHUNK * (2 + this)` bytes (48 MiB):
/// OpenDAL keeps a part-sized buffer and one finished part back, besides the parts in flight.
/// Over a real network several parts in flight hide each request's latency (what
/// bench/storage.py measured: the same memory-speed result as 2 on loopback).
const UPLOAD_CONCURRENCY: usize = 4;
/// What a writer gathers before crossing into the runtime, so that many small `write` calls do
/// not each pay for a `block_on`.
const PENDING: usize = 1 << 20;
/// Used when the caller names no region: what AWS SDKs assume too, and what S3-compatible
/// servers usually accept.
const DEFAULT_REGION: &str = "us-east-1";

/// Where and how to reach a bucket. Nothing is read from the environment or `~/.aws`: the caller
/// resolves settings once and passes them here.
#[derive(Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix under which the vault lives, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `http(s)://host[:port]` of an S3-compatible server; `None` for AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `https://BUCKET.host/key` instead of the path-style `https://host/BUCKET/key`.
    pub virtual_host_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "****"))
            .field("virtual_host_style", &self.virtual_host_style)
            .finish()
    }
}

/// A vault in an S3 bucket. Cheap to clone; clones share one connection pool and runtime.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    op: Operator,
    runtime: tokio::runtime::Runtime,
    describe: String,
    /// Object Lock calls, which OpenDAL does not have.
    lock: LockClient,
    /// Kept only to scrub it from error messages, should a server ever echo it.
    secret: Option<String>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("describe", &self.inner.describe).finish_non_exhaustive()
    }
}

impl S3Store {
    /// A store for `config`. Does not contact the server: a missing bucket or bad credentials
    /// show up on the first operation.
    pub fn new(config: &S3Config) -> Result<Self, StorageError> {
        let prefix = config.prefix.trim_matches('/');
        let endpoint = config.endpoint.as_deref().unwrap_or("AWS");
        let describe = if prefix.is_empty() {
            format!("S3 bucket {} at {endpoint}", config.bucket)
        } else {
            format!("S3 bucket {}/{prefix} at {endpoint}", config.bucket)
        };
        let config_err = |message: String| StorageError {
            kind: ErrorKind::Other,
            op: "open",
            path: String::new(),
            store: describe.clone(),
            message,
            io: None,
        };

        // Installs OpenDAL's reqwest HTTP transport as the process default (first call wins; we
        // build without OpenDAL's load-time constructor, so someone has to).
        ::opendal::install_default();

        let region = config.region.as_deref().unwrap_or(DEFAULT_REGION);
        let lock = LockClient::new(config, region, &describe);
        let mut builder = S3::default()
            .bucket(&config.bucket)
            .root(&format!("/{prefix}"))
            .region(region)
            // Only what the caller passes counts: no AWS_* variables, no ~/.aws, no EC2 metadata.
            .disable_config_load()
            .disable_ec2_metadata()
            // Every upload carries `x-amz-checksum-crc32c`, so the server rejects a body damaged
            // in transit; Object Lock buckets refuse uploads without a checksum.
            .checksum_algorithm("crc32c");
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint(endpoint);
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.access_key_id(id);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.secret_access_key(secret);
        }
        if config.virtual_host_style {
            builder = builder.enable_virtual_host_style();
        }

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gitvault-s3")
            .enable_all()
            .build()
            .map_err(|e| config_err(format!("cannot start the IO runtime: {e}")))?;
        // The retry layer is the only place that retries: transient failures (5xx, throttling,
        // resets, timeouts) with jittered exponential backoff; permanent ones fail at once.
        let op = Operator::new(builder)
            .map_err(|e| config_err(clean_message(&e, config.secret_access_key.as_deref())))?
            .layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_factor(2.0)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(20))
                    .with_max_times(6),
            );
        Ok(Self { inner: Arc::new(Inner { op, runtime, describe, lock, secret: config.secret_access_key.clone() }) })
    }

    fn block_on<F: IntoFuture>(&self, f: F) -> F::Output {
        self.inner.runtime.block_on(f.into_future())
    }

    fn err(&self, op: &'static str, path: &str, e: &::opendal::Error) -> StorageError {
        let kind = match e.kind() {
            OdErrorKind::NotFound => ErrorKind::NotFound,
            // A failed `If-None-Match: *` is how S3 says "exists". Caveat: when a create succeeded
            // but its response was lost and the retry layer sent it again, the retry meets our
            // own object and reports it as existing; callers that can tell (same content) may
            // treat that as success.
            OdErrorKind::ConditionNotMatch | OdErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            OdErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            OdErrorKind::RateLimited => ErrorKind::Transient,
            _ if e.is_temporary() || gave_up_retrying(e) => ErrorKind::Transient,
            _ => ErrorKind::Other,
        };
        let detail = clean_message(e, self.inner.secret.as_deref());
        let message = match kind {
            ErrorKind::Transient if e.is_persistent() => format!("{detail}; gave up after retrying"),
            ErrorKind::AlreadyExists => format!("the object already exists ({detail})"),
            ErrorKind::PermissionDenied => {
                format!("{detail} (check the credentials and the bucket policy)")
            }
            _ => detail,
        };
        StorageError { kind, op, path: path.into(), store: self.inner.describe.clone(), message, io: None }
    }

    fn check_path(&self, path: &str) -> Result<(), StorageError> {
        if crate::is_valid_path(path) {
            return Ok(());
        }
        Err(StorageError {
            kind: ErrorKind::Other,
            op: "resolve",
            path: path.into(),
            store: self.inner.describe.clone(),
            message: "invalid object path".into(),
            io: None,
        })
    }
}

/// Whether `e` is a transient failure that the retry layer retried until it gave up. The layer
/// marks every error it returns "persistent", retried or not, so the nature of the failure is
/// read from the error itself: a transport failure (no response: refused, reset, timed out),
/// which OpenDAL reports with the HTTP client's error as source, or a 5xx response.
fn gave_up_retrying(e: &::opendal::Error) -> bool {
    if e.kind() != OdErrorKind::Unexpected {
        return false;
    }
    std::error::Error::source(e).is_some() || e.to_string().contains("status: 5")
}

/// OpenDAL's error text without its request context (URIs, response headers) and without the
/// secret key, should anything ever contain it. Requests are signed with an `Authorization`
/// header, never a presigned URL, but a URI's query is dropped anyway.
fn clean_message(e: &::opendal::Error, secret: Option<&str>) -> String {
    let full = e.to_string();
    // Display is "Kind (status) at op, context: { ... } => message, source: ...".
    let message = full.split_once(" => ").map_or(full.as_str(), |(_, m)| m);
    // S3's own answer arrives as `S3Error { code: "..", message: "..", .. }`: keep code and text.
    let quoted = |field: &str| {
        let start = message.find(&format!("{field}: \""))? + field.len() + 3;
        message[start..].split('"').next()
    };
    let mut out = match (message.starts_with("S3Error"), quoted("code"), quoted("message")) {
        (true, Some(code), Some(text)) => format!("{code}: {text}"),
        _ => {
            let words = message.split(' ').map(|word| match word.find("://").and_then(|_| word.find('?')) {
                Some(q) => format!("{}?****", &word[..q]),
                None => word.to_string(),
            });
            format!("{} ({})", words.collect::<Vec<_>>().join(" "), e.kind())
        }
    };
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        out = out.replace(secret, "****");
    }
    out
}

impl Store for S3Store {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        self.check_path(path)?;
        let buf = self.block_on(self.inner.op.read(path)).map_err(|e| self.err("read", path, &e))?;
        Ok(buf.to_vec())
    }

    fn open_read(&self, path: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        self.check_path(path)?;
        let size = self.stat(path)?.ok_or_else(|| StorageError {
            kind: ErrorKind::NotFound,
            op: "open",
            path: path.into(),
            store: self.inner.describe.clone(),
            message: "no such object".into(),
            io: None,
        })?;
        let reader = self.block_on(self.inner.op.reader(path)).map_err(|e| self.err("open", path, &e))?;
        Ok(Box::new(S3Reader { store: self.clone(), path: path.into(), reader, pos: 0, size, chunk: Buffer::new() }))
    }

    fn create(&self, path: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        self.check_path(path)?;
        // Multipart upload in CHUNK-sized parts; `If-None-Match: *` goes on the final
        // CompleteMultipartUpload (or on the single PutObject of an object smaller than a part).
        let writer = self
            .block_on(self.inner.op.writer_with(path).if_not_exists(true).chunk(CHUNK).concurrent(UPLOAD_CONCURRENCY))
            .map_err(|e| self.err("create", path, &e))?;
        Ok(Box::new(S3Writer {
            store: self.clone(),
            path: path.into(),
            writer: Some(writer),
            pending: Vec::new(),
            written: 0,
        }))
    }

    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_path(path)?;
        self.block_on(self.inner.op.write_with(path, bytes.to_vec()).if_not_exists(true))
            .map(|_| ())
            .map_err(|e| self.err("create", path, &e))
    }

    /// A plain `PutObject` replaces an object atomically.
    fn replace(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_path(path)?;
        self.block_on(self.inner.op.write(path, bytes.to_vec())).map(|_| ()).map_err(|e| self.err("replace", path, &e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let dir = prefix.trim_matches('/');
        let dir = if dir.is_empty() { "/".to_string() } else { format!("{dir}/") };
        let entries =
            self.block_on(self.inner.op.list_with(&dir).recursive(true)).map_err(|e| self.err("list", prefix, &e))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| ObjectMeta {
                size: e.metadata().content_length(),
                modified: e.metadata().last_modified().map(std::time::SystemTime::from),
                path: e.path().to_string(),
            })
            .collect())
    }

    fn stat(&self, path: &str) -> Result<Option<u64>, StorageError> {
        self.check_path(path)?;
        match self.block_on(self.inner.op.stat(path)) {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == OdErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", path, &e)),
        }
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.check_path(path)?;
        match self.block_on(self.inner.op.delete(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == OdErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", path, &e)),
        }
    }

    /// Always empty: an S3 writer never leaves a visible temporary. A writer dropped before
    /// commit aborts its multipart upload; the parts of one killed outright (kill -9, power cut)
    /// stay invisible and are cleaned by the bucket's lifecycle rule
    /// `AbortIncompleteMultipartUpload`, which vaults on S3 should have.
    fn remove_incomplete(&self) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    /// Asks the bucket for its Object Lock configuration.
    fn lock_support(&self) -> Result<(), StorageError> {
        self.block_on(self.inner.lock.bucket_lock_enabled())
    }

    fn set_retention(&self, path: &str, retention: Retention) -> Result<(), StorageError> {
        self.check_path(path)?;
        self.block_on(self.inner.lock.put_retention(path, retention))
    }

    fn retention(&self, path: &str) -> Result<Option<Retention>, StorageError> {
        self.check_path(path)?;
        Ok(self.block_on(self.inner.lock.head(path))?.and_then(|(retention, _)| retention))
    }

    /// Deletes the current version by id when the bucket keeps versions.
    fn purge(&self, path: &str) -> Result<(), StorageError> {
        self.check_path(path)?;
        match self.block_on(self.inner.lock.head(path))? {
            None => Ok(()),
            Some((_, Some(version))) => self.block_on(self.inner.lock.delete_version(path, &version)),
            Some((_, None)) => self.delete(path),
        }
    }
}

/// Streams an object by ranged reads of [`CHUNK`] bytes.
struct S3Reader {
    store: S3Store,
    path: String,
    reader: ::opendal::Reader,
    pos: u64,
    size: u64,
    chunk: Buffer,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.chunk.is_empty() && self.pos < self.size {
            let end = (self.pos + CHUNK as u64).min(self.size);
            let chunk = self
                .store
                .block_on(self.reader.read(self.pos..end))
                .map_err(|e| io::Error::other(self.store.err("read", &self.path, &e)))?;
            if chunk.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} in {} ended early", self.path, self.store.inner.describe),
                ));
            }
            self.pos += chunk.len() as u64;
            self.chunk = chunk;
        }
        self.chunk.read(buf)
    }
}

/// A multipart upload in progress; invisible until [`ObjectWriter::commit`].
struct S3Writer {
    store: S3Store,
    path: String,
    writer: Option<::opendal::Writer>,
    /// Bytes not yet handed to OpenDAL (at most [`PENDING`]).
    pending: Vec<u8>,
    written: u64,
}

impl S3Writer {
    fn send_pending(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.pending);
        let writer = self.writer.as_mut().expect("writer used after commit");
        self.store.block_on(writer.write(bytes)).map_err(|e| self.store.err("write", &self.path, &e))
    }
}

impl Write for S3Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (n, full) = crate::gather(&mut self.pending, PENDING, buf);
        self.written += n as u64;
        if full {
            self.send_pending().map_err(io::Error::other)?;
        }
        Ok(n)
    }

    /// Does not upload: S3 has nothing durable short of a whole part or the final commit.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        self.send_pending()?;
        let writer = self.writer.as_mut().expect("commit runs once");
        let closed = self.store.block_on(writer.close());
        match closed {
            Ok(_) => {
                self.writer = None;
                Ok(self.written)
            }
            // Dropping `self` aborts the upload, so no parts linger after a refused commit.
            Err(e) => Err(self.store.err("commit", &self.path, &e)),
        }
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            // Blocking inside a runtime's async context would panic; there, the bucket's lifecycle
            // rule cleans the parts instead.
            if tokio::runtime::Handle::try_current().is_err() {
                let _ = self.store.block_on(writer.abort());
            }
        }
    }
}
