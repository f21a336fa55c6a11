//! Whole-repository operations: creating, checking, asking about history.

use std::path::Path;

use crate::{Error, Git, ObjectFormat, ObjectId};

impl Git {
    /// The version git reports, such as `2.47.3`.
    pub fn version(&self) -> Result<String, Error> {
        let line = self.cmd(None).arg("version").run_text()?;
        Ok(line.strip_prefix("git version ").unwrap_or(&line).to_owned())
    }

    /// Whether `ancestor` is reachable from `descendant` (`git merge-base --is-ancestor`).
    ///
    /// `false`, not an error, when either object is missing or is not a commit: callers ask
    /// this to decide between an incremental and a full backup, and "no" is the safe answer.
    pub fn is_ancestor(&self, repo: &Path, ancestor: &ObjectId, descendant: &ObjectId) -> Result<bool, Error> {
        let finished = self
            .cmd(Some(repo))
            .args(["merge-base", "--is-ancestor"])
            .args([ancestor.as_str(), descendant.as_str()])
            .output()?;
        match finished.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ if finished.stderr.contains("not a git repository") => Err(finished.into_error(Some(repo.to_path_buf()))),
            _ => {
                tracing::debug!(
                    repo = %repo.display(),
                    %ancestor,
                    %descendant,
                    stderr = %finished.stderr,
                    "is-ancestor check failed; answering false"
                );
                Ok(false)
            }
        }
    }

    /// Creates a bare repository at `path` (which may exist if empty).
    ///
    /// No template is copied: a user's `init.templateDir` could bring hooks (such as a
    /// reference-transaction hook) that would then run on every fetch into a mirror. The ref
    /// storage is forced to the files backend, which [`Git::write_refs`] writes directly.
    pub fn init_bare(&self, path: &Path, object_format: ObjectFormat) -> Result<(), Error> {
        let finished = self
            .cmd(None)
            .env("GIT_DEFAULT_REF_FORMAT", "files")
            .args(["-c", "init.defaultRefFormat=files", "init", "--bare", "--quiet", "--template="])
            .arg(format!("--object-format={object_format}"))
            .arg("--")
            .arg(path)
            .output()?;
        if finished.status.success() { Ok(()) } else { Err(finished.into_error(Some(path.to_path_buf()))) }
    }

    /// Checks the repository's integrity with `git fsck --full`.
    pub fn fsck(&self, repo: &Path) -> Result<(), Error> {
        let finished = self.cmd(Some(repo)).args(["fsck", "--full", "--no-progress", "--no-dangling"]).output()?;
        if finished.status.success() {
            return Ok(());
        }
        if finished.stderr.contains("not a git repository") {
            return Err(finished.into_error(Some(repo.to_path_buf())));
        }
        // fsck reports missing objects on stdout and broken ones on stderr; both matter.
        let stdout = crate::command::clean_stderr(&finished.stdout);
        let output = [finished.stderr.as_str(), stdout.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        Err(Error::Fsck { repo: repo.to_path_buf(), output })
    }

    /// The object format of a repository; also the cheapest way to learn that a directory is
    /// not one.
    pub(crate) fn object_format(&self, repo: &Path) -> Result<ObjectFormat, Error> {
        self.cmd(Some(repo)).args(["rev-parse", "--show-object-format"]).run_text()?.parse()
    }
}
