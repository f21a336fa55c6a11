//! One backup run into several vaults (`--vault` repeated): each destination is a complete,
//! independently restorable vault with its own ledger, and one failing does not stop the others.

use std::path::Path;
use std::process::Output;

use crate::common::{World, commit, new_repo, noise, refs};

fn init_at(w: &World, vault: &Path) {
    let out = w
        .cmd_without_vault(&["init", "--vault", vault.to_str().expect("utf-8")])
        .args(["--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn on(w: &World, vault: &Path, args: &[&str]) -> Output {
    w.cmd_without_vault(&[&["--vault", vault.to_str().expect("utf-8")][..], args].concat()).output().expect("run")
}

fn ok_on(w: &World, vault: &Path, args: &[&str]) -> String {
    let out = on(w, vault, args);
    assert!(out.status.success(), "{args:?} on {}: {}", vault.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `backup` into every vault of `vaults` at once.
fn backup_into(w: &World, vaults: &[&Path], extra: &[&str]) -> Output {
    let mut c = w.cmd_without_vault(&["backup"]);
    for v in vaults {
        c.arg("--vault").arg(v);
    }
    c.args(extra).output().expect("run")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn one_run_writes_a_complete_vault_into_each_destination() {
    let w = World::new();
    let (a, b) = (w.path("vault-a"), w.path("vault-b"));
    init_at(&w, &a);
    init_at(&w, &b);
    let r = new_repo(&w.path("src/app"));
    commit(&r, "a.bin", &noise(1, 100_000), "first");
    let src = r.to_str().expect("utf-8");

    let out = backup_into(&w, &[&a, &b], &["--json", src]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    let dests = v["destinations"].as_array().expect("destinations");
    assert_eq!(dests.len(), 2);
    for (d, path) in dests.iter().zip([&a, &b]) {
        assert_eq!(d["vault"], path.to_str().expect("utf-8"));
        assert_eq!(d["status"], "ok");
        assert!(d["error"].is_null());
        assert_eq!(d["backup"]["repositories"][0]["type"], "full");
        assert!(d["backup"]["snapshot"].is_string());
    }
    assert_ne!(dests[0]["backup"]["snapshot"], dests[1]["backup"]["snapshot"], "each vault names its own snapshot");

    // An incremental into both; then each vault alone restores each state exactly.
    let first = refs(&r);
    commit(&r, "b.bin", &noise(2, 50_000), "second");
    let out = backup_into(&w, &[&a, &b], &[src]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("destination {}", b.display())) && text.contains("all 2 destinations"), "{text}");
    let second = refs(&r);
    for (vault, label) in [(&a, "a"), (&b, "b")] {
        let snaps: serde_json::Value = serde_json::from_str(&ok_on(&w, vault, &["snapshots", "--json"])).expect("json");
        let ids: Vec<&str> = snaps.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id")).collect();
        assert_eq!(ids.len(), 2, "{label}");
        assert_eq!(snaps[1]["type"], "incr", "{label}: packs against its own chain");
        for (id, expected, n) in [(ids[0], &first, 0), (ids[1], &second, 1)] {
            let target = w.path(&format!("restore-{label}-{n}.git"));
            ok_on(&w, vault, &["restore", id, "--target", target.to_str().expect("utf-8")]);
            assert_eq!(refs(&target).refs, expected.refs, "{label} {n}");
            gitvault_git::Git::new().fsck(&target).expect("fsck");
        }
        let v: serde_json::Value =
            serde_json::from_str(&ok_on(&w, vault, &["verify", "--read-data", "--json"])).expect("json");
        assert_eq!(v["ok"], true, "{label}: {v}");
        // Its own ledger: init, two snapshots, two restores.
        assert_eq!(v["ledger_entries"], 5, "{label}: {v}");
    }
    // B needs nothing of A.
    std::fs::remove_dir_all(&a).expect("remove A");
    let target = w.path("restore-b-alone.git");
    ok_on(&w, &b, &["restore", "latest", "--target", target.to_str().expect("utf-8")]);
    assert_eq!(refs(&target).refs, second.refs);
}

#[test]
fn a_failing_destination_does_not_stop_the_others() {
    let w = World::new();
    let (good, broken, file) = (w.path("good"), w.path("broken"), w.path("a-file"));
    init_at(&w, &good);
    init_at(&w, &broken);
    // A vault that opens but cannot take data: its data directory is a file.
    std::fs::write(broken.join("data"), b"not a directory").expect("write");
    std::fs::write(&file, b"not a vault").expect("write");
    let r = new_repo(&w.path("src/app"));
    commit(&r, "a.bin", &noise(3, 50_000), "first");
    let src = r.to_str().expect("utf-8");

    let out = backup_into(&w, &[&good, &broken, &file], &[src]);
    assert_eq!(out.status.code(), Some(3), "partial: {}", String::from_utf8_lossy(&out.stderr));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("failed: {}, {}", broken.display(), file.display())),
        "the summary names the failed destinations: {stdout}"
    );
    assert!(stderr.contains(&format!("destination {} failed", file.display())), "{stderr}");
    assert!(stderr.contains(&format!("read config in local directory {}", file.display())), "{stderr}");
    assert!(stderr.contains("Not a directory"), "{stderr}");
    assert_eq!(stderr.matches("read config").count(), 1, "each cause printed once: {stderr}");
    let snaps: serde_json::Value = serde_json::from_str(&ok_on(&w, &good, &["snapshots", "--json"])).expect("json");
    assert_eq!(snaps.as_array().expect("array").len(), 1, "the good destination got its snapshot");

    let out = backup_into(&w, &[&good, &broken, &file], &["--json", src]);
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out);
    let status: Vec<&str> =
        v["destinations"].as_array().expect("array").iter().map(|d| d["status"].as_str().expect("status")).collect();
    assert_eq!(status, ["ok", "failed", "failed"]);
    assert!(v["destinations"][1]["error"].is_null(), "the broken vault opened; its sources failed");
    assert!(
        v["destinations"][1]["backup"]["failures"][0]["error"].as_str().expect("error").contains("Not a directory")
    );
    assert!(v["destinations"][2]["backup"].is_null());
    assert!(v["destinations"][2]["error"].as_str().expect("error").contains("Not a directory"));

    // Every destination failing is a failure, not a partial success.
    let out = backup_into(&w, &[&broken, &file], &[src]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn the_same_vault_twice_is_a_usage_error() {
    let w = World::new();
    w.init();
    let out = w.cmd(&["--vault", w.vault.to_str().expect("utf-8"), "backup", "."]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("given twice"));
}
