//! Pushing a restored repository to a remote: each ref's outcome as git reports it (a ref the
//! server refuses is an outcome, not an error), and its Git LFS objects.

use std::path::Path;

use crate::{Error, Git};

/// What became of one ref in a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Created on the remote.
    Created,
    /// Moved (fast-forward, or forced when asked).
    Updated,
    /// The remote already had it.
    UpToDate,
    /// The remote or git refused it; git's reason (`non-fast-forward`, `deny updating a hidden
    /// ref`, a hook's words...).
    Rejected(String),
}

/// One ref of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedRef {
    pub name: String,
    pub outcome: PushOutcome,
}

impl Git {
    /// Pushes `refspecs` from `repo` to `url` (`--porcelain`), replacing refs that moved
    /// elsewhere when `force`. Refs the remote refuses come back as [`PushOutcome::Rejected`];
    /// only a push that could not happen at all (no access, no such repository) is an error.
    pub fn push(&self, repo: &Path, url: &str, refspecs: &[String], force: bool) -> Result<Vec<PushedRef>, Error> {
        let mut cmd = self.cmd(Some(repo)).args(["push", "--porcelain", "--no-verify"]);
        if force {
            cmd = cmd.arg("--force");
        }
        let finished = cmd.arg(url).args(refspecs).remote(url).output()?;
        let stdout = String::from_utf8_lossy(&finished.stdout);
        let pushed = parse_porcelain(&stdout);
        if pushed.is_empty() && !finished.status.success() {
            return Err(Error::Unreachable { url: crate::redact_source(url), stderr: finished.stderr });
        }
        Ok(pushed)
    }

    /// Uploads every Git LFS object the refs of `repo` point to, that `repo` holds, to the LFS
    /// server of `url` (`<url>/info/lfs`), with git-lfs.
    pub fn lfs_push(&self, repo: &Path, url: &str) -> Result<(), Error> {
        let endpoint = format!("{}/info/lfs", url.trim_end_matches('/'));
        let finished = self
            .with_config("lfs.url", endpoint)
            .cmd(Some(repo))
            .args(["lfs", "push", "--all", url])
            .remote(url)
            .output()?;
        if finished.status.success() {
            return Ok(());
        }
        if finished.stderr.contains("is not a git command") {
            return Err(Error::LfsMissing);
        }
        Err(Error::Unreachable { url: crate::redact_source(url), stderr: finished.stderr })
    }
}

/// The ref lines of `git push --porcelain`: `FLAG \t FROM:TO \t SUMMARY [(REASON)]`.
fn parse_porcelain(stdout: &str) -> Vec<PushedRef> {
    let mut refs = Vec::new();
    for line in stdout.lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(flag), Some(spec), summary) = (fields.next(), fields.next(), fields.next().unwrap_or_default())
        else {
            continue;
        };
        let Some((_, to)) = spec.split_once(':') else { continue };
        let outcome = match flag {
            "*" => PushOutcome::Created,
            " " | "+" => PushOutcome::Updated,
            "=" => PushOutcome::UpToDate,
            "!" => {
                let reason =
                    summary.split_once('(').map_or(summary, |(_, r)| r.trim_end_matches(')')).trim().to_string();
                PushOutcome::Rejected(reason)
            }
            _ => continue,
        };
        refs.push(PushedRef { name: to.to_string(), outcome });
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_lines_become_outcomes() {
        let out = "To http://127.0.0.1:1/github/acme/api.git\n\
                   *\trefs/heads/main:refs/heads/main\t[new branch]\n\
                   =\trefs/tags/v1:refs/tags/v1\t[up to date]\n\
                   +\trefs/heads/x:refs/heads/x\t1111111...2222222 (forced update)\n\
                   !\trefs/pull/1/head:refs/pull/1/head\t[remote rejected] (deny updating a hidden ref)\n\
                   Done\n";
        let refs = parse_porcelain(out);
        assert_eq!(refs.len(), 4);
        assert_eq!(refs[0], PushedRef { name: "refs/heads/main".into(), outcome: PushOutcome::Created });
        assert_eq!(refs[1].outcome, PushOutcome::UpToDate);
        assert_eq!(refs[2].outcome, PushOutcome::Updated);
        assert_eq!(refs[3].outcome, PushOutcome::Rejected("deny updating a hidden ref".into()));
    }
}
