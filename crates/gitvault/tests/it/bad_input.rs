//! Bad input: each case gets a clear error, the documented exit code, and loses nothing —
//! wrong or missing passphrases, paths that are not vaults, vaults too new or corrupted, sources
//! that fail, unknown snapshots and repositories, occupied targets, a full disk, and URLs that
//! carry credentials.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::files_under;
use crate::common::{PASSWORD, World, assert_restores_exactly, commit, git, new_repo, noise, refs};

/// Every file under `dir` with its content: a before/after picture of a vault.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(dir).into_iter().map(|f| (f.clone(), std::fs::read(dir.join(&f)).expect("read"))).collect()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Require exit `code` and a stderr containing every one of `needles`.
fn assert_fails(out: &Output, code: i32, needles: &[&str], what: &str) {
    let (o, e) = (stdout(out), stderr(out));
    assert_eq!(out.status.code(), Some(code), "{what}: exit code\nstdout:\n{o}\nstderr:\n{e}");
    for n in needles {
        assert!(e.contains(n), "{what}: stderr should mention {n:?}:\n{e}");
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A repository with one commit, and its vault holding one snapshot of it.
fn world_with_snapshot() -> (World, PathBuf, String) {
    let w = World::new();
    w.init();
    let repo = new_repo(&w.path("src/app"));
    commit(&repo, "README", b"hello\n", "initial");
    let id = w.backup(&[path_str(&repo)])["snapshot"].as_str().expect("id").to_string();
    (w, repo, id)
}

#[test]
fn wrong_passphrase_is_refused_and_writes_nothing() {
    let (w, repo, _) = world_with_snapshot();
    commit(&repo, "more", b"more\n", "more");
    let before = contents(&w.vault);
    let cache_before = contents(&w.cache);
    let target = w.path("restored.git");
    let commands: [&[&str]; 6] = [
        &["backup", path_str(&repo)],
        &["snapshots"],
        &["verify"],
        &["verify", "--read-data"],
        &["restore", "latest", "--target", path_str(&target)],
        &["key", "list"],
    ];
    for args in commands {
        let out = w.cmd(args).env("GITVAULT_PASSWORD", "not the passphrase").output().expect("run");
        assert_fails(&out, 1, &["wrong passphrase"], &format!("{args:?}"));
        assert!(stdout(&out).is_empty(), "{args:?} prints nothing on stdout: {}", stdout(&out));
    }
    // The same through a passphrase file.
    let file = w.path("wrong.txt");
    std::fs::write(&file, "not the passphrase\n").expect("write");
    let out = w
        .cmd(&["--password-file", path_str(&file), "backup", path_str(&repo)])
        .env_remove("GITVAULT_PASSWORD")
        .output()
        .expect("run");
    assert_fails(&out, 1, &["wrong passphrase"], "--password-file");

    assert_eq!(contents(&w.vault), before, "a refused command writes nothing into the vault");
    assert_eq!(contents(&w.cache), cache_before, "a refused command writes nothing into the cache");
    assert!(!target.exists(), "a refused restore creates no target");
}

#[test]
fn a_directory_that_is_not_a_vault_is_refused() {
    let w = World::new();
    let dir = w.path("just-a-dir");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("notes.txt"), "not a vault\n").expect("write");
    let repo = new_repo(&w.path("src/app"));
    commit(&repo, "README", b"hello\n", "initial");
    let missing = w.path("no-such-dir");
    for vault in [&dir, &missing] {
        for args in [vec!["snapshots"], vec!["verify"], vec!["backup", path_str(&repo)]] {
            let out = Command::new(env!("CARGO_BIN_EXE_gitvault"))
                .arg("--vault")
                .arg(vault)
                .args(&args)
                .envs(w.cmd(&[]).get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))))
                .output()
                .expect("run");
            assert_fails(&out, 1, &["not a gitvault vault", path_str(vault)], &format!("{args:?} on {vault:?}"));
        }
    }
    assert_eq!(files_under(&dir).into_iter().collect::<Vec<_>>(), vec!["notes.txt"], "nothing written into it");
    assert!(!missing.exists(), "a missing vault path is not created");
}

