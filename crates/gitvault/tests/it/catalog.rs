//! The catalog: every command records its run and its audit entry; `status`, `logs` and `audit`
//! read them back; `catalog rebuild` recovers the history from the vault; API tokens are shown
//! once and stored hashed; a catalog that cannot be written never stops a backup.

use std::path::PathBuf;

use crate::common::{World, commit, git, new_repo, noise};

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("json: {e}: {}", String::from_utf8_lossy(out)))
}

fn catalog_path(w: &World) -> PathBuf {
    w.path(".local/state/gitvault/catalog.db")
}

#[test]
fn status_logs_and_audit_tell_what_each_run_did() {
    let w = World::new();
    w.init();
    let repo = new_repo(&w.path("src/app"));
    commit(&repo, "a", &noise(1, 1000), "a");
    git(&repo, &["tag", "v1"]);
    w.backup(&[repo.to_str().expect("utf-8")]);
    commit(&repo, "b", &noise(2, 1000), "b");
    git(&repo, &["tag", "-d", "v1"]);
    w.backup(&[repo.to_str().expect("utf-8")]);
    assert!(catalog_path(&w).exists(), "the default catalog is under ~/.local/state/gitvault");

    let status = w.run(&["status", "--json", "--rpo", "26h"]);
    assert_eq!(status.status.code(), Some(0), "{}", String::from_utf8_lossy(&status.stderr));
    let status = json(&status.stdout);
    let rows = status["repositories"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{status}");
    assert_eq!(rows[0]["repo"], "app");
    assert_eq!(rows[0]["last_good"]["backup_type"], "incr");
    assert_eq!(rows[0]["rpo_breached"], false);
    assert_eq!(rows[0]["rpo_seconds"], 26 * 3600);
    assert_eq!(rows[0]["last_good"]["warnings"], serde_json::json!(["refs/tags/v1 deleted"]));

    // A source that cannot be read: failing, never backed up, beyond any RPO; exit code 3.
    let missing = w.path("src/missing");
    let out = w.run(&["backup", missing.to_str().expect("utf-8")]);
    assert_ne!(out.status.code(), Some(0));
    let out = w.run(&["status", "--rpo", "26h"]);
    assert_eq!(out.status.code(), Some(3), "a breach or a failure is exit code 3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("missing") && text.contains("BREACHED") && text.contains("never"), "{text}");
    assert!(text.contains("1 beyond their RPO; 1 failing"), "{text}");

    // Logs: by repository, by run, since.
    let lines = json(&w.run(&["logs", "--json", "--repo", "app"]).stdout);
    let messages: Vec<&str> =
        lines.as_array().expect("lines").iter().map(|l| l["message"].as_str().expect("m")).collect();
    assert!(messages.iter().any(|m| m.contains("refs/tags/v1 deleted")), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("full backup into")), "{messages:?}");
    let run = lines[0]["run_id"].as_i64().expect("run id");
    let of_run = json(&w.run(&["logs", "--json", "--run", &run.to_string()]).stdout);
    assert!(of_run.as_array().expect("lines").iter().all(|l| l["run_id"] == run));
    assert!(json(&w.run(&["logs", "--json", "--since", "2h"]).stdout).as_array().is_some_and(|a| a.len() >= 5));
    assert_eq!(json(&w.run(&["logs", "--json", "--since", "2999-01-01"]).stdout), serde_json::json!([]));
    let bad = w.run(&["logs", "--since", "yesterday-ish"]);
    assert_eq!(bad.status.code(), Some(2), "a bad --since is a usage error");

    // Audit: who did what, with the ledger entry that records it; as CSV too.
    let audit = json(&w.run(&["audit", "--json"]).stdout);
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["action"].as_str().expect("a"), e["outcome"].as_str().expect("o")))
        .collect();
    assert_eq!(actions, [("init", "ok"), ("backup", "ok"), ("backup", "ok"), ("backup", "failed")]);
    assert_eq!(audit[1]["ledger_seq"], 2);
    assert!(audit[0]["actor"].as_str().expect("actor").contains('@'), "{audit}");
    let csv = String::from_utf8(w.run(&["audit", "--csv"]).stdout).expect("utf-8");
    let mut csv_lines = csv.lines();
    assert_eq!(csv_lines.next(), Some("id,time,actor,action,target,outcome,detail,vault,ledger_seq,origin"));
    assert_eq!(csv_lines.count(), 4, "{csv}");
}

