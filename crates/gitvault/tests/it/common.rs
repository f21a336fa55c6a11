//! Test harness: a temporary world with a vault, a cache, real git repositories built by
//! scripted git commands, and the real `gitvault` binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gitvault_git::{Git, RefState};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct World {
    pub dir: tempfile::TempDir,
    pub vault: PathBuf,
    pub cache: PathBuf,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = dir.path().join("vault");
        let cache = dir.path().join("cache");
        Self { dir, vault, cache }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `gitvault` with the vault, cache and passphrase of this world.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd_without_vault(&[]);
        c.arg("--vault").arg(&self.vault).args(args);
        c
    }

    /// `gitvault` with the cache and passphrase of this world, and no vault.
    pub fn cmd_without_vault(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gitvault"));
        c.args(args);
        c.env("GITVAULT_PASSWORD", PASSWORD)
            .env("GITVAULT_CACHE_DIR", &self.cache)
            .env_remove("GITVAULT_VAULT")
            .env_remove("GITVAULT_PASSWORD_FILE")
            .env_remove("GITVAULT_TO_PASSWORD")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.dir.path());
        c
    }

    /// [`World::cmd_without_vault`] reaching an S3 server at `endpoint` the AWS way, with
    /// `secret` as the secret key (tests check it is never printed).
    pub fn s3_cmd(&self, endpoint: &str, secret: &str, args: &[&str]) -> Command {
        let mut c = self.cmd_without_vault(args);
        c.env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env_remove("AWS_PROFILE");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run gitvault")
    }

    /// Run, require exit code 0, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "gitvault {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// A vault with cheap key derivation (tests unlock it hundreds of times).
    pub fn init(&self) {
        self.ok(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    }

    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["snapshots", "--json"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("snapshots --json is a JSON array")
    }

    pub fn latest_id(&self) -> String {
        self.snapshots().last().expect("a snapshot")["id"].as_str().expect("id").to_string()
    }

    /// Back up and return the new snapshot id (from `backup --json`).
    pub fn backup(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["backup", "--json"];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        serde_json::from_str(&out).expect("backup --json")
    }
}

/// Run git with a fixed identity and clock-independent config.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.org")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.org")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn new_repo(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).expect("mkdir");
    git(path, &["init", "-q"]);
    path.to_path_buf()
}

/// Commit `content` to `file` and return the commit id.
pub fn commit(repo: &Path, file: &str, content: &[u8], msg: &str) -> String {
    let p = repo.join(file);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, content).expect("write");
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", msg]);
    git(repo, &["rev-parse", "HEAD"])
}

/// Deterministic incompressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn refs(repo: &Path) -> RefState {
    Git::new().read_refs(repo).expect("read refs")
}

/// Restore `snapshot` into a fresh directory and require refs identical to `expected` and a
/// clean `git fsck --full`.
pub fn assert_restores_exactly(w: &World, snapshot: &str, repo: Option<&str>, expected: &RefState, label: &str) {
    let target = w.path(&format!("restore-{label}.git"));
    let mut args = vec!["restore", snapshot, "--target", target.to_str().expect("utf-8 path")];
    if let Some(r) = repo {
        args.extend_from_slice(&["--repo", r]);
    }
    w.ok(&args);
    let got = refs(&target);
    assert_eq!(got.refs, expected.refs, "{label}: refs differ");
    assert_eq!(got.head, expected.head, "{label}: HEAD differs");
    Git::new().fsck(&target).unwrap_or_else(|e| panic!("{label}: fsck failed: {e}"));
}

/// Every file under `dir` (none when it does not exist), as `/`-separated paths relative to it.
pub fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.insert(rel.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}
