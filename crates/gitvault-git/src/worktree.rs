//! Repositories gitvault writes itself: the metadata repository of a forge repository, a
//! work tree of JSON files committed once per backup.

use std::path::Path;

use crate::{Error, Git};

/// Who commits metadata: gitvault, at the backup's time.
const IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "gitvault"),
    ("GIT_AUTHOR_EMAIL", "gitvault@localhost"),
    ("GIT_COMMITTER_NAME", "gitvault"),
    ("GIT_COMMITTER_EMAIL", "gitvault@localhost"),
];

impl Git {
    /// A new, empty repository with a work tree at `dir` (branch `main`, the "files" ref
    /// backend, no hooks from a template).
    pub fn init_work_tree(&self, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let finished = self
            .cmd(None)
            .env("GIT_DEFAULT_REF_FORMAT", "files")
            .args([
                "-c",
                "init.defaultRefFormat=files",
                "init",
                "--quiet",
                "--template=",
                "--initial-branch=main",
                "--",
            ])
            .arg(dir)
            .output()?;
        if finished.status.success() { Ok(()) } else { Err(finished.into_error(Some(dir.to_path_buf()))) }
    }

    /// Turns the bare repository at `dir/.git` (a restore) into the repository of the work tree
    /// `dir`, its files checked out as committed (no filters: pointer files stay pointers).
    pub fn adopt_work_tree(&self, dir: &Path) -> Result<(), Error> {
        let git_dir = dir.join(".git");
        self.cmd(Some(&git_dir)).args(["config", "core.bare", "false"]).run()?;
        self.cmd(Some(dir))
            .args(["-c", "core.autocrlf=false", "checkout", "--quiet", "--force", "HEAD", "--", "."])
            .run()?;
        Ok(())
    }

    /// Commits everything in the work tree `dir` (additions, changes, deletions) when anything
    /// changed, as gitvault at `date` (RFC 3339). Returns whether a commit was made.
    pub fn commit_all(&self, dir: &Path, message: &str, date: &str) -> Result<bool, Error> {
        self.cmd(Some(dir)).args(["-c", "core.autocrlf=false", "add", "--all", "--", "."]).run()?;
        let unchanged = self.cmd(Some(dir)).args(["diff", "--cached", "--quiet"]).output()?.status.success();
        let has_head =
            self.cmd(Some(dir)).args(["rev-parse", "--verify", "--quiet", "HEAD"]).output()?.status.success();
        if unchanged && has_head {
            return Ok(false);
        }
        let mut cmd = self
            .cmd(Some(dir))
            .args(["-c", "commit.gpgsign=false", "commit", "--quiet", "--allow-empty", "--no-verify", "-m", message])
            .env_owned("GIT_AUTHOR_DATE", date)
            .env_owned("GIT_COMMITTER_DATE", date);
        for (k, v) in IDENTITY {
            cmd = cmd.env(k, v);
        }
        cmd.run()?;
        Ok(true)
    }
}

/// One path that differs between two commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeChange {
    /// `A` added, `M` modified, `D` deleted, `T` type changed.
    pub status: char,
    pub path: String,
}

impl Git {
    /// The paths that differ between the trees of commits `old` and `new` (no rename
    /// detection), in path order.
    pub fn diff_trees(&self, repo: &Path, old: &str, new: &str) -> Result<Vec<TreeChange>, Error> {
        let out = self
            .cmd(Some(repo))
            .args(["-c", "core.quotePath=false", "diff-tree", "-r", "-z", "--name-status", "--no-renames", old, new])
            .run()?;
        let mut fields = out.split(|&b| b == 0).filter(|f| !f.is_empty());
        let mut changes = Vec::new();
        while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
            changes.push(TreeChange {
                status: status.first().map_or('?', |&b| char::from(b)),
                path: String::from_utf8_lossy(path).into_owned(),
            });
        }
        Ok(changes)
    }

    /// The contents of `<commit>:<path>` for each of `paths` (`None` where there is no such
    /// blob), read by one `git cat-file --batch`.
    pub fn read_blobs(&self, repo: &Path, commit: &str, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let specs: Vec<String> = paths.iter().map(|p| format!("{commit}:{p}")).collect();
        self.cat_batch(repo, &specs)
    }

    /// The contents of each object named by `specs` (ids or `<rev>:<path>`; `None` for one that
    /// does not exist), read by one `git cat-file --batch`.
    pub(crate) fn cat_batch(&self, repo: &Path, specs: &[String]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        self.cat_batch_as(repo, specs, false)
    }

    /// [`Git::cat_batch`] at a low CPU priority (see `Invocation::background`).
    pub(crate) fn cat_batch_in_background(&self, repo: &Path, specs: &[String]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        self.cat_batch_as(repo, specs, true)
    }

    fn cat_batch_as(&self, repo: &Path, specs: &[String], background: bool) -> Result<Vec<Option<Vec<u8>>>, Error> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = Vec::new();
        for s in specs {
            input.extend_from_slice(s.as_bytes());
            input.push(b'\n');
        }
        // All the input is there at once: `--buffer` lets git write its answers in large
        // blocks instead of flushing after each object (a wake-up of both sides per object).
        let cmd = self.cmd(Some(repo));
        let cmd = if background { cmd.background() } else { cmd };
        let out = cmd.args(["cat-file", "--buffer", "--batch"]).input(input).run()?;
        // `<oid> <type> <size>\n<content>\n`, or `<spec> missing\n`, once per spec, in order.
        let mut blobs = Vec::with_capacity(specs.len());
        let mut rest = out.as_slice();
        for _ in specs {
            let nl = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or(Error::Parse { what: "cat-file --batch answer", line: "cut short".into() })?;
            let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
            if header.ends_with(" missing") || header.ends_with(" ambiguous") {
                blobs.push(None);
                rest = &rest[nl + 1..];
                continue;
            }
            let size: usize = header
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::Parse { what: "cat-file --batch header", line: header.clone() })?;
            let body =
                rest.get(nl + 1..nl + 1 + size).ok_or(Error::Parse { what: "cat-file --batch body", line: header })?;
            blobs.push(Some(body.to_vec()));
            rest = rest.get(nl + 1 + size + 1..).unwrap_or_default();
        }
        Ok(blobs)
    }
}
