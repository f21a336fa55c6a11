//! `gitvault storage check`: tests a destination for what gitvault relies on, the way kopia's
//! provider validation tests a storage provider, and says what is missing.
//!
//! Everything is written under a scratch prefix, `tmp/storage-check-<random>/` (which readers
//! of a vault ignore), so the check runs as well on an empty destination as on a vault in use,
//! and what it wrote is removed at the end — except an object it locked, which the storage
//! keeps until its lock ends (a few minutes; see [`CheckOptions::lock_for`]).
//!
//! Each check is required (a vault cannot work safely without it) or optional (a feature:
//! locking). The destination is fit for a vault when every required check passes and no check
//! failed outright ([`CheckReport::fit`]).

use std::io::{Read, Write};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use crate::{ErrorKind, LockMode, Retention, StorageError, Store};

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// The storage does not do it (for a required check: the vault would not be safe there).
    Missing,
    /// It claims to, and does it wrong, or the check could not run.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "MISSING",
            Status::Failed => "FAILED",
        }
    }
}

#[derive(Clone, Debug)]
pub struct CheckResult {
    /// Short stable name: `create-only`, `lock`, …
    pub name: &'static str,
    /// Whether gitvault needs it (else it is a feature some commands use when asked).
    pub required: bool,
    pub status: Status,
    /// What was seen: on success what works, otherwise what is wrong and what it means.
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The store, as it describes itself.
    pub store: String,
    /// The scratch prefix the check wrote under.
    pub scratch: String,
    pub checks: Vec<CheckResult>,
    /// Objects left behind because they are locked, with the end of their lock.
    pub left_locked: Vec<(String, SystemTime)>,
    /// Objects the check wrote and could not remove (with why).
    pub left_over: Vec<String>,
}

impl CheckReport {
    /// Every required check passed, and no check failed.
    pub fn fit(&self) -> bool {
        self.checks.iter().all(|c| c.status == Status::Ok || (c.status == Status::Missing && !c.required))
    }
}

#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Size of the streamed object: more than one S3 multipart part (8 MiB).
    pub large_size: usize,
    /// How long the lock check locks its object (in governance mode).
    pub lock_for: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self { large_size: 20 << 20, lock_for: Duration::from_secs(300) }
    }
}

/// Writers racing for one name in the create-only race, and rounds of it.
const RACERS: usize = 4;
const ROUNDS: usize = 8;

type Outcome = Result<String, (Status, String)>;

fn failed(what: impl Into<String>) -> (Status, String) {
    (Status::Failed, what.into())
}

fn storage(what: &str, e: &StorageError) -> (Status, String) {
    failed(format!("{what}: {e}"))
}

/// Run every check against `store`.
pub fn check(store: Arc<dyn Store>, opts: &CheckOptions) -> CheckReport {
    let mut rnd = [0u8; 8];
    let scratch = match getrandom::fill(&mut rnd) {
        Ok(()) => format!("tmp/storage-check-{}", hex::encode(rnd)),
        Err(_) => format!("tmp/storage-check-{}", std::process::id()),
    };
    let p = |name: &str| format!("{scratch}/{name}");
    let s = store.as_ref();
    let mut report = CheckReport {
        store: store.describe(),
        scratch: scratch.clone(),
        checks: Vec::new(),
        left_locked: Vec::new(),
        left_over: Vec::new(),
    };
    let mut run = |name: &'static str, required: bool, outcome: Outcome| {
        let (status, detail) = match outcome {
            Ok(detail) => (Status::Ok, detail),
            Err((status, detail)) => (status, detail),
        };
        report.checks.push(CheckResult { name, required, status, detail });
    };

    run("read-after-write", true, read_after_write(s, &p("raw")));
    run("create-only", true, create_only(s, &p("once")));
    run("atomic-create", true, atomic_create(&store, &p("race")));
    run("streamed-write", true, streamed_write(s, &p("large"), opts.large_size));
    run("stat", true, stat(s, &p("raw"), &p("never-written")));
    run("listing", true, listing(s, &scratch, &[(p("raw"), 5), (p("once"), 5), (p("large"), opts.large_size as u64)]));
    run("replace", true, replace(s, &p("config")));
    run("delete", true, delete(s, &p("raw")));
    let mut left_locked = None;
    run("lock", false, lock(s, &p("locked"), opts.lock_for, &mut left_locked));
    report.left_locked.extend(left_locked);

    // Clean up what the check wrote, leaving what is locked.
    match s.list(&scratch) {
        Ok(objects) => {
            for o in objects {
                if report.left_locked.iter().any(|(path, _)| *path == o.path) {
                    continue;
                }
                if let Err(e) = s.delete(&o.path) {
                    report.left_over.push(format!("{}: {e}", o.path));
                }
            }
        }
        Err(e) => report.left_over.push(format!("{scratch}/: cannot list it to clean up: {e}")),
    }
    report
}

