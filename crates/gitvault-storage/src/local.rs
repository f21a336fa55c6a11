//! A vault in a local directory (or a mounted NAS share).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::temp::{TMP_DIR, is_abandoned, temp_name};
use crate::{ErrorKind, ObjectMeta, ObjectWriter, StorageError, Store};

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    describe: String,
}

impl LocalStore {
    /// A store rooted at `root`, which need not exist yet (see [`LocalStore::create_root`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let describe = format!("local directory {}", root.display());
        Self { root, describe }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create the root directory; an existing empty directory is accepted.
    pub fn create_root(&self) -> Result<(), StorageError> {
        fs::create_dir_all(&self.root).map_err(|e| self.err("create directory", "", e))?;
        let mut entries = fs::read_dir(&self.root).map_err(|e| self.err("list", "", e))?;
        if entries.next().is_some() {
            return Err(StorageError {
                kind: ErrorKind::AlreadyExists,
                op: "create vault in",
                path: String::new(),
                store: self.describe.clone(),
                message: "the directory is not empty; choose a new or empty directory".into(),
                io: None,
            });
        }
        Ok(())
    }

    fn err(&self, op: &'static str, path: &str, e: io::Error) -> StorageError {
        StorageError::from_io(op, path, &self.describe, e)
    }

    fn full(&self, path: &str) -> Result<PathBuf, StorageError> {
        if !crate::is_valid_path(path) {
            return Err(StorageError {
                kind: ErrorKind::Other,
                op: "resolve",
                path: path.into(),
                store: self.describe.clone(),
                message: "invalid object path".into(),
                io: None,
            });
        }
        Ok(self.root.join(path))
    }

