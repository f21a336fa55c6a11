//! Copy between two vaults with different keys: only what the destination lacks is sent, and a
//! copy interrupted at any write finishes on the next run without sending again what the
//! destination already holds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gitvault_engine::ops::backup::{BackupOptions, backup};
use gitvault_engine::ops::copy::{CopyReport, copy};
use gitvault_engine::ops::verify::{VerifyOptions, verify};
use gitvault_engine::progress::NoProgress;
use gitvault_engine::{LockedVault, Vault};
use gitvault_format::keys::Passphrase;
use gitvault_git::{Git, RefState};
use gitvault_storage::faulty::{Faults, FaultyStore};
use gitvault_storage::{LocalStore, Store};

use super::{Setup, WEAK, commit};

/// The destination's passphrase differs from the source's: copies re-seal under another key.
fn dest_pass() -> Passphrase {
    Passphrase::new("another passphrase")
}

fn init_dest(s: &Setup, name: &str) -> PathBuf {
    let path = s.root.join(name);
    let store = LocalStore::new(&path);
    store.create_root().expect("root");
    LockedVault::init(Arc::new(store), &dest_pass(), WEAK, s.ctx.clone()).expect("init destination");
    path
}

fn open_dest(s: &Setup, store: Arc<dyn Store>) -> Vault {
    LockedVault::open(store).expect("open").unlock(&dest_pass(), s.ctx.clone()).expect("unlock destination")
}

fn dest(s: &Setup, path: &Path) -> Vault {
    open_dest(s, Arc::new(LocalStore::new(path)))
}

fn copy_all(s: &Setup, to: &Vault) -> CopyReport {
    copy(&s.plain(), to, &[], &NoProgress).expect("copy")
}

fn data_files(path: &Path) -> BTreeSet<String> {
    LocalStore::new(path).list("data/").expect("list").into_iter().map(|o| o.path).collect()
}

/// The destination verifies (every byte) and each snapshot restores to the refs it recorded.
fn assert_dest_intact(s: &Setup, path: &Path, expected: &[(String, RefState)], label: &str) {
    s.assert_vault_intact(&dest(s, path), expected, label);
}

fn backup_now(s: &Setup) -> (String, RefState) {
    let r = backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("backup");
    (r.snapshot.expect("a snapshot").to_hex(), Git::new().read_refs(&s.repo).expect("refs"))
}

#[test]
fn copy_sends_only_what_the_destination_lacks() {
    let s = Setup::new();
    let first = backup_now(&s);
    let b = init_dest(&s, "vault-b");
    let r = copy_all(&s, &dest(&s, &b));
    assert_eq!(r.snapshots_copied.len(), 1);
    assert_eq!((r.data_transferred, r.data_skipped, r.data_rechecked), (2, 0, 0), "{r:?}");
    assert!(r.bytes_transferred > 300_000, "{r:?}");

    commit(&s.repo, "b.bin", 200_000, 2);
    let second = backup_now(&s);
    let r = copy_all(&s, &dest(&s, &b));
    assert_eq!(r.snapshots_copied.iter().map(|i| i.to_hex()).collect::<Vec<_>>(), vec![second.0.clone()]);
    assert_eq!(r.snapshots_skipped.len(), 1);
    // The second snapshot's chain is the first pack and its index (already there) and a new
    // thin pack, which has no index.
    assert_eq!((r.data_transferred, r.data_skipped, r.data_rechecked), (1, 2, 0), "{r:?}");
    assert!(r.bytes_transferred > 200_000 && r.bytes_transferred < 300_000, "{r:?}");

    let r = copy_all(&s, &dest(&s, &b));
    assert_eq!((r.snapshots_copied.len(), r.snapshots_skipped.len(), r.data_transferred), (0, 2, 0), "{r:?}");
    assert_dest_intact(&s, &b, &[first, second], "incremental");

    // Ids are kept; the source vault was only read.
    let a = s.plain();
    let mut ids_a: Vec<_> = a.snapshot_ids().expect("ids");
    let mut ids_b: Vec<_> = dest(&s, &b).snapshot_ids().expect("ids");
    ids_a.sort();
    ids_b.sort();
    assert_eq!(ids_a, ids_b);
    assert_eq!(data_files(&s.root.join("vault")), data_files(&b));
}

#[test]
fn copy_of_a_selection_and_then_the_rest() {
    let s = Setup::new();
    let first = backup_now(&s);
    commit(&s.repo, "b.bin", 100_000, 2);
    let second = backup_now(&s);
    let b = init_dest(&s, "vault-b");
    // Only the second snapshot, by a prefix: its chain holds both packs.
    let r = copy(&s.plain(), &dest(&s, &b), &[second.0[..8].to_string()], &NoProgress).expect("copy");
    assert_eq!((r.snapshots_copied.len(), r.data_transferred), (1, 3), "{r:?}");
    let r = copy_all(&s, &dest(&s, &b));
    assert_eq!((r.snapshots_copied.len(), r.snapshots_skipped.len()), (1, 1), "{r:?}");
    assert_eq!((r.data_transferred, r.data_skipped), (0, 2), "the first snapshot's packs came with the second");
    assert_dest_intact(&s, &b, &[first, second], "selection");
}

