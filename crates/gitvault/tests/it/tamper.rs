//! Tampering with a vault behind gitvault's back: every altered, removed, truncated, swapped or
//! reordered file is found by `verify` (exit 4, the file named in text and JSON), a restore that
//! needs a damaged file fails cleanly, and every snapshot that does not need it still restores
//! exactly.

use std::collections::BTreeSet;
use std::path::PathBuf;

use gitvault_git::RefState;

use crate::common::{World, assert_restores_exactly, commit, files_under, git, new_repo, noise, refs};

/// One snapshot of the fixture and the vault files its backup added.
struct Snap {
    id: String,
    refs: RefState,
    /// Data files the backup wrote, largest (the pack) first.
    data: Vec<String>,
    /// The ledger entry that records it.
    ledger: String,
}

/// A vault holding a full and two incremental snapshots of one repository.
struct Fixture {
    w: World,
    repo: PathBuf,
    snaps: Vec<Snap>,
}

fn with_prefix(files: &BTreeSet<String>, prefix: &str) -> BTreeSet<String> {
    files.iter().filter(|f| f.starts_with(prefix)).cloned().collect()
}

impl Fixture {
    fn new() -> Self {
        let w = World::new();
        w.init();
        let repo = new_repo(&w.path("src/app"));
        let mut f = Self { w, repo, snaps: Vec::new() };

        commit(&f.repo, "README", b"hello\n", "initial");
        commit(&f.repo, "blob.bin", &noise(1, 150_000), "binary");
        git(&f.repo, &["tag", "-a", "v1", "-m", "one"]);
        f.backup(&["--type", "full"]);

        git(&f.repo, &["checkout", "-q", "-b", "feature"]);
        commit(&f.repo, "feature.bin", &noise(2, 80_000), "feature");
        git(&f.repo, &["checkout", "-q", "main"]);
        f.backup(&[]);

        commit(&f.repo, "more.bin", &noise(3, 60_000), "more");
        git(&f.repo, &["branch", "-D", "feature"]);
        f.backup(&[]);
        f
    }

    fn backup(&mut self, extra: &[&str]) {
        let before = files_under(&self.w.vault);
        let mut args = extra.to_vec();
        args.push(self.repo.to_str().expect("utf-8 path"));
        let report = self.w.backup(&args);
        let id = report["snapshot"].as_str().expect("snapshot id").to_string();
        let after = files_under(&self.w.vault);
        let new: BTreeSet<String> = after.difference(&before).cloned().collect();
        let mut data: Vec<String> = with_prefix(&new, "data/").into_iter().collect();
        data.sort_by_key(|p| std::cmp::Reverse(self.size(p)));
        // A full backup's pack comes with its index; an incremental's is thin, without one.
        let expected = if extra.contains(&"full") { 2 } else { 1 };
        assert_eq!(data.len(), expected, "a backup with new objects writes a pack (and its index if full): {new:?}");
        let ledger: Vec<String> = with_prefix(&new, "ledger/").into_iter().collect();
        assert_eq!(ledger.len(), 1, "a backup appends one ledger entry: {new:?}");
        assert!(new.contains(&format!("snapshots/{id}")), "snapshot file written: {new:?}");
        self.snaps.push(Snap { id, refs: refs(&self.repo), data, ledger: ledger[0].clone() });
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.w.vault.join(rel)
    }

    fn size(&self, rel: &str) -> u64 {
        std::fs::metadata(self.file(rel)).expect("stat vault file").len()
    }

    fn flip_bit(&self, rel: &str, offset: usize) {
        let path = self.file(rel);
        let mut bytes = std::fs::read(&path).expect("read vault file");
        bytes[offset] ^= 0x10;
        std::fs::write(&path, bytes).expect("write vault file");
    }

    fn delete(&self, rel: &str) {
        std::fs::remove_file(self.file(rel)).expect("delete vault file");
    }

    /// The snapshot restores exactly (refs, HEAD, fsck) into a fresh directory.
    fn assert_restores(&self, i: usize, label: &str) {
        let s = &self.snaps[i];
        assert_restores_exactly(&self.w, &s.id, None, &s.refs, &format!("{label}-{i}"));
    }