    /// A new temporary file, named so that its writer can be recognised as gone.
    fn temp_file(&self) -> Result<(PathBuf, File), StorageError> {
        let dir = self.root.join(TMP_DIR);
        fs::create_dir_all(&dir).map_err(|e| self.err("create directory", TMP_DIR, e))?;
        let name = temp_name().map_err(|e| self.err("create temporary in", TMP_DIR, io::Error::other(e)))?;
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| self.err("create temporary in", TMP_DIR, e))?;
        Ok((path, file))
    }

    /// Move a durable temporary to its final name without ever replacing an existing object.
    fn publish(&self, tmp: &Path, path: &str) -> Result<(), StorageError> {
        let dest = self.full(path)?;
        let parent = dest.parent().expect("an object path has a parent: the root");
        if !parent.exists() {
            fs::create_dir_all(parent).map_err(|e| self.err("create directory for", path, e))?;
            // A new directory's own entry must be durable too, or the object can vanish with it.
            let mut dir = parent;
            while let Some(up) = dir.parent() {
                sync_dir(up).map_err(|e| self.err("sync directory of", path, e))?;
                if up == self.root {
                    break;
                }
                dir = up;
            }
        }
        // link(2) fails if the destination exists, which makes this an atomic create-only.
        let linked = fs::hard_link(tmp, &dest);
        let _ = fs::remove_file(tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(self.err("create", path, e)),
            Err(e) => return Err(self.err("publish", path, e)),
        }
        // The new directory entry must survive a power cut before anyone relies on it.
        sync_dir(parent).map_err(|e| self.err("sync directory of", path, e))?;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct LocalWriter {
    store: LocalStore,
    path: String,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    unsynced: u64,
    /// Flushes written data to disk in the background; started once an object is large.
    syncer: Option<Syncer>,
}

/// Flush written data to disk every this many bytes, so that the fsync of a large object at
/// commit has little left to do: the disk works while the object is still being produced,
/// instead of after.
const SYNC_EVERY: u64 = 32 << 20;

/// A thread syncing a file being written while the writer goes on: the writer never waits for
/// the disk until it commits. At most one request waits; one asked for while another runs
/// covers everything written by then when it runs.
struct Syncer {
    requests: Option<std::sync::mpsc::SyncSender<()>>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Syncer {
    fn start(file: &File) -> io::Result<Self> {
        let file = file.try_clone()?;
        let (requests, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new().name("gitvault-sync".into()).spawn(move || {
            while asked.recv().is_ok() {
                file.sync_data()?;
            }
            Ok(())
        })?;
        Ok(Self { requests: Some(requests), thread })
    }

    fn request(&self) {
        // Full: a sync is already waiting and will cover this data too. Disconnected: the
        // thread stopped on an error, which `finish` reports.
        if let Some(r) = &self.requests {
            let _ = r.try_send(());
        }
    }

    /// Wait for the syncs asked for; the first error any of them met.
    fn finish(mut self) -> io::Result<()> {
        self.requests = None;
        self.thread.join().unwrap_or_else(|_| Err(io::Error::other("the sync thread panicked")))
    }
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().expect("writer used after commit");
        let n = file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            file.flush()?;
            if self.syncer.is_none() {
                self.syncer = Some(Syncer::start(file.get_ref())?);
            }
            self.syncer.as_ref().expect("started above").request();
            self.unsynced = 0;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("writer used after commit").flush()
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        let file = self.file.take().expect("commit runs once");
        let file = file.into_inner().map_err(|e| self.store.err("write", &self.path, e.into_error()))?;
        if let Some(syncer) = self.syncer.take() {
            syncer.finish().map_err(|e| self.store.err("sync", &self.path, e))?;
        }
        file.sync_all().map_err(|e| self.store.err("sync", &self.path, e))?;
        let size = file.metadata().map_err(|e| self.store.err("stat", &self.path, e))?.len();
        drop(file);
        self.store.publish(&self.tmp, &self.path)?;
        Ok(size)
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Store for LocalStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        fs::read(self.full(path)?).map_err(|e| self.err("read", path, e))
    }

    fn open_read(&self, path: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        let f = File::open(self.full(path)?).map_err(|e| self.err("open", path, e))?;
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, f)))
    }

    fn create(&self, path: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        self.full(path)?;
        let (tmp, file) = self.temp_file()?;
        Ok(Box::new(LocalWriter {
            store: self.clone(),
            path: path.to_string(),
            tmp,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            unsynced: 0,
            syncer: None,
        }))
    }

    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let mut w = self.create(path)?;
        w.write_all(bytes).map_err(|e| self.err("write", path, e))?;
        w.commit().map(|_| ())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let mut out = Vec::new();
        let start = self.root.join(prefix.trim_end_matches('/'));
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("list", prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.err("list", prefix, e))?;
                let meta = entry.metadata().map_err(|e| self.err("stat", prefix, e))?;
                let p = entry.path();
                if meta.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&self.root) {
                    let rel = rel.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
                    out.push(ObjectMeta { path: rel, size: meta.len(), modified: meta.modified().ok() });
                }
            }
        }
        Ok(out)
    }

    /// Atomic: the new content is made durable in a temporary, then renamed over the old.
    fn replace(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let dest = self.full(path)?;
        let (tmp, mut file) = self.temp_file()?;
        let result = file.write_all(bytes).and_then(|()| file.sync_all()).and_then(|()| fs::rename(&tmp, &dest));
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(self.err("replace", path, e));
        }
        let parent = dest.parent().expect("an object path has a parent: the root");
        sync_dir(parent).map_err(|e| self.err("sync directory of", path, e))
    }

    fn stat(&self, path: &str) -> Result<Option<u64>, StorageError> {
        match fs::metadata(self.full(path)?) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", path, e)),
        }
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        match fs::remove_file(self.full(path)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", path, e)),
        }
    }

    fn remove_incomplete(&self) -> Result<Vec<String>, StorageError> {
        let now = SystemTime::now();
        let mut removed = Vec::new();
        for obj in self.list(TMP_DIR)? {
            let name = obj.path.rsplit('/').next().unwrap_or_default();
            let path = self.root.join(&obj.path);
            let age = fs::metadata(&path).and_then(|m| m.modified()).ok().and_then(|m| now.duration_since(m).ok());
            if is_abandoned(name, age) {
                fs::remove_file(&path).map_err(|e| self.err("remove", &obj.path, e))?;
                removed.push(obj.path);
            }
        }
        Ok(removed)
    }
}