#[test]
fn an_interrupted_copy_finishes_without_sending_again_what_arrived() {
    let s = Setup::new();
    let first = backup_now(&s);
    commit(&s.repo, "b.bin", 200_000, 2);
    let second = backup_now(&s);
    let expected = [first, second];
    // A copy of two snapshots commits 7 objects into the destination: the full pack and its
    // index, the first snapshot and its ledger entry, then the thin pack of the second, the
    // snapshot and its ledger entry. Fail each in turn, then copy again.
    for k in 1..=7 {
        let b = init_dest(&s, &format!("vault-b-{k}"));
        let faulty = open_dest(&s, Arc::new(FaultyStore::new(LocalStore::new(&b), Faults::fail_commit(k))));
        let err = copy(&s.plain(), &faulty, &[], &NoProgress).expect_err("the injected fault stops the copy");
        assert!(gitvault_engine::error::chain(&err).contains("injected fault"), "{k}: {err}");
        let held = data_files(&b).len() as u64;
        let r = copy_all(&s, &dest(&s, &b));
        assert_eq!(r.data_transferred, 3 - held, "commit {k}: only what the destination lacked was sent: {r:?}");
        if k < 7 {
            // The second snapshot's chain names all three objects.
            assert_eq!(r.data_transferred + r.data_skipped, 3, "commit {k}: {r:?}");
        }
        assert_eq!(r.snapshots_copied.len() + r.snapshots_skipped.len(), 2, "commit {k}: {r:?}");
        // Objects stored before the fault but named by no snapshot yet are decrypted in the
        // destination (to learn their MAC there), not sent again.
        let orphans = [0, 0, 1, 2, 0, 0, 1, 0][k as usize];
        assert_eq!(r.data_rechecked, orphans, "commit {k}: {r:?}");
        if k == 4 || k == 7 {
            assert_eq!(r.snapshots_recorded.len(), 1, "commit {k}: the unrecorded snapshot is recorded: {r:?}");
        }
        assert_dest_intact(&s, &b, &expected, &format!("fail-commit-{k}"));
        let report = verify(&dest(&s, &b), &VerifyOptions::default(), &NoProgress).expect("verify");
        assert!(report.warnings.is_empty(), "commit {k}: {:?}", report.warnings);
    }
}

#[test]
fn a_damaged_source_object_stops_the_copy_and_commits_nothing() {
    let s = Setup::new();
    backup_now(&s);
    let a_data = data_files(&s.root.join("vault"));
    // The larger data file is the pack; flip one byte in its middle.
    let pack = a_data
        .iter()
        .max_by_key(|p| std::fs::metadata(s.root.join("vault").join(p)).expect("stat").len())
        .expect("a pack");
    let path = s.root.join("vault").join(pack);
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, bytes).expect("write");

    let b = init_dest(&s, "vault-b");
    let err = copy(&s.plain(), &dest(&s, &b), &[], &NoProgress).expect_err("a damaged pack cannot be copied");
    let text = gitvault_engine::error::chain(&err);
    assert!(text.contains(pack.as_str()) && text.contains(&s.root.join("vault").display().to_string()), "{text}");
    assert!(dest(&s, &b).snapshot_ids().expect("ids").is_empty());
    assert!(!data_files(&b).contains(pack), "the damaged pack was not committed into the destination");
}

#[test]
fn a_snapshot_the_destination_forgot_is_not_copied_back() {
    use gitvault_engine::ops::forget::{Selection, forget};
    let s = Setup::new();
    let (first, _) = backup_now(&s);
    commit(&s.repo, "later.bin", 10_000, 7);
    backup_now(&s);
    let b = init_dest(&s, "vault-b");
    assert_eq!(copy_all(&s, &dest(&s, &b)).snapshots_copied.len(), 2);
    forget(&dest(&s, &b), &Selection::Snapshots(vec![first.clone()]), false).expect("forget in B");
    let again = copy_all(&s, &dest(&s, &b));
    assert!(again.snapshots_copied.is_empty(), "{again:?}");
    assert_eq!(again.snapshots_skipped.len(), 2);
    let listed: Vec<String> = dest(&s, &b).snapshots().expect("list").iter().map(|x| x.id.to_hex()).collect();
    assert!(!listed.contains(&first));
    let v = verify(&dest(&s, &b), &VerifyOptions::default(), &NoProgress).expect("verify");
    assert!(v.ok && v.warnings.is_empty(), "{:?} {:?}", v.problems, v.warnings);
}
