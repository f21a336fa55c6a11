//! Golden vaults: vaults written by earlier versions, checked in, never regenerated. Every
//! later gitvault must open, verify and restore them exactly.

use std::path::{Path, PathBuf};

use gitvault_git::Git;

use crate::common::World;

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

pub fn golden(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(version)
}

/// Verify a copy of the golden vault of `version` (verify appends to the ledger, and the
/// checked-in vault must never change) and restore each snapshot that has a refs file.
fn golden_vault_verifies_and_restores_exactly(version: &str, passphrase: &str, snapshots: usize) -> serde_json::Value {
    let w = World::new();
    copy_dir(&golden(version).join("vault"), &w.vault);
    let with_pass = |args: &[&str]| {
        let out = w.cmd(args).env("GITVAULT_PASSWORD", passphrase).output().expect("run");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let report: serde_json::Value =
        serde_json::from_str(&with_pass(&["verify", "--read-data", "--json"])).expect("json");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["snapshots"], snapshots);

    let mut checked = 0;
    for entry in std::fs::read_dir(golden(version)).expect("read") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("refs-").and_then(|n| n.strip_suffix(".txt")) else { continue };
        let expected = std::fs::read_to_string(golden(version).join(&name)).expect("read refs");
        let target = w.path(&format!("restored-{id}.git"));
        with_pass(&["restore", id, "--target", target.to_str().expect("utf-8")]);
        let got = Git::new().read_refs(&target).expect("refs");
        let got: String = got.refs.iter().map(|r| format!("{} {}\n", r.oid, r.name)).collect();
        assert_eq!(got, expected, "snapshot {id}");
        Git::new().fsck(&target).expect("fsck");
        checked += 1;
    }
    assert_eq!(checked, snapshots);
    report
}

#[test]
fn format_v1_golden_vault_verifies_and_restores_exactly() {
    golden_vault_verifies_and_restores_exactly("v1", "golden vault v1", 2);
}

#[test]
fn format_v2_golden_vault_with_forget_prune_and_a_pending_mark_verifies_and_restores_exactly() {
    let report = golden_vault_verifies_and_restores_exactly("v2", "golden vault v2", 2);
    // The forgotten snapshots are not missing, and the pending mark's data is known to be marked.
    let warnings = report["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{report}");
    assert!(warnings[0].as_str().expect("text").contains("6 of them already marked"), "{report}");
}

#[test]
fn format_v3_golden_vault_with_lfs_objects_verifies_and_restores_them_exactly() {
    golden_vault_verifies_and_restores_exactly("v3", "golden vault v3", 2);
    let w = World::new();
    copy_dir(&golden("v3").join("vault"), &w.vault);
    for entry in std::fs::read_dir(golden("v3")).expect("read") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("lfs-").and_then(|n| n.strip_suffix(".txt")) else { continue };
        let expected: Vec<String> =
            std::fs::read_to_string(golden("v3").join(&name)).expect("read").lines().map(str::to_string).collect();
        let target = w.path(&format!("lfs-{id}.git"));
        let out = w
            .cmd(&["restore", id, "--target", target.to_str().expect("utf-8")])
            .env("GITVAULT_PASSWORD", "golden vault v3")
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut found = Vec::new();
        for oid in &expected {
            let file = target.join("lfs/objects").join(&oid[..2]).join(&oid[2..4]).join(oid);
            let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            use sha2::Digest;
            assert_eq!(&hex::encode(sha2::Sha256::digest(&bytes)), oid, "{}", file.display());
            found.push(oid.clone());
        }
        let all = crate::common::files_under(&target.join("lfs/objects"));
        assert_eq!(all.len(), expected.len(), "exactly the snapshot's objects: {all:?}");
        assert_eq!(found, expected);
    }
}

#[test]
fn format_v4_golden_vault_with_self_contained_incrementals_verifies_and_restores_exactly() {
    golden_vault_verifies_and_restores_exactly("v4", "golden vault v4", 2);
    let data = crate::common::files_under(&golden("v4").join("vault/data"));
    assert_eq!(data.len(), 4, "two packs, each with its index: {data:?}");
}

#[test]
fn format_v5_golden_vault_with_a_thin_pack_verifies_and_restores_exactly() {
    golden_vault_verifies_and_restores_exactly("v5", "golden vault v5", 2);
    let data = crate::common::files_under(&golden("v5").join("vault/data"));
    assert_eq!(data.len(), 3, "the full pack and its index, and the incremental's thin pack: {data:?}");
}