#[test]
fn a_vault_of_a_newer_format_asks_for_an_upgrade() {
    let (w, repo, _) = world_with_snapshot();
    let config = w.vault.join("config");
    let text = std::fs::read_to_string(&config).expect("read config");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("config is JSON");
    json["version"] = serde_json::json!(99);
    json["a_field_from_the_future"] = serde_json::json!(true);
    std::fs::write(&config, serde_json::to_vec_pretty(&json).expect("json")).expect("write config");
    let before = contents(&w.vault);
    for args in [vec!["snapshots"], vec!["verify"], vec!["backup", path_str(&repo)]] {
        let out = w.run(&args);
        assert_fails(&out, 1, &["99", "newer", "upgrade"], &format!("{args:?}"));
    }
    assert_eq!(contents(&w.vault), before, "nothing written into a vault too new to understand");
}

#[test]
fn a_missing_passphrase_without_a_terminal_is_a_usage_error() {
    let (w, _, _) = world_with_snapshot();
    for value in [None, Some("")] {
        let mut cmd = w.cmd(&["snapshots"]);
        match value {
            None => cmd.env_remove("GITVAULT_PASSWORD"),
            Some(v) => cmd.env("GITVAULT_PASSWORD", v),
        };
        let out = cmd.stdin(Stdio::null()).output().expect("run");
        assert_fails(&out, 2, &["GITVAULT_PASSWORD", "--password-file"], &format!("password {value:?}"));
    }
    // A new vault cannot be created without one either.
    let out = Command::new(env!("CARGO_BIN_EXE_gitvault"))
        .args(["--vault", path_str(&w.path("new-vault")), "init"])
        .env_remove("GITVAULT_PASSWORD")
        .env_remove("GITVAULT_PASSWORD_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_fails(&out, 2, &["GITVAULT_PASSWORD"], "init without a passphrase");
    assert!(files_under(&w.path("new-vault")).is_empty(), "no vault was created");
}

#[test]
fn a_password_file_works_and_its_line_ending_is_ignored() {
    let w = World::new();
    let file = w.path("pass.txt");
    std::fs::write(&file, format!("{PASSWORD}\n")).expect("write");
    // Created from the file alone...
    let out = w
        .cmd(&["--password-file", path_str(&file), "init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
        .env_remove("GITVAULT_PASSWORD")
        .output()
        .expect("run");
    assert!(out.status.success(), "init with --password-file: {}", stderr(&out));
    // ...opened with the same passphrase from the environment: the newline was not part of it.
    let repo = new_repo(&w.path("src/app"));
    commit(&repo, "README", b"hello\n", "initial");
    let id = w.backup(&[path_str(&repo)])["snapshot"].as_str().expect("id").to_string();
    for (name, content) in
        [("lf", format!("{PASSWORD}\n")), ("crlf", format!("{PASSWORD}\r\n")), ("none", PASSWORD.into())]
    {
        std::fs::write(&file, content).expect("write");
        let out = w
            .cmd(&["--password-file", path_str(&file), "snapshots", "--json"])
            .env_remove("GITVAULT_PASSWORD")
            .output();
        let out = out.expect("run");
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(stdout(&out).contains(&id), "{name}: {}", stdout(&out));
    }
    // The environment variable names the file just as well.
    let out = w.cmd(&["snapshots"]).env_remove("GITVAULT_PASSWORD").env("GITVAULT_PASSWORD_FILE", &file).output();
    assert!(out.expect("run").status.success());
    // An empty or missing file is an error that names the file.
    std::fs::write(&file, "\n").expect("write");
    let out = w.cmd(&["--password-file", path_str(&file), "snapshots"]).env_remove("GITVAULT_PASSWORD").output();
    assert_fails(&out.expect("run"), 1, &["empty", path_str(&file)], "empty passphrase file");
    let gone = w.path("gone.txt");
    let out = w.cmd(&["--password-file", path_str(&gone), "snapshots"]).env_remove("GITVAULT_PASSWORD").output();
    let out = out.expect("run");
    assert_ne!(out.status.code(), Some(0), "a missing passphrase file fails");
    assert!(stderr(&out).contains(path_str(&gone)), "names the missing file: {}", stderr(&out));
}

/// The snapshot with `id`, as `snapshots --json` shows it.
fn listed(w: &World, id: &str) -> serde_json::Value {
    w.snapshots().into_iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("snapshot {id} is listed"))
}

/// The id in `snapshot ID saved` of a text backup report, resolved to the full id.
fn saved_id(w: &World, out: &Output) -> String {
    let text = stdout(out);
    let short = text
        .lines()
        .find_map(|l| l.strip_prefix("snapshot ").and_then(|r| r.split_whitespace().next()))
        .unwrap_or_else(|| panic!("a `snapshot … saved` line:\n{text}"));
    let ids: Vec<String> = w
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .filter(|i| i.starts_with(short))
        .collect();
    assert_eq!(ids.len(), 1, "{short} names one snapshot");
    ids[0].clone()
}

#[test]
fn a_source_that_is_not_a_repository_fails_alone_with_exit_3() {
    let w = World::new();
    w.init();
    let good = new_repo(&w.path("src/app"));
    commit(&good, "README", b"hello\n", "initial");
    let plain = w.path("src/plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    std::fs::write(plain.join("file.txt"), "no git here\n").expect("write");
    let missing = w.path("src/missing");

    let out = w.run(&["backup", path_str(&plain), path_str(&good), path_str(&missing)]);
    assert_fails(&out, 3, &[path_str(&plain), "not a git repository", path_str(&missing), "does not exist"], "partial");
    assert!(stdout(&out).contains("2 failed"), "the summary counts the failures: {}", stdout(&out));
    let id = saved_id(&w, &out);
    let snap = listed(&w, &id);
    assert_eq!(snap["names"], serde_json::json!(["app"]), "{snap:#}");
    assert_eq!(snap["failures"], serde_json::json!(["plain", "missing"]), "{snap:#}");
    assert_restores_exactly(&w, &id, None, &refs(&good), "partial-good");
    w.ok(&["verify"]);
}

#[test]
fn an_unreachable_source_fails_alone_with_exit_3() {
    let w = World::new();
    w.init();
    let good = new_repo(&w.path("src/app"));
    commit(&good, "README", b"hello\n", "initial");
    for url in ["git://127.0.0.1:1/none.git", "http://127.0.0.1:1/x.git"] {
        let out = w.run(&["backup", "--json", url, path_str(&good)]);
        assert_fails(&out, 3, &[url, "cannot reach"], url);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup --json");
        let id = report["snapshot"].as_str().expect("a snapshot of the good source");
        assert_eq!(report["failures"][0]["source"], url, "{report:#}");
        assert_eq!(listed(&w, id)["names"], serde_json::json!(["app"]));
        assert_restores_exactly(&w, id, None, &refs(&good), &format!("unreachable-{}", url.len()));
    }
}

#[test]
fn when_every_source_fails_there_is_no_snapshot_and_exit_1() {
    let (w, repo, first) = world_with_snapshot();
    let before = files_under(&w.vault);
    let plain = w.path("src/plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    let out = w.run(&["backup", path_str(&plain), "git://127.0.0.1:1/none.git"]);
    assert_fails(&out, 1, &[path_str(&plain), "git://127.0.0.1:1/none.git"], "all bad");
    assert!(stdout(&out).contains("no snapshot saved"), "{}", stdout(&out));
    let ids: Vec<serde_json::Value> = w.snapshots().iter().map(|s| s["id"].clone()).collect();
    assert_eq!(ids, vec![serde_json::json!(first)], "no snapshot was added");
    let after = files_under(&w.vault);
    let added: Vec<_> = after.difference(&before).filter(|f| !f.starts_with("ledger/")).collect();
    assert!(added.is_empty(), "a failed backup stores nothing: {added:?}");
    assert_restores_exactly(&w, &first, None, &refs(&repo), "after-all-bad");
}

#[test]
fn an_unknown_or_ambiguous_snapshot_is_refused() {
    let w = World::new();
    w.init();
    let target = w.path("restored.git");
    let out = w.run(&["restore", "latest", "--target", path_str(&target)]);
    assert_fails(&out, 1, &["no snapshot"], "latest of an empty vault");

    let repo = new_repo(&w.path("src/app"));
    commit(&repo, "README", b"hello\n", "initial");
    // Seventeen ids cannot all start with different hex digits.
    let ids: Vec<String> =
        (0..17).map(|_| w.backup(&[path_str(&repo)])["snapshot"].as_str().expect("id").to_string()).collect();
    let unknown = (0..=u16::MAX).map(|n| format!("{n:04x}")).find(|p| !ids.iter().any(|i| i.starts_with(p)));
    let unknown = unknown.expect("a 4-digit prefix no id has");
    for args in [
        vec!["restore", &unknown, "--target", path_str(&target)],
        vec!["diff", &unknown, "latest"],
        vec!["diff", "latest", &unknown],
    ] {
        assert_fails(&w.run(&args), 1, &["no snapshot matches", &unknown], &format!("{args:?}"));
    }
    let digit = (0..16u8)
        .map(|d| format!("{d:x}"))
        .find(|d| ids.iter().filter(|i| i.starts_with(d.as_str())).count() > 1)
        .expect("pigeonhole");
    let out = w.run(&["restore", &digit, "--target", path_str(&target)]);
    assert_fails(&out, 1, &["matches several snapshots"], "ambiguous prefix");
    assert!(!target.exists(), "no restore happened");
    // A unique prefix works.
    assert_restores_exactly(&w, &ids[3][..12], None, &refs(&repo), "by-prefix");
}

#[test]
fn an_unknown_or_ambiguous_repository_is_refused() {
    let w = World::new();
    w.init();
    let acme = new_repo(&w.path("acme/api"));
    commit(&acme, "a", b"acme\n", "acme");
    let other = new_repo(&w.path("other/api"));
    commit(&other, "o", b"other\n", "other");
    let urls = [format!("file://{}", path_str(&acme)), format!("file://{}", path_str(&other))];
    let id = w.backup(&[&urls[0], &urls[1]])["snapshot"].as_str().expect("id").to_string();
    let names = listed(&w, &id)["names"].clone();
    assert!(names[0].as_str().is_some_and(|n| n.ends_with("acme/api")), "{names}");

    let target = w.path("restored.git");
    let out = w.run(&["restore", &id, "--repo", "api", "--target", path_str(&target)]);
    assert_fails(&out, 1, &["\"api\" matches several repositories", "acme/api", "other/api"], "ambiguous --repo");
    let out = w.run(&["restore", &id, "--repo", "nope", "--target", path_str(&target)]);
    assert_fails(&out, 1, &["no repository matching \"nope\"", "acme/api"], "unknown --repo");
    let out = w.run(&["restore", &id, "--repo", "pi", "--target", path_str(&target)]);
    assert_fails(&out, 1, &["no repository matching \"pi\""], "a suffix must start at a name boundary");
    assert!(!target.exists(), "a refused restore creates nothing");
    assert_restores_exactly(&w, &id, Some("acme/api"), &refs(&acme), "acme");
    assert_restores_exactly(&w, &id, Some("other/api"), &refs(&other), "other");
}

#[test]
fn restore_into_a_non_empty_target_is_refused_unless_forced() {
    let (w, repo, first) = world_with_snapshot();
    let first_refs = refs(&repo);
    git(&repo, &["checkout", "-q", "-b", "feature"]);
    commit(&repo, "feature", b"feature\n", "feature");
    git(&repo, &["tag", "v2"]);
    let second = w.backup(&[path_str(&repo)])["snapshot"].as_str().expect("id").to_string();
    let second_refs = refs(&repo);

    // A directory with someone's files in it.
    let occupied = w.path("occupied");
    std::fs::create_dir_all(&occupied).expect("mkdir");
    std::fs::write(occupied.join("keep.txt"), "precious\n").expect("write");
    let out = w.run(&["restore", &first, "--target", path_str(&occupied)]);
    assert_fails(&out, 1, &["not empty", path_str(&occupied), "--force"], "occupied target");
    assert_eq!(files_under(&occupied).into_iter().collect::<Vec<_>>(), vec!["keep.txt"]);
    assert_eq!(std::fs::read_to_string(occupied.join("keep.txt")).expect("read"), "precious\n");

    // An existing repository: refused, untouched; with --force its refs become the snapshot's
    // exactly (refs the snapshot does not have are gone).
    assert_restores_exactly(&w, &second, None, &second_refs, "second");
    let existing = w.path("restore-second.git");
    let before = contents(&existing);
    let out = w.run(&["restore", &first, "--target", path_str(&existing)]);
    assert_fails(&out, 1, &["not empty"], "existing repository");
    assert_eq!(contents(&existing), before, "the refused restore left the repository untouched");
    w.ok(&["restore", &first, "--target", path_str(&existing), "--force"]);
    let got = refs(&existing);
    assert_eq!(got.refs, first_refs.refs, "forced restore sets exactly the snapshot's refs");
    assert_eq!(got.head, first_refs.head);
    gitvault_git::Git::new().fsck(&existing).expect("fsck after a forced restore");

    // An existing empty directory is fine without --force.
    let empty = w.path("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    w.ok(&["restore", &second, "--target", path_str(&empty)]);
    assert_eq!(refs(&empty).refs, second_refs.refs);
}

#[test]
fn init_refuses_a_non_empty_directory_and_an_existing_vault() {
    let w = World::new();
    std::fs::create_dir_all(&w.vault).expect("mkdir");
    std::fs::write(w.vault.join("data.csv"), "a,b\n").expect("write");
    let out = w.run(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    assert_fails(&out, 1, &["not empty", path_str(&w.vault)], "init on a non-empty directory");
    assert_eq!(files_under(&w.vault).into_iter().collect::<Vec<_>>(), vec!["data.csv"]);

    let (w, repo, first) = world_with_snapshot();
    let before = contents(&w.vault);
    let out = w.run(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    assert_fails(&out, 1, &["not empty"], "init over a vault");
    assert_eq!(contents(&w.vault), before, "the existing vault is untouched");
    assert_restores_exactly(&w, &first, None, &refs(&repo), "after-reinit");
}

#[test]
fn a_corrupted_config_or_key_slot_is_a_clear_error() {
    let (w, repo, first) = world_with_snapshot();
    let config = w.vault.join("config");
    let good_config = std::fs::read(&config).expect("read");
    std::fs::write(&config, b"\x00\x01garbage{").expect("write");
    for args in [vec!["snapshots"], vec!["verify"], vec!["backup", path_str(&repo)]] {
        assert_fails(&w.run(&args), 1, &["config"], &format!("corrupted config: {args:?}"));
    }
    // Half a config.
    std::fs::write(&config, &good_config[..good_config.len() / 2]).expect("write");
    assert_fails(&w.run(&["snapshots"]), 1, &["config"], "truncated config");
    std::fs::write(&config, &good_config).expect("write");

    let slot = files_under(&w.vault).into_iter().find(|f| f.starts_with("keys/")).expect("a key slot");
    let slot_path = w.vault.join(&slot);
    let good_slot = std::fs::read(&slot_path).expect("read");
    std::fs::write(&slot_path, b"{\"not\": \"a key slot\"}").expect("write");
    assert_fails(&w.run(&["snapshots"]), 1, &[&slot], "corrupted key slot");
    std::fs::write(&slot_path, &good_slot).expect("write");

    // Repaired by hand, everything is back.
    assert_restores_exactly(&w, &first, None, &refs(&repo), "after-repair");
}

/// Errors print their cause once: `damaged vault file X: malformed key slot: …` and not the
/// same words two or three times over.
#[test]
fn error_messages_state_their_cause_once() {
    let (w, _, _) = world_with_snapshot();
    let slot = files_under(&w.vault).into_iter().find(|f| f.starts_with("keys/")).expect("a key slot");
    std::fs::write(w.vault.join(&slot), b"garbage").expect("write");
    let e = stderr(&w.run(&["snapshots"]));
    let line = e.lines().find(|l| l.starts_with("error:")).expect("an error line");
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(p), "{p:?} repeats in {line:?}");
    }
    let w = World::new();
    std::fs::create_dir_all(&w.vault).expect("mkdir");
    std::fs::write(w.vault.join("x"), "x").expect("write");
    let e = stderr(&w.run(&["init"]));
    assert!(!e.contains("  "), "no gap where a path should be: {e}");
}

/// A vault on a 4 MiB tmpfs, in a private mount namespace: a backup that does not fit fails
/// cleanly, naming the vault and the lack of space; the vault still verifies, the earlier
/// snapshot restores exactly, and a later backup that fits succeeds.
#[test]
fn a_full_disk_fails_the_backup_cleanly_and_loses_nothing() {
    let w = World::new();
    let small = new_repo(&w.path("src/small"));
    commit(&small, "README", b"small\n", "small");
    let big = new_repo(&w.path("src/big"));
    for i in 0..3 {
        commit(&big, &format!("blob{i}.bin"), &noise(40 + i, 2 << 20), "big");
    }
    std::fs::create_dir_all(&w.vault).expect("mkdir");
    let out_dir = w.path("out");
    std::fs::create_dir_all(&out_dir).expect("mkdir");

    let Some(unshare) = mount_namespace_prefix(&w) else {
        return;
    };
    let script = r#"
set -u
bin=$1 vault=$2 out=$3 small=$4 big=$5 target=$6
mount -t tmpfs -o size=4m gitvault-full-disk-test "$vault" || exit 97
run() { name=$1; shift; "$bin" --vault "$vault" "$@" >"$out/$name.out" 2>"$out/$name.err"; echo $? >"$out/$name.rc"; }
run init init --kdf-memory-kib 1024 --kdf-iterations 1
run small backup --json "$small"
run big backup "$big"
(cd "$vault" && find . -type f | sort) >"$out/after-big.files"
run verify verify --read-data
id=$(sed -n 's/^ *"snapshot": "\([0-9a-f]*\)".*/\1/p' "$out/small.out")
run restore restore "$id" --target "$target"
echo more >"$small/more.txt"
git -C "$small" add more.txt && git -C "$small" -c user.name=Ada -c user.email=ada@example.org commit -q -m more
run again backup --json "$small"
run snapshots snapshots --json
run verify2 verify
"#;
    let target = w.path("restored.git");
    let mut cmd = Command::new(&unshare[0]);
    cmd.args(&unshare[1..]).args(["sh", "-c", script, "sh"]);
    cmd.arg(env!("CARGO_BIN_EXE_gitvault")).arg(&w.vault).arg(&out_dir).arg(&small).arg(&big).arg(&target);
    for (k, v) in w.cmd(&[]).get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let run = cmd.output().expect("run unshare");
    assert!(run.status.success(), "the full-disk script: {}", stderr(&run));
    let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap_or_default();
    let rc = |name: &str| read(&format!("{name}.rc")).trim().parse::<i32>().unwrap_or(-1);
    let show = |name: &str| {
        format!("{name}: exit {}\n{}\n{}", rc(name), read(&format!("{name}.out")), read(&format!("{name}.err")))
    };

    assert_eq!(rc("init"), 0, "{}", show("init"));
    assert_eq!(rc("small"), 0, "{}", show("small"));
    assert!(matches!(rc("big"), 1 | 3), "the backup that does not fit fails: {}", show("big"));
    let err = read("big.err");
    assert!(err.to_lowercase().contains("no space"), "says the disk is full: {}", show("big"));
    assert!(err.contains(path_str(&w.vault)), "names the vault: {}", show("big"));
    let files = read("after-big.files");
    assert!(!files.contains("./tmp/"), "the failed write left no temporary behind:\n{files}");
    assert_eq!(rc("verify"), 0, "the vault verifies after the failure: {}", show("verify"));
    assert!(!read("verify.out").contains("DAMAGE"), "{}", show("verify"));
    assert_eq!(rc("restore"), 0, "{}", show("restore"));
    assert_eq!(rc("again"), 0, "a backup that fits works again: {}", show("again"));
    assert_eq!(rc("verify2"), 0, "{}", show("verify2"));
    let snaps: Vec<serde_json::Value> = serde_json::from_str(&read("snapshots.out")).expect("snapshots --json");
    assert_eq!(snaps.len(), 2, "the failed backup added no snapshot: {snaps:#?}");
    assert!(snaps.iter().all(|s| s["names"] == serde_json::json!(["small"])), "{snaps:#?}");

    // The first snapshot, restored from the full disk, is exact.
    git(&small, &["reset", "-q", "--hard", "HEAD~1"]);
    let expected = refs(&small);
    let got = refs(&target);
    assert_eq!(got.refs, expected.refs);
    assert_eq!(got.head, expected.head);
    gitvault_git::Git::new().fsck(&target).expect("fsck of the restore from the full disk");
}

/// The command prefix that runs a script in a private mount namespace where it may mount a
/// tmpfs, or `None` when the machine does not allow it and GITVAULT_TEST_NO_MOUNT=1 says that
/// is expected. Without that variable, not being able to run the test is a failure.
fn mount_namespace_prefix(w: &World) -> Option<Vec<String>> {
    let probe = w.path("mount-probe");
    std::fs::create_dir_all(&probe).expect("mkdir");
    let candidates: [&[&str]; 2] = [&["unshare", "-m"], &["unshare", "-r", "-m"]];
    let mut errors = Vec::new();
    for prefix in candidates {
        let out = Command::new(prefix[0])
            .args(&prefix[1..])
            .args(["sh", "-c", "mount -t tmpfs -o size=1m gitvault-probe \"$1\" && umount \"$1\"", "sh"])
            .arg(&probe)
            .output();
        match out {
            Ok(o) if o.status.success() => return Some(prefix.iter().map(|s| s.to_string()).collect()),
            Ok(o) => errors.push(format!("{prefix:?}: {}", stderr(&o).trim())),
            Err(e) => errors.push(format!("{prefix:?}: {e}")),
        }
    }
    let message = format!(
        "\n\n********************************************************************\n\
         FULL-DISK TEST NOT RUN: cannot mount a tmpfs in a private mount namespace\n{}\n\
         Set GITVAULT_TEST_NO_MOUNT=1 to skip it on machines that forbid this.\n\
         ********************************************************************\n",
        errors.join("\n")
    );
    if std::env::var("GITVAULT_TEST_NO_MOUNT").as_deref() == Ok("1") {
        eprintln!("{message}");
        return None;
    }
    panic!("{message}");
}

const TOKEN: &str = "s3cr3tT0ken";

/// A static file server on 127.0.0.1, enough for git's "dumb" HTTP protocol. It runs until the
/// test process ends.
fn serve_static(root: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || serve_one(stream, &root));
        }
    });
    port
}

fn serve_one(mut stream: TcpStream, root: &Path) {
    let Ok(clone) = stream.try_clone() else { return };
    let mut reader = BufReader::new(clone);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let body = (!path.split('/').any(|c| c == ".."))
        .then(|| root.join(path.trim_start_matches('/')))
        .filter(|p| p.is_file())
        .and_then(|p| std::fs::read(p).ok());
    let _ = match body {
        Some(body) => stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .and_then(|()| stream.write_all(&body)),
        None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| std::fs::read(dir.join(f)).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .collect()
}

#[test]
fn credentials_in_a_source_url_never_reach_output_logs_or_disk() {
    let w = World::new();
    w.init();
    let good = new_repo(&w.path("src/app"));
    commit(&good, "README", b"hello\n", "initial");
    let mut outputs = Vec::new();

    // Unreachable: the failure shows the URL without its credentials.
    let url = format!("https://user:{TOKEN}@127.0.0.1:1/acme/api.git");
    let out = w.run(&["-vv", "backup", &url]);
    assert_fails(&out, 1, &["https://127.0.0.1:1/acme/api.git"], "unreachable with credentials");
    outputs.push(out);
    let out = w.run(&["-vv", "backup", &url, path_str(&good)]);
    assert_fails(&out, 3, &["https://127.0.0.1:1/acme/api.git"], "unreachable with credentials, partial");
    outputs.push(out);

    // Reachable (git's dumb HTTP protocol over a static server): mirrored, stored, restored.
    let served = w.path("served");
    let bare = served.join("acme/api.git");
    git(&w.path(""), &["clone", "-q", "--bare", path_str(&good), path_str(&bare)]);
    git(&bare, &["update-server-info"]);
    let port = serve_static(served);
    let url = format!("http://user:{TOKEN}@127.0.0.1:{port}/acme/api.git");
    let clean = format!("http://127.0.0.1:{port}/acme/api.git");
    // Logging everything gitvault can log.
    let out = w.cmd(&["backup", "--json", &url]).env("GITVAULT_LOG", "trace").output().expect("run");
    assert!(out.status.success(), "backup over http: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    let id = report["snapshot"].as_str().expect("id").to_string();
    assert_eq!(report["repositories"][0]["name"], "acme/api", "{report:#}");
    assert_eq!(report["repositories"][0]["source"], clean.as_str(), "{report:#}");
    outputs.push(out);
    // Again, after a change upstream (the mirror is fetched into, with the URL).
    commit(&good, "more", b"more\n", "more");
    git(&bare, &["fetch", "-q", path_str(&good), "+refs/heads/*:refs/heads/*"]);
    git(&bare, &["update-server-info"]);
    let out = w.run(&["-vv", "backup", &url]);
    assert!(out.status.success(), "second backup over http: {}", stderr(&out));
    outputs.push(out);
    let latest = w.latest_id();
    assert_ne!(latest, id);
    let out = w.run(&["-vv", "snapshots", "--json"]);
    assert!(stdout(&out).contains(&clean), "{}", stdout(&out));
    outputs.push(out);
    let target = w.path("restored.git");
    let expected = refs(&bare);
    let out = w.run(&["-vv", "restore", &latest, "--target", path_str(&target)]);
    assert!(out.status.success(), "{}", stderr(&out));
    outputs.push(out);
    let got = refs(&target);
    assert_eq!(got.refs, expected.refs, "restored over http exactly");
    assert_eq!(got.head, expected.head, "HEAD over http");
    outputs.push(w.run(&["-vv", "verify", "--read-data"]));

    for (i, out) in outputs.iter().enumerate() {
        let both = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
        assert!(
            !both.windows(TOKEN.len()).any(|x| x == TOKEN.as_bytes()),
            "command {i} printed the token:\n{}\n{}",
            stdout(out),
            stderr(out)
        );
    }
    for dir in [&w.vault, &w.cache, &target] {
        let leaks = files_containing(dir, TOKEN.as_bytes());
        assert!(leaks.is_empty(), "the token is stored in {}: {leaks:?}", dir.display());
    }
    assert!(!files_under(&w.cache).is_empty(), "the cache holds the mirror");
}
