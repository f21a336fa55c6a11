//! A fault-injecting decorator, for tests that prove a failure at any point loses nothing.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{ErrorKind, ObjectMeta, ObjectWriter, Retention, StorageError, Store};

/// Which faults to inject. Counters are shared by every writer of the store.
#[derive(Debug, Default)]
pub struct Faults {
    /// After this many bytes written in total, writes fail as "no space left on device".
    pub no_space_after_bytes: Option<u64>,
    /// The n-th commit (1-based, counting `create` commits and `put_new`) fails.
    pub fail_commit_number: Option<u64>,
    written: AtomicU64,
    commits: AtomicU64,
}

impl Faults {
    pub fn no_space_after(bytes: u64) -> Self {
        Self { no_space_after_bytes: Some(bytes), ..Self::default() }
    }
    pub fn fail_commit(n: u64) -> Self {
        Self { fail_commit_number: Some(n), ..Self::default() }
    }
    fn charge(&self, n: usize) -> io::Result<()> {
        let total = self.written.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        match self.no_space_after_bytes {
            Some(limit) if total > limit => Err(io::Error::from(io::ErrorKind::StorageFull)),
            _ => Ok(()),
        }
    }
    fn commit(&self, store: &str, path: &str) -> Result<(), StorageError> {
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
}

impl Write for FaultyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.faults.charge(buf.len())?;
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
        self.inner.read(path)
    }
    fn open_read(&self, path: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        self.inner.open_read(path)
    }
    fn create(&self, path: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        Ok(Box::new(FaultyWriter {
            inner: self.inner.create(path)?,
            faults: self.faults.clone(),
            store: self.inner.describe(),
            path: path.into(),
        }))
    }
    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.faults.charge(bytes.len()).map_err(|e| StorageError::from_io("write", path, &self.inner.describe(), e))?;
        self.faults.commit(&self.inner.describe(), path)?;
        self.inner.put_new(path, bytes)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
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
