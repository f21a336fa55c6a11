//! Object Lock in the engine, through a store that keeps locks the way S3 does: a locked
//! backup locks what it writes and lengthens the locks of the data it depends on; forget and
//! prune never try to delete a locked file (where a plain S3 DELETE would only hide it).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gitvault_engine::ops::backup::{BackupOptions, backup};
use gitvault_engine::ops::forget::{Policy, Selection, forget};
use gitvault_engine::ops::prune::{PruneOptions, prune};
use gitvault_engine::progress::NoProgress;
use gitvault_engine::{Error, LockPolicy};
use gitvault_format::snapshot::BackupType;
use gitvault_storage::{LocalStore, LockMode, ObjectMeta, ObjectWriter, Retention, StorageError, Store};

use super::{Setup, commit};
use crate::retention::age;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86400);

/// Locks held in memory beside a local vault; deleting a locked file is recorded (and refused),
/// so a test can assert that nobody tried.
#[derive(Default)]
struct Locks {
    held: Mutex<HashMap<String, Retention>>,
    deletes_refused: Mutex<Vec<String>>,
}

struct LockingStore {
    inner: LocalStore,
    locks: Arc<Locks>,
}

impl Store for LockingStore {
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
        self.inner.create(path)
    }
    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.put_new(path, bytes)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.inner.list(prefix)
    }
    fn stat(&self, path: &str) -> Result<Option<u64>, StorageError> {
        self.inner.stat(path)
    }
    fn delete(&self, path: &str) -> Result<(), StorageError> {
        let locked = self.locks.held.lock().expect("locks").get(path).is_some_and(|r| r.holds_at(SystemTime::now()));
        if locked {
            self.locks.deletes_refused.lock().expect("locks").push(path.to_string());
            return Err(StorageError::unsupported("delete", path, &self.describe(), "locked"));
        }
        self.inner.delete(path)
    }
    fn remove_incomplete(&self) -> Result<Vec<String>, StorageError> {
        self.inner.remove_incomplete()
    }
    fn lock_support(&self) -> Result<(), StorageError> {
        Ok(())
    }
    fn set_retention(&self, path: &str, retention: Retention) -> Result<(), StorageError> {
        assert!(self.inner.stat(path)?.is_some(), "locking {path}, which does not exist");
        let mut held = self.locks.held.lock().expect("locks");
        if let Some(old) = held.get(path) {
            assert!(retention.until >= old.until, "{path}: a lock was shortened");
        }
        held.insert(path.to_string(), retention);
        Ok(())
    }
    fn retention(&self, path: &str) -> Result<Option<Retention>, StorageError> {
        Ok(self.locks.held.lock().expect("locks").get(path).copied())
    }
}

impl Setup {
    fn locking(&self, locks: &Arc<Locks>) -> gitvault_engine::Vault {
        self.open(Arc::new(LockingStore { inner: LocalStore::new(self.root.join("vault")), locks: locks.clone() }))
    }
}

fn until(locks: &Locks, path: &str) -> Option<SystemTime> {
    locks.held.lock().expect("locks").get(path).map(|r| r.until)
}

fn paths_under(s: &Setup, dir: &str) -> Vec<String> {
    LocalStore::new(s.root.join("vault")).list(dir).expect("list").into_iter().map(|o| o.path).collect()
}

#[test]
fn a_locked_backup_locks_what_it_writes_and_lengthens_the_chain_it_depends_on() {
    let s = Setup::new();
    let locks = Arc::new(Locks::default());
    let first_until = SystemTime::now() + DAY;
    let mut vault = s.locking(&locks);
    vault.set_lock(Some(LockPolicy { mode: LockMode::Governance, until: first_until })).expect("lock");
    backup(&vault, &s.source(), &BackupOptions::default(), &NoProgress).expect("backup");
    let first_data = paths_under(&s, "data/");
    assert_eq!(first_data.len(), 2, "a pack and its index");
    for path in first_data.iter().chain(&paths_under(&s, "snapshots/")) {
        assert_eq!(until(&locks, path), Some(first_until), "{path}");
    }
    let ledger = paths_under(&s, "ledger/");
    assert_eq!(ledger.len(), 2);
    assert_eq!(until(&locks, ledger.iter().max().expect("entry")), Some(first_until), "the backup's entry");
    assert_eq!(until(&locks, ledger.iter().min().expect("entry")), None, "init's entry was written unlocked");

    // An incremental locked longer: the full pack under it is locked as long as it.
    commit(&s.repo, "b.bin", 100_000, 2);
    let second_until = first_until + 2 * DAY;
    let mut vault = s.locking(&locks);
    vault.set_lock(Some(LockPolicy { mode: LockMode::Compliance, until: second_until })).expect("lock");
    let report = backup(&vault, &s.source(), &BackupOptions::default(), &NoProgress).expect("backup");
    assert_eq!(report.repositories[0].backup_type, BackupType::Incr);
    for path in paths_under(&s, "data/") {
        assert_eq!(until(&locks, &path), Some(second_until), "{path}");
        assert_eq!(locks.held.lock().expect("locks")[&path].mode, LockMode::Compliance, "the stricter mode");
    }
}

