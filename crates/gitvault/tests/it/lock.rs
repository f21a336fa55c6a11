//! `--lock-days`: a backup into an S3 bucket with Object Lock (moto, 127.0.0.1) locks what it
//! writes and lengthens the locks of the data it builds on; forget leaves a locked snapshot; a
//! vault that cannot lock refuses the flag as a usage error.

use std::time::{Duration, SystemTime};

use gitvault_storage::testing::Moto;
use gitvault_storage::{LockMode, S3Store, Store};

use crate::common::{World, commit, new_repo, noise};

const SECRET: &str = "lock-secret-that-must-never-be-printed";
const DAY: Duration = Duration::from_secs(86400);

fn run(w: &World, moto: &Moto, args: &[&str]) -> (Option<i32>, String, String) {
    let out = w.s3_cmd(&moto.endpoint(), SECRET, args).output().expect("run");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the secret was printed");
    (out.status.code(), stdout.into_owned(), stderr.into_owned())
}

fn store(moto: &Moto, bucket: &str, prefix: &str) -> S3Store {
    S3Store::new(&moto.s3_config(bucket, prefix, SECRET)).expect("store")
}

#[test]
fn a_locked_backup_in_s3_locks_its_files_and_lengthens_the_chain() {
    let Some(moto) = Moto::start_unless_skipped() else { return };
    moto.create_lock_bucket("locked");
    let w = World::new();
    let vault = "s3://locked/git";
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = run(&w, &moto, args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        stdout
    };
    ok(&["init", "--vault", vault, "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    let r = new_repo(&w.path("src/app"));
    commit(&r, "a.bin", &noise(1, 200_000), "first");
    let src = r.to_str().expect("utf-8");
    ok(&["backup", "--vault", vault, "--lock-days", "1", src]);
    let s = store(&moto, "locked", "git");
    let first: Vec<String> = s.list("data/").expect("list").into_iter().map(|o| o.path).collect();
    assert_eq!(first.len(), 2);
    let snapshots: Vec<String> = s.list("snapshots/").expect("list").into_iter().map(|o| o.path).collect();
    for path in first.iter().chain(&snapshots) {
        let r = s.retention(path).expect("retention").unwrap_or_else(|| panic!("{path} is not locked"));
        assert_eq!(r.mode, LockMode::Governance, "{path}");
        let left = r.until.duration_since(SystemTime::now()).expect("in the future");
        assert!(left > DAY - Duration::from_secs(600) && left <= DAY + Duration::from_secs(2), "{path}: {left:?}");
    }

    commit(&r, "b.bin", &noise(2, 100_000), "second");
    ok(&["backup", "--vault", vault, "--lock-days", "3", "--lock-mode", "compliance", src]);
    for path in &first {
        let r = s.retention(path).expect("retention").expect("locked");
        assert!(r.until > SystemTime::now() + 2 * DAY, "{path}: the full pack lives as long as the incremental");
        assert_eq!(r.mode, LockMode::Compliance);
    }

    // forget leaves a locked snapshot and says until when.
    let out = ok(&["forget", "--vault", vault, "--keep-last", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["removed"], 0, "{v}");
    assert_eq!(v["locked"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(s.list("snapshots/").expect("list").len(), 2, "still listed, not hidden behind a delete marker");
    assert!(ok(&["verify", "--vault", vault, "--read-data"]).contains("no problems found"));
}

#[test]
fn lock_days_on_a_vault_that_cannot_lock_is_a_usage_error() {
    let Some(moto) = Moto::start_unless_skipped() else { return };
    moto.create_bucket("plain");
    let w = World::new();
    w.init();
    let r = new_repo(&w.path("src/app"));
    commit(&r, "a.bin", &noise(3, 1000), "first");
    let src = r.to_str().expect("utf-8");
    let local = w.vault.display().to_string();
    let (code, _, stderr) = run(&w, &moto, &["backup", "--vault", &local, "--lock-days", "7", src]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--lock-days") && stderr.contains("cannot lock"), "{stderr}");
    assert!(w.snapshots().is_empty(), "nothing was backed up");

    let s3 = "s3://plain/v";
    let (code, _, stderr) =
        run(&w, &moto, &["init", "--vault", s3, "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = run(&w, &moto, &["backup", "--vault", s3, "--lock-days", "7", src]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("Object Lock"), "says what the bucket lacks: {stderr}");
    let (code, _, stderr) = run(&w, &moto, &["copy", "--from", &local, "--to", s3, "--lock-days", "7"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, _, stderr) = run(&w, &moto, &["backup", "--vault", &local, "--lock-mode", "compliance", src]);
    assert_eq!(code, Some(2), "--lock-mode needs --lock-days: {stderr}");
}
