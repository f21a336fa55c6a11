//! Exact restore at every snapshot of a full → diff → incr → incr chain, across the history
//! events that matter: merges, tags of every kind, notes, custom refs, binary files,
//! force-pushes, deleted branches and tags, unrelated histories, empty repositories.

use std::collections::BTreeSet;

use crate::common::{PASSWORD, World, assert_restores_exactly, commit, git, new_repo, noise, refs};

/// A repository with the shapes a backup must carry: merges, annotated and lightweight tags,
/// a tag of a tree, notes, a custom ref, a binary file, an unrelated history.
fn rich_repo(w: &World) -> std::path::PathBuf {
    let r = new_repo(&w.path("src/app"));
    commit(&r, "README", b"hello\n", "initial");
    commit(&r, "bin/blob.dat", &noise(1, 200_000), "binary");
    git(&r, &["checkout", "-q", "-b", "feature"]);
    commit(&r, "src/lib.rs", b"fn a() {}\n", "feature work");
    git(&r, &["checkout", "-q", "main"]);
    commit(&r, "README", b"hello world\n", "main work");
    git(&r, &["merge", "-q", "--no-edit", "feature"]);
    git(&r, &["tag", "-a", "v1.0", "-m", "release 1.0"]);
    git(&r, &["tag", "light"]);
    let tree = git(&r, &["rev-parse", "HEAD^{tree}"]);
    git(&r, &["tag", "tree-tag", &tree]);
    git(&r, &["notes", "add", "-m", "reviewed", "HEAD"]);
    git(&r, &["update-ref", "refs/custom/pointer", "HEAD~1"]);
    // An unrelated history on its own branch.
    git(&r, &["checkout", "-q", "--orphan", "pages"]);
    git(&r, &["rm", "-rq", "--cached", "."]);
    commit(&r, "index.html", b"<html></html>\n", "pages root");
    git(&r, &["checkout", "-q", "-f", "main"]);
    r
}

#[test]
fn every_snapshot_of_a_full_diff_incr_incr_chain_restores_exactly() {
    let w = World::new();
    w.init();
    let r = rich_repo(&w);
    let src = r.to_str().expect("utf-8");
    let mut states = Vec::new();

    let full = w.backup(&["--type", "full", src]);
    assert_eq!(full["repositories"][0]["type"], "full");
    states.push((full["snapshot"].as_str().expect("id").to_string(), refs(&r)));

    // Diff: new work, a deleted branch, a force-push, a moved tag.
    commit(&r, "src/main.rs", b"fn main() {}\n", "more");
    git(&r, &["branch", "-D", "feature"]);
    git(&r, &["checkout", "-q", "pages"]);
    std::fs::write(r.join("index.html"), b"<html>rewritten</html>\n").expect("write");
    git(&r, &["commit", "-q", "-a", "--amend", "-m", "rewritten pages root"]);
    git(&r, &["checkout", "-q", "main"]);
    git(&r, &["tag", "-f", "light", "HEAD"]);
    let diff = w.backup(&["--type", "diff", src]);
    assert_eq!(diff["repositories"][0]["type"], "diff");
    assert_eq!(diff["repositories"][0]["base"], full["snapshot"]);
    states.push((diff["snapshot"].as_str().expect("id").to_string(), refs(&r)));

    // Incremental: a real force-push of main (history rewritten) and a new binary version.
    git(&r, &["reset", "-q", "--hard", "HEAD~2"]);
    commit(&r, "bin/blob.dat", &noise(2, 150_000), "new binary");
    git(&r, &["tag", "-d", "tree-tag"]);
    let incr1 = w.backup(&[src]);
    assert_eq!(incr1["repositories"][0]["type"], "incr", "default after a backup is incremental");
    let changes = &incr1["repositories"][0]["changes"];
    let force_pushed = changes
        .as_array()
        .expect("changes")
        .iter()
        .any(|c| c["name"] == "refs/heads/main" && c["change"] == "force_push");
    assert!(force_pushed, "backup must flag the force-push of main: {changes}");
    states.push((incr1["snapshot"].as_str().expect("id").to_string(), refs(&r)));

    // Incremental with no new objects but a new ref and a detached HEAD.
    git(&r, &["branch", "again", "HEAD"]);
    git(&r, &["checkout", "-q", "--detach", "HEAD~1"]);
    let incr2 = w.backup(&[src]);
    assert_eq!(incr2["repositories"][0]["objects_added"], 0, "nothing new to store");
    states.push((incr2["snapshot"].as_str().expect("id").to_string(), refs(&r)));

    for (i, (id, state)) in states.iter().enumerate() {
        // Restore by a unique prefix, as users do.
        assert_restores_exactly(&w, &id[..12], None, state, &format!("snap{i}"));
    }
    assert_restores_exactly(&w, "latest", Some("app"), &states[3].1, "latest");

    // The text output of backup and diff both call the rewrite a force-push.
    let text = String::from_utf8(w.run(&["diff", &states[1].0, &states[2].0]).stdout).expect("utf-8");
    assert!(text.contains("refs/heads/main") && text.contains("force-push"), "{text}");
    let d: serde_json::Value =
        serde_json::from_str(&w.ok(&["diff", "--json", &states[0].0, &states[1].0])).expect("json");
    let kinds: BTreeSet<(String, String)> = d["repositories"][0]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| (c["name"].as_str().expect("name").to_string(), c["change"].as_str().expect("kind").to_string()))
        .collect();
    for expected in [
        ("refs/heads/feature", "deleted"),
        ("refs/heads/pages", "force_push"),
        ("refs/heads/main", "fast_forward"),
        ("refs/tags/light", "tag_moved"),
    ] {
        assert!(kinds.contains(&(expected.0.to_string(), expected.1.to_string())), "missing {expected:?} in {kinds:?}");
    }
    assert!(d["repositories"][0]["objects_added"].as_u64().expect("count") > 0);

    w.ok(&["verify", "--read-data"]);
}