#[test]
fn catalog_rebuild_recovers_the_history_from_the_vault_and_its_ledger() {
    let w = World::new();
    w.init();
    let repo = new_repo(&w.path("src/app"));
    commit(&repo, "a", &noise(1, 1000), "a");
    w.backup(&[repo.to_str().expect("utf-8")]);
    commit(&repo, "b", &noise(2, 1000), "b");
    w.backup(&[repo.to_str().expect("utf-8")]);
    // A copy writes an audit entry into the destination's ledger (format version 4).
    let other = w.path("vault-b");
    let init_b = w.cmd_without_vault(&["init", "--vault", other.to_str().expect("utf-8")]).output().expect("init");
    assert!(init_b.status.success());
    let copy = w
        .cmd_without_vault(&[
            "copy",
            "--from",
            w.vault.to_str().expect("utf-8"),
            "--to",
            other.to_str().expect("utf-8"),
        ])
        .output()
        .expect("copy");
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
    let before = json(&w.run(&["status", "--json"]).stdout);

    std::fs::remove_file(catalog_path(&w)).expect("lose the catalog");
    for ext in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(catalog_path(&w).with_extension(ext));
    }
    let rebuilt = w.run(&["catalog", "rebuild", "--json"]);
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    let rebuilt = json(&rebuilt.stdout);
    assert_eq!(rebuilt[0]["runs"], 2, "{rebuilt}");
    assert_eq!(rebuilt[0]["audit_entries"], 3, "init and two snapshots: {rebuilt}");
    let after = json(&w.run(&["status", "--json"]).stdout);
    assert_eq!(
        after["repositories"][0]["last_good"]["snapshot"], before["repositories"][0]["last_good"]["snapshot"],
        "the newest good backup is found again"
    );
    let audit = json(&w.run(&["audit", "--json"]).stdout);
    let ledger_actor = audit[1]["actor"].as_str().expect("actor");
    assert!(ledger_actor.contains('@'), "the ledger says who backed up: {audit}");
    assert_eq!(audit[1]["origin"], "vault");
    // Rebuilding again adds nothing new.
    let again = json(&w.run(&["catalog", "rebuild", "--json"]).stdout);
    assert_eq!((again[0]["runs"].as_u64(), again[0]["audit_entries"].as_u64()), (Some(2), Some(3)));
    let runs = json(&w.run(&["status", "--json"]).stdout);
    assert_eq!(runs["repositories"].as_array().map(Vec::len), Some(1));

    // The destination's ledger holds the copy, with its actor.
    let b = w
        .cmd_without_vault(&["catalog", "rebuild", "--json", "--vault", other.to_str().expect("utf-8")])
        .output()
        .expect("rebuild b");
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let audit = json(&w.run(&["audit", "--json"]).stdout);
    let copy = audit
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["action"] == "copy" && e["origin"] == "vault")
        .unwrap_or_else(|| panic!("a copy entry from the destination's ledger: {audit}"));
    assert!(copy["actor"].as_str().expect("actor").contains('@'));
    assert_eq!(copy["detail"], "2 snapshots copied");
}

#[test]
fn api_tokens_are_shown_once_stored_hashed_and_revocable() {
    let w = World::new();
    let created = w.run(&["token", "create", "--role", "operator", "--name", "ci", "--json"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let created = json(&created.stdout);
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("gvt_") && secret.len() > 40);
    let db = std::fs::read(catalog_path(&w)).expect("catalog");
    let wal = std::fs::read(catalog_path(&w).with_extension("db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(secret.len()).any(|win| win == secret.as_bytes()), "the secret is not stored");
    }
    let dup = w.run(&["token", "create", "--role", "auditor", "--name", "ci"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("exists already"));
    let auditor = json(&w.run(&["token", "create", "--role", "auditor", "--json"]).stdout);
    assert_eq!(auditor["token"]["name"], "auditor-1");
    assert_eq!(auditor["token"]["role"], "auditor");

    let revoked = w.run(&["token", "revoke", "ci"]);
    assert!(revoked.status.success());
    let list = json(&w.run(&["token", "list", "--json"]).stdout);
    let ci = list.as_array().expect("tokens").iter().find(|t| t["name"] == "ci").expect("ci");
    assert!(ci["revoked_at"].is_string(), "{list}");
    let again = w.run(&["token", "revoke", "ci"]);
    assert_eq!(again.status.code(), Some(2), "no live token of that name");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no API token named \"ci\""));
    let audit = json(&w.run(&["audit", "--json"]).stdout);
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .expect("a")
        .iter()
        .map(|e| (e["action"].as_str().expect("s"), e["outcome"].as_str().expect("s")))
        .collect();
    let expected = [("token_create", "ok"), ("token_create", "ok"), ("token_revoke", "ok"), ("token_revoke", "failed")];
    assert_eq!(actions, expected, "a refused revocation is in the trail too");
}

#[test]
fn a_catalog_that_cannot_be_used_never_stops_a_backup() {
    let w = World::new();
    w.init();
    let repo = new_repo(&w.path("src/app"));
    commit(&repo, "a", &noise(1, 1000), "a");
    // A directory where the file should be; then a file that is not a database.
    let as_dir = w.path("catalog-is-a-dir");
    std::fs::create_dir_all(&as_dir).expect("mkdir");
    let garbage = w.path("garbage.db");
    std::fs::write(&garbage, noise(9, 4096)).expect("write");
    for bad in [&as_dir, &garbage] {
        let out =
            w.cmd(&["backup", repo.to_str().expect("utf-8")]).env("GITVAULT_CATALOG", bad).output().expect("backup");
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not recorded in the catalog"), "{stderr}");
        let status = w.cmd_without_vault(&["status"]).env("GITVAULT_CATALOG", bad).output().expect("status");
        assert_eq!(status.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&status.stderr).contains("cannot open the catalog"));
    }
    assert_eq!(w.snapshots().len(), 2, "both backups landed");
}
