//! A vault on an SFTP server, reached through the system's OpenSSH client.
//!
//! The connection is an `ssh` master process that the `openssh` crate starts (`-M -f -N`, with
//! `BatchMode=yes` and `StrictHostKeyChecking=yes`), over which an SFTP channel runs (two while
//! a large object is written: see step 2 below). So authentication and host checking are
//! exactly the user's `ssh`: ssh-agent, the default keys in `~/.ssh`, `~/.ssh/config` (or the
//! file of [`SftpConfig::ssh_config`]), `known_hosts`. A key file given in
//! [`SftpConfig::key_file`] replaces the agent's and the default keys (`IdentitiesOnly`; the
//! config's `IdentityFile` lines still count). No password or passphrase ever passes through
//! gitvault (`BatchMode`: ssh never prompts).
//!
//! # Why not OpenDAL's sftp service
//!
//! It is built on the same two crates (`openssh`, `openssh-sftp-client`), but it writes an object
//! in place (a crash leaves a partial file under the final name), it publishes with
//! `posix-rename@openssh.com` (which replaces an existing file, so two ledger writers could both
//! "win") and it never fsyncs. FORMAT.md §9.1 asks for more, so this backend writes the way the
//! local one does:
//!
//! 1. create `tmp/<host>-<pid>-<24 hex>.tmp` exclusively (`SSH_FXF_EXCL`) and stream the content
//!    into it (writes pipelined, at most [`WRITE_LIMIT`] bytes in flight: memory stays bounded);
//! 2. `fsync@openssh.com` on it, when the server offers the extension (an object of more than
//!    [`SYNC_EVERY`] bytes is also synced as it grows, through a second SFTP session, so that
//!    the server's disk works while the rest arrives: this last `fsync` then waits for little);
//! 3. publish with `hardlink@openssh.com` (`link(2)`: fails if the name exists, so exactly one of
//!    two racing writers wins), creating parent directories as needed; without that extension,
//!    with a plain SFTPv3 `SSH_FXP_RENAME`, which the protocol defines to fail on an existing
//!    target (OpenSSH's server implements it as `link` + `unlink`);
//! 4. remove the temporary. SFTP cannot fsync a directory (the client only syncs handles open
//!    for writing, and a directory cannot be opened so), so unlike the local backend the new
//!    entry is as durable as the server's file system makes it (a journaling one commits it
//!    within seconds).
//!
//! The [`Store`] trait is blocking and the SFTP client is async: each [`SftpStore`] owns a small
//! tokio runtime and blocks on it, like the S3 backend. It must not be used from inside another
//! runtime's async context.
//!
//! # Failures
//!
//! Connecting fails fast, naming the destination and what ssh said: an unknown or changed host
//! key, a refused key, a refused or unreachable port. Once connected, a lost connection is
//! transient: the operation is retried on a new connection with jittered exponential backoff.
//! An object being streamed cannot be resumed: its writer fails (transient) and the temporary it
//! leaves is cleared by [`Store::remove_incomplete`].

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures_core::Stream;
use openssh_sftp_client::Sftp;
use openssh_sftp_client::error::{Error as SftpError, SftpErrorKind};
use openssh_sftp_client::file::TokioCompatFile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod cipher;
mod connection;

use self::connection::{ConnectFailure, Connection, backoff, connect, is_connection_failure};
use crate::temp::{TMP_DIR, is_abandoned, temp_name};
use crate::{ErrorKind, ObjectMeta, ObjectWriter, StorageError, Store};

/// Bytes a writer lets the server owe acknowledgements for; also its read-ahead when reading.
const WRITE_LIMIT: usize = 8 << 20;
/// Size of one read request and of the reader's buffer (OpenSSH's server caps it at 255 KiB).
const READ_CHUNK: usize = 256 << 10;
/// What a writer gathers before crossing into the runtime.
const PENDING: usize = 1 << 20;
/// Each time a writer has sent this much more, it asks for an early `fsync` of its temporary
/// (when the server offers the extension and the previous one is done), through a second SFTP
/// session of the same connection: the server runs a session's requests one after another, so
/// an `fsync` among the writes would hold them up for as long as the disk takes (measured: the
/// stream lost more than the commit gained). The server's disk then writes while the rest of
/// the object arrives, and the commit's own `fsync` finds a few megabytes to write instead of
/// the whole object (a 204 MB pack: 110 ms → 10 ms on our benchmark machine).
const SYNC_EVERY: u64 = 32 << 20;
/// Attempts of one operation when the connection is lost, and the backoff between them.
const MAX_ATTEMPTS: u32 = 6;
const MIN_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(20);
/// How long the ssh master outlives its last channel: a process killed outright (kill -9)
/// cannot close it, so it must go by itself.
const MASTER_IDLE_SECS: usize = 10;

