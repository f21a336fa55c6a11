//! The one error type of this crate.
//!
//! Every variant names what the user needs to act on it: the repository, the command, git's own
//! words. URLs in any variant have gone through [`crate::redact_source`] or
//! [`crate::source::redact_text`] before they are stored, so printing an error never leaks a
//! credential.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::ObjectFormat;

/// Everything that can go wrong while talking to git.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The git program could not be started at all (not installed, not executable).
    #[error("could not run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A git command ran and failed.
    #[error("`{command}` failed{}: {status}: {stderr}", in_repo(repo.as_deref()))]
    Command {
        /// The command line, with credentials removed from any URL.
        command: String,
        /// The repository the command ran in, if it ran in one.
        repo: Option<PathBuf>,
        status: ExitStatus,
        /// git's stderr, trimmed, shortened when huge, credentials removed.
        stderr: String,
    },

    /// The path exists but git does not recognise a repository there.
    #[error("{} is not a git repository", path.display())]
    NotARepository { path: PathBuf },

    /// The path does not exist.
    #[error("{} does not exist", path.display())]
    NotFound { path: PathBuf },

    /// A repository points to Git LFS objects, and git-lfs is not installed to fetch them.
    #[error("the repository uses Git LFS, but git-lfs is not installed: install it (Debian: apt install git-lfs)")]
    LfsMissing,

    /// A remote could not be listed or fetched.
    #[error("cannot reach {url}: {stderr}")]
    Unreachable {
        /// The URL without credentials.
        url: String,
        stderr: String,
    },

    /// A string is not a full lowercase hex object id.
    #[error("invalid object id {value:?}: expected 40 or 64 lowercase hex digits")]
    InvalidObjectId { value: String },

    /// A ref name breaks the rules of `git check-ref-format`, or is outside `refs/`.
    #[error("invalid ref name {name:?}: {reason}")]
    InvalidRefName { name: String, reason: &'static str },

    /// An object id does not have the length of the repository's object format.
    #[error("object id {oid} does not fit object format {expected} of {}", path.display())]
    ObjectFormatMismatch { path: PathBuf, oid: String, expected: ObjectFormat },

    /// An existing repository uses another object format than the one asked for.
    #[error("{} uses object format {found}, expected {expected}", path.display())]
    WrongObjectFormat { path: PathBuf, expected: ObjectFormat, found: ObjectFormat },

    /// The repository stores its refs in a way this crate cannot write (reftable).
    #[error("{} uses the reftable ref storage, which gitvault cannot write yet", path.display())]
    UnsupportedRefStorage { path: PathBuf },

    /// Reading or writing a file failed.
    #[error("I/O error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// git printed something this crate does not understand.
    #[error("cannot parse {what} from git: {line:?}")]
    Parse { what: &'static str, line: String },

    /// A pack index written by git is not what we expect.
    #[error("invalid pack index {}: {reason}", path.display())]
    InvalidPackIndex { path: PathBuf, reason: &'static str },

    /// `git fsck` found problems; `output` is its report (stderr, then stdout).
    #[error("git fsck found problems in {}: {output}", repo.display())]
    Fsck { repo: PathBuf, output: String },
}

impl Error {
    /// Whether a remote answered that the repository does not exist (HTTP 404, or a server's
    /// "repository not found"), as opposed to refusing credentials or being out of reach.
    pub fn is_remote_not_found(&self) -> bool {
        match self {
            Error::Unreachable { stderr, .. } => {
                let s = stderr.to_ascii_lowercase();
                s.contains("not found") || s.contains("does not appear to be a git repository") || s.contains(" 404")
            }
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

fn in_repo(repo: Option<&Path>) -> String {
    match repo {
        Some(repo) => format!(" in {}", repo.display()),
        None => String::new(),
    }
}
