//! A fault-injecting decorator, for tests that prove a failure at any point loses nothing.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{ErrorKind, ObjectMeta, ObjectWriter, Retention, StorageError, Store};

/// Something to run just before an object is committed, once: to make another writer act at
/// an exact point of an operation (a prune between a backup's packs and its snapshot).
pub type Hook = Box<dyn Fn() + Send + Sync>;

/// Which faults to inject. Counters are shared by every writer of the store.
#[derive(Default)]
pub struct Faults {
    /// After this many bytes written in total, writes fail as "no space left on device".
    pub no_space_after_bytes: Option<u64>,
    /// The n-th commit (1-based, counting `create` commits and `put_new`) fails.
    pub fail_commit_number: Option<u64>,
    /// The n-th read (`read` or `open_read`, 1-based) fails.
    pub fail_read_number: Option<u64>,
    /// The n-th listing (1-based) fails.
    pub fail_list_number: Option<u64>,
    /// The n-th object created (1-based) is cut off after 1 KiB, as by a dropped connection:
    /// its later writes fail with "connection reset".
    pub cut_write_number: Option<u64>,
    /// Every operation first sleeps this long (a slow or distant server).
    pub delay: Option<std::time::Duration>,
    /// Run the hook once, before the first commit of a path starting with this prefix.
    pub before_committing: Option<(String, Hook)>,
    hooked: std::sync::atomic::AtomicBool,
    written: AtomicU64,
    commits: AtomicU64,
    reads: AtomicU64,
    lists: AtomicU64,
    creates: AtomicU64,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("no_space_after_bytes", &self.no_space_after_bytes)
            .field("fail_commit_number", &self.fail_commit_number)
            .field("before_committing", &self.before_committing.as_ref().map(|(p, _)| p))
            .finish_non_exhaustive()
    }
}

impl Faults {
    pub fn no_space_after(bytes: u64) -> Self {
        Self { no_space_after_bytes: Some(bytes), ..Self::default() }
    }
    pub fn fail_commit(n: u64) -> Self {
        Self { fail_commit_number: Some(n), ..Self::default() }
    }
    pub fn fail_read(n: u64) -> Self {
        Self { fail_read_number: Some(n), ..Self::default() }
    }
    pub fn fail_list(n: u64) -> Self {
        Self { fail_list_number: Some(n), ..Self::default() }
    }
    pub fn cut_write(n: u64) -> Self {
        Self { cut_write_number: Some(n), ..Self::default() }
    }
    pub fn slow(delay: std::time::Duration) -> Self {
        Self { delay: Some(delay), ..Self::default() }
    }
    fn pause(&self) {
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
    }
    /// Count an operation; fail it when it is the chosen one.
    fn nth(
        counter: &AtomicU64,
        chosen: Option<u64>,
        op: &'static str,
        store: &str,
        path: &str,
    ) -> Result<(), StorageError> {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if chosen == Some(n) {
            return Err(StorageError {
                kind: ErrorKind::Transient,
                op,
                path: path.into(),
                store: store.into(),
                message: "injected fault".into(),
                io: None,
            });
        }
        Ok(())
    }
    pub fn before_committing(prefix: &str, hook: impl Fn() + Send + Sync + 'static) -> Self {
        Self { before_committing: Some((prefix.to_string(), Box::new(hook))), ..Self::default() }
    }
    fn charge(&self, n: usize) -> io::Result<()> {
        let total = self.written.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        match self.no_space_after_bytes {
            Some(limit) if total > limit => Err(io::Error::from(io::ErrorKind::StorageFull)),
            _ => Ok(()),
        }
    }
    fn commit(&self, store: &str, path: &str) -> Result<(), StorageError> {
        if let Some((prefix, hook)) = &self.before_committing
            && path.starts_with(prefix.as_str())
            && !self.hooked.swap(true, Ordering::SeqCst)
        {
            hook();
        }
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_commit_number == Some(n) {
            return Err(StorageError {
                kind: ErrorKind::Transient,
                op: "commit",
                path: path.into(),
                store: store.into(),
                message: "injected fault".into(),
                io: None,
            });
        }
        Ok(())
    }
}

pub struct FaultyStore<S> {
    inner: S,
    faults: Arc<Faults>,
}

impl<S: Store> FaultyStore<S> {
    pub fn new(inner: S, faults: Faults) -> Self {
        Self { inner, faults: Arc::new(faults) }
    }
}

struct FaultyWriter {
    inner: Box<dyn ObjectWriter>,
    faults: Arc<Faults>,
    store: String,
    path: String,
    /// This writer is cut off after this many bytes.
    cut_after: Option<u64>,
    written: u64,
}

impl Write for FaultyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.faults.charge(buf.len())?;
        if let Some(limit) = self.cut_after {
            if self.written >= limit {
                return Err(io::Error::from(io::ErrorKind::ConnectionReset));
            }
            let n = buf.len().min(usize::try_from(limit - self.written).unwrap_or(usize::MAX));
            let n = self.inner.write(&buf[..n])?;
            self.written += n as u64;
            return Ok(n);
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl ObjectWriter for FaultyWriter {
    fn commit(self: Box<Self>) -> Result<u64, StorageError> {
        self.faults.commit(&self.store, &self.path)?;
        self.inner.commit()
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        self.faults.pause();
        Faults::nth(&self.faults.reads, self.faults.fail_read_number, "read", &self.inner.describe(), path)?;
        self.inner.read(path)
    }
    fn open_read(&self, path: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        self.faults.pause();
        Faults::nth(&self.faults.reads, self.faults.fail_read_number, "open", &self.inner.describe(), path)?;
        self.inner.open_read(path)
    }
    fn create(&self, path: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        self.faults.pause();
        let n = self.faults.creates.fetch_add(1, Ordering::SeqCst) + 1;
        let cut_after = (self.faults.cut_write_number == Some(n)).then_some(1024);
        Ok(Box::new(FaultyWriter {
            inner: self.inner.create(path)?,
            faults: self.faults.clone(),
            store: self.inner.describe(),
            path: path.into(),
            cut_after,
            written: 0,
        }))
    }
    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.faults.pause();
        self.faults.charge(bytes.len()).map_err(|e| StorageError::from_io("write", path, &self.inner.describe(), e))?;
        self.faults.commit(&self.inner.describe(), path)?;
        self.inner.put_new(path, bytes)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.faults.pause();
        Faults::nth(&self.faults.lists, self.faults.fail_list_number, "list", &self.inner.describe(), prefix)?;
        self.inner.list(prefix)
    }
    fn stat(&self, path: &str) -> Result<Option<u64>, StorageError> {
        self.inner.stat(path)
    }
    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.inner.delete(path)
    }
    fn remove_incomplete(&self) -> Result<Vec<String>, StorageError> {
        self.inner.remove_incomplete()
    }
    fn lock_support(&self) -> Result<(), StorageError> {
        self.inner.lock_support()
    }
    fn set_retention(&self, path: &str, retention: Retention) -> Result<(), StorageError> {
        self.inner.set_retention(path, retention)
    }
    fn retention(&self, path: &str) -> Result<Option<Retention>, StorageError> {
        self.inner.retention(path)
    }
    fn purge(&self, path: &str) -> Result<(), StorageError> {
        self.inner.purge(path)
    }
}