/// Where and how to reach the server. Nothing is read from the environment here: the caller
/// resolves settings once and passes them.
#[derive(Clone, Debug)]
pub struct SftpConfig {
    /// Login name; `None` leaves it to ssh (`~/.ssh/config`, else the local user).
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The vault's directory on the server: absolute (`/srv/vault`), or relative to the login
    /// directory (`vault`).
    pub path: String,
    /// Offer this private key instead of the agent's and the default ones
    /// (`ssh -i FILE -o IdentitiesOnly=yes`).
    pub key_file: Option<PathBuf>,
    /// An ssh_config file to use instead of `~/.ssh/config` (`ssh -F FILE`).
    pub ssh_config: Option<PathBuf>,
    /// A directory for the ssh master's control socket (a private directory is made inside and
    /// removed at the end). Socket paths are limited to about 100 bytes: keep it short.
    pub control_dir: PathBuf,
    pub connect_timeout: Duration,
}

impl SftpConfig {
    /// `sftp://USER@HOST[:PORT]/PATH`, how the destination is shown to the user.
    pub fn url(&self) -> String {
        let user = self.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let path = if self.path.starts_with('/') { self.path.clone() } else { format!("/~/{}", self.path) };
        format!("sftp://{user}{host}{port}{path}")
    }
}

/// A vault on an SFTP server. Cheap to clone; clones share one connection and runtime.
#[derive(Clone)]
pub struct SftpStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: SftpConfig,
    describe: String,
    /// The vault directory on the server, without a trailing `/` (empty: the login directory).
    root: String,
    runtime: tokio::runtime::Runtime,
    /// The live connection; `None` after it was found broken, until the next operation
    /// reconnects. The lock also keeps two threads from connecting at once.
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// Early syncs completed (see [`SYNC_EVERY`]); shared with the tasks running them, which
    /// must not hold the store (its last reference would drop the runtime inside itself).
    early_syncs: Arc<AtomicU64>,
}

impl fmt::Debug for SftpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpStore").field("describe", &self.inner.describe).finish_non_exhaustive()
    }
}

