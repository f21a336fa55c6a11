//! `storage check` against every backend: a local directory, S3 with and without Object Lock
//! (moto) and SFTP (sshd) are fit for a vault; a store that overwrites on create is not.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use gitvault_storage::check::{CheckOptions, CheckReport, Status, check};
use gitvault_storage::{LocalStore, ObjectMeta, ObjectWriter, StorageError, Store};

fn opts() -> CheckOptions {
    CheckOptions { large_size: 10 << 20, lock_for: Duration::from_secs(120) }
}

fn status(r: &CheckReport, name: &str) -> Status {
    r.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}")).status
}

fn assert_fit_and_clean(r: &CheckReport, store: &dyn Store) {
    assert!(r.fit(), "{}: {:#?}", r.store, r.checks);
    for c in &r.checks {
        if c.name != "lock" {
            assert_eq!(c.status, Status::Ok, "{}: {c:?}", r.store);
        }
    }
    assert!(r.left_over.is_empty(), "{:?}", r.left_over);
    let left: Vec<String> = store.list(&r.scratch).expect("list").into_iter().map(|o| o.path).collect();
    assert!(left.is_empty(), "{}: the check left {left:?}", r.store);
}

#[test]
fn a_local_directory_is_fit_and_cannot_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path());
    let r = check(Arc::new(LocalStore::new(dir.path())), &opts());
    assert_fit_and_clean(&r, &store);
    assert_eq!(status(&r, "lock"), Status::Missing);
    assert!(r.left_locked.is_empty());
}

#[test]
fn s3_is_fit_and_locks_only_with_object_lock() {
    let Some((moto, plain)) = crate::s3::backend() else { return };
    let plain: Arc<dyn Store> = Arc::new(plain);
    let r = check(plain.clone(), &opts());
    assert_fit_and_clean(&r, plain.as_ref());
    assert_eq!(status(&r, "lock"), Status::Missing);
    drop(moto);

    let Some((_moto, locked)) = crate::s3::lock_backend() else { return };
    let locked: Arc<dyn Store> = Arc::new(locked);
    let r = check(locked.clone(), &opts());
    assert_fit_and_clean(&r, locked.as_ref());
    assert_eq!(status(&r, "lock"), Status::Ok, "{:?}", r.checks);
    assert_eq!(r.left_locked.len(), 1, "the locked object stays until its lock ends");
}

#[test]
fn sftp_is_fit() {
    let Some((_sshd, store)) = crate::sftp::backend() else { return };
    let store: Arc<dyn Store> = Arc::new(store);
    let r = check(store.clone(), &opts());
    assert_fit_and_clean(&r, store.as_ref());
    assert_eq!(status(&r, "lock"), Status::Missing);
}

/// A store that overwrites where it should refuse, like a server ignoring `If-None-Match`.
struct Overwriting(LocalStore);

impl Store for Overwriting {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        self.0.read(path)
    }
    fn open_read(&self, path: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        self.0.open_read(path)
    }
    fn create(&self, path: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        self.0.create(path)
    }
    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        match self.0.put_new(path, bytes) {
            Err(e) if e.kind == gitvault_storage::ErrorKind::AlreadyExists => self.0.replace(path, bytes),
            other => other,
        }
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.0.list(prefix)
    }
    fn stat(&self, path: &str) -> Result<Option<u64>, StorageError> {
        self.0.stat(path)
    }
    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.0.delete(path)
    }
    fn remove_incomplete(&self) -> Result<Vec<String>, StorageError> {
        self.0.remove_incomplete()
    }
}

#[test]
fn a_store_that_overwrites_on_create_is_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = check(Arc::new(Overwriting(LocalStore::new(dir.path()))), &opts());
    assert!(!r.fit());
    assert_eq!(status(&r, "create-only"), Status::Missing, "{:#?}", r.checks);
    assert_ne!(status(&r, "atomic-create"), Status::Ok);
    let detail = &r.checks.iter().find(|c| c.name == "create-only").expect("check").detail;
    assert!(detail.contains("overwrite"), "{detail}");
}
