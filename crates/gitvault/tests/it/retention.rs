//! forget, prune, upgrade, append-only mode and partial data reads, driven as a user would.

use crate::common::{World, commit, new_repo, noise, refs};
use crate::golden::{copy_dir, golden};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).expect("json")
}

#[test]
fn forget_by_policy_keeps_a_restorable_chain_and_dry_run_explains_itself() {
    let w = World::new();
    w.init();
    let repo = new_repo(&w.path("src"));
    let src = repo.to_str().expect("utf-8");
    for i in 0..4u64 {
        commit(&repo, &format!("f{i}"), &noise(i, 5000), &format!("c{i}"));
        w.backup(&[src]);
    }
    let expected = refs(&repo);
    let all: Vec<String> = w.snapshots().iter().map(|s| s["id"].as_str().expect("id").to_string()).collect();

    let dry = json(&w.ok(&["forget", "--keep-last", "2", "--keep-daily", "1", "--dry-run", "--json"]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["removed"], 2);
    assert_eq!(dry["reason"], "keep-last 2, keep-daily 1");
    let keep = dry["groups"][0]["keep"].as_array().expect("keep");
    assert_eq!(keep.len(), 2);
    let newest = keep.iter().find(|k| k["id"] == all[3].as_str()).expect("newest kept");
    assert_eq!(newest["reasons"].as_array().expect("reasons").len(), 2, "{newest}");
    assert_eq!(w.snapshots().len(), 4, "a dry run forgets nothing");
    let text = w.ok(&["forget", "--keep-last", "2", "--dry-run"]);
    assert!(text.contains("forget?") && text.contains("last"), "{text}");

    let done = json(&w.ok(&["forget", "--keep-last", "2", "--json"]));
    assert_eq!(done["removed"], 2);
    assert!(done["ledger_entry"].as_u64().is_some());
    let left: Vec<String> = w.snapshots().iter().map(|s| s["id"].as_str().expect("id").to_string()).collect();
    assert_eq!(left, all[2..]);
    // The kept incrementals still restore: their chains reach back into the forgotten full.
    crate::common::assert_restores_exactly(&w, &all[3], None, &expected, "after-forget");
    let v = json(&w.ok(&["verify", "--read-data", "--json"]));
    assert_eq!(v["ok"], true, "{v}");

    // Usage errors: no policy, a policy and ids together, a bad duration.
    assert_eq!(w.run(&["forget"]).status.code(), Some(2));
    assert_eq!(w.run(&["forget", "--keep-last", "1", &all[2]]).status.code(), Some(2));
    let bad = w.run(&["forget", "--keep-within", "3 fortnights"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unit"));
    assert_eq!(w.run(&["prune", "--grace", "0h"]).status.code(), Some(2));
}

#[test]
fn a_version_1_vault_is_read_as_is_and_upgraded_only_when_asked() {
    let w = World::new();
    copy_dir(&golden("v1").join("vault"), &w.vault);
    let run = |args: &[&str]| w.cmd(args).env("GITVAULT_PASSWORD", "golden vault v1").output().expect("run");
    let out = run(&["forget", "--keep-last", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gitvault upgrade") && err.contains("version 1"), "{err}");
    // A dry run only reads, so it works on any version.
    assert!(run(&["forget", "--keep-last", "1", "--dry-run"]).status.success());
    // A partial read cannot be recorded in a version 1 ledger, but it runs.
    let v = run(&["verify", "--read-data-subset", "1/2", "--json"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert_eq!(json(&String::from_utf8_lossy(&v.stdout))["data_subset"], "1/2");

    let up = run(&["upgrade", "--json"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let up = json(&String::from_utf8_lossy(&up.stdout));
    assert_eq!(
        (up["from"].as_u64(), up["to"].as_u64(), up["upgraded"].as_bool()),
        (Some(1), Some(u64::from(gitvault_format::FORMAT_VERSION)), Some(true))
    );
    let config = json(&std::fs::read_to_string(w.vault.join("config")).expect("config"));
    assert_eq!(config["version"], gitvault_format::FORMAT_VERSION);
    assert!(run(&["forget", "--keep-last", "1"]).status.success());
    let again = json(&String::from_utf8_lossy(&run(&["upgrade", "--json"]).stdout));
    assert_eq!(again["upgraded"], false);
    let v = json(&String::from_utf8_lossy(&run(&["verify", "--read-data", "--json"]).stdout));
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["warnings"].as_array().expect("w").is_empty(), "{v}");
}

#[test]
fn read_data_subsets_cover_every_file_exactly_once() {
    let w = World::new();
    w.init();
    let repo = new_repo(&w.path("src"));
    for i in 0..6u64 {
        commit(&repo, &format!("f{i}"), &noise(100 + i, 20_000), &format!("c{i}"));
        w.backup(&[repo.to_str().expect("utf-8")]);
    }
    let full = json(&w.ok(&["verify", "--read-data", "--json"]));
    let total = full["bytes_read"].as_u64().expect("bytes");
    let mut sum = 0;
    for k in 1..=3 {
        let part = json(&w.ok(&["verify", "--read-data-subset", &format!("{k}/3"), "--json"]));
        assert_eq!(part["data_subset"], format!("{k}/3"));
        assert_eq!(part["ok"], true);
        sum += part["bytes_read"].as_u64().expect("bytes");
    }
    assert_eq!(sum, total, "the three slices read every byte once");
    let all = json(&w.ok(&["verify", "--read-data-subset", "100%", "--json"]));
    assert_eq!(all["bytes_read"].as_u64(), Some(total));
    for bad in ["0/3", "4/3", "3", "0%", "150%", "x/y"] {
        assert_eq!(w.run(&["verify", "--read-data-subset", bad]).status.code(), Some(2), "{bad}");
    }
    // A flipped byte is found by exactly the one slice that reads its file.
    let victim = crate::common::files_under(&w.vault.join("data")).into_iter().next().expect("a data file");
    let path = w.vault.join("data").join(&victim);
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, bytes).expect("write");
    let codes: Vec<Option<i32>> =
        (1..=3).map(|k| w.run(&["verify", "--read-data-subset", &format!("{k}/3")]).status.code()).collect();
    assert_eq!(codes.iter().filter(|c| **c == Some(4)).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == Some(0)).count(), 2, "{codes:?}");
}

#[test]
fn append_only_mode_refuses_deletions_from_the_command_line() {
    let w = World::new();
    w.init();
    let repo = new_repo(&w.path("src"));
    commit(&repo, "a", b"a", "a");
    w.backup(&[repo.to_str().expect("utf-8")]);
    for args in [
        vec!["--append-only", "forget", "--keep-last", "1"],
        vec!["--append-only", "prune"],
        vec!["--append-only", "key", "remove", "0"],
    ] {
        let out = w.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("append-only"), "{args:?}");
    }
    let out = w.cmd(&["prune"]).env("GITVAULT_APPEND_ONLY", "1").output().expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("append-only"));
    commit(&repo, "b", b"b", "b");
    w.ok(&["--append-only", "backup", repo.to_str().expect("utf-8")]);
    assert_eq!(w.snapshots().len(), 2);
}
