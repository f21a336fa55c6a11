//! Engine tests through a fault-injecting store: whatever write fails, and whenever the
//! destination fills up, the backup fails cleanly and the vault still verifies and restores.

mod copy;
mod lock;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use gitvault_engine::ops::backup::{BackupOptions, SourceSpec, backup};
use gitvault_engine::ops::restore::{RestoreOptions, restore};
use gitvault_engine::ops::verify::{VerifyOptions, verify};
use gitvault_engine::progress::NoProgress;
use gitvault_engine::{Context, LockedVault, Vault, resolve_snapshot};
use gitvault_format::keys::{KdfParams, Passphrase};
use gitvault_format::snapshot::BackupType;
use gitvault_git::Git;
use gitvault_storage::faulty::{Faults, FaultyStore};
use gitvault_storage::{LocalStore, Store};

mod lfs;
mod retention;

const WEAK: KdfParams = KdfParams { memory_kib: 256, iterations: 1, parallelism: 1 };

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "init.defaultBranch=main", "-c", "user.name=Ada", "-c", "user.email=ada@example.org"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .expect("git")
        .success();
    assert!(ok, "git {args:?}");
}

fn commit(repo: &Path, name: &str, bytes: usize, seed: u8) {
    // Incompressible, so that stored sizes are predictable.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(seed);
    let data: Vec<u8> = (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(repo.join(name), data).expect("write");
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", name]);
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    ctx: Context,
    pass: Passphrase,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let repo = root.join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q"]);
        commit(&repo, "a.bin", 300_000, 1);
        let ctx = Context { cache_dir: root.join("cache"), host: "test".into(), actor: Some("ada@test".into()) };
        let s = Self { _dir: dir, root, repo, ctx, pass: Passphrase::new("pw") };
        let store = LocalStore::new(s.root.join("vault"));
        store.create_root().expect("root");
        LockedVault::init(Arc::new(store), &s.pass, WEAK, s.ctx.clone()).expect("init");
        s
    }

    fn open(&self, store: Arc<dyn Store>) -> Vault {
        LockedVault::open(store).expect("open").unlock(&self.pass, self.ctx.clone()).expect("unlock")
    }

    fn plain(&self) -> Vault {
        self.open(Arc::new(LocalStore::new(self.root.join("vault"))))
    }

    fn faulty(&self, faults: Faults) -> Vault {
        self.open(Arc::new(FaultyStore::new(LocalStore::new(self.root.join("vault")), faults)))
    }

    fn source(&self) -> Vec<SourceSpec> {
        vec![SourceSpec::new(self.repo.display().to_string(), Some("repo".into()))]
    }

    /// The vault verifies and every snapshot restores to the refs recorded when it was made.
    fn assert_intact(&self, expected: &[(String, gitvault_git::RefState)], label: &str) {
        self.assert_vault_intact(&self.plain(), expected, label);
    }

    /// [`Setup::assert_intact`] for any vault (another one a test writes into, such as a copy).
    fn assert_vault_intact(&self, vault: &Vault, expected: &[(String, gitvault_git::RefState)], label: &str) {
        let report = verify(vault, &VerifyOptions { read_data: true, ..VerifyOptions::default() }, &NoProgress)
            .expect("verify runs");
        assert!(report.ok, "{label}: verify found {:?}", report.problems);
        let snaps = vault.snapshots().expect("snapshots");
        for (i, (id, state)) in expected.iter().enumerate() {
            let snap = resolve_snapshot(&snaps, id).expect("snapshot");
            let target = self.root.join(format!("restore-{label}-{i}"));
            restore(vault, snap, None, &target, &RestoreOptions::default(), &NoProgress).expect("restore");
            assert_eq!(&Git::new().read_refs(&target).expect("refs"), state, "{label}: snapshot {i}");
            Git::new().fsck(&target).expect("fsck");
        }
    }
}