#[test]
fn forget_refuses_a_locked_snapshot_and_keeps_the_rest_going() {
    let s = Setup::new();
    let locks = Arc::new(Locks::default());
    let full = BackupOptions { backup_type: Some(BackupType::Full), ..BackupOptions::default() };
    let mut vault = s.locking(&locks);
    vault.set_lock(Some(LockPolicy::for_days(1, LockMode::Governance))).expect("lock");
    let locked = backup(&vault, &s.source(), &full, &NoProgress).expect("backup").snapshot.expect("snap");
    commit(&s.repo, "b.bin", 100_000, 2);
    let vault = s.locking(&locks);
    let unlocked = backup(&vault, &s.source(), &full, &NoProgress).expect("backup").snapshot.expect("snap");
    commit(&s.repo, "c.bin", 100_000, 3);
    let newest = backup(&vault, &s.source(), &full, &NoProgress).expect("backup").snapshot.expect("snap");

    let report = forget(&vault, &Selection::Policy(Policy { last: 1, ..Policy::default() }), false).expect("forget");
    assert_eq!(report.removed, 1, "the unlocked one goes");
    assert_eq!(report.groups[0].remove[0].id, unlocked);
    assert_eq!(report.locked.len(), 1);
    assert!(report.locked[0].path.ends_with(&locked.to_hex()));
    let kept = report.groups[0].keep.iter().find(|k| k.id == locked).expect("kept");
    assert!(kept.reasons[0].starts_with("locked until"), "{:?}", kept.reasons);
    let ids: Vec<_> = vault.snapshots().expect("list").iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![locked, newest]);
    assert!(locks.deletes_refused.lock().expect("locks").is_empty(), "nobody tried to delete a locked file");
}

#[test]
fn prune_leaves_locked_data_and_its_mark_for_a_later_run() {
    let s = Setup::new();
    let locks = Arc::new(Locks::default());
    let full = BackupOptions { backup_type: Some(BackupType::Full), ..BackupOptions::default() };
    let vault = s.locking(&locks);
    backup(&vault, &s.source(), &full, &NoProgress).expect("backup");
    let old_data = paths_under(&s, "data/");
    commit(&s.repo, "b.bin", 100_000, 2);
    backup(&vault, &s.source(), &full, &NoProgress).expect("backup");
    forget(&vault, &Selection::Policy(Policy { last: 1, ..Policy::default() }), false).expect("forget");
    // The forgotten snapshot's data is locked: what an interrupted locked backup leaves, or a
    // lock set by hand.
    let until = SystemTime::now() + DAY;
    let store = LockingStore { inner: LocalStore::new(s.root.join("vault")), locks: locks.clone() };
    for path in &old_data {
        store.set_retention(path, Retention { mode: LockMode::Governance, until }).expect("lock");
    }
    let vault_dir = s.root.join("vault");
    age(&vault_dir.join("data"), 2 * HOUR);
    let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune");
    assert_eq!(p.marked.as_ref().map(|m| m.data_files), Some(2));
    age(&vault_dir.join("marks"), 25 * HOUR);
    let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune");
    assert_eq!(p.swept.len(), 1);
    assert_eq!((p.swept[0].deleted_files, p.swept[0].locked_files), (0, 2));
    assert_eq!(p.locked.len(), 2);
    assert!(p.swept[0].ledger_entry.is_none(), "nothing deleted, nothing recorded");
    assert_eq!(paths_under(&s, "marks/").len(), 1, "the mark stays for the locked files");
    assert!(locks.deletes_refused.lock().expect("locks").is_empty(), "nobody tried to delete a locked file");

    // Once the locks have ended, the next prune deletes them and the mark.
    for path in &old_data {
        locks
            .held
            .lock()
            .expect("locks")
            .insert(path.clone(), Retention { mode: LockMode::Governance, until: SystemTime::now() - DAY });
    }
    let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune");
    assert_eq!((p.swept[0].deleted_files, p.swept[0].locked_files), (2, 0));
    assert!(paths_under(&s, "marks/").is_empty());
    assert_eq!(paths_under(&s, "data/").len(), 2, "the kept snapshot's data");
}

#[test]
fn a_vault_that_cannot_lock_refuses_a_lock_policy() {
    let s = Setup::new();
    let mut vault = s.plain();
    let err = vault.set_lock(Some(LockPolicy::for_days(7, LockMode::Governance))).expect_err("local cannot lock");
    assert!(matches!(err, Error::LockUnavailable { .. }), "{err}");
    assert!(err.to_string().contains("--lock-days"), "{err}");
    vault.set_lock(None).expect("no policy is always fine");
}
