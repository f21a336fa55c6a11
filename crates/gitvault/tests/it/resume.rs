//! kill -9 of a backup of several repositories, after the first one's pack is stored and before
//! the snapshot: on a local directory, in S3 and over SFTP, nothing is lost, and the rerun
//! resumes — it does not store the first repository's pack again. And kill -9 at timed moments
//! of a backup into S3 and over SFTP: the vault verifies, earlier snapshots restore, the next
//! backup completes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitvault_storage::testing::{Moto, Sshd};

use crate::common::{World, refs};
use crate::crash::{add_noise_commits, bare_repo, children_of, wait_gone};

/// `gitvault` with the vault, passphrase and backend settings.
type CmdFn<'a> = Box<dyn Fn(&World, &[&str]) -> Command + 'a>;
/// The files under a directory of the vault (`data`, `pending`), as the backend holds them.
type FilesFn<'a> = Box<dyn Fn(&str) -> Vec<String> + 'a>;

/// A vault on some backend, driven through the CLI.
struct Target<'a> {
    label: &'static str,
    w: World,
    cmd: CmdFn<'a>,
    files: FilesFn<'a>,
}

impl Target<'_> {
    fn ok(&self, args: &[&str]) -> String {
        let out = (self.cmd)(&self.w, args).output().expect("run gitvault");
        assert_eq!(out.status.code(), Some(0), "{}: {args:?}: {}", self.label, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

fn local_files(root: &Path, dir: &str) -> Vec<String> {
    crate::common::files_under(&root.join(dir)).into_iter().collect()
}

fn run(t: &Target) {
    let label = t.label;
    t.ok(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    let alpha = bare_repo(&t.w.path("src/alpha.git"));
    let beta = bare_repo(&t.w.path("src/beta.git"));
    add_noise_commits(&alpha, 11, 3, 512 * 1024);
    // Big enough that the kill lands while beta is still being packed or stored.
    add_noise_commits(&beta, 12, 40, 1 << 20);
    let (a, b) = (alpha.to_str().expect("utf-8"), beta.to_str().expect("utf-8"));

    // One repository at a time, so that the kill finds alpha stored and beta not yet.
    let mut child = (t.cmd)(&t.w, &["backup", "--jobs", "1", a, b])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    while (t.files)("pending").is_empty() {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "{label}: the backup ended before alpha's pack was recorded"
        );
        assert!(Instant::now() < deadline, "{label}: no pending record after 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let orphans = children_of(child.id());
    child.kill().expect("kill -9");
    let status = child.wait().expect("wait");
    wait_gone(&orphans);
    assert!(status.code().is_none(), "{label}: killed");
    assert!(t.ok(&["snapshots", "--json"]).trim() == "[]", "{label}: no snapshot was committed");
    let verify: serde_json::Value = serde_json::from_str(&t.ok(&["verify", "--json"])).expect("json");
    assert_eq!(verify["ok"], true, "{label}: {verify}");
    let alpha_files = (t.files)("data");
    assert_eq!(alpha_files.len(), 2, "{label}: alpha's pack and index were stored: {alpha_files:?}");

    let report: serde_json::Value = serde_json::from_str(&t.ok(&["backup", "--json", a, b])).expect("json");
    let repos = report["repositories"].as_array().expect("repositories");
    let (ra, rb) = (&repos[0], &repos[1]);
    assert_eq!(ra["name"], "alpha");
    assert!(ra["bytes_resumed"].as_u64().expect("n") > 1_000_000, "{label}: alpha resumed: {ra}");
    assert_eq!(ra["bytes_resumed"], ra["bytes_added"], "{label}: alpha stored nothing new: {ra}");
    assert_eq!(rb["bytes_resumed"], 0, "{label}: {rb}");
    let data = (t.files)("data");
    assert_eq!(data.len(), 4, "{label}: alpha's files once, beta's: {data:?}");
    assert!(alpha_files.iter().all(|f| data.contains(f)), "{label}: alpha's files are the ones stored before the kill");
    assert!((t.files)("pending").is_empty(), "{label}: pending records are removed once committed");

    let id = report["snapshot"].as_str().expect("id").to_string();
    for (name, repo) in [("alpha", &alpha), ("beta", &beta)] {
        let target = t.w.path(&format!("restored-{label}-{name}.git"));
        t.ok(&["restore", &id, "--repo", name, "--target", target.to_str().expect("utf-8")]);
        assert_eq!(refs(&target).refs, refs(repo).refs, "{label}: {name}");
        gitvault_git::Git::new().fsck(&target).expect("fsck");
    }
    let verify: serde_json::Value = serde_json::from_str(&t.ok(&["verify", "--read-data", "--json"])).expect("json");
    assert_eq!(verify["ok"], true, "{label}: {verify}");
}

/// kill -9 at timed moments of a backup (connecting, packing, uploading, committing): every
/// time the vault verifies, the first snapshot restores, and the next backup completes.
fn killed_at_moments(t: &Target) {
    let label = t.label;
    t.ok(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    let repo = bare_repo(&t.w.path("src/moments.git"));
    add_noise_commits(&repo, 21, 2, 256 * 1024);
    let path = repo.to_str().expect("utf-8");
    let first: serde_json::Value = serde_json::from_str(&t.ok(&["backup", "--json", path])).expect("json");
    let first = first["snapshot"].as_str().expect("id").to_string();
    let first_refs = refs(&repo);
    let mut state = first_refs.clone();
    for (i, ms) in [50u64, 250, 600, 1200].into_iter().enumerate() {
        add_noise_commits(&repo, 30 + i as u64, 8, 1 << 20);
        let mut child =
            (t.cmd)(&t.w, &["backup", path]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(ms));
        let orphans = children_of(child.id());
        let _ = child.kill();
        child.wait().expect("wait");
        wait_gone(&orphans);
        let verify: serde_json::Value = serde_json::from_str(&t.ok(&["verify", "--json"])).expect("json");
        assert_eq!(verify["ok"], true, "{label} after {ms} ms: {verify}");
        let target = t.w.path(&format!("moment-{label}-{i}.git"));
        t.ok(&["restore", &first, "--target", target.to_str().expect("utf-8")]);
        assert_eq!(refs(&target).refs, first_refs.refs, "{label} after {ms} ms");
        state = refs(&repo);
    }
    let last: serde_json::Value = serde_json::from_str(&t.ok(&["backup", "--json", path])).expect("json");
    let last = last["snapshot"].as_str().expect("id").to_string();
    let target = t.w.path(&format!("moment-{label}-last.git"));
    t.ok(&["restore", &last, "--target", target.to_str().expect("utf-8")]);
    assert_eq!(refs(&target).refs, state.refs, "{label}: the backup after the kills");
    let verify: serde_json::Value = serde_json::from_str(&t.ok(&["verify", "--read-data", "--json"])).expect("json");
    assert_eq!(verify["ok"], true, "{label}: {verify}");
}

#[test]
fn a_killed_backup_resumes_on_a_local_vault() {
    let w = World::new();
    let vault = w.vault.clone();
    run(&Target {
        label: "local",
        w,
        cmd: Box::new(|w, args| w.cmd(args)),
        files: Box::new(move |dir| local_files(&vault, dir)),
    });
}

fn s3_target<'a>(moto: &'a Moto, bucket: &str, label: &'static str) -> Target<'a> {
    moto.create_bucket(bucket);
    let endpoint = moto.endpoint();
    let url = format!("s3://{bucket}/v");
    let bucket = bucket.to_string();
    Target {
        label,
        w: World::new(),
        cmd: Box::new(move |w, args| {
            let mut c = w.s3_cmd(&endpoint, "test", args);
            c.args(["--vault", &url]);
            c
        }),
        files: Box::new(move |dir| {
            let (_, xml) = moto.request("GET", &format!("/{bucket}?list-type=2&prefix=v/{dir}/")).expect("list");
            xml.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_string).collect()
        }),
    }
}

#[test]
fn a_killed_backup_resumes_in_s3() {
    let Some(moto) = Moto::start_unless_skipped() else { return };
    run(&s3_target(&moto, "resume", "s3"));
}

#[test]
fn kill_9_at_timed_moments_of_a_backup_into_s3_loses_nothing() {
    let Some(moto) = Moto::start_unless_skipped() else { return };
    killed_at_moments(&s3_target(&moto, "moments", "s3-moments"));
}

fn sftp_target(sshd: &Sshd, dir: &str, label: &'static str) -> Target<'static> {
    let root: PathBuf = sshd.srv().join(dir);
    let url = format!("sftp://{}@127.0.0.1:{}{}", sshd.user(), sshd.port(), root.display());
    let config = sshd.ssh_config();
    let r2 = root.clone();
    Target {
        label,
        w: World::new(),
        cmd: Box::new(move |w, args| crate::sftp::gitvault(w, &url, &config, args)),
        files: Box::new(move |dir| local_files(&r2, dir)),
    }
}

#[test]
fn a_killed_backup_resumes_over_sftp() {
    let Some(sshd) = Sshd::start_unless_skipped() else { return };
    run(&sftp_target(&sshd, "resume", "sftp"));
}

#[test]
fn kill_9_at_timed_moments_of_a_backup_over_sftp_loses_nothing() {
    let Some(sshd) = Sshd::start_unless_skipped() else { return };
    killed_at_moments(&sftp_target(&sshd, "moments", "sftp-moments"));
}