#[test]
fn a_failure_at_any_commit_leaves_a_vault_that_verifies_and_restores() {
    let s = Setup::new();
    let first = backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("backup");
    let mut expected = vec![(first.snapshot.expect("snapshot").to_hex(), Git::new().read_refs(&s.repo).expect("refs"))];
    commit(&s.repo, "b.bin", 200_000, 2);
    // A full backup commits the pack and its index first: fail each.
    for k in 1..=2 {
        commit(&s.repo, &format!("full-{k}.bin"), 1000, 10 + k as u8);
        let full = BackupOptions { backup_type: Some(BackupType::Full), ..BackupOptions::default() };
        let result = backup(&s.faulty(Faults::fail_commit(k)), &s.source(), &full, &NoProgress);
        assert!(result.as_ref().map_or(true, |r| r.snapshot.is_none()), "full, commit {k} failed: {result:?}");
        s.assert_intact(&expected, &format!("fail-full-commit-{k}"));
    }
    // An incremental commits: its thin pack, the pending record (for resuming), the snapshot,
    // the ledger entry. Fail each in turn. Only the pending record may fail without failing
    // the backup: it is an optimisation (the run just cannot be resumed).
    let mut failed_somewhere = 0;
    for k in 1..=4 {
        // Something new each time: an earlier failed run's pack is resumed, not stored again,
        // so without it the run would make fewer writes.
        commit(&s.repo, &format!("round-{k}.bin"), 1000, 20 + k as u8);
        let result = backup(&s.faulty(Faults::fail_commit(k)), &s.source(), &BackupOptions::default(), &NoProgress);
        match result {
            Err(_) => failed_somewhere += 1,
            Ok(report) if report.snapshot.is_none() => failed_somewhere += 1,
            Ok(report) if k == 2 => {
                expected
                    .push((report.snapshot.expect("snapshot").to_hex(), Git::new().read_refs(&s.repo).expect("refs")));
            }
            Ok(report) => panic!("commit {k} was made to fail, yet the backup reports success: {report:?}"),
        }
        s.assert_intact(&expected, &format!("fail-commit-{k}"));
    }
    assert_eq!(failed_somewhere, 3);
    // Without faults the next backup lands and everything restores.
    let ok = backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("backup");
    expected.push((ok.snapshot.expect("snapshot").to_hex(), Git::new().read_refs(&s.repo).expect("refs")));
    s.assert_intact(&expected, "after");
}

