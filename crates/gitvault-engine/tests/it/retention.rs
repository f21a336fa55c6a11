//! Retention: forget and the two-phase prune, on a local vault whose file times are moved back
//! to stand for the hours that pass between runs (ages are read from the storage's clock).

use std::path::Path;
use std::time::Duration;

use gitvault_engine::ops::backup::{BackupOptions, backup};
use gitvault_engine::ops::forget::{Policy, Selection, forget};
use gitvault_engine::ops::prune::{PruneOptions, When, prune};
use gitvault_engine::ops::verify::{VerifyOptions, verify};
use gitvault_engine::progress::NoProgress;
use gitvault_format::ledger::Event;
use gitvault_format::snapshot::BackupType;
use gitvault_git::Git;

use super::{Setup, commit};

/// Move the modification time of every file under `dir` back by `by`.
pub(crate) fn age(dir: &Path, by: Duration) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            age(&path, by);
        } else {
            let f = std::fs::File::options().write(true).open(&path).expect("open");
            let modified = f.metadata().expect("meta").modified().expect("mtime");
            f.set_modified(modified - by).expect("set mtime");
        }
    }
}

fn files(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flat_map(|e| {
            let p = e.expect("entry").path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn forget_then_prune_disposes_of_data_only_after_the_grace_period() {
    let s = Setup::new();
    let full = BackupOptions { backup_type: Some(BackupType::Full), ..BackupOptions::default() };
    let first = backup(&s.plain(), &s.source(), &full, &NoProgress).expect("backup").snapshot.expect("snap");
    commit(&s.repo, "b.bin", 100_000, 2);
    let second = backup(&s.plain(), &s.source(), &full, &NoProgress).expect("backup").snapshot.expect("snap");
    commit(&s.repo, "c.bin", 100_000, 3);
    let third = backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("backup");
    let third = third.snapshot.expect("snap");
    let refs_now = Git::new().read_refs(&s.repo).expect("refs");
    let vault_dir = s.root.join("vault");
    assert_eq!(files(&vault_dir.join("data")), 5, "two full packs with their indexes, one thin pack");

    // keep-last 2 forgets the first full backup; the kept incremental keeps its whole chain.
    let vault = s.plain();
    let report = forget(&vault, &Selection::Policy(Policy { last: 2, ..Policy::default() }), false).expect("forget");
    assert_eq!(report.removed, 1);
    assert_eq!(report.groups[0].remove[0].id, first);
    assert!(report.groups[0].keep.iter().all(|k| k.reasons == ["last"]));
    let ids: Vec<_> = vault.snapshots().expect("list").iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![second, third]);

    // Fresh unreferenced data is not even marked: it could belong to a running backup.
    let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune");
    assert!(p.marked.is_none());
    assert_eq!(p.young_unreferenced, 2);
    age(&vault_dir.join("data"), 2 * HOUR);
    let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune");
    assert_eq!(p.marked.as_ref().map(|m| m.data_files), Some(2), "the first pack and its index");
    assert!(p.swept.is_empty());
    assert_eq!(files(&vault_dir.join("data")), 5, "marking deletes nothing");

    // Not before the grace period has passed on the storage's clock…
    age(&vault_dir.join("marks"), 23 * HOUR);
    let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune");
    assert!(p.swept.is_empty());
    assert_eq!(p.pending.len(), 1);
    assert!(p.pending[0].ripe_in_seconds <= 3600 && p.pending[0].ripe_in_seconds > 3000, "{:?}", p.pending);
    assert!(p.marked.is_none(), "already marked data is not marked twice");

    // …and then, with a ledger entry first.
    age(&vault_dir.join("marks"), 2 * HOUR);
    let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune");
    assert_eq!(p.swept.len(), 1);
    assert_eq!(p.swept[0].deleted_files, 2);
    assert_eq!(files(&vault_dir.join("data")), 3);
    assert_eq!(files(&vault_dir.join("marks")), 0);
    let ledger = vault.read_ledger().expect("ledger");
    let kinds: Vec<&str> = ledger.iter().map(|e| e.entry.as_ref().expect("entry").0.event.name()).collect();
    assert_eq!(kinds, ["init", "snapshot", "snapshot", "snapshot", "forget", "prune"]);
    let last = &ledger.last().expect("entry").entry.as_ref().expect("entry").0.event;
    assert!(matches!(last, Event::Prune { data, .. } if data.len() == 2));

    let v =
        verify(&vault, &VerifyOptions { read_data: true, ..VerifyOptions::default() }, &NoProgress).expect("verify");
    assert!(v.ok, "{:?}", v.problems);
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    s.assert_intact(&[(third.to_hex(), refs_now)], "after-prune");
}

#[test]
fn a_dry_run_changes_nothing_and_an_interrupted_forget_is_finished_by_prune() {
    let s = Setup::new();
    let mut ids = Vec::new();
    for i in 0..3u8 {
        commit(&s.repo, &format!("f{i}.bin"), 10_000, 10 + i);
        ids.push(
            backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("b").snapshot.expect("s"),
        );
    }
    let vault = s.plain();
    let vault_dir = s.root.join("vault");
    let before = files(&vault_dir);
    let dry = forget(&vault, &Selection::Policy(Policy { last: 1, ..Policy::default() }), true).expect("dry");
    assert_eq!(dry.removed, 2);
    assert!(dry.ledger_entry.is_none());
    let dry_prune =
        prune(&vault, &PruneOptions { dry_run: true, ..PruneOptions::default() }, &NoProgress).expect("dry prune");
    assert!(dry_prune.dry_run);
    assert_eq!(files(&vault_dir), before, "dry runs write nothing");

    // Forget by id; then put the file back as if the deletion had been interrupted.
    let path = vault_dir.join("snapshots").join(ids[0].to_hex());
    let saved = std::fs::read(&path).expect("read");
    let r = forget(&vault, &Selection::Snapshots(vec![ids[0].to_hex()[..8].to_string()]), false).expect("forget");
    assert_eq!(r.reason, "explicit");
    assert!(!path.exists());
    let v = verify(&vault, &VerifyOptions::default(), &NoProgress).expect("verify");
    assert!(v.ok && v.warnings.is_empty(), "a forgotten snapshot is not damage: {:?} {:?}", v.problems, v.warnings);
    std::fs::write(&path, saved).expect("restore file");
    let v = verify(&vault, &VerifyOptions::default(), &NoProgress).expect("verify");
    assert!(v.ok);
    assert!(v.warnings.iter().any(|w| w.contains("interrupted forget")), "{:?}", v.warnings);
    let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune");
    assert_eq!(p.finished_forgets, vec![ids[0]]);
    assert!(!path.exists());
}

#[test]
fn append_only_mode_refuses_every_deletion_but_backs_up() {
    let s = Setup::new();
    backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("backup");
    let mut vault = s.plain();
    vault.set_append_only(true);
    let e = forget(&vault, &Selection::Policy(Policy { last: 1, ..Policy::default() }), false).expect_err("refused");
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = prune(&vault, &PruneOptions::default(), &NoProgress).expect_err("refused");
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = gitvault_engine::ops::keys::remove_key(&vault, "00").expect_err("refused");
    assert!(e.to_string().contains("append-only"), "{e}");
    // A temporary of a dead writer stays: clearing it would be a deletion.
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let tmp = s.root.join(format!("vault/tmp/{host}-999999999-00.tmp"));
    std::fs::create_dir_all(tmp.parent().expect("parent")).expect("mkdir");
    std::fs::write(&tmp, b"x").expect("write");
    commit(&s.repo, "more.bin", 1000, 9);
    backup(&vault, &s.source(), &BackupOptions::default(), &NoProgress).expect("backup in append-only mode");
    let v = verify(&vault, &VerifyOptions::default(), &NoProgress).expect("verify");
    assert!(v.ok && v.repaired.is_empty());
    assert!(tmp.exists());
}

#[test]
fn the_grace_period_has_a_floor() {
    let s = Setup::new();
    let e = prune(&s.plain(), &PruneOptions { grace: Duration::from_secs(60), ..PruneOptions::default() }, &NoProgress)
        .expect_err("floor");
    assert!(e.to_string().contains("at least 1 hour"), "{e}");
}

#[test]
fn consolidation_lets_an_incremental_forever_history_dispose_of_forgotten_data() {
    let s = Setup::new();
    let incr = BackupOptions::default();
    // A branch that later disappears: its blob must become disposable.
    super::git(&s.repo, &["checkout", "-q", "-b", "secret"]);
    commit(&s.repo, "leaked.bin", 50_000, 40);
    let leaked = String::from_utf8(
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD:leaked.bin"])
            .current_dir(&s.repo)
            .output()
            .expect("git")
            .stdout,
    )
    .expect("utf-8")
    .trim()
    .to_string();
    super::git(&s.repo, &["checkout", "-q", "-"]);
    backup(&s.plain(), &s.source(), &incr, &NoProgress).expect("full");
    super::git(&s.repo, &["branch", "-q", "-D", "secret"]);
    let mut kept = Vec::new();
    for i in 0..4u8 {
        commit(&s.repo, &format!("n{i}.bin"), 20_000, 50 + i);
        let id = backup(&s.plain(), &s.source(), &incr, &NoProgress).expect("incr").snapshot.expect("snap");
        kept.push((id, Git::new().read_refs(&s.repo).expect("refs")));
    }
    let vault = s.plain();
    forget(&vault, &Selection::Policy(Policy { last: 2, ..Policy::default() }), false).expect("forget");
    let kept = &kept[2..];

    // The default threshold (16 stale packs) is not reached: nothing is rewritten.
    let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune");
    assert!(p.consolidated.repositories.is_empty());
    let dry = prune(
        &vault,
        &PruneOptions { consolidate: When::Always, dry_run: true, ..PruneOptions::default() },
        &NoProgress,
    )
    .expect("dry");
    assert_eq!(dry.consolidated.repositories[0].stale_packs, 3, "the full and the first two incrementals");
    assert!(dry.consolidated.replaced.is_empty());

    age(&s.root.join("vault/data"), 2 * HOUR);
    let p = prune(&vault, &PruneOptions { consolidate: When::Always, ..PruneOptions::default() }, &NoProgress)
        .expect("consolidate");
    let c = &p.consolidated;
    assert_eq!(c.repositories.len(), 1);
    assert_eq!(c.repositories[0].packs_written, 2, "one pack per kept snapshot");
    assert_eq!(c.replaced.len(), 2);
    assert!(p.marked.is_some(), "the old packs (old files) are marked at once");
    let ledger = vault.read_ledger().expect("ledger");
    let forgets: Vec<_> = ledger
        .iter()
        .filter_map(|e| match &e.entry.as_ref().expect("entry").0.event {
            Event::Forget { reason, replaced_by, snapshots } if reason == "consolidated" => {
                Some((snapshots.clone(), replaced_by.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(forgets.len(), 1);
    assert_eq!(forgets[0].0, kept.iter().map(|k| k.0).collect::<Vec<_>>());

    // A grace period later the old chain is gone, and with it the deleted branch's blob.
    age(&s.root.join("vault/marks"), 25 * HOUR);
    let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("sweep");
    assert_eq!(p.swept[0].deleted_files, 6, "five old packs: the full one with its index, four thin ones");
    assert_eq!(files(&s.root.join("vault/data")), 3, "a new full pack with its index, a new thin pack");
    let expected: Vec<(String, gitvault_git::RefState)> =
        c.replaced.iter().zip(kept).map(|(r, (_, refs))| (r.new.to_hex(), refs.clone())).collect();
    s.assert_intact(&expected, "consolidated");
    let restored = s.root.join("restore-consolidated-1");
    let has_leak = std::process::Command::new("git")
        .args(["cat-file", "-e", &leaked])
        .current_dir(&restored)
        .status()
        .expect("git")
        .success();
    assert!(!has_leak, "the blob of the deleted branch must be gone from the vault");
}

fn age_file(path: &Path, by: Duration) {
    let f = std::fs::File::options().write(true).open(path).expect("open");
    let modified = f.metadata().expect("meta").modified().expect("mtime");
    f.set_modified(modified - by).expect("set mtime");
}

/// What a prune running in the middle of a backup (between its packs and its snapshot) does to
/// the data the backup builds on (here: right after its pack is stored, as it records the pack
/// for resuming): the base snapshot is forgotten, its pack marked — and, in
/// the harshest case, deleted after a grace period that "passed" meanwhile.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Meanwhile {
    /// Marked: the mark is fresh, so it cannot ripen before the snapshot is written.
    Marked,
    /// Marked by a mark about to ripen.
    MarkedLongAgo,
    /// Marked and deleted.
    Deleted,
}

fn prune_during_a_backup(case: Meanwhile) {
    let s = Setup::new();
    let first =
        backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("b1").snapshot.expect("s");
    let first_refs = Git::new().read_refs(&s.repo).expect("refs");
    commit(&s.repo, "second.bin", 50_000, 30);
    let second =
        backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("b2").snapshot.expect("s");
    commit(&s.repo, "third.bin", 50_000, 31);

    // The second snapshot's own pack: what the third backup (incremental on it) builds on.
    let vault_dir = s.root.join("vault");
    let snap = s.plain().read_snapshot(&second).expect("read").0;
    let own = snap.repositories[0].new_pack(&second).expect("own pack").clone();
    assert!(own.is_thin(), "an incremental's pack is thin in a new vault");
    let own_files: Vec<_> = own.data().map(|(d, _)| vault_dir.join(gitvault_format::ids::paths::data(&d.id))).collect();
    let own_count = own_files.len();

    let (root, ctx, pass) = (s.root.clone(), s.ctx.clone(), s.pass.clone());
    let hook = move || {
        let vault = gitvault_engine::LockedVault::open(std::sync::Arc::new(gitvault_storage::LocalStore::new(
            root.join("vault"),
        )))
        .expect("open")
        .unlock(&pass, ctx.clone())
        .expect("unlock");
        forget(&vault, &Selection::Snapshots(vec![second.to_hex()]), false).expect("forget the base");
        for f in &own_files {
            age_file(f, 2 * HOUR);
        }
        let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune marks");
        assert_eq!(p.marked.as_ref().map(|m| m.data_files), Some(own_files.len()), "{p:?}");
        match case {
            Meanwhile::Marked => {}
            Meanwhile::MarkedLongAgo => age(&root.join("vault/marks"), Duration::from_secs(23 * 3600 + 45 * 60)),
            Meanwhile::Deleted => {
                age(&root.join("vault/marks"), 25 * HOUR);
                let p = prune(&vault, &PruneOptions::default(), &NoProgress).expect("prune sweeps");
                assert_eq!(p.swept[0].deleted_files, own_count, "{p:?}");
            }
        }
    };
    let faulty = s.faulty(gitvault_storage::faulty::Faults::before_committing("pending/", hook));
    // Re-check however short the run (the rule requires it after 30 minutes).
    let opts = BackupOptions { recheck_after: Duration::ZERO, ..BackupOptions::default() };
    let result = backup(&faulty, &s.source(), &opts, &NoProgress);
    let third_refs = Git::new().read_refs(&s.repo).expect("refs");
    match case {
        Meanwhile::Marked => {
            let third = result.expect("a fresh mark cannot ripen before the snapshot: the backup commits");
            let third = third.snapshot.expect("snapshot");
            // The mark ripens; the prune then finds the data referenced again and keeps it.
            age(&s.root.join("vault/marks"), 25 * HOUR);
            let p = prune(&s.plain(), &PruneOptions::default(), &NoProgress).expect("sweep");
            assert_eq!((p.swept[0].deleted_files, p.swept[0].kept_referenced), (0, own_count), "{p:?}");
            s.assert_intact(&[(first.to_hex(), first_refs), (third.to_hex(), third_refs)], "marked");
        }
        Meanwhile::MarkedLongAgo | Meanwhile::Deleted => {
            let e = result.expect_err("the backup must not commit a snapshot whose data may be gone");
            let text = gitvault_engine::error::chain(&e);
            let why = if case == Meanwhile::Deleted { "were deleted by a prune" } else { "marked for deletion" };
            assert!(text.contains(why) && text.contains("run the backup again"), "{case:?}: {text}");
            let snaps = s.plain().snapshots().expect("list");
            assert_eq!(snaps.len(), 1, "{case:?}: nothing was committed");
            // Nothing lost: the first snapshot restores, and a rerun makes a complete snapshot.
            let again = backup(&s.plain(), &s.source(), &BackupOptions::default(), &NoProgress).expect("rerun");
            let again = again.snapshot.expect("snapshot");
            let label = format!("{case:?}");
            s.assert_intact(&[(first.to_hex(), first_refs), (again.to_hex(), third_refs)], &label);
        }
    }
}

#[test]
fn a_prune_marking_a_backups_base_meanwhile_lets_it_commit_and_then_keeps_the_data() {
    prune_during_a_backup(Meanwhile::Marked);
}

#[test]
fn a_backup_refuses_to_commit_on_data_a_ripening_mark_lists() {
    prune_during_a_backup(Meanwhile::MarkedLongAgo);
}

#[test]
fn a_backup_refuses_to_commit_on_data_a_prune_deleted_meanwhile() {
    prune_during_a_backup(Meanwhile::Deleted);
}