    /// Restoring snapshot `i` fails with exit 1 and an error naming `damaged`, and leaves
    /// nothing behind: no target, no half-built repository beside it.
    fn assert_restore_fails_cleanly(&self, i: usize, damaged: &str, label: &str) {
        let parent = self.w.path(&format!("failed-restore-{label}"));
        std::fs::create_dir_all(&parent).expect("mkdir");
        let target = parent.join("app.git");
        let out = self.w.run(&["restore", &self.snaps[i].id, "--target", target.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "restore from a damaged vault must fail with exit 1: {stderr}");
        assert!(stderr.contains("error:"), "an error message: {stderr}");
        assert!(stderr.contains(damaged), "the error names the damaged file {damaged}: {stderr}");
        assert!(!target.exists(), "a failed restore leaves no target directory");
        let left: Vec<_> = std::fs::read_dir(&parent).expect("read parent").collect();
        assert!(left.is_empty(), "a failed restore leaves nothing beside the target: {left:?}");
    }
}

fn verify_args(read_data: bool, json: bool) -> Vec<&'static str> {
    let mut args = vec!["verify"];
    if read_data {
        args.push("--read-data");
    }
    if json {
        args.push("--json");
    }
    args
}

/// `verify` passes: exit 0 in text and JSON.
fn assert_verifies(w: &World, read_data: bool) -> serde_json::Value {
    let text = w.ok(&verify_args(read_data, false));
    assert!(text.contains("no problems found"), "clean verify says so:\n{text}");
    assert!(!text.contains("DAMAGE"), "clean verify reports no damage:\n{text}");
    let json: serde_json::Value = serde_json::from_str(&w.ok(&verify_args(read_data, true))).expect("verify --json");
    assert_eq!(json["ok"], true, "verify --json: {json:#}");
    assert_eq!(json["problems"].as_array().map(Vec::len), Some(0), "verify --json: {json:#}");
    json
}

/// `verify` finds damage in `path` (exit 4), says so in text (a `DAMAGE` line naming the file)
/// and in JSON (`ok: false`, a problem whose `path` is the file and whose description contains
/// one of `fragments`) — in several rounds, because verify must be repeatable.
fn assert_damage(w: &World, read_data: bool, path: &str, fragments: &[&str]) {
    assert_damage_rounds(w, read_data, path, fragments, 2);
}

fn assert_damage_rounds(w: &World, read_data: bool, path: &str, fragments: &[&str], rounds: usize) {
    let matches = |problem: &str| fragments.iter().any(|f| problem.contains(f));
    for round in 1..=rounds {
        let out = w.run(&verify_args(read_data, false));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "verify #{round} must exit 4 for {path}\n{stdout}\n{stderr}");
        assert!(
            stdout.lines().any(|l| l.starts_with("DAMAGE") && l.contains(path) && matches(l)),
            "verify #{round} names {path} with one of {fragments:?}:\n{stdout}"
        );
        assert!(stdout.contains("problems found"), "verify #{round} sums up:\n{stdout}");

        let out = w.run(&verify_args(read_data, true));
        assert_eq!(out.status.code(), Some(4), "verify --json #{round} must exit 4 for {path}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify --json prints JSON only");
        assert_eq!(json["ok"], false, "verify --json #{round}: {json:#}");
        let problems = json["problems"].as_array().expect("problems array");
        assert!(
            problems.iter().any(|p| p["path"] == path && p["problem"].as_str().is_some_and(matches)),
            "verify --json #{round} has a problem with path {path} and one of {fragments:?}: {json:#}"
        );
    }
}

#[test]
fn clean_vault_verifies_and_verify_is_repeatable() {
    let f = Fixture::new();
    let first = assert_verifies(&f.w, false);
    let second = assert_verifies(&f.w, false);
    assert_eq!(first["snapshots"], 3);
    assert_eq!(first["data_files"], 4, "the full pack and its index, and two thin packs");
    assert_eq!(first["key_slots"], 1);
    // Every verification is itself recorded in the ledger.
    let entries = |v: &serde_json::Value| v["ledger_entries"].as_u64().expect("ledger_entries");
    assert!(entries(&second) > entries(&first), "verify appends a ledger entry: {first:#} {second:#}");
    let full = assert_verifies(&f.w, true);
    assert_eq!(full["read_data"], true);
    assert!(full["bytes_read"].as_u64().is_some_and(|b| b > 290_000), "every byte read: {full:#}");
    assert_eq!(full["warnings"].as_array().map(Vec::len), Some(0), "no warnings on a clean vault: {full:#}");
    for i in 0..3 {
        f.assert_restores(i, "clean");
    }
    assert_verifies(&f.w, true);
}

