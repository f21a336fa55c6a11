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