impl SftpStore {
    /// Connect to the server. Fails at once, naming the destination and the cause, when the
    /// host key is unknown or changed, the key is refused, or the server cannot be reached.
    pub fn connect(config: &SftpConfig) -> Result<Self, StorageError> {
        let describe = format!("SFTP vault {}", config.url());
        let fail = |message: String| StorageError {
            kind: ErrorKind::Other,
            op: "connect to",
            path: String::new(),
            store: describe.clone(),
            message,
            io: None,
        };
        // The host goes to ssh as its destination argument: one starting with `-` would be an
        // option, not a host.
        if config.host.is_empty() || config.host.starts_with('-') || config.host.contains(char::is_whitespace) {
            return Err(fail(format!("invalid host name {:?}", config.host)));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gitvault-sftp")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start the IO runtime: {e}")))?;
        let root = config.path.trim_end_matches('/');
        let root = if root.is_empty() && config.path.starts_with('/') { "/" } else { root };
        let inner = Inner {
            config: config.clone(),
            describe,
            root: root.to_string(),
            runtime,
            conn: tokio::sync::Mutex::new(None),
            early_syncs: Arc::new(AtomicU64::new(0)),
        };
        let store = Self { inner: Arc::new(inner) };
        let conn = store.block_on(connect(&store.inner.config)).map_err(|(_, e)| store.connect_err(e))?;
        *store.inner.conn.try_lock().expect("nobody else has the new store") = Some(Arc::new(conn));
        Ok(store)
    }

    /// Where and how this store reaches its server.
    pub fn config(&self) -> &SftpConfig {
        &self.inner.config
    }

    /// How many early syncs of objects being written have completed (see [`SYNC_EVERY`]), for
    /// tests.
    pub fn early_syncs(&self) -> u64 {
        self.inner.early_syncs.load(Ordering::Relaxed)
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.inner.runtime.block_on(f)
    }

    fn remote(&self, path: &str) -> String {
        match self.inner.root.as_str() {
            "" => path.to_string(),
            "/" => format!("/{path}"),
            root => format!("{root}/{path}"),
        }
    }

    fn check_path(&self, path: &str) -> Result<(), StorageError> {
        if crate::is_valid_path(path) {
            return Ok(());
        }
        Err(self.plain_err(ErrorKind::Other, "resolve", path, "invalid object path".into()))
    }

    fn plain_err(&self, kind: ErrorKind, op: &'static str, path: &str, message: String) -> StorageError {
        StorageError { kind, op, path: path.into(), store: self.inner.describe.clone(), message, io: None }
    }

    fn connect_err(&self, message: String) -> StorageError {
        self.plain_err(ErrorKind::Other, "connect to", "", message)
    }

    /// A failed SFTP operation as a storage error: what the server answered, or that the
    /// connection broke (transient).
    fn err(&self, op: &'static str, path: &str, e: &SftpError) -> StorageError {
        let (kind, message) = match e {
            SftpError::SftpError(code, msg) => {
                let text = msg.get().0;
                match code {
                    SftpErrorKind::NoSuchFile => (ErrorKind::NotFound, format!("no such file ({text})")),
                    SftpErrorKind::PermDenied => (
                        ErrorKind::PermissionDenied,
                        format!("{text} (check that the login user may write the vault directory)"),
                    ),
                    _ => (ErrorKind::Other, format!("the server answered: {text}")),
                }
            }
            e if is_connection_failure(e) => (ErrorKind::Transient, format!("the connection was lost ({e})")),
            e => (ErrorKind::Other, e.to_string()),
        };
        self.plain_err(kind, op, path, message)
    }

    /// The live connection, connecting again if the last one broke.
    async fn connection(&self) -> Result<Arc<Connection>, (ConnectFailure, String)> {
        let mut slot = self.inner.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = Arc::new(connect(&self.inner.config).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forget `conn` (found broken) so that the next operation reconnects.
    async fn discard(&self, conn: &Arc<Connection>) {
        let mut slot = self.inner.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }

    /// Run `f` on a connection; when the connection breaks, again on a new one, with jittered
    /// exponential backoff, up to [`MAX_ATTEMPTS`] times. Failures the server reports are not
    /// retried, nor are reconnections refused for good (host key, credentials).
    fn run<T, F, Fut>(&self, op: &'static str, path: &str, f: F) -> Result<T, StorageError>
    where
        F: Fn(Arc<Connection>) -> Fut,
        Fut: Future<Output = Result<T, SftpError>>,
    {
        self.block_on(async {
            let mut attempt = 1;
            loop {
                let failure = match self.connection().await {
                    Ok(conn) => match f(conn.clone()).await {
                        Ok(v) => return Ok(v),
                        Err(e) => {
                            let err = self.err(op, path, &e);
                            if !err.is_transient() {
                                return Err(err);
                            }
                            self.discard(&conn).await;
                            err
                        }
                    },
                    Err((ConnectFailure::Unreachable, message)) => {
                        self.plain_err(ErrorKind::Transient, op, path, format!("reconnecting failed: {message}"))
                    }
                    Err((_, message)) => return Err(self.connect_err(message)),
                };
                if attempt >= MAX_ATTEMPTS {
                    let message = format!("{}; gave up after {attempt} attempts", failure.message);
                    return Err(StorageError { message, ..failure });
                }
                tracing::warn!(store = %self.inner.describe, error = %failure, attempt, "retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        })
    }

    /// Every file under the directory `dir` (relative to the root), recursively, with its size
    /// and modification time.
    fn walk(&self, dir: &str) -> Result<Vec<(String, u64, Option<SystemTime>)>, StorageError> {
        let dir = dir.trim_matches('/').to_string();
        self.run("list", &dir, |conn| {
            let store = self.clone();
            let dir = dir.clone();
            async move {
                let mut out = Vec::new();
                let mut stack = vec![dir];
                while let Some(rel) = stack.pop() {
                    let remote = if rel.is_empty() { store.inner.root.clone() } else { store.remote(&rel) };
                    let remote = if remote.is_empty() { ".".to_string() } else { remote };
                    let entries = match read_dir(&conn.sftp, &remote).await {
                        Ok(entries) => entries,
                        Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => continue,
                        Err(e) => return Err(e),
                    };
                    for (name, meta) in entries {
                        let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                        match meta.file_type() {
                            Some(t) if t.is_dir() => stack.push(child),
                            Some(t) if t.is_file() => {
                                let modified = meta.modified().map(|m| m.as_system_time());
                                out.push((child, meta.len().unwrap_or(0), modified));
                            }
                            _ => {}
                        }
                    }
                }
                Ok(out)
            }
        })
    }
}

/// The entries of a remote directory other than `.` and `..`, with their attributes.
async fn read_dir(sftp: &Sftp, dir: &str) -> Result<Vec<(String, openssh_sftp_client::metadata::MetaData)>, SftpError> {
    let mut fs = sftp.fs();
    let mut entries = Box::pin(fs.open_dir(dir).await?.read_dir());
    let mut out = Vec::new();
    while let Some(entry) = std::future::poll_fn(|cx| entries.as_mut().poll_next(cx)).await {
        let entry = entry?;
        let name = entry.filename().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            out.push((name, entry.metadata()));
        }
    }
    Ok(out)
}

/// Create the file `path` (remote) for writing; fails if it exists (`SSH_FXF_EXCL`).
async fn create_new(sftp: &Sftp, path: &str) -> Result<openssh_sftp_client::file::File, SftpError> {
    sftp.options().write(true).create_new(true).open(path).await
}

/// `mkdir -p` of `dir` (remote), tolerating a concurrent writer making the same directories.
async fn create_dirs(sftp: &Sftp, dir: &str) -> Result<(), SftpError> {
    let mut fs = sftp.fs();
    let mut missing = Vec::new();
    let mut current = dir.to_string();
    // Walk up to the first directory that exists...
    loop {
        match fs.metadata(&current).await {
            Ok(_) => break,
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => {}
            Err(e) => return Err(e),
        }
        missing.push(current.clone());
        match current.rsplit_once('/') {
            Some((up, _)) if !up.is_empty() => current = up.to_string(),
            _ => break,
        }
    }
    // ...then down again, creating each.
    for d in missing.into_iter().rev() {
        match fs.create_dir(&d).await {
            Ok(()) => {}
            // SFTPv3 has no "exists" status: the loser of a race gets a bare failure.
            Err(e) if fs.metadata(&d).await.is_ok_and(|m| m.file_type().is_some_and(|t| t.is_dir())) => {
                tracing::debug!(dir = %d, error = %e, "directory made by another writer");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn parent_of(remote: &str) -> &str {
    match remote.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((parent, _)) => parent,
        None => ".",
    }
}

impl Store for SftpStore {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        self.check_path(path)?;
        let remote = self.remote(path);
        self.run("read", path, |conn| {
            let remote = remote.clone();
            async move { Ok(conn.sftp.fs().read(&remote).await?.to_vec()) }
        })
    }

    fn open_read(&self, path: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        self.check_path(path)?;
        let remote = self.remote(path);
        let (conn, file) = self.run("open", path, |conn| {
            let remote = remote.clone();
            async move {
                let file = conn.sftp.open(&remote).await?;
                Ok((conn, file))
            }
        })?;
        let buffer = NonZeroUsize::new(READ_CHUNK).expect("not zero");
        Ok(Box::new(SftpReader {
            store: self.clone(),
            path: path.into(),
            file: Box::pin(TokioCompatFile::with_capacity(file, buffer)),
            _conn: conn,
        }))
    }

    fn create(&self, path: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        self.check_path(path)?;
        let name =
            temp_name().map_err(|e| self.plain_err(ErrorKind::Other, "create temporary in", TMP_DIR, e.to_string()))?;
        let tmp = format!("{TMP_DIR}/{name}");
        let remote_tmp = self.remote(&tmp);
        let remote_dir = self.remote(TMP_DIR);
        let (conn, file) = self.run("create temporary in", TMP_DIR, |conn| {
            let (remote_tmp, remote_dir) = (remote_tmp.clone(), remote_dir.clone());
            async move {
                let file = match create_new(&conn.sftp, &remote_tmp).await {
                    Ok(file) => file,
                    Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => {
                        create_dirs(&conn.sftp, &remote_dir).await?;
                        create_new(&conn.sftp, &remote_tmp).await?
                    }
                    Err(e) => return Err(e),
                };
                Ok((conn, file))
            }
        })?;
        Ok(Box::new(SftpWriter {
            store: self.clone(),
            path: path.into(),
            tmp,
            conn,
            file: Some(Box::pin(TokioCompatFile::new(file))),
            pending: Vec::new(),
            written: 0,
            unsynced: 0,
            syncing: None,
        }))
    }

    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let mut w = self.create(path)?;
        w.write_all(bytes).map_err(|e| StorageError::from_io("write", path, &self.inner.describe, e))?;
        w.commit().map(|_| ())
    }

    /// Atomic where the server has `posix-rename@openssh.com` (OpenSSH does): the new content
    /// is published as a temporary, then renamed over the old object.
    fn replace(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_path(path)?;
        let name = temp_name()
            .map_err(|e| StorageError::from_io("replace", path, &self.inner.describe, std::io::Error::other(e)))?;
        let tmp = format!("{TMP_DIR}/{name}");
        self.put_new(&tmp, bytes)?;
        let (from, to) = (self.remote(&tmp), self.remote(path));
        self.run("replace", path, |conn| {
            let (from, to) = (from.clone(), to.clone());
            async move {
                let mut fs = conn.sftp.fs();
                match fs.rename(&from, &to).await {
                    Ok(()) => Ok(()),
                    // A plain SFTP rename refuses an existing target: remove it first.
                    Err(_) => {
                        let _ = fs.remove_file(&to).await;
                        fs.rename(&from, &to).await
                    }
                }
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        Ok(self.walk(prefix)?.into_iter().map(|(path, size, modified)| ObjectMeta { path, size, modified }).collect())
    }

    fn stat(&self, path: &str) -> Result<Option<u64>, StorageError> {
        self.check_path(path)?;
        let remote = self.remote(path);
        self.run("stat", path, |conn| {
            let remote = remote.clone();
            async move {
                match conn.sftp.fs().metadata(&remote).await {
                    Ok(meta) => Ok(Some(meta.len().unwrap_or(0))),
                    Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.check_path(path)?;
        let remote = self.remote(path);
        self.run("delete", path, |conn| {
            let remote = remote.clone();
            async move {
                match conn.sftp.fs().remove_file(&remote).await {
                    Ok(()) | Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
    }

    /// Temporaries in `tmp/` whose writer is gone (FORMAT.md §9.3): this host's whose process
    /// no longer runs, or another host's older than a day (by the server's clock).
    fn remove_incomplete(&self) -> Result<Vec<String>, StorageError> {
        let now = SystemTime::now();
        let mut removed = Vec::new();
        for (path, _, modified) in self.walk(TMP_DIR)? {
            let name = path.rsplit('/').next().unwrap_or_default();
            let age = modified.and_then(|m| now.duration_since(m).ok());
            if is_abandoned(name, age) {
                self.delete(&path)?;
                removed.push(path);
            }
        }
        Ok(removed)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The connection goes first, then the runtime (a field, dropped after this) with the
        // tasks that hold the ssh session: openssh's session runs `ssh -O exit` when dropped, so
        // the master exits at once. `Sftp::close` is not used: openssh-sftp-client 0.15 panics
        // in it when a file's close is still on its way to the server (a task it spawned when
        // the file was dropped still shares the session).
        drop(self.conn.get_mut().take());
    }
}

/// Streams an object with read-ahead.
struct SftpReader {
    store: SftpStore,
    path: String,
    file: Pin<Box<TokioCompatFile>>,
    /// Keeps the connection this file lives on open, even if the store moved to a new one.
    _conn: Arc<Connection>,
}

impl Read for SftpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let file = &mut self.file;
        self.store.block_on(file.read(buf)).map_err(|e| {
            let err = StorageError::from_io("read", &self.path, &self.store.inner.describe, e);
            io::Error::other(err)
        })
    }
}

/// A new object being streamed into its temporary; published by [`ObjectWriter::commit`].
struct SftpWriter {
    store: SftpStore,
    path: String,
    /// The temporary, relative to the vault root.
    tmp: String,
    conn: Arc<Connection>,
    file: Option<Pin<Box<TokioCompatFile>>>,
    /// Bytes not yet handed to the SFTP client (at most [`PENDING`]).
    pending: Vec<u8>,
    written: u64,
    /// Bytes handed to the SFTP client since the last early sync began.
    unsynced: u64,
    /// The early sync in flight, if any (see [`SYNC_EVERY`]).
    syncing: Option<tokio::task::JoinHandle<Result<(), SftpError>>>,
}

impl SftpWriter {
    fn io_err(&self, op: &'static str, e: io::Error) -> StorageError {
        let mut err = StorageError::from_io(op, &self.path, &self.store.inner.describe, e);
        // The client reports a lost connection as an IO error of kind Other.
        if err.kind == ErrorKind::Other {
            err.kind = ErrorKind::Transient;
        }
        err
    }

    fn send_pending(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let sent = self.send(&pending);
        // Keep the buffer (and its memory) for what comes next.
        self.pending = pending;
        self.pending.clear();
        sent
    }

    /// Hand `data` to the SFTP client, which pipelines it (at most [`WRITE_LIMIT`] bytes
    /// awaiting the server's acknowledgement).
    fn send(&mut self, data: &[u8]) -> Result<(), StorageError> {
        let file = self.file.as_mut().expect("writer used after commit");
        let sent = self.store.block_on(async {
            let mut rest: &[u8] = data;
            while !rest.is_empty() {
                // The client copies a vectored write into its request with one memcpy; a plain
                // write goes through its serializer a byte at a time (a quarter of the CPU time
                // of a whole backup over SFTP).
                let n = file.write_vectored(&[io::IoSlice::new(rest)]).await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero));
                }
                rest = &rest[n..];
            }
            Ok(())
        });
        sent.map_err(|e| self.io_err("write", e))?;
        self.unsynced += data.len() as u64;
        if self.conn.fsync && self.unsynced >= SYNC_EVERY {
            self.sync_early()?;
        }
        Ok(())
    }

    /// Start an early `fsync` of what was sent so far, unless the previous one is still running
    /// (see [`SYNC_EVERY`]). A failed one fails the writer: some file systems report a
    /// write-back error to one open file only, and it may not be the writer's.
    fn sync_early(&mut self) -> Result<(), StorageError> {
        if let Some(previous) = self.syncing.take_if(|h| h.is_finished()) {
            let synced = self.store.block_on(previous).expect("the sync task does not panic");
            synced.map_err(|e| self.store.err("sync", &self.path, &e))?;
        }
        if self.syncing.is_none() {
            let (conn, tmp) = (Arc::clone(&self.conn), self.store.remote(&self.tmp));
            let done = Arc::clone(&self.store.inner.early_syncs);
            self.syncing = Some(self.store.inner.runtime.spawn(async move {
                // Without a second session, the commit's fsync does it all.
                let Some(syncer) = conn.syncer().await else { return Ok(()) };
                let mut file = syncer.options().write(true).open(&tmp).await?;
                file.sync_all().await?;
                done.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }));
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Publish the durable temporary under the object's name, create-only, and remove the
    /// temporary whatever happened.
    async fn publish(&self) -> Result<(), SftpError> {
        let tmp = self.store.remote(&self.tmp);
        let published = self.link(&tmp).await;
        // After a hard link the temporary is a second name to drop; after a failure it is the
        // only one (after a successful rename it is already gone, and this fails harmlessly).
        let _ = self.conn.sftp.fs().remove_file(&tmp).await;
        published
    }

    async fn link(&self, tmp: &str) -> Result<(), SftpError> {
        let (store, conn) = (&self.store, &self.conn);
        let dest = store.remote(&self.path);
        let link = || async {
            let mut fs = conn.sftp.fs();
            if conn.hardlink { fs.hard_link(tmp, &dest).await } else { fs.rename(tmp, &dest).await }
        };
        let mut linked = link().await;
        if let Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) = &linked {
            // The parent directory is new: make it, then try again.
            create_dirs(&conn.sftp, parent_of(&dest)).await?;
            linked = link().await;
        }
        linked
    }
}

impl Write for SftpWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() >= PENDING {
            // Enough to cross into the runtime at once (a sealed chunk is a little over
            // PENDING): no copy into the gathering buffer, after what it holds (an envelope's
            // header, written first) — else every chunk after it would be copied.
            self.send_pending().map_err(io::Error::other)?;
            self.send(buf).map_err(io::Error::other)?;
            self.written += buf.len() as u64;
            return Ok(buf.len());
        }
        let (n, full) = crate::gather(&mut self.pending, PENDING, buf);
        self.written += n as u64;
        if full {
            self.send_pending().map_err(io::Error::other)?;
        }
        Ok(n)
    }

    /// Does not send: nothing is durable before the commit anyway.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for SftpWriter {
    fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        self.send_pending()?;
        let mut file = self.file.take().expect("commit runs once");
        let store = self.store.clone();
        let early = self.syncing.take();
        let synced = store.block_on(async {
            file.flush().await.map_err(|e| ("write", SftpError::IOError(e)))?;
            // Its error may not be reported to the writer's own handle (see `sync_early`).
            if let Some(early) = early {
                early.await.expect("the sync task does not panic").map_err(|e| ("sync", e))?;
            }
            if self.conn.fsync {
                file.as_mut().as_mut_file().sync_all().await.map_err(|e| ("sync", e))?;
            }
            Ok(())
        });
        // Dropping the file closes its handle in the background; nothing below needs it closed.
        drop(file);
        if let Err((op, e)) = synced {
            self.remove_temporary();
            return Err(store.err(op, &self.path, &e));
        }
        match store.block_on(self.publish()) {
            Ok(()) => Ok(self.written),
            // SFTPv3 has no "exists" status: a refused link whose target is there lost the race.
            Err(SftpError::SftpError(SftpErrorKind::Failure, msg)) if store.stat(&self.path)?.is_some() => Err(store
                .plain_err(
                    ErrorKind::AlreadyExists,
                    "create",
                    &self.path,
                    format!("the object already exists ({})", msg.get().0),
                )),
            Err(e) => Err(store.err("publish", &self.path, &e)),
        }
    }
}

impl SftpWriter {
    fn remove_temporary(&self) {
        // Blocking inside a runtime's async context would panic; there, remove_incomplete
        // clears the temporary later.
        if tokio::runtime::Handle::try_current().is_err() {
            let tmp = self.store.remote(&self.tmp);
            let _ = self.store.block_on(async { self.conn.sftp.fs().remove_file(&tmp).await });
        }
    }
}

impl Drop for SftpWriter {
    fn drop(&mut self) {
        if let Some(early) = self.syncing.take() {
            early.abort();
        }
        if let Some(file) = self.file.take() {
            drop(file);
            self.remove_temporary();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> SftpConfig {
        SftpConfig {
            user: user.map(Into::into),
            host: host.into(),
            port,
            path: path.into(),
            key_file: None,
            ssh_config: None,
            control_dir: std::env::temp_dir(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn url_shows_absolute_and_home_relative_paths() {
        assert_eq!(config(Some("u"), "h", Some(22), "/srv/v").url(), "sftp://u@h:22/srv/v");
        assert_eq!(config(None, "h", None, "vault").url(), "sftp://h/~/vault");
        assert_eq!(config(Some("u"), "::1", Some(2222), "/v").url(), "sftp://u@[::1]:2222/v");
    }

    #[test]
    fn a_host_that_looks_like_an_option_is_refused() {
        let err = SftpStore::connect(&config(None, "-oProxyCommand=true", None, "/v")).expect_err("refused");
        assert!(err.to_string().contains("invalid host name"), "{err}");
    }
}