#[test]
fn flipped_bit_in_data_file_is_found_by_read_data_only() {
    let f = Fixture::new();
    let pack = f.snaps[2].data[0].clone();
    let size = f.size(&pack) as usize;
    f.flip_bit(&pack, size / 2);
    assert_eq!(f.size(&pack) as usize, size);

    // Same size, same name: a structural check cannot see it.
    let json = assert_verifies(&f.w, false);
    assert_eq!(json["read_data"], false);
    assert_damage(&f.w, true, &pack, &["authentication", "altered", "damaged", "corrupt"]);

    f.assert_restore_fails_cleanly(2, &pack, "flipped");
    f.assert_restores(0, "after-flip");
    f.assert_restores(1, "after-flip");
}

#[test]
fn flipped_bit_in_data_file_header_is_found_by_read_data() {
    let f = Fixture::new();
    // The index of the first (full) snapshot, in its authenticated plaintext header.
    let index = f.snaps[0].data[1].clone();
    f.flip_bit(&index, 10);
    assert_verifies(&f.w, false);
    assert_damage(&f.w, true, &index, &["pack index"]);
    // Every snapshot's chain starts with the full backup: none restores now, each cleanly.
    for i in 0..3 {
        f.assert_restore_fails_cleanly(i, &index, &format!("header-{i}"));
    }
}

#[test]
fn deleted_data_file_is_found_without_read_data() {
    let f = Fixture::new();
    let pack = f.snaps[2].data[0].clone();
    f.delete(&pack);
    assert_damage(&f.w, false, &pack, &["missing"]);
    assert_damage(&f.w, true, &pack, &["missing"]);
    f.assert_restore_fails_cleanly(2, &pack, "deleted");
    f.assert_restores(0, "after-delete");
    f.assert_restores(1, "after-delete");
}

#[test]
fn truncated_data_file_is_found_without_read_data() {
    let f = Fixture::new();
    // The middle snapshot's pack: the last snapshot's chain needs it too.
    let pack = f.snaps[1].data[0].clone();
    let size = f.size(&pack);
    let file = std::fs::OpenOptions::new().write(true).open(f.file(&pack)).expect("open");
    file.set_len(size / 2).expect("truncate");
    drop(file);
    assert_damage(&f.w, false, &pack, &[&format!("{size} expected")]);
    f.assert_restore_fails_cleanly(1, &pack, "truncated-1");
    f.assert_restore_fails_cleanly(2, &pack, "truncated-2");
    f.assert_restores(0, "after-truncate");
}

#[test]
fn deleted_snapshot_file_is_found_through_the_ledger() {
    let f = Fixture::new();
    let gone = format!("snapshots/{}", f.snaps[1].id);
    f.delete(&gone);
    assert_damage(&f.w, false, &gone, &["missing"]);

    let listed: Vec<String> = f.w.snapshots().iter().map(|s| s["id"].as_str().expect("id").to_string()).collect();
    assert_eq!(listed, vec![f.snaps[0].id.clone(), f.snaps[2].id.clone()]);
    // The later incremental carries its own chain: it does not need the deleted snapshot file.
    f.assert_restores(0, "after-snapshot-delete");
    f.assert_restores(2, "after-snapshot-delete");
}

#[test]
fn snapshot_file_replaced_by_another_snapshots_content_is_found() {
    let f = Fixture::new();
    let victim = format!("snapshots/{}", f.snaps[1].id);
    let donor = format!("snapshots/{}", f.snaps[2].id);
    std::fs::copy(f.file(&donor), f.file(&victim)).expect("copy snapshot over another");
    assert_damage(&f.w, false, &victim, &["damaged", "authentication"]);
    f.assert_restore_fails_cleanly(1, &victim, "replaced");
}

#[test]
fn swapped_snapshot_files_are_both_found() {
    let f = Fixture::new();
    let a = format!("snapshots/{}", f.snaps[0].id);
    let b = format!("snapshots/{}", f.snaps[2].id);
    let tmp = f.file("swap.tmp");
    std::fs::rename(f.file(&a), &tmp).expect("rename");
    std::fs::rename(f.file(&b), f.file(&a)).expect("rename");
    std::fs::rename(&tmp, f.file(&b)).expect("rename");
    assert_damage(&f.w, false, &a, &["damaged", "authentication"]);
    assert_damage(&f.w, false, &b, &["damaged", "authentication"]);
}