#[test]
fn snapshots_json_has_the_documented_shape() {
    let w = World::new();
    w.init();
    let r = new_repo(&w.path("acme/api.git-src"));
    commit(&r, "a", b"a", "a");
    w.ok(&["backup", "--name", "acme/api", r.to_str().expect("utf-8")]);
    let out = w.run(&["snapshots", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is only JSON");
    let s = &v.as_array().expect("array")[0];
    assert_eq!(s["id"].as_str().expect("id").len(), 64);
    let time = s["time"].as_str().expect("time");
    assert!(time.ends_with('Z') && time.contains('T'), "RFC 3339 UTC: {time}");
    assert_eq!(s["names"][0], "acme/api");
    assert_eq!(s["repositories"][0]["name"], "acme/api");
    assert_eq!(s["repositories"][0]["type"], "full");
}

#[test]
fn empty_repositories_and_several_sources_restore_side_by_side() {
    let w = World::new();
    w.init();
    let empty = new_repo(&w.path("src/empty"));
    let bare = w.path("src/tools.git");
    git(w.dir.path(), &["init", "-q", "--bare", bare.to_str().expect("utf-8")]);
    let work = new_repo(&w.path("work"));
    commit(&work, "x", b"x", "x");
    git(&work, &["push", "-q", bare.to_str().expect("utf-8"), "main"]);
    let b = w.backup(&[empty.to_str().expect("utf-8"), bare.to_str().expect("utf-8")]);
    let names: Vec<&str> =
        b["repositories"].as_array().expect("repos").iter().map(|r| r["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["empty", "tools"], "names: directory name without .git");

    let target = w.path("all");
    w.ok(&["restore", "latest", "--target", target.to_str().expect("utf-8")]);
    assert_eq!(refs(&target.join("empty.git")), refs(&empty));
    assert_eq!(refs(&target.join("tools.git")), refs(&bare));
    // A second, unchanged backup of an empty repository still yields a snapshot.
    let again = w.backup(&[empty.to_str().expect("utf-8")]);
    assert!(again["snapshot"].is_string());
}

/// A remote source over the git protocol (`git daemon` on 127.0.0.1): fetched into a mirror
/// in the cache, and a second backup with no change fetches nothing.
#[test]
fn remote_source_is_mirrored_and_restored_exactly() {
    let w = World::new();
    w.init();
    let root = w.path("served");
    let bare = root.join("team/remote.git");
    std::fs::create_dir_all(&bare).expect("mkdir");
    git(&bare, &["init", "-q", "--bare"]);
    let work = new_repo(&w.path("work"));
    commit(&work, "f", b"one", "one");
    git(&work, &["tag", "-a", "v1", "-m", "v1"]);
    git(&work, &["push", "-q", "--tags", bare.to_str().expect("utf-8"), "main"]);

    let port = free_port();
    let _daemon = Daemon(
        std::process::Command::new("git")
            .args(["daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1", &format!("--port={port}")])
            .arg(format!("--base-path={}", root.display()))
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start git daemon"),
    );
    let url = format!("git://127.0.0.1:{port}/team/remote.git");
    wait_for_port(port);
    let first = w.backup(&[&url]);
    assert_eq!(first["repositories"][0]["name"], "team/remote");
    commit(&work, "f", b"two", "two");
    git(&work, &["push", "-q", bare.to_str().expect("utf-8"), "main"]);
    let second = w.backup(&[&url]);
    assert!(second["repositories"][0]["objects_added"].as_u64().expect("n") >= 3);
    let third = w.backup(&[&url]);
    assert_eq!(third["repositories"][0]["objects_added"], 0);
    assert_restores_exactly(&w, "latest", None, &refs(&bare), "remote");
}

/// Stops the server however the test ends.
struct Daemon(std::process::Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("git daemon did not start on port {port}");
}

#[test]
fn key_slots_can_be_added_used_and_removed_but_not_the_last() {
    let w = World::new();
    w.init();
    let r = new_repo(&w.path("repo"));
    commit(&r, "a", b"a", "a");
    w.ok(&["backup", r.to_str().expect("utf-8")]);
    let added = w
        .cmd(&["key", "add", "--kdf-memory-kib", "1024", "--kdf-iterations", "1", "--json"])
        .env("GITVAULT_NEW_PASSWORD", "second passphrase")
        .output()
        .expect("run");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let new_id = serde_json::from_slice::<serde_json::Value>(&added.stdout).expect("json")["added"]
        .as_str()
        .expect("id")
        .to_string();
    // The new passphrase opens the vault and can remove the original slot.
    let list: serde_json::Value = serde_json::from_str(&w.ok(&["key", "list", "--json"])).expect("json");
    assert_eq!(list.as_array().expect("slots").len(), 2);
    let original = list.as_array().expect("slots").iter().find(|k| k["current"] == true).expect("current")["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The removal happens on another machine (its own cache): this machine's cache still holds
    // the original slot it last unlocked with, which must not keep the old passphrase working.
    let other_cache = w.path("other-machine-cache");
    let with_new = |args: &[&str]| w.cmd(args).env("GITVAULT_PASSWORD", "second passphrase").output().expect("run");
    let removed = w
        .cmd(&["key", "remove", &original[..8]])
        .env("GITVAULT_PASSWORD", "second passphrase")
        .env("GITVAULT_CACHE_DIR", &other_cache)
        .output()
        .expect("run");
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    assert!(!crate::common::files_under(&w.cache.join("destinations")).is_empty(), "this machine cached its slot");
    // The old passphrase no longer works; the data is still there.
    let old = w.run(&["snapshots"]);
    assert_eq!(old.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&old.stderr).contains("wrong passphrase"));
    assert!(with_new(&["snapshots"]).status.success());
    // The last slot cannot go.
    let last = with_new(&["key", "remove", &new_id]);
    assert_eq!(last.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&last.stderr).contains("last key slot"));
    assert!(with_new(&["verify"]).status.success(), "key changes are in the ledger");
    let _ = PASSWORD;
}

/// A backup user reads repositories it does not own (a git server's): git's "dubious
/// ownership" refusal must not stop the backup. Needs root to give the repository away.
#[test]
fn repository_owned_by_another_user_is_backed_up() {
    let w = World::new();
    w.init();
    let r = new_repo(&w.path("src/theirs"));
    commit(&r, "f", b"data", "theirs");
    let expected = refs(&r);
    let chown = std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(&r).status().expect("run chown");
    assert!(chown.success(), "this test gives the repository to another user and needs root (as CI has)");
    w.backup(&[r.to_str().expect("utf-8")]);
    assert_restores_exactly(&w, "latest", None, &expected, "theirs");
}

/// A linked worktree (`git worktree add`) keeps its objects in the main repository: backing the
/// worktree up records the shared refs and the worktree's own HEAD.
#[test]
fn a_linked_worktree_is_backed_up_with_its_own_head() {
    let w = World::new();
    w.init();
    let main = new_repo(&w.path("src/app"));
    commit(&main, "a.txt", b"a", "first");
    let wt = w.path("src/app-feature");
    git(&main, &["worktree", "add", "-q", "-b", "feature", wt.to_str().expect("utf-8")]);
    commit(&wt, "b.txt", &noise(7, 5000), "on the feature branch");
    let report = w.backup(&[wt.to_str().expect("utf-8")]);
    let id = report["snapshot"].as_str().expect("snapshot").to_string();
    let target = w.path("restored.git");
    w.ok(&["restore", &id, "--target", target.to_str().expect("utf-8")]);
    assert_eq!(refs(&target).refs, refs(&main).refs, "the refs a worktree shares with its repository");
    let head = std::fs::read_to_string(target.join("HEAD")).expect("HEAD");
    assert_eq!(head.trim(), "ref: refs/heads/feature", "the worktree's own HEAD");
    gitvault_git::Git::new().fsck(&target).expect("fsck");
}

/// The `.pack` files in a repository's `objects/pack/`, by name.
fn pack_files(objects: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut packs: Vec<_> = std::fs::read_dir(objects.join("pack"))
        .expect("pack dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    packs.sort();
    packs
}

#[test]
fn a_gc_ed_repository_is_stored_with_its_own_pack_and_a_damaged_pack_is_never_stored() {
    let w = World::new();
    w.init();
    let r = rich_repo(&w);
    git(&r, &["repack", "-adq"]);
    let src = r.to_str().expect("utf-8");
    let [source_pack] = pack_files(&r.join(".git/objects")).try_into().expect("one pack");

    // Its only pack holds exactly what the refs reach: stored as it is, restored as it was.
    let full = w.backup(&["--type", "full", src]);
    let id = full["snapshot"].as_str().expect("id").to_string();
    assert_restores_exactly(&w, &id, None, &refs(&r), "sole-pack");
    let restored = pack_files(&w.path("restore-sole-pack.git/objects"));
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].file_name(), source_pack.file_name(), "the source's pack, under its own name");
    assert_eq!(std::fs::read(&restored[0]).expect("restored"), std::fs::read(&source_pack).expect("source"));

    // An only pack holding more than the refs reach (a deleted branch's commit, kept for the
    // reflog): the count refutes it while it is being stored, what was stored of it is
    // dropped, and git writes the pack.
    git(&r, &["checkout", "-q", "-b", "gone"]);
    commit(&r, "gone.txt", b"soon unreachable\n", "on a branch about to go");
    git(&r, &["checkout", "-q", "-"]);
    git(&r, &["branch", "-q", "-D", "gone"]);
    git(&r, &["repack", "-adq"]);
    let [with_extra] = pack_files(&r.join(".git/objects")).try_into().expect("one pack");
    let data_before = crate::common::files_under(&w.vault.join("data"));
    let packed = w.backup(&["--type", "full", src]);
    let id = packed["snapshot"].as_str().expect("id").to_string();
    assert_restores_exactly(&w, &id, None, &refs(&r), "packed-by-git");
    let restored = pack_files(&w.path("restore-packed-by-git.git/objects"));
    assert_eq!(restored.len(), 1);
    assert_ne!(restored[0].file_name(), with_extra.file_name(), "git wrote a pack of what the refs reach");
    assert_eq!(
        crate::common::files_under(&w.vault.join("data")).len(),
        data_before.len() + 2,
        "one pack and its index"
    );
    assert!(crate::common::files_under(&w.vault.join("tmp")).is_empty(), "nothing of the refuted pack is left");
    git(&r, &["reflog", "expire", "--expire=now", "--all"]);

    // A bit flipped inside a blob of the (new) only pack: git's own checks would not notice
    // it while counting, the pack's checksum does, and git then refuses to copy the object.
    commit(&r, "bin/other.dat", &noise(7, 300_000), "another binary");
    git(&r, &["repack", "-adq"]);
    let blob = git(&r, &["rev-parse", "HEAD:bin/other.dat"]);
    let [pack] = pack_files(&r.join(".git/objects")).try_into().expect("one pack");
    let listing = git(&r, &["verify-pack", "-v", pack.with_extension("idx").to_str().expect("utf-8")]);
    let fields: Vec<&str> =
        listing.lines().find(|l| l.starts_with(&blob)).expect("blob listed").split_whitespace().collect();
    let (in_pack, offset): (usize, usize) = (fields[3].parse().expect("size"), fields[4].parse().expect("offset"));
    let mut bytes = std::fs::read(&pack).expect("pack");
    bytes[offset + in_pack / 2] ^= 0x10;
    let mut perms = std::fs::metadata(&pack).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&pack, perms).expect("writable");
    std::fs::write(&pack, &bytes).expect("damage");

    let data_before = crate::common::files_under(&w.vault.join("data"));
    let out = w.run(&["backup", "--type", "full", src]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match its index"), "{stderr}");
    assert!(
        stderr.contains("CRC") || stderr.contains("corrupt") || stderr.contains("bad"),
        "git names the damage: {stderr}"
    );
    assert_eq!(crate::common::files_under(&w.vault.join("data")), data_before, "nothing of the damaged pack was kept");
    assert_eq!(w.snapshots().len(), 2, "the two before, none from the damaged pack");
}

/// Data files under the vault's `data/`.
fn data_files(w: &World) -> BTreeSet<String> {
    crate::common::files_under(&w.vault.join("data"))
}

#[test]
fn an_edit_to_a_large_file_is_stored_as_a_delta_and_a_damaged_thin_pack_is_named() {
    let w = World::new();
    w.init();
    let r = new_repo(&w.path("src"));
    let src = r.to_str().expect("utf-8");
    let mut big = noise(11, 400_000);
    commit(&r, "big.bin", &big, "a large binary");
    let full = w.backup(&["--type", "full", src]);
    let mut expected = vec![(full["snapshot"].as_str().expect("id").to_string(), refs(&r))];
    let mut thin_packs = Vec::new();

    // A few bytes of the large file change, twice: each backup stores the change as a delta
    // against the version the vault already holds, in one data file (a thin pack, no index).
    for (round, backup_type) in [(1u8, "incr"), (2, "diff")] {
        big[100_000 * usize::from(round)] ^= 0xff;
        commit(&r, "big.bin", &big, &format!("edit {round}"));
        let before = data_files(&w);
        let report = w.backup(&["--type", backup_type, src]);
        let added: Vec<_> = data_files(&w).difference(&before).cloned().collect();
        assert_eq!(added.len(), 1, "{backup_type}: one thin pack, no index: {added:?}");
        thin_packs.push(added[0].clone());
        let bytes = report["repositories"][0]["bytes_added"].as_u64().expect("bytes_added");
        assert!(bytes < 20_000, "{backup_type}: {bytes} bytes stored for a 400 kB file edited: {report}");
        expected.push((report["snapshot"].as_str().expect("id").to_string(), refs(&r)));
    }
    for (i, (id, state)) in expected.iter().enumerate() {
        assert_restores_exactly(&w, id, None, state, &format!("thin-{i}"));
    }
    let verified: serde_json::Value =
        serde_json::from_str(&w.ok(&["verify", "--read-data", "--json"])).expect("verify --json");
    assert_eq!(verified["ok"], true, "{verified}");

    // Damage inside the incremental's thin pack: its restore fails, names the vault file, and
    // leaves no repository behind; the differential (on the full backup) still restores.
    let thin = &thin_packs[0];
    let path = w.vault.join("data").join(thin);
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let mut perms = std::fs::metadata(&path).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).expect("writable");
    std::fs::write(&path, &bytes).expect("damage");
    let target = w.path("damaged.git");
    let out = w.run(&["restore", &expected[1].0, "--target", target.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "a damaged thin pack cannot restore");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = thin.rsplit('/').next().expect("file name");
    assert!(stderr.contains(name), "the error names the damaged file {name}: {stderr}");
    assert!(!stderr.contains("index-pack"), "the vault's damage, not git's complaint: {stderr}");
    assert!(!target.exists(), "no half-restored repository is left at {}", target.display());
    assert_restores_exactly(&w, &expected[2].0, None, &expected[2].1, "diff-after-damage");
}

#[test]
fn a_vault_of_an_older_version_gets_self_contained_packs_and_no_thin_ones_by_copy() {
    let w = World::new();
    w.init();
    let old = w.path("old-vault");
    crate::golden::copy_dir(&crate::golden::golden("v3").join("vault"), &old);
    let old_str = old.to_str().expect("utf-8");
    let r = new_repo(&w.path("src"));
    let src = r.to_str().expect("utf-8");
    let mut big = noise(12, 200_000);
    commit(&r, "big.bin", &big, "first");
    let in_old = |args: &[&str]| {
        let mut all = vec!["--vault", old_str];
        all.extend_from_slice(args);
        let out = w.cmd_without_vault(&all).env("GITVAULT_PASSWORD", "golden vault v3").output().expect("run");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let old_data = || crate::common::files_under(&old.join("data"));
    in_old(&["backup", src]);
    w.backup(&[src]);
    big[1000] ^= 1;
    commit(&r, "big.bin", &big, "second");

    // Version 3: the incremental's pack is self-contained, with its index.
    let before = old_data();
    in_old(&["backup", src]);
    assert_eq!(old_data().difference(&before).count(), 2, "a pack and its index in a version 3 vault");

    // A key slot added to it has one Argon2 lane, as version 3 writes them; a new vault's have two.
    let slot_lanes = |vault: &std::path::Path| -> Vec<u64> {
        std::fs::read_dir(vault.join("keys"))
            .expect("keys")
            .map(|e| {
                let slot: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(e.expect("entry").path()).expect("slot")).expect("json");
                slot["kdf"]["parallelism"].as_u64().expect("lanes")
            })
            .collect()
    };
    let added = w
        .cmd_without_vault(&["--vault", old_str, "key", "add", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
        .env("GITVAULT_PASSWORD", "golden vault v3")
        .env("GITVAULT_NEW_PASSWORD", "another passphrase")
        .output()
        .expect("run");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert_eq!(slot_lanes(&old), vec![1, 1]);
    assert_eq!(slot_lanes(&w.vault), vec![2]);

    // A snapshot with a thin pack cannot go into it, and the message says what to do.
    w.backup(&[src]);
    let out = w
        .cmd_without_vault(&["copy", "--from", w.vault.to_str().expect("utf-8"), "--to", old_str])
        .env("GITVAULT_TO_PASSWORD", "golden vault v3")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("thin packs") && stderr.contains("gitvault upgrade"), "{stderr}");

    // Upgraded, it takes thin packs: from backups and from copies.
    in_old(&["upgrade"]);
    big[2000] ^= 1;
    commit(&r, "big.bin", &big, "third");
    let before = old_data();
    in_old(&["backup", src]);
    assert_eq!(old_data().difference(&before).count(), 1, "a thin pack once upgraded");
    let out = w
        .cmd_without_vault(&["copy", "--from", w.vault.to_str().expect("utf-8"), "--to", old_str])
        .env("GITVAULT_TO_PASSWORD", "golden vault v3")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = w
        .cmd_without_vault(&["--vault", old_str, "verify", "--read-data"])
        .env("GITVAULT_PASSWORD", "golden vault v3")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_sha256_repository_keeps_its_thin_incrementals_restorable() {
    let w = World::new();
    w.init();
    let r = w.path("sha256");
    std::fs::create_dir_all(&r).expect("mkdir");
    git(&r, &["init", "-q", "--object-format=sha256"]);
    let src = r.to_str().expect("utf-8");
    let mut big = noise(21, 200_000);
    commit(&r, "big.bin", &big, "first");
    let first = w.backup(&[src]);
    let mut expected = vec![(first["snapshot"].as_str().expect("id").to_string(), refs(&r))];
    for round in 1..=2u8 {
        big[50_000 * usize::from(round)] ^= 0x5a;
        commit(&r, "big.bin", &big, &format!("edit {round}"));
        git(&r, &["tag", &format!("t{round}")]);
        let report = w.backup(&[src]);
        let bytes = report["repositories"][0]["bytes_added"].as_u64().expect("bytes_added");
        assert!(bytes < 20_000, "a delta against the earlier version, not the file again: {report}");
        expected.push((report["snapshot"].as_str().expect("id").to_string(), refs(&r)));
    }
    for (i, (id, state)) in expected.iter().enumerate() {
        assert_restores_exactly(&w, id, None, state, &format!("sha256-{i}"));
    }
}
