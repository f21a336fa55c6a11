//! kill -9 at any moment of a backup: the vault still verifies, every earlier snapshot still
//! restores exactly, the next backup succeeds, and what the killed writer left in `tmp/` is
//! cleaned by the next command. Plus two backups running into one vault at the same time.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitvault_git::RefState;

use crate::common::files_under;
use crate::common::{World, assert_restores_exactly, git, noise, refs};

/// Add `commits` commits to `main` of the bare repository `repo`, each adding one file of
/// `size` incompressible bytes. `git fast-import` writes them straight into a pack: fast.
pub(crate) fn add_noise_commits(repo: &Path, seed: u64, commits: u64, size: usize) {
    let has_main = Command::new("git")
        .args(["rev-parse", "-q", "--verify", "refs/heads/main"])
        .current_dir(repo)
        .stdout(Stdio::null())
        .status()
        .expect("run git")
        .success();
    let mut stream = Vec::new();
    for i in 0..commits {
        let msg = format!("noise {seed}.{i}");
        let time = 1_700_000_000 + seed * 10_000 + i;
        write!(stream, "commit refs/heads/main\ncommitter Ada <ada@example.org> {time} +0000\n").expect("write");
        write!(stream, "data {}\n{msg}\n", msg.len()).expect("write");
        if i == 0 && has_main {
            stream.extend_from_slice(b"from refs/heads/main^0\n");
        }
        let data = noise(seed * 10_000 + i, size);
        write!(stream, "M 100644 inline noise/{seed}-{i}.bin\ndata {}\n", data.len()).expect("write");
        stream.extend_from_slice(&data);
        stream.push(b'\n');
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run git fast-import");
    child.stdin.take().expect("stdin").write_all(&stream).expect("feed git fast-import");
    assert!(child.wait().expect("wait").success(), "git fast-import failed");
}

pub(crate) fn bare_repo(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).expect("mkdir");
    git(path, &["init", "-q", "--bare"]);
    path.to_path_buf()
}

fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).expect("remove old copy");
    }
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("run cp");
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

/// The processes a running process started (git, mostly), so that we can wait for them to
/// finish after killing their parent: an orphaned `git pack-objects` keeps a core busy.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// Wait (bounded) until none of `pids` is running any more; zombies count as gone.
pub(crate) fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    };
    while pids.iter().any(running) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// When to kill the backup.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// After a fixed time.
    After(Duration),
    /// As soon as a temporary file appears in the vault's `tmp/` (a data file being written).
    TmpFileAppears,
    /// As soon as the first data file is published (the pack; its index is next).
    DataFileAppears,
    /// As soon as the snapshot file exists (before or after its ledger entry: best effort).
    SnapshotAppears,
}