#[test]
fn renamed_snapshot_file_is_found_under_both_names() {
    let f = Fixture::new();
    let old = format!("snapshots/{}", f.snaps[1].id);
    let flipped = if f.snaps[1].id.starts_with('0') { '1' } else { '0' };
    let new = format!("snapshots/{flipped}{}", &f.snaps[1].id[1..]);
    std::fs::rename(f.file(&old), f.file(&new)).expect("rename");
    // Missing where the ledger says it is; not what its name says where it is now.
    assert_damage(&f.w, false, &old, &["missing"]);
    assert_damage(&f.w, false, &new, &["damaged", "authentication"]);
}

/// One damaged snapshot file must not take the others down with it: they hold everything
/// needed to restore them.
#[test]
fn damaged_snapshot_file_does_not_block_restoring_the_others() {
    let f = Fixture::new();
    let victim = format!("snapshots/{}", f.snaps[1].id);
    f.flip_bit(&victim, 40);
    assert_damage(&f.w, false, &victim, &["damaged", "authentication"]);
    f.assert_restores(0, "beside-damaged-snapshot");
    f.assert_restores(2, "beside-damaged-snapshot");
}

/// A backup must still be possible after one snapshot file was damaged: refusing every future
/// backup turns one bad file into a total loss of protection.
#[test]
fn damaged_snapshot_file_does_not_block_new_backups() {
    let f = Fixture::new();
    let victim = format!("snapshots/{}", f.snaps[2].id);
    f.flip_bit(&victim, 40);
    commit(&f.repo, "after.txt", b"after the damage\n", "after");
    let out = f.w.run(&["backup", "--json", f.repo.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "backup after a damaged snapshot file: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    let id = report["snapshot"].as_str().expect("snapshot id");
    assert_restores_exactly(&f.w, id, None, &refs(&f.repo), "after-damaged-snapshot");
}

#[test]
fn flipped_bit_in_ledger_entry_is_found() {
    let f = Fixture::new();
    let entry = f.snaps[1].ledger.clone();
    f.flip_bit(&entry, f.size(&entry) as usize / 2);
    assert_damage(&f.w, false, &entry, &["unreadable ledger entry"]);
    // The ledger is evidence; the data is intact.
    for i in 0..3 {
        f.assert_restores(i, "after-ledger-flip");
    }
}

/// A backup meeting a damaged ledger head must not say "failed" and still commit a snapshot:
/// either it refuses before storing anything, or its snapshot is real and it says so.
#[test]
fn damaged_ledger_head_makes_backup_fail_before_committing_or_succeed() {
    let f = Fixture::new();
    let head = f.snaps[2].ledger.clone();
    f.flip_bit(&head, f.size(&head) as usize / 2);
    commit(&f.repo, "after.txt", b"after\n", "after");
    let out = f.w.run(&["backup", f.repo.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let listed = f.w.snapshots().len();
    match out.status.code() {
        Some(0) => assert_eq!(listed, 4, "a successful backup adds its snapshot"),
        Some(1) => {
            assert!(stderr.contains(&head), "the failure names the damaged ledger entry: {stderr}");
            assert_eq!(listed, 3, "a failed backup commits no snapshot: {stderr}");
        }
        other => panic!("backup exit {other:?}: {stderr}"),
    }
}

#[test]
fn deleted_ledger_entry_in_the_middle_is_found() {
    let f = Fixture::new();
    let entry = f.snaps[0].ledger.clone();
    f.delete(&entry);
    assert_damage(&f.w, false, &entry, &["missing"]);
    for i in 0..3 {
        f.assert_restores(i, "after-ledger-delete");
    }
}

#[test]
fn swapped_ledger_entries_are_found() {
    let f = Fixture::new();
    let a = f.snaps[0].ledger.clone();
    let b = f.snaps[1].ledger.clone();
    let tmp = f.file("swap.tmp");
    std::fs::rename(f.file(&a), &tmp).expect("rename");
    std::fs::rename(f.file(&b), f.file(&a)).expect("rename");
    std::fs::rename(&tmp, f.file(&b)).expect("rename");
    assert_damage(&f.w, false, &a, &["ledger entry"]);
    assert_damage(&f.w, false, &b, &["ledger entry"]);
    for i in 0..3 {
        f.assert_restores(i, "after-ledger-swap");
    }
}

#[test]
fn deleted_last_ledger_entry_is_found_through_the_local_head_cache() {
    let f = Fixture::new();
    let ledger = with_prefix(&files_under(&f.w.vault), "ledger/");
    let last = ledger.last().expect("ledger entries").clone();
    assert_eq!(last, f.snaps[2].ledger, "the last backup wrote the last entry");
    f.delete(&last);
    // The chain that is left is consistent; only the memory of a longer one can tell. The
    // first verify sees the cut; the second sees the entry the first one appended in its place.
    assert_damage_rounds(&f.w, false, &last, &["removed", "rewritten"], 1);
    f.assert_restores(0, "after-ledger-cut");
    f.assert_restores(2, "after-ledger-cut");
}

#[test]
fn deleted_last_ledger_entry_is_not_laundered_by_a_later_backup() {
    let f = Fixture::new();
    let last = f.snaps[2].ledger.clone();
    f.delete(&last);
    // A backup writes a new entry under the removed number before anyone verifies.
    commit(&f.repo, "later.txt", b"later\n", "later");
    f.w.backup(&[f.repo.to_str().expect("utf-8")]);
    let out = f.w.run(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(4), "verify after a cut ledger was written over must exit 4");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify --json");
    assert_eq!(json["ok"], false);
    assert!(
        json["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["path"] == last.as_str() && p["problem"].as_str().is_some_and(|t| t.contains("rewritten"))),
        "the rewritten entry is named: {json:#}"
    );
}

/// Damage stays damage: a ledger cut seen once must be reported by every later verify, not
/// only until verify's own entries have grown the ledger past the remembered head.
#[test]
fn deleted_last_ledger_entry_stays_reported_by_every_later_verify() {
    let f = Fixture::new();
    let last = f.snaps[2].ledger.clone();
    f.delete(&last);
    assert_damage_rounds(&f.w, false, &last, &["removed", "rewritten"], 3);
}

#[test]
fn deleted_key_slot_is_found() {
    let f = Fixture::new();
    let before = with_prefix(&files_under(&f.w.vault), "keys/");
    let out =
        f.w.cmd(&["key", "add", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
            .env("GITVAULT_NEW_PASSWORD", "a second passphrase")
            .output()
            .expect("run gitvault");
    assert!(out.status.success(), "key add: {}", String::from_utf8_lossy(&out.stderr));
    let after = with_prefix(&files_under(&f.w.vault), "keys/");
    let added: Vec<&String> = after.difference(&before).collect();
    assert_eq!(added.len(), 1, "key add writes one slot: {added:?}");
    assert_verifies(&f.w, false);

    let slot = added[0].clone();
    f.delete(&slot);
    assert_damage(&f.w, false, &slot, &["missing"]);
    // The remaining slot still opens everything.
    for i in 0..3 {
        f.assert_restores(i, "after-key-delete");
    }
}

/// Restoring every repository of a snapshot when the second one's data is damaged: exit 1,
/// the damaged file named, the first repository complete and exact, no trace of the second.
#[test]
fn multi_repository_restore_with_damage_leaves_only_complete_repositories() {
    let w = World::new();
    w.init();
    let a = new_repo(&w.path("src/alpha"));
    commit(&a, "a.bin", &noise(10, 40_000), "alpha");
    let b = new_repo(&w.path("src/beta"));
    commit(&b, "b.bin", &noise(11, 40_000), "beta");
    // Beta alone first, so that its files are known; the combined snapshot's beta chain is
    // that pack (nothing new since).
    let before = files_under(&w.vault);
    w.backup(&[b.to_str().expect("utf-8")]);
    let mut beta_files: Vec<String> =
        with_prefix(&files_under(&w.vault), "data/").difference(&before).cloned().collect();
    assert_eq!(beta_files.len(), 2);
    beta_files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(w.vault.join(p)).expect("stat").len()));
    let both = w.backup(&[a.to_str().expect("utf-8"), b.to_str().expect("utf-8")]);
    let both_id = both["snapshot"].as_str().expect("id");

    let pack = &beta_files[0];
    let path = w.vault.join(pack);
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, bytes).expect("write");

    let target = w.path("restore-all");
    let out = w.run(&["restore", both_id, "--target", target.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(pack.as_str()), "the error names {pack}: {stderr}");
    let mut entries: Vec<String> = std::fs::read_dir(&target)
        .map(|d| d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    entries.sort();
    assert_eq!(entries, vec!["alpha.git"], "only the complete repository is in the target, no half-built one");
    let got = refs(&target.join("alpha.git"));
    assert_eq!(got.refs, refs(&a).refs);
    gitvault_git::Git::new().fsck(&target.join("alpha.git")).expect("alpha is complete");
    assert_restores_exactly(&w, both_id, Some("alpha"), &refs(&a), "alpha-alone");
}
