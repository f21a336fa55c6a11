//! A vault on an SFTP server: the whole path (init, backup, incremental, restore, verify), bad
//! connections (unknown host key, refused key, closed port) and a kill -9 mid-backup, against a
//! real OpenSSH sshd on 127.0.0.1 driven through `--vault sftp://…`. Without sshd this fails
//! (install Debian's openssh-server) unless GITVAULT_TEST_NO_SFTP=1 asks to skip SFTP.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gitvault_storage::testing::{Sshd, free_port};

use crate::common::{PASSWORD, World, commit, files_under, new_repo, noise, refs};

/// `gitvault` against the vault `url`, trusting and authenticating through the ssh_config
/// `ssh_config` only (no agent, no `~/.ssh`).
pub(crate) fn gitvault(w: &World, url: &str, ssh_config: &Path, args: &[&str]) -> Command {
    let mut c = gitvault_without_vault(w, ssh_config, args);
    c.arg("--vault").arg(url);
    c
}

/// [`gitvault`] with no `--vault`: for commands that name their vaults otherwise (`copy`).
fn gitvault_without_vault(w: &World, ssh_config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gitvault"));
    c.args(args)
        .env("GITVAULT_PASSWORD", PASSWORD)
        .env("GITVAULT_CACHE_DIR", &w.cache)
        .env("GITVAULT_SSH_CONFIG", ssh_config)
        .env("HOME", w.dir.path())
        // The ssh master's control directory goes there: a killed gitvault's stays in the test's.
        .env("TMPDIR", w.dir.path())
        .env_remove("GITVAULT_SSH_KEY")
        .env_remove("GITVAULT_VAULT")
        .env_remove("GITVAULT_TO_PASSWORD")
        .env_remove("SSH_AUTH_SOCK")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    c
}

struct SftpWorld {
    sshd: Sshd,
    w: World,
    url: String,
    /// The vault directory, as the server's disk holds it.
    vault: PathBuf,
}

