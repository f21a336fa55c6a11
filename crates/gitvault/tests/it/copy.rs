//! `gitvault copy`: snapshots replicated between vaults with different passphrases, only what
//! the destination lacks sent, the copy verifiable and restorable on its own.

use std::path::Path;
use std::process::Output;

use crate::common::{World, assert_restores_exactly, commit, files_under, new_repo, noise, refs};

const B_PASSWORD: &str = "the destination's own passphrase";

struct Two {
    w: World,
    b: String,
}

impl Two {
    /// Vault A (the world's, with its passphrase) and an empty vault B with another passphrase.
    fn new() -> Self {
        let w = World::new();
        w.init();
        let b = w.path("vault-b").display().to_string();
        let t = Self { w, b };
        t.on_b(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
        t
    }

    fn a(&self) -> String {
        self.w.vault.display().to_string()
    }

    fn run_on_b(&self, args: &[&str]) -> Output {
        let mut full = vec!["--vault", self.b.as_str()];
        full.extend_from_slice(args);
        self.w.cmd_without_vault(&full).env("GITVAULT_PASSWORD", B_PASSWORD).output().expect("run gitvault")
    }

    fn on_b(&self, args: &[&str]) -> String {
        let out = self.run_on_b(args);
        assert!(out.status.success(), "{args:?} on B: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `copy --json` from A to B with B's passphrase from GITVAULT_TO_PASSWORD.
    fn copy(&self, extra: &[&str]) -> serde_json::Value {
        let out = self.run_copy(extra, &[("GITVAULT_TO_PASSWORD", B_PASSWORD)]);
        assert!(out.status.success(), "copy {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("copy --json")
    }

    fn run_copy(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let a = self.a();
        let mut args = vec!["copy", "--json", "--from", a.as_str(), "--to", self.b.as_str()];
        args.extend_from_slice(extra);
        let mut c = self.w.cmd_without_vault(&args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run gitvault")
    }

    fn b_snapshot_ids(&self) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&self.on_b(&["snapshots", "--json"])).expect("json");
        v.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id").to_string()).collect()
    }

    fn restore_from_b(&self, snapshot: &str, label: &str) -> gitvault_git::RefState {
        let target = self.w.path(&format!("from-b-{label}.git"));
        self.on_b(&["restore", snapshot, "--target", target.to_str().expect("utf-8")]);
        gitvault_git::Git::new().fsck(&target).expect("fsck of the repository restored from B");
        refs(&target)
    }
}

fn counts(r: &serde_json::Value) -> (usize, usize, u64, u64) {
    (
        r["snapshots_copied"].as_array().expect("copied").len(),
        r["snapshots_skipped"].as_array().expect("skipped").len(),
        r["data_transferred"].as_u64().expect("transferred"),
        r["data_skipped"].as_u64().expect("skipped"),
    )
}

fn src(t: &Two) -> std::path::PathBuf {
    let r = new_repo(&t.w.path("src/app"));
    commit(&r, "a.bin", &noise(1, 200_000), "first");
    r
}

#[test]
fn copy_sends_only_new_data_and_the_copy_restores_like_the_original() {
    let t = Two::new();
    let r = src(&t);
    let s = r.to_str().expect("utf-8");
    t.w.backup(&[s]);
    let first = refs(&r);
    let c = t.copy(&[]);
    assert_eq!(counts(&c), (1, 0, 2, 0), "{c}");
    assert_eq!(c["same_keys"], false, "B has its own keys: every object sealed again: {c}");

    commit(&r, "b.bin", &noise(2, 150_000), "second");
    git_tag(&r);
    t.w.backup(&[s]);
    let second = refs(&r);
    let c = t.copy(&[]);
    assert_eq!(counts(&c), (1, 1, 1, 2), "only the new (thin) pack travels: {c}");
    let sent = c["bytes_transferred"].as_u64().expect("bytes");
    assert!(sent > 150_000 && sent < 200_000, "{c}");
    assert_eq!(counts(&t.copy(&[])), (0, 2, 0, 0), "a third copy has nothing to do");

    // Same snapshot ids; B verifies every byte under its own key; B restores what A restores.
    let ids = t.b_snapshot_ids();
    let ids_a: Vec<String> = t.w.snapshots().iter().map(|s| s["id"].as_str().expect("id").to_string()).collect();
    assert_eq!(ids, ids_a);
    assert!(t.on_b(&["verify", "--read-data"]).contains("no problems found"));
    for (id, expected, label) in [(&ids[0], &first, "first"), (&ids[1], &second, "second")] {
        let from_b = t.restore_from_b(id, label);
        assert_eq!(&from_b.refs, &expected.refs, "{label}");
        assert_eq!(&from_b.head, &expected.head, "{label}");
        assert_restores_exactly(&t.w, id, None, expected, &format!("a-{label}"));
    }
    // Each vault keeps its own ledger: B's records init, the two copied snapshots and the two
    // copies that wrote something (audit entries; the third copy had nothing to do).
    let v: serde_json::Value = serde_json::from_str(&t.on_b(&["verify", "--json"])).expect("json");
    assert_eq!(v["ledger_entries"], 8, "init, 2 copied snapshots, 2 copies, a verification, 2 restores: {v}");
}

fn git_tag(r: &Path) {
    crate::common::git(r, &["tag", "v2"]);
}

#[test]
fn the_destination_passphrase_comes_from_a_file_and_a_wrong_one_leaves_it_untouched() {
    let t = Two::new();
    let r = src(&t);
    t.w.backup(&[r.to_str().expect("utf-8")]);
    let before = files_under(Path::new(&t.b));

    // Without GITVAULT_TO_PASSWORD or a file, A's passphrase is tried on B, and fails.
    let out = t.run_copy(&[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong passphrase") && err.contains(&t.b) && err.contains("GITVAULT_TO_PASSWORD"), "{err}");
    assert!(!err.contains(B_PASSWORD) && !err.contains(crate::common::PASSWORD), "no secret in messages: {err}");
    let out = t.run_copy(&[], &[("GITVAULT_TO_PASSWORD", "not it")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(files_under(Path::new(&t.b)), before, "B is untouched");

    let file = t.w.path("b-pass");
    std::fs::write(&file, format!("{B_PASSWORD}\n")).expect("write");
    let out = t.run_copy(&["--to-password-file", file.to_str().expect("utf-8")], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(t.b_snapshot_ids().len(), 1);
}

#[test]
fn copy_selects_snapshots_by_prefix_and_latest() {
    let t = Two::new();
    let r = src(&t);
    let s = r.to_str().expect("utf-8");
    let mut ids = Vec::new();
    for i in 0..3u64 {
        commit(&r, &format!("f{i}.bin"), &noise(10 + i, 50_000), "more");
        ids.push(t.w.backup(&[s])["snapshot"].as_str().expect("id").to_string());
    }
    let c = t.copy(&[&ids[1][..10]]);
    assert_eq!(counts(&c).0, 1);
    assert_eq!(t.b_snapshot_ids(), vec![ids[1].clone()]);
    let c = t.copy(&["latest", &ids[1][..8]]);
    assert_eq!((counts(&c).0, counts(&c).1), (1, 1), "{c}");
    let mut got = t.b_snapshot_ids();
    got.sort();
    let mut want = vec![ids[1].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(got, want);
    let out = t.run_copy(&["ffffffffff"], &[("GITVAULT_TO_PASSWORD", B_PASSWORD)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot matches"));
}

#[test]
fn copy_refuses_what_it_cannot_do_and_says_why() {
    let t = Two::new();
    let a = t.a();
    let missing = t.w.path("not-a-vault").display().to_string();
    let out = t.w.cmd_without_vault(&["copy", "--from", &a, "--to", &missing]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("destination") && err.contains("not a gitvault vault") && err.contains("gitvault init"),
        "{err}"
    );
    assert!(!Path::new(&missing).exists(), "copy never creates a vault");

    let out = t.w.cmd(&["copy", "--from", &a, "--to", &t.b]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "--vault has no meaning for copy");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from and --to"));
    let out = t.w.cmd_without_vault(&["copy", "--from", &a, "--to", &a]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    // Every other command takes one vault.
    let out = t.w.cmd(&["--vault", &t.b, "snapshots"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only `backup` writes to several vaults"));
}

#[test]
fn a_vault_made_with_the_sources_keys_takes_its_objects_as_they_are_and_never_a_damaged_one() {
    let w = World::new();
    w.init();
    let r = new_repo(&w.path("src/app"));
    commit(&r, "a.bin", &noise(1, 300_000), "first");
    let s = r.to_str().expect("utf-8");
    w.backup(&[s]);
    let a = w.vault.display().to_string();
    let b = w.path("replica").display().to_string();

    // Itself, or a source that is not a vault: refused, nothing created.
    let out = w.cmd_without_vault(&["init", "--vault", &b, "--keys-from", &b]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let nowhere = w.path("not-a-vault").display().to_string();
    let out = w.cmd_without_vault(&["init", "--vault", &b, "--keys-from", &nowhere]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!Path::new(&b).exists(), "nothing created");
    // A wrong passphrase for the source creates nothing.
    let out = w
        .cmd_without_vault(&["init", "--vault", &b, "--keys-from", &a])
        .env("GITVAULT_PASSWORD", "wrong")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("to take its keys"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!Path::new(&b).exists(), "nothing created");

    let on_b = |args: &[&str]| {
        let mut full = vec!["--vault", b.as_str()];
        full.extend_from_slice(args);
        let out = w.cmd_without_vault(&full).output().expect("run");
        assert!(out.status.success(), "{args:?} on B: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    on_b(&["init", "--keys-from", &a, "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    // Its ledger records whose keys it holds: init, then that audit entry (a plain init: one).
    let v: serde_json::Value = serde_json::from_str(&on_b(&["verify", "--json"])).expect("json");
    assert_eq!(v["ledger_entries"], 2, "{v}");
    let copy = |extra: &[&str]| {
        let mut args = vec!["copy", "--json", "--from", a.as_str(), "--to", b.as_str()];
        args.extend_from_slice(extra);
        w.cmd_without_vault(&args).output().expect("run")
    };
    let out = copy(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(counts(&c), (1, 0, 2, 0), "{c}");
    assert_eq!(c["same_keys"], true, "{c}");
    // The data objects are the same bytes in both vaults.
    let data = files_under(&w.vault.join("data"));
    assert_eq!(data.len(), 2);
    for f in &data {
        let (x, y) = (std::fs::read(w.vault.join("data").join(f)), std::fs::read(Path::new(&b).join("data").join(f)));
        assert_eq!(x.expect("in A"), y.expect("in B"), "{f}");
    }
    let target = w.path("from-replica.git");
    on_b(&["restore", "latest", "--target", target.to_str().expect("utf-8")]);
    assert_eq!(refs(&target).refs, refs(&r).refs);
    let verified = on_b(&["verify", "--read-data"]);
    assert!(verified.contains("no problems found"), "{verified}");

    // B is opened with the key A was unlocked with (B's first ledger entry opens under it): no
    // second key derivation, and B's passphrase is not needed.
    commit(&r, "c.txt", b"c\n", "small");
    w.backup(&[s]);
    let out = w
        .cmd_without_vault(&["copy", "--json", "--from", a.as_str(), "--to", b.as_str()])
        .env("GITVAULT_TO_PASSWORD", "not the passphrase of B")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((c["snapshots_copied"].as_array().map(Vec::len), &c["same_keys"]), (Some(1), &true.into()), "{c}");

    // A bit flipped in a new pack of the source: its chunk's tag fails on the way, refused, nothing kept.
    commit(&r, "b.bin", &noise(2, 300_000), "second");
    w.backup(&[s]);
    let new: Vec<String> = files_under(&w.vault.join("data")).difference(&data).cloned().collect();
    let pack = new
        .iter()
        .map(|f| w.vault.join("data").join(f))
        .max_by_key(|p| std::fs::metadata(p).expect("meta").len())
        .expect("a new data file");
    let mut bytes = std::fs::read(&pack).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&pack, &bytes).expect("damage");
    let before = files_under(&Path::new(&b).join("data"));
    let out = copy(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("damaged") || stderr.contains("authentic"), "{stderr}");
    assert_eq!(files_under(&Path::new(&b).join("data")), before, "the damaged object was not kept");
}