#[test]
fn a_failed_read_list_or_cut_off_write_at_any_point_loses_nothing() {
    let s = Setup::new();
    let first = backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("backup");
    let first = (first.snapshot.expect("snapshot").to_hex(), Git::new().read_refs(&s.repo).expect("refs"));
    let mut latest = first.clone();
    let mut failures = 0;
    type Family = (&'static str, u64, fn(u64) -> Faults);
    let families: [Family; 3] =
        [("read", 12, Faults::fail_read), ("list", 10, Faults::fail_list), ("cut-write", 4, Faults::cut_write)];
    for (family, count, fault) in families {
        for k in 1..=count {
            commit(&s.repo, &format!("{family}-{k}.bin"), 20_000, k as u8);
            let label = format!("{family}-{k}");
            // Opening the vault reads too: a failure there is a failed run like any other.
            let store = Arc::new(FaultyStore::new(LocalStore::new(s.root.join("vault")), fault(k)));
            let run = LockedVault::open(store)
                .and_then(|l| l.unlock(&s.pass, s.ctx.clone()))
                .and_then(|v| backup(&v, &s.source(), &BackupOptions::default(), &NoProgress));
            match run {
                Ok(r) if r.snapshot.is_some() => {
                    latest = (r.snapshot.expect("snapshot").to_hex(), Git::new().read_refs(&s.repo).expect("refs"));
                }
                Ok(_) | Err(_) => failures += 1,
            }
            // Whatever failed, the vault verifies and the first and the latest snapshot restore.
            s.assert_intact(&[first.clone(), latest.clone()], &label);
        }
    }
    eprintln!("{failures} of 26 faulty runs failed");
    assert!(failures >= 10, "the faults hit the backup ({failures} failed runs)");
    // A slow server changes nothing but the time.
    commit(&s.repo, "slow.bin", 20_000, 99);
    let r = backup(
        &s.faulty(Faults::slow(std::time::Duration::from_millis(5))),
        &s.source(),
        &BackupOptions::default(),
        &NoProgress,
    )
    .expect("a slow backup");
    let slow = (r.snapshot.expect("snapshot").to_hex(), Git::new().read_refs(&s.repo).expect("refs"));
    s.assert_intact(&[first, slow], "slow");
}

#[test]
fn a_thin_pack_whose_bases_are_missing_is_named_with_what_to_do() {
    let s = Setup::new();
    backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("full");
    // A few bytes of a.bin change: the thin pack holds a delta against the full pack's a.bin.
    let mut a = std::fs::read(s.repo.join("a.bin")).expect("read");
    a[1000] ^= 0xff;
    std::fs::write(s.repo.join("a.bin"), a).expect("write");
    git(&s.repo, &["commit", "-q", "-am", "edit"]);
    let id = backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("incr").snapshot;
    let vault = s.plain();
    let (mut snap, _) = vault.read_snapshot(&id.expect("snapshot")).expect("read");
    // A chain without its full pack: the thin pack's bases are nowhere.
    let thin = snap.repositories[0].chain.remove(0);
    assert!(thin.index.is_some() && snap.repositories[0].chain[0].is_thin());
    let target = s.root.join("no-bases");
    let err = restore(&vault, &snap, None, &target, &RestoreOptions::default(), &NoProgress).expect_err("no bases");
    let text = gitvault_engine::error::chain(&err);
    let pack = gitvault_format::ids::paths::data(&snap.repositories[0].chain[0].pack.id);
    assert!(text.contains(&pack) && text.contains("verify --read-data"), "{text}");
    assert!(text.contains("index-pack"), "git's own message follows: {text}");
    assert!(!target.exists(), "no half-restored repository is left");
}

#[test]
fn a_full_destination_at_any_point_loses_nothing() {
    let s = Setup::new();
    let first = backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("backup");
    let expected = vec![(first.snapshot.expect("snapshot").to_hex(), Git::new().read_refs(&s.repo).expect("refs"))];
    commit(&s.repo, "c.bin", 400_000, 3);
    for limit in [0, 100, 4_096, 100_000, 300_000] {
        let vault = s.faulty(Faults::no_space_after(limit));
        match backup(
            &vault,
            &s.source(),
            &BackupOptions {
                backup_type: Some(gitvault_format::snapshot::BackupType::Full),
                ..BackupOptions::default()
            },
            &NoProgress,
        ) {
            Ok(report) => {
                assert!(report.snapshot.is_none(), "limit {limit}: a full destination cannot take a snapshot");
                assert!(
                    report.failures[0].error.contains("No space") || report.failures[0].error.contains("space"),
                    "{:?}",
                    report.failures
                );
            }
            Err(e) => assert!(gitvault_engine::error::chain(&e).contains("space"), "limit {limit}: {e}"),
        }
        s.assert_intact(&expected, &format!("no-space-{limit}"));
    }
}

/// Sets the cancel flag when the first repository is done, as a signal arriving mid-run would.
struct StopAfterFirst(Arc<std::sync::atomic::AtomicBool>);
impl gitvault_engine::progress::Progress for StopAfterFirst {
    fn finish(&self, _repo: &str) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_stop_request_finishes_the_current_repository_and_commits_a_consistent_snapshot() {
    let s = Setup::new();
    let mut sources = s.source();
    for n in ["two", "three"] {
        sources.push(SourceSpec::new(s.repo.display().to_string(), Some(n.into())));
    }
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opts = BackupOptions { cancel: Some(cancel.clone()), ..BackupOptions::default() };
    let report = backup(&s.plain(), &sources, &opts, &StopAfterFirst(cancel)).expect("backup");
    let snap = report.snapshot.expect("the finished repository is committed");
    assert_eq!(report.repositories.len(), 1);
    assert_eq!(report.repositories[0].name, "repo");
    let stopped: Vec<&str> = report.failures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(stopped, ["two", "three"]);
    assert!(report.failures.iter().all(|f| f.error.starts_with(gitvault_engine::ops::backup::INTERRUPTED)));
    s.assert_intact(&[(snap.to_hex(), Git::new().read_refs(&s.repo).expect("refs"))], "stopped");
}