fn read_after_write(s: &dyn Store, path: &str) -> Outcome {
    s.put_new(path, b"hello").map_err(|e| storage("a small write failed", &e))?;
    match s.read(path) {
        Ok(b) if b == b"hello" => Ok("a new object reads back at once, byte for byte".into()),
        Ok(b) => Err(failed(format!("wrote 5 bytes, read back {} different ones", b.len()))),
        Err(e) if e.kind == ErrorKind::NotFound => Err(failed(
            "an object just written cannot be read yet (eventual consistency): a snapshot could be written before \
             its data is visible",
        )),
        Err(e) => Err(storage("reading it back failed", &e)),
    }
}

fn create_only(s: &dyn Store, path: &str) -> Outcome {
    s.put_new(path, b"first").map_err(|e| storage("creating an object failed", &e))?;
    match s.put_new(path, b"other") {
        Err(e) if e.kind == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(storage("creating it again failed, but not as \"already exists\"", &e)),
        Ok(()) => {
            return Err((
                Status::Missing,
                "creating an existing object replaced it: the storage ignores create-only writes (S3: \
                 If-None-Match: *), so two writers can overwrite each other's ledger entries"
                    .into(),
            ));
        }
    }
    let streamed = s.create(path).and_then(|mut w| {
        w.write_all(b"streamed over").map_err(|e| StorageError::from_io("write", path, &s.describe(), e))?;
        w.commit()
    });
    match streamed {
        Err(e) if e.kind == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(storage("a streamed write over it failed, but not as \"already exists\"", &e)),
        Ok(_) => {
            return Err((
                Status::Missing,
                "a streamed write replaced an existing object: create-only is not enforced on completed uploads".into(),
            ));
        }
    }
    match s.read(path) {
        Ok(b) if b == b"first" => Ok("creating an existing object is refused, for small and streamed writes".into()),
        Ok(_) => Err(failed("the refused writes changed the object anyway")),
        Err(e) => Err(storage("reading it back failed", &e)),
    }
}

fn atomic_create(store: &Arc<dyn Store>, base: &str) -> Outcome {
    for round in 0..ROUNDS {
        let path = format!("{base}-{round}");
        let barrier = Arc::new(Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let (store, barrier, path) = (store.clone(), barrier.clone(), path.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.put_new(&path, format!("writer {i}").as_bytes())
                })
            })
            .collect();
        let mut wins = 0;
        for r in racers {
            match r.join() {
                Ok(Ok(())) => wins += 1,
                Ok(Err(e)) if e.kind == ErrorKind::AlreadyExists => {}
                Ok(Err(e)) => return Err(storage("a racing create failed, but not as \"already exists\"", &e)),
                Err(_) => return Err(failed("a racing writer panicked")),
            }
        }
        if wins != 1 {
            return Err((
                Status::Missing,
                format!(
                    "{wins} of {RACERS} writers racing to create one object all succeeded (round {}): create-only \
                     is not atomic, so concurrent backups could lose ledger entries",
                    round + 1
                ),
            ));
        }
    }
    Ok(format!("{RACERS} writers racing to create one object: exactly one wins, {ROUNDS} rounds out of {ROUNDS}"))
}

/// Byte `i` of the large object: a pattern that catches misplaced or repeated parts.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 20)) as u8
}

fn streamed_write(s: &dyn Store, path: &str, size: usize) -> Outcome {
    let mut w = s.create(path).map_err(|e| storage("starting a streamed write failed", &e))?;
    let mut written = 0;
    let mut block = vec![0u8; 1 << 20];
    while written < size {
        let n = block.len().min(size - written);
        for (k, b) in block[..n].iter_mut().enumerate() {
            *b = pattern(written + k);
        }
        w.write_all(&block[..n]).map_err(|e| failed(format!("streaming {size} bytes failed: {e}")))?;
        written += n;
    }
    match s.stat(path) {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(failed("the object is visible before its write is committed: a crash would leave it partial"));
        }
        Err(e) => return Err(storage("stat during the write failed", &e)),
    }
    let committed = w.commit().map_err(|e| storage("committing the streamed write failed", &e))?;
    if committed != size as u64 {
        return Err(failed(format!("committed {committed} bytes of {size}")));
    }
    let mut r = s.open_read(path).map_err(|e| storage("opening it to read back failed", &e))?;
    let mut pos = 0;
    loop {
        let n = match r.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(format!("reading back failed at byte {pos}: {e}"))),
        };
        if let Some(k) = block[..n].iter().enumerate().position(|(k, b)| *b != pattern(pos + k)) {
            return Err(failed(format!("read back differs at byte {}", pos + k)));
        }
        pos += n;
    }
    if pos != size {
        return Err(failed(format!("read back {pos} bytes of {size}")));
    }
    Ok(format!("a {} MiB object is invisible until committed, and reads back intact in ranged reads", size >> 20))
}