/// A vault holding one full backup of a repository that has since grown by several MiB of
/// incompressible objects, so that the next backup takes long enough to be killed in any phase.
struct Setup {
    w: World,
    repo: PathBuf,
    first: String,
    first_refs: RefState,
    pristine_vault: PathBuf,
    pristine_cache: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let w = World::new();
        w.init();
        let repo = bare_repo(&w.path("src/big.git"));
        add_noise_commits(&repo, 1, 4, 32 * 1024);
        let report = w.backup(&[repo.to_str().expect("utf-8")]);
        let first = report["snapshot"].as_str().expect("snapshot id").to_string();
        let first_refs = refs(&repo);
        add_noise_commits(&repo, 2, 6, 1 << 20);
        let pristine_vault = w.path("pristine/vault");
        let pristine_cache = w.path("pristine/cache");
        std::fs::create_dir_all(w.path("pristine")).expect("mkdir");
        copy_dir(&w.vault, &pristine_vault);
        copy_dir(&w.cache, &pristine_cache);
        Self { w, repo, first, first_refs, pristine_vault, pristine_cache }
    }

    /// Back to the vault (and this machine's cache of it) as it was after the first backup.
    fn reset(&self) {
        copy_dir(&self.pristine_vault, &self.w.vault);
        copy_dir(&self.pristine_cache, &self.w.cache);
    }

    fn spawn_backup(&self) -> Child {
        self.spawn_backup_with(&[])
    }

    fn spawn_backup_with(&self, extra: &[&str]) -> Child {
        let mut args = vec!["backup"];
        args.extend(extra);
        args.push(self.repo.to_str().expect("utf-8"));
        self.w.cmd(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start gitvault backup")
    }

    /// Wait for `moment`, or for the child to end on its own. Returns false when the moment
    /// never came (the backup finished first).
    fn wait_for(&self, child: &mut Child, moment: Moment) -> bool {
        let start = Instant::now();
        let data_before = files_under(&self.w.vault.join("data")).len();
        let snaps_before = files_under(&self.w.vault.join("snapshots")).len();
        loop {
            let reached = match moment {
                Moment::After(d) => start.elapsed() >= d,
                Moment::TmpFileAppears => !files_under(&self.w.vault.join("tmp")).is_empty(),
                Moment::DataFileAppears => files_under(&self.w.vault.join("data")).len() > data_before,
                Moment::SnapshotAppears => files_under(&self.w.vault.join("snapshots")).len() > snaps_before,
            };
            if reached {
                return true;
            }
            if child.try_wait().expect("try_wait").is_some() || start.elapsed() > Duration::from_secs(60) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Kill a backup at `moment` and check every promise. `backup_first`: the next command is a
    /// backup rather than a verify (both must clean up after the killed writer). Returns
    /// whether the backup was really killed, and whether it left temporaries behind.
    fn kill_at(&self, moment: Moment, label: &str, backup_first: bool, read_data: bool) -> (bool, bool) {
        self.reset();
        let mut child = self.spawn_backup();
        let child_started = Instant::now();
        let reached = self.wait_for(&mut child, moment);
        let orphans = children_of(child.id());
        child.kill().expect("kill -9 the backup");
        let at = child_started.elapsed();
        let status = child.wait().expect("wait for the killed backup");
        wait_gone(&orphans);
        let killed = status.code().is_none();
        // Shown when the test fails: which phase the kill hit.
        eprintln!(
            "{label}: killed {killed} at {at:?}; vault holds {:?}",
            files_under(&self.w.vault).into_iter().filter(|f| !f.starts_with("keys/")).collect::<Vec<_>>()
        );
        assert!(reached || !killed, "{label}: killed before the moment came");

        let tmp = self.w.vault.join("tmp");
        let leftovers = files_under(&tmp);
        let repo = self.repo.to_str().expect("utf-8");
        let verify = |read_data: bool| {
            let mut args = vec!["verify"];
            if read_data {
                args.push("--read-data");
            }
            let out = self.w.run(&args);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{label}: verify after kill -9 must pass\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!stdout.contains("DAMAGE"), "{label}: {stdout}");
            stdout
        };
        let after_backup = if backup_first {
            let report = self.w.backup(&[repo]);
            Some(report["snapshot"].as_str().expect("snapshot id").to_string())
        } else {
            let stdout = verify(false);
            for left in &leftovers {
                assert!(
                    stdout.contains(&format!("removed tmp/{left}")),
                    "{label}: verify reports removing {left}:\n{stdout}"
                );
            }
            None
        };
        let still: BTreeSet<String> = files_under(&tmp).intersection(&leftovers).cloned().collect();
        assert!(still.is_empty(), "{label}: the next command removes the killed writer's temporaries: {still:?}");

        assert_restores_exactly(&self.w, &self.first, None, &self.first_refs, &format!("{label}-first"));
        let next = match after_backup {
            Some(id) => id,
            None => self.w.backup(&[repo])["snapshot"].as_str().expect("snapshot id").to_string(),
        };
        assert_restores_exactly(&self.w, &next, None, &refs(&self.repo), &format!("{label}-next"));
        verify(read_data);
        assert!(files_under(&tmp).is_empty(), "{label}: tmp/ is empty after a clean backup and verify");
        (killed, !leftovers.is_empty())
    }
}

#[test]
fn kill_9_at_timed_moments_of_a_backup_loses_nothing() {
    let s = Setup::new();
    let mut killed = 0;
    let delays = [10, 40, 100, 250, 500, 900, 1400];
    for ms in delays {
        let (k, _) = s.kill_at(Moment::After(Duration::from_millis(ms)), &format!("after-{ms}ms"), false, false);
        killed += usize::from(k);
    }
    // The later moments may find the backup done on a fast machine; most must be real kills.
    assert!(
        killed >= delays.len() / 2,
        "only {killed} of {} backups were killed: make the repository bigger",
        delays.len()
    );
}

#[test]
fn kill_9_while_data_is_written_loses_nothing_and_tmp_is_cleaned() {
    let s = Setup::new();
    // The temporary may be published between seeing it and the kill; a second try is fine.
    for (label, backup_first, read_data) in [("tmp-verify", false, true), ("tmp-backup", true, false)] {
        let hit = (0..3).any(|i| {
            s.kill_at(Moment::TmpFileAppears, &format!("{label}-{i}"), backup_first, read_data) == (true, true)
        });
        assert!(hit, "{label}: a backup killed while writing a data file leaves a temporary");
    }
    let (killed, _) = s.kill_at(Moment::DataFileAppears, "data-published", false, true);
    assert!(killed, "killed after the first data file was published");
    s.kill_at(Moment::SnapshotAppears, "snapshot-written", false, false);
}

/// What a killed backup leaves in the local cache (a temporary copy of the whole pack) must
/// not pile up: a later command cleans it, as it cleans the vault's `tmp/`. (A full backup of
/// a source that is not one pack has git write such a copy; an incremental streams a thin pack
/// and writes none.)
#[test]
fn kill_9_leaves_no_pack_scratch_in_the_cache() {
    let s = Setup::new();
    s.reset();
    let mut child = s.spawn_backup_with(&["--type", "full"]);
    assert!(s.wait_for(&mut child, Moment::TmpFileAppears), "the backup reached the storing phase");
    let orphans = children_of(child.id());
    child.kill().expect("kill");
    child.wait().expect("wait");
    wait_gone(&orphans);
    let scratch = s.w.cache.join("tmp");
    assert!(!files_under(&scratch).is_empty(), "the killed backup had a pack in the cache");
    s.w.backup(&[s.repo.to_str().expect("utf-8")]);
    s.w.ok(&["verify"]);
    let left = files_under(&scratch);
    assert!(left.is_empty(), "scratch of the killed backup is still in the cache: {left:?}");
}

#[test]
fn two_backups_into_one_vault_at_the_same_time_both_land() {
    let w = World::new();
    w.init();
    let a = bare_repo(&w.path("src/alpha.git"));
    let b = bare_repo(&w.path("src/beta.git"));
    let mut expected = Vec::new();
    for round in 0..3u64 {
        add_noise_commits(&a, 100 + round, 3, 200 * 1024);
        add_noise_commits(&b, 200 + round, 3, 200 * 1024);
        let spawn = |repo: &Path| {
            w.cmd(&["backup", "--json", repo.to_str().expect("utf-8")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start gitvault backup")
        };
        let (ca, cb) = (spawn(&a), spawn(&b));
        for (child, repo, name) in [(ca, &a, "alpha"), (cb, &b, "beta")] {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: concurrent backup of {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup --json");
            let id = report["snapshot"].as_str().expect("snapshot id").to_string();
            expected.push((id, name, refs(repo)));
        }
    }
    let listed: Vec<serde_json::Value> = w.snapshots();
    assert_eq!(listed.len(), expected.len(), "every concurrent backup is listed: {listed:#?}");
    for (id, name, _) in &expected {
        let row = listed.iter().find(|s| s["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} listed"));
        assert_eq!(row["names"], serde_json::json!([name]), "{row:#}");
    }
    // Both landed in the ledger: verify has nothing to report, not even an unrecorded snapshot.
    let json: serde_json::Value = serde_json::from_str(&w.ok(&["verify", "--json"])).expect("verify --json");
    assert_eq!(json["ok"], true, "{json:#}");
    assert_eq!(json["warnings"], serde_json::json!([]), "every snapshot is in the ledger: {json:#}");
    // The init entry and one entry per backup, none lost in a race.
    assert_eq!(json["ledger_entries"].as_u64(), Some(1 + expected.len() as u64), "{json:#}");
    for (i, (id, name, state)) in expected.iter().enumerate() {
        assert_restores_exactly(&w, id, None, state, &format!("concurrent-{i}-{name}"));
    }
}

#[test]
fn two_backups_of_the_same_source_at_the_same_time_both_land() {
    let w = World::new();
    w.init();
    let a = bare_repo(&w.path("src/alpha.git"));
    add_noise_commits(&a, 300, 4, 300 * 1024);
    let path = a.to_str().expect("utf-8");
    w.backup(&[path]);
    add_noise_commits(&a, 301, 4, 300 * 1024);
    let spawn = || {
        w.cmd(&["backup", "--json", path])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gitvault backup")
    };
    let (c1, c2) = (spawn(), spawn());
    let state = refs(&a);
    for (i, child) in [c1, c2].into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "backup {i}: {}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let id = report["snapshot"].as_str().expect("snapshot id").to_string();
        assert_restores_exactly(&w, &id, None, &state, &format!("same-source-{i}"));
    }
    assert_eq!(w.snapshots().len(), 3);
    let json: serde_json::Value = serde_json::from_str(&w.ok(&["verify", "--read-data", "--json"])).expect("verify");
    assert_eq!(json["ok"], true, "{json:#}");
    // Each snapshot holds its own pack of the same objects: twice the bytes, both valid.
    assert!(json["problems"].as_array().expect("problems").is_empty(), "{json:#}");
}
