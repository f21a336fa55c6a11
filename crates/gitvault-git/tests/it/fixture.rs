//! A sandbox of scripted git repositories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use gitvault_git::{Git, ObjectId};
use tempfile::TempDir;

/// A temporary directory with its own empty git configuration.
pub struct Sandbox {
    dir: TempDir,
    global_config: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let global_config = dir.path().join("gitconfig");
        fs::write(&global_config, "").expect("write empty global config");
        Self { dir, global_config }
    }

    pub fn global_config(&self) -> &Path {
        &self.global_config
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The library's entry point, isolated from the machine's git configuration the same way
    /// as the scripted commands.
    pub fn git(&self) -> Git {
        Git::new().env("GIT_CONFIG_GLOBAL", &self.global_config).env("GIT_CONFIG_NOSYSTEM", "1")
    }

    /// Runs a scripted git command in `dir` and returns its trimmed stdout; panics on failure.
    pub fn run(&self, dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(["-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", &self.global_config)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Ada Author")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
            .env("GIT_COMMITTER_NAME", "Cy Committer")
            .env("GIT_COMMITTER_EMAIL", "cy@example.com")
            .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .output()
            .expect("run git");
        assert!(
            output.status.success(),
            "git {args:?} failed in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("git output is UTF-8").trim().to_owned()
    }

    /// Creates a repository with a work tree.
    pub fn init(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        fs::create_dir_all(&path).expect("create repo dir");
        self.run(&path, &["init", "-q"]);
        path
    }

    /// Writes `file`, commits everything, returns the new commit.
    pub fn commit(&self, repo: &Path, file: &str, content: &str, message: &str) -> ObjectId {
        fs::write(repo.join(file), content).expect("write file");
        self.run(repo, &["add", "--all"]);
        self.run(repo, &["commit", "-q", "-m", message]);
        self.rev(repo, "HEAD")
    }

    pub fn rev(&self, repo: &Path, rev: &str) -> ObjectId {
        oid(&self.run(repo, &["rev-parse", "--verify", rev]))
    }

    pub fn file_url(&self, repo: &Path) -> String {
        format!("file://{}", repo.display())
    }
}

pub fn oid(s: &str) -> ObjectId {
    ObjectId::parse(s).expect("valid object id")
}

/// The interesting commits of [`rich_repo`].
pub struct Rich {
    pub path: PathBuf,
    pub first: ObjectId,
    pub second: ObjectId,
    pub merge: ObjectId,
    pub orphan: ObjectId,
}

/// A repository with every kind of ref gitvault must carry: branches with a merge, an
/// annotated tag, a lightweight tag, tags of a tree, a blob and another tag, notes, a custom
/// ref and an unrelated history.
pub fn rich_repo(sb: &Sandbox, name: &str) -> Rich {
    let repo = sb.init(name);
    let first = sb.commit(&repo, "a.txt", "one\n", "first");
    let second = sb.commit(&repo, "a.txt", "two\n", "second");
    sb.run(&repo, &["checkout", "-q", "-b", "feature"]);
    sb.commit(&repo, "b.txt", "feature\n", "feature 1");
    sb.commit(&repo, "b.txt", "feature 2\n", "feature 2");
    sb.run(&repo, &["checkout", "-q", "main"]);
    sb.commit(&repo, "c.txt", "main\n", "third");
    sb.run(&repo, &["merge", "-q", "--no-ff", "-m", "merge feature", "feature"]);
    let merge = sb.rev(&repo, "HEAD");

    sb.run(&repo, &["tag", "-a", "v1", "-m", "release 1"]);
    sb.run(&repo, &["tag", "light", first.as_str()]);
    let tree = sb.run(&repo, &["rev-parse", &format!("{second}^{{tree}}")]);
    sb.run(&repo, &["tag", "-a", "treetag", "-m", "a tree", &tree]);
    let blob = sb.run(&repo, &["rev-parse", &format!("{second}:a.txt")]);
    sb.run(&repo, &["tag", "-a", "blobtag", "-m", "a blob", &blob]);
    sb.run(&repo, &["tag", "-a", "nested", "-m", "tag of a tag", "v1"]);
    sb.run(&repo, &["notes", "add", "-m", "a note", second.as_str()]);
    sb.run(&repo, &["update-ref", "refs/custom/x", first.as_str()]);

    sb.run(&repo, &["checkout", "-q", "--orphan", "other"]);
    sb.run(&repo, &["rm", "-q", "-rf", "."]);
    let orphan = sb.commit(&repo, "o.txt", "unrelated\n", "unrelated root");
    sb.run(&repo, &["checkout", "-q", "main"]);
    Rich { path: repo, first, second, merge, orphan }
}
