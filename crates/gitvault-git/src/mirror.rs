//! Local bare mirrors of remote repositories.

use std::path::Path;

use crate::{Error, Git, Head, ObjectFormat, ObjectId, RefState, redact_source};

impl Git {
    /// Brings the bare mirror at `mirror` up to date with `url` and returns its refs.
    ///
    /// The mirror is created (`git init --bare`, with `object_format`) when the directory is
    /// missing or empty. Every `refs/*` ref is fetched with `--prune`, so deleted and
    /// force-pushed refs follow the remote. The URL is passed on the command line only, never
    /// stored in the mirror's config: it may carry credentials. Then `HEAD` is set to `head`
    /// (normally the one [`Git::ls_remote`] reported) so that [`Git::read_refs`] on the mirror
    /// reproduces the remote; with `None` the mirror keeps the `HEAD` it has. Refs under the
    /// `exclude` prefixes (`refs/pull/`) are not fetched.
    pub fn sync_mirror(
        &self,
        mirror: &Path,
        url: &str,
        object_format: ObjectFormat,
        head: Option<&Head>,
        exclude: &[String],
    ) -> Result<RefState, Error> {
        if is_missing_or_empty(mirror)? {
            self.init_bare(mirror, object_format)?;
        } else {
            let found = self.object_format(mirror)?;
            if found != object_format {
                return Err(Error::WrongObjectFormat { path: mirror.to_path_buf(), expected: object_format, found });
            }
        }
        // Negative refspecs (git 2.29) leave out whole namespaces, such as pull-request refs.
        let mut refspecs = vec!["+refs/*:refs/*".to_string()];
        refspecs.extend(exclude.iter().map(|prefix| format!("^{prefix}*")));
        let refspecs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
        self.fetch(mirror, url, &refspecs)?;
        if let Some(head) = head {
            // A detached HEAD may point at a commit no ref reaches; fetch it by id then. Once
            // HEAD names it, it is reachable and safe from gc.
            if let Head::Detached(oid) = head
                && !self.has_object(mirror, oid)?
            {
                self.fetch(mirror, url, &[oid.as_str()])?;
            }
            // A bare mirror is its own git directory.
            self.set_head(mirror, mirror, head)?;
        }
        self.read_refs(mirror)
    }

    fn fetch(&self, mirror: &Path, url: &str, refspecs: &[&str]) -> Result<(), Error> {
        let finished = self
            .cmd(Some(mirror))
            .args([
                // Automatic maintenance after a fetch is welcome (it keeps the mirror packed),
                // but not in the background: the next step reads the mirror, and a detached
                // gc outliving us would race with whoever deletes or copies it.
                "-c",
                "gc.autoDetach=false",
                "-c",
                "maintenance.autoDetach=false",
                "fetch",
                "--prune",
                "--no-write-fetch-head",
                "--quiet",
                "--",
                url,
            ])
            .args(refspecs)
            .remote(url)
            .output()?;
        if finished.status.success() {
            Ok(())
        } else {
            Err(Error::Unreachable { url: redact_source(url), stderr: finished.stderr })
        }
    }

    fn has_object(&self, repo: &Path, oid: &ObjectId) -> Result<bool, Error> {
        Ok(self.existing_objects(repo, std::slice::from_ref(oid))?.contains(oid))
    }
}

fn is_missing_or_empty(dir: &Path) -> Result<bool, Error> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(dir, e)),
    }
}