fn stat(s: &dyn Store, existing: &str, missing: &str) -> Outcome {
    match s.stat(existing) {
        Ok(Some(5)) => {}
        Ok(other) => return Err(failed(format!("stat of a 5-byte object says {other:?}"))),
        Err(e) => return Err(storage("stat failed", &e)),
    }
    match s.stat(missing) {
        Ok(None) => Ok("sizes of objects, and absence of missing ones".into()),
        Ok(Some(n)) => Err(failed(format!("stat of a missing object says {n} bytes"))),
        Err(e) => Err(storage("stat of a missing object failed instead of saying it is missing", &e)),
    }
}

fn listing(s: &dyn Store, dir: &str, expected: &[(String, u64)]) -> Outcome {
    let listed = s.list(dir).map_err(|e| storage("listing failed", &e))?;
    for (path, size) in expected {
        match listed.iter().find(|o| &o.path == path) {
            None => return Err(failed(format!("{path}, just written, is not listed"))),
            Some(o) if o.size != *size => {
                return Err(failed(format!("{path} is listed with {} bytes, not {size}", o.size)));
            }
            Some(o) if o.modified.is_none() => {
                return Err((
                    Status::Missing,
                    format!(
                        "{path} is listed without a modification time: prune ages its deletion marks on the \
                         storage's clock and cannot run safely"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok("new objects are listed at once, with sizes and modification times".into())
}

fn replace(s: &dyn Store, path: &str) -> Outcome {
    s.replace(path, b"one").map_err(|e| storage("replacing a missing object (creating it) failed", &e))?;
    s.replace(path, b"two, longer").map_err(|e| storage("replacing an object failed", &e))?;
    match s.read(path) {
        Ok(b) if b == b"two, longer" => Ok("an object can be replaced (upgrade rewrites config)".into()),
        Ok(_) => Err(failed("the replaced object reads back with the old content")),
        Err(e) => Err(storage("reading the replaced object failed", &e)),
    }
}

fn delete(s: &dyn Store, path: &str) -> Outcome {
    s.delete(path).map_err(|e| storage("deleting an object failed", &e))?;
    match s.stat(path) {
        Ok(None) => {}
        Ok(Some(_)) => return Err(failed("a deleted object is still there")),
        Err(e) => return Err(storage("stat after delete failed", &e)),
    }
    s.delete(path).map_err(|e| storage("deleting a missing object failed (it must succeed)", &e))?;
    Ok("objects can be deleted, and deleting a missing one succeeds".into())
}

fn lock(s: &dyn Store, path: &str, lock_for: Duration, left: &mut Option<(String, SystemTime)>) -> Outcome {
    match s.lock_support() {
        Ok(()) => {}
        Err(e) if e.kind == ErrorKind::Unsupported => {
            return Err((Status::Missing, format!("{} (optional: needed only for --lock-days)", e.message)));
        }
        Err(e) => return Err(storage("asking whether the storage can lock objects failed", &e)),
    }
    s.put_new(path, b"locked").map_err(|e| storage("writing the object to lock failed", &e))?;
    let until = SystemTime::now() + lock_for;
    if let Err(e) = s.set_retention(path, Retention { mode: LockMode::Governance, until }) {
        return Err(storage("the storage says it can lock, but locking an object failed", &e));
    }
    *left = Some((path.to_string(), until));
    match s.retention(path) {
        Ok(Some(r)) if r.until >= until - Duration::from_secs(1) && r.mode == LockMode::Governance => {}
        Ok(Some(r)) => return Err(failed(format!("the lock reads back as {r:?}, not governance until the date set"))),
        Ok(None) => return Err(failed("the lock was accepted but does not read back")),
        Err(e) => return Err(storage("reading the lock back failed", &e)),
    }
    match s.purge(path) {
        Err(_) => {}
        Ok(()) => {
            *left = None;
            return Err(failed("the storage accepted the lock, then let the locked object be destroyed"));
        }
    }
    // Out of sight now (on S3 a delete marker); the locked version goes once its lock ends.
    let _ = s.delete(path);
    Ok("objects can be locked, the lock reads back, and a locked object cannot be deleted (--lock-days works)".into())
}
