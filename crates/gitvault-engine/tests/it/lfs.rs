//! Git LFS objects through failures: a backup interrupted at any commit leaves the vault
//! intact, and the next run adopts the LFS objects already stored instead of sending them again.

use std::path::Path;

use gitvault_engine::ops::backup::{BackupOptions, backup};
use gitvault_engine::progress::NoProgress;
use gitvault_format::ids::paths;
use gitvault_storage::faulty::Faults;
use sha2::Digest;

use crate::{Setup, commit, git};

/// The SHA-256 of each `*.bin` of the work tree: the LFS objects its commits point to.
fn lfs_oids(repo: &Path) -> Vec<String> {
    let mut oids: Vec<String> = std::fs::read_dir(repo)
        .expect("read")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bin"))
        .map(|e| hex::encode(sha2::Sha256::digest(std::fs::read(e.path()).expect("read"))))
        .collect();
    oids.sort();
    oids
}

#[test]
fn a_failed_backup_at_any_commit_is_resumed_without_sending_lfs_objects_again() {
    let mut k = 1;
    let mut most_adopted = 0;
    loop {
        let s = Setup::new();
        git(&s.repo, &["lfs", "install", "--local"]);
        git(&s.repo, &["lfs", "track", "*.bin"]);
        std::fs::remove_file(s.repo.join("a.bin")).expect("rm");
        commit(&s.repo, "lfs-1.bin", 120_000, 31);
        commit(&s.repo, "lfs-2.bin", 80_000, 32);
        let oids = lfs_oids(&s.repo);
        assert_eq!(oids.len(), 2);
        let vault = s.plain();
        let keyed: Vec<String> = oids.iter().map(|o| paths::data(&vault.lfs_object_id(o))).collect();

        let failed = backup(&s.faulty(Faults::fail_commit(k)), &s.source(), &BackupOptions::default(), &NoProgress);
        if failed.as_ref().is_ok_and(|r| r.snapshot.is_some()) {
            // Past the last commit that matters (the pending record may fail harmlessly).
            if k > 12 {
                break;
            }
            k += 1;
            continue;
        }
        let stored_before = keyed.iter().filter(|p| s.root.join("vault").join(p).exists()).count();
        most_adopted = most_adopted.max(stored_before);
        let report = backup(&vault, &s.source(), &BackupOptions::default(), &NoProgress).expect("rerun");
        let repo = &report.repositories[0];
        assert_eq!(repo.lfs_objects, 2, "k={k}");
        assert_eq!(
            repo.lfs_added as usize,
            2 - stored_before,
            "k={k}: objects already stored are adopted, not sent again"
        );
        let snap = &vault.snapshots().expect("snapshots")[0];
        for l in snap.repositories[0].lfs_objects() {
            assert_eq!(l.data.id, vault.lfs_object_id(&l.oid), "k={k}: stored under its keyed name");
        }
        s.assert_intact(
            &[(
                report.snapshot.expect("snapshot").to_hex(),
                gitvault_git::Git::new().read_refs(&s.repo).expect("refs"),
            )],
            &format!("lfs-{k}"),
        );
        k += 1;
    }
    assert_eq!(most_adopted, 2, "some failure came after both LFS objects were stored (stopped at {k})");
}