impl SftpWorld {
    fn new() -> Option<Self> {
        let sshd = Sshd::start_unless_skipped()?;
        let vault = sshd.srv().join("team/vault");
        let url = format!("sftp://{}@127.0.0.1:{}{}", sshd.user(), sshd.port(), vault.display());
        Some(Self { sshd, w: World::new(), url, vault })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        gitvault(&self.w, &self.url, &self.sshd.ssh_config(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run gitvault");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn snapshot_ids(&self) -> Vec<String> {
        let snaps: serde_json::Value = serde_json::from_str(&self.ok(&["snapshots", "--json"])).expect("json");
        snaps.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id").to_string()).collect()
    }

    fn restore_and_check(&self, id: &str, expected: &gitvault_git::RefState, label: &str) {
        let target = self.w.path(&format!("{label}.git"));
        self.ok(&["restore", id, "--target", target.to_str().expect("utf-8")]);
        assert_eq!(&refs(&target).refs, &expected.refs, "{label}");
        gitvault_git::Git::new().fsck(&target).expect("fsck");
    }
}

#[test]
fn a_vault_on_sftp_backs_up_and_restores_exactly() {
    let Some(s) = SftpWorld::new() else { return };
    s.ok(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    let out = s.cmd(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "a second init in the same directory is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    assert!(s.vault.join("config").exists(), "the vault is on the server");
    assert!(!s.w.vault.exists());

    let r = new_repo(&s.w.path("src/app"));
    commit(&r, "big.bin", &noise(5, 6 << 20), "a pack of several MiB, streamed");
    let src = r.to_str().expect("utf-8");
    s.ok(&["backup", src]);
    let first = refs(&r);
    commit(&r, "more.bin", &noise(6, 100_000), "more");
    s.ok(&["backup", src]);
    let second = refs(&r);
    let ids = s.snapshot_ids();
    assert_eq!(ids.len(), 2);
    assert!(s.ok(&["verify", "--read-data"]).contains("no problems found"));
    s.restore_and_check(&ids[0], &first, "sftp-full");
    s.restore_and_check(&ids[1], &second, "sftp-incr");
    assert!(files_under(&s.vault.join("tmp")).is_empty(), "no temporaries left");
}

#[test]
fn the_key_can_be_given_with_ssh_key() {
    let Some(s) = SftpWorld::new() else { return };
    let keyless = s.sshd.write_client_config("keyless", &s.sshd.known_hosts(), None);
    let key = s.sshd.user_key();
    let run = |args: &[&str]| gitvault(&s.w, &s.url, &keyless, args).output().expect("run");
    let out = run(&["--ssh-key", key.to_str().expect("utf-8"), "init", "--kdf-memory-kib", "1024"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = gitvault(&s.w, &s.url, &keyless, &["snapshots"]).env("GITVAULT_SSH_KEY", &key).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Require exit code 1, fast, and a message that names the destination and each of `causes`.
fn assert_connect_fails(out: &Output, started: Instant, port: u16, causes: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15), "permanent failures are not retried: {stderr}");
    assert!(stderr.contains("sftp://") && stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    for cause in causes {
        assert!(stderr.contains(cause), "should say {cause:?}: {stderr}");
    }
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}

#[test]
fn an_unknown_host_key_is_refused_and_nothing_is_written() {
    let Some(s) = SftpWorld::new() else { return };
    let untrusting = s.sshd.write_client_config("untrusting", &s.sshd.empty_known_hosts(), Some(&s.sshd.user_key()));
    let started = Instant::now();
    let out = gitvault(&s.w, &s.url, &untrusting, &["init", "--kdf-memory-kib", "1024"]).output().expect("run");
    assert_connect_fails(&out, started, s.sshd.port(), &["Host key verification failed", "known_hosts"]);
    assert!(!s.vault.exists(), "nothing was written");
    assert_eq!(std::fs::read_to_string(s.sshd.empty_known_hosts()).expect("read"), "", "no key was trusted");
}

#[test]
fn a_refused_key_is_permission_denied() {
    let Some(s) = SftpWorld::new() else { return };
    s.ok(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    let keyless = s.sshd.write_client_config("keyless", &s.sshd.known_hosts(), None);
    let wrong = s.sshd.other_key();
    let started = Instant::now();
    let out = gitvault(&s.w, &s.url, &keyless, &["--ssh-key", wrong.to_str().expect("utf-8"), "snapshots"])
        .output()
        .expect("run");
    assert_connect_fails(&out, started, s.sshd.port(), &["Permission denied", "refused the key"]);
}

#[test]
fn a_closed_port_fails_fast() {
    let Some(s) = SftpWorld::new() else { return };
    let port = free_port();
    let url = format!("sftp://{}@127.0.0.1:{port}/srv/vault", s.sshd.user());
    let started = Instant::now();
    let out = gitvault(&s.w, &url, &s.sshd.ssh_config(), &["snapshots"]).output().expect("run");
    assert_connect_fails(&out, started, port, &["Connection refused"]);
}

#[test]
fn a_password_in_the_url_is_a_usage_error_and_is_not_printed() {
    let Some(s) = SftpWorld::new() else { return };
    let url = format!("sftp://{}:hunter2@127.0.0.1:{}/srv/vault", s.sshd.user(), s.sshd.port());
    let out = gitvault(&s.w, &url, &s.sshd.ssh_config(), &["snapshots"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("passwords") && !stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn kill_9_mid_backup_loses_nothing() {
    let Some(s) = SftpWorld::new() else { return };
    s.ok(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    let r = new_repo(&s.w.path("src/app"));
    commit(&r, "a.bin", &noise(1, 100_000), "first");
    let src = r.to_str().expect("utf-8");
    s.ok(&["backup", src]);
    let first = refs(&r);
    for i in 0..4 {
        commit(&r, &format!("big{i}.bin"), &noise(10 + i, 4 << 20), "big");
    }
    let mut child = s.cmd(&["backup", src]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let tmp = s.vault.join("tmp");
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_under(&tmp).is_empty() && child.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "the backup never wrote a temporary");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("kill -9");
    let status = child.wait().expect("wait");
    assert!(status.code().is_none(), "killed while writing (the backup finished first: make it bigger)");
    assert!(!files_under(&tmp).is_empty(), "the killed writer left its temporary");

    assert!(s.ok(&["verify"]).contains("no problems found"));
    let ids = s.snapshot_ids();
    assert_eq!(ids.len(), 1, "the killed backup committed nothing");
    s.restore_and_check(&ids[0], &first, "before-kill");
    s.ok(&["backup", src]);
    let ids = s.snapshot_ids();
    assert_eq!(ids.len(), 2);
    s.restore_and_check(&ids[1], &refs(&r), "after-kill");
    assert!(s.ok(&["verify", "--read-data"]).contains("no problems found"));
    assert!(files_under(&tmp).is_empty(), "the killed writer's temporary was cleaned");
}

#[test]
fn copy_goes_into_and_out_of_an_sftp_vault() {
    let Some(s) = SftpWorld::new() else { return };
    let run = |args: &[&str]| {
        let out = gitvault_without_vault(&s.w, &s.sshd.ssh_config(), args).output().expect("run gitvault");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let repo = new_repo(&s.w.path("src.git"));
    commit(&repo, "a.bin", &noise(1, 300_000), "one");
    s.w.init();
    s.w.ok(&["backup", repo.to_str().expect("utf-8")]);
    let expected = refs(&repo);
    let local = s.w.vault.to_str().expect("utf-8").to_string();
    // Local → SFTP, into a replica holding the local vault's keys: stored bytes copied as they are.
    s.ok(&["init", "--keys-from", &local]);
    run(&["copy", "--from", &local, "--to", &s.url]);
    let id = s.snapshot_ids().pop().expect("the copied snapshot");
    s.restore_and_check(&id, &expected, "from-sftp");
    s.ok(&["verify", "--read-data"]);
    // SFTP → a new local vault with its own keys: every object decrypted and sealed again.
    let other = s.w.path("other-vault");
    let other = other.to_str().expect("utf-8");
    run(&["init", "--vault", other, "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    run(&["copy", "--from", &s.url, "--to", other]);
    let target = s.w.path("from-other.git");
    run(&["restore", "--vault", other, &id, "--target", target.to_str().expect("utf-8")]);
    assert_eq!(refs(&target).refs, expected.refs);
}
