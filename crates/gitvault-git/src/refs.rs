//! Refs: reading them from a repository or a remote, and writing them back exactly.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::refname::check_ref_name;
use crate::{Error, Git, ObjectFormat, ObjectId, redact_source};

/// One ref under `refs/` and the object it points to (any object type: tags may point at
/// trees or blobs, and `refs/notes/*` point at notes commits).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Ref {
    pub name: String,
    pub oid: ObjectId,
}

/// Where `HEAD` points.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// A branch name such as `refs/heads/main`; the branch may be unborn (not exist yet).
    Symbolic(String),
    /// An object id.
    Detached(ObjectId),
}

/// Everything needed to reproduce a repository's refs exactly.
///
/// A symbolic ref other than `HEAD` (such as `refs/remotes/origin/HEAD`) is recorded with the
/// object it resolves to, the same way a mirror fetch records it; it comes back as a regular
/// ref.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefState {
    pub object_format: ObjectFormat,
    pub head: Option<Head>,
    /// Every ref under `refs/`, sorted by name bytewise; never `HEAD`.
    pub refs: Vec<Ref>,
}

impl Git {
    /// Refs of a local repository, bare or not.
    pub fn read_refs(&self, repo: &Path) -> Result<RefState, Error> {
        // First, because it also tells a non-repository apart with a clear error.
        let object_format = self.object_format(repo)?;
        let listing = self
            .cmd(Some(repo))
            .args(["-c", "core.quotePath=false", "for-each-ref", "--format=%(objectname) %(refname)"])
            .run()?;
        let refs = parse_for_each_ref(&listing)?;
        let head = self.read_head(repo)?;
        Ok(RefState { object_format, head, refs })
    }

    fn read_head(&self, repo: &Path) -> Result<Option<Head>, Error> {
        let symbolic = self.cmd(Some(repo)).args(["symbolic-ref", "-q", "HEAD"]).output()?;
        match symbolic.status.code() {
            Some(0) => {
                let name = stdout_line(&symbolic.stdout, "HEAD symbolic ref")?;
                return Ok(Some(Head::Symbolic(name)));
            }
            // 1: HEAD exists but is not symbolic.
            Some(1) => {}
            _ => return Err(symbolic.into_error(Some(repo.to_path_buf()))),
        }
        let detached = self.cmd(Some(repo)).args(["rev-parse", "-q", "--verify", "HEAD"]).output()?;
        match detached.status.code() {
            Some(0) => {
                let oid = stdout_line(&detached.stdout, "HEAD object id")?;
                Ok(Some(Head::Detached(ObjectId::parse(&oid)?)))
            }
            Some(1) => Ok(None),
            _ => Err(detached.into_error(Some(repo.to_path_buf()))),
        }
    }

    /// Refs of a remote, without fetching anything (`git ls-remote --symref`).
    ///
    /// The advertisement does not state the object format, so it is inferred from the length
    /// of the advertised ids; a remote advertising nothing is taken to be SHA-1. A remote that
    /// is empty advertises no `HEAD` either, so `head` is `None` for it.
    pub fn ls_remote(&self, url: &str) -> Result<RefState, Error> {
        let finished = self
            .cmd(None)
            .args(["-c", "core.quotePath=false", "ls-remote", "--symref", "--"])
            .arg(url)
            .remote(url)
            .output()?;
        if !finished.status.success() {
            return Err(Error::Unreachable { url: redact_source(url), stderr: finished.stderr });
        }
        parse_ls_remote(&finished.stdout)
    }

    /// Sets the refs of a bare repository to exactly `state`.
    ///
    /// `packed-refs` is written directly instead of going through `git update-ref`: update-ref
    /// refuses non-commit objects under `refs/heads/` (which a faithful backup may contain) and
    /// spends seconds on tens of thousands of refs. Loose refs are removed afterwards, since
    /// they would shadow the packed ones. The objects must already be in the repository.
    pub fn write_refs(&self, repo: &Path, state: &RefState) -> Result<(), Error> {
        let refs = validated_refs(repo, state)?;
        let info = self
            .cmd(Some(repo))
            .args(["rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir", "--show-object-format"])
            .run_text()?;
        let mut lines = info.lines();
        let (Some(git_dir), Some(common_dir), Some(format)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(Error::Parse { what: "repository layout", line: info.clone() });
        };
        let (git_dir, common_dir) = (PathBuf::from(git_dir), PathBuf::from(common_dir));
        let found: ObjectFormat = format.parse()?;
        if found != state.object_format {
            return Err(Error::WrongObjectFormat { path: repo.to_path_buf(), expected: state.object_format, found });
        }
        if common_dir.join("reftable").exists() {
            return Err(Error::UnsupportedRefStorage { path: repo.to_path_buf() });
        }

        let mut packed = String::from("# pack-refs with: sorted \n");
        for r in &refs {
            packed.push_str(&format!("{} {}\n", r.oid, r.name));
        }
        write_locked(&common_dir.join("packed-refs"), packed.as_bytes())?;
        remove_loose_refs(&common_dir.join("refs"), true)?;

        match &state.head {
            Some(head) => self.set_head(repo, &git_dir, head),
            None => Ok(()),
        }
    }

    /// Points `HEAD` of `repo` (whose git directory is `git_dir`) at `head`.
    pub(crate) fn set_head(&self, repo: &Path, git_dir: &Path, head: &Head) -> Result<(), Error> {
        match head {
            Head::Symbolic(name) => {
                check_ref_name(name)?;
                self.cmd(Some(repo)).args(["symbolic-ref", "HEAD"]).arg(name).run()?;
                Ok(())
            }
            // Written as a file because `update-ref` would insist on the object being a commit
            // in some versions, and a detached HEAD is restored as it was, whatever it was.
            Head::Detached(oid) => write_locked(&git_dir.join("HEAD"), format!("{oid}\n").as_bytes()),
        }
    }
}

/// Checks every name and id of `state` and returns its refs sorted by name.
fn validated_refs(repo: &Path, state: &RefState) -> Result<Vec<Ref>, Error> {
    let fits = |oid: &ObjectId| {
        if oid.format() == state.object_format {
            Ok(())
        } else {
            Err(Error::ObjectFormatMismatch {
                path: repo.to_path_buf(),
                oid: oid.to_string(),
                expected: state.object_format,
            })
        }
    };
    let mut refs = state.refs.clone();
    refs.sort();
    for (i, r) in refs.iter().enumerate() {
        check_ref_name(&r.name)?;
        fits(&r.oid)?;
        if i > 0 && refs[i - 1].name == r.name {
            return Err(Error::InvalidRefName { name: r.name.clone(), reason: "listed twice" });
        }
    }
    match &state.head {
        Some(Head::Symbolic(name)) => check_ref_name(name)?,
        Some(Head::Detached(oid)) => fits(oid)?,
        None => {}
    }
    Ok(refs)
}

/// Writes `path` the way git does: into `path.lock`, created exclusively (so a concurrent git
/// process makes us fail rather than interleave), flushed, then renamed over `path`.
fn write_locked(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock = PathBuf::from(lock_name);
    let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&lock).map_err(|e| Error::io(&lock, e))?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&lock, e))
        .and_then(|()| fs::rename(&lock, path).map_err(|e| Error::io(path, e)));
    if written.is_err() {
        // Best effort: a stale lock would block every later git command on this file.
        let _ = fs::remove_file(&lock);
    }
    written
}

/// Deletes every loose ref file below `dir` and the directories left empty, but keeps
/// `refs/heads` and `refs/tags`: git only recognises a repository that has them.
fn remove_loose_refs(dir: &Path, top: bool) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if file_type.is_dir() {
            remove_loose_refs(&path, false)?;
            let keep = top && matches!(entry.file_name().to_str(), Some("heads" | "tags"));
            if !keep {
                // Only fails when another process created a ref in it meanwhile; that ref
                // would shadow the state we were asked to write, so it is an error.
                fs::remove_dir(&path).map_err(|e| Error::io(&path, e))?;
            }
        } else {
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

fn stdout_line(stdout: &[u8], what: &'static str) -> Result<String, Error> {
    let text = std::str::from_utf8(stdout)
        .map_err(|_| Error::Parse { what, line: String::from_utf8_lossy(stdout).into_owned() })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Parses `<oid> <refname>` lines, as printed by `for-each-ref`.
fn parse_for_each_ref(listing: &[u8]) -> Result<Vec<Ref>, Error> {
    let mut refs = Vec::new();
    for line in listing.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let bad = || Error::Parse { what: "ref listing", line: String::from_utf8_lossy(line).into_owned() };
        let line = std::str::from_utf8(line).map_err(|_| bad())?;
        let (oid, name) = line.split_once(' ').ok_or_else(bad)?;
        if !name.starts_with("refs/") {
            return Err(bad());
        }
        refs.push(Ref { name: name.to_owned(), oid: ObjectId::parse(oid)? });
    }
    refs.sort();
    Ok(refs)
}

/// Parses `git ls-remote --symref` output: `ref: <target>\tHEAD` for a symbolic HEAD,
/// `<oid>\t<name>` for everything else, `<oid>\t<name>^{}` for peeled tags (skipped).
fn parse_ls_remote(listing: &[u8]) -> Result<RefState, Error> {
    let mut symbolic_head = None;
    let mut head_oid = None;
    let mut refs = Vec::new();
    for line in listing.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let bad = || Error::Parse { what: "ls-remote listing", line: String::from_utf8_lossy(line).into_owned() };
        let line = std::str::from_utf8(line).map_err(|_| bad())?;
        let (left, name) = line.split_once('\t').ok_or_else(bad)?;
        if let Some(target) = left.strip_prefix("ref: ") {
            // Symbolic refs other than HEAD are also listed by value on their own line.
            if name == "HEAD" {
                symbolic_head = Some(target.to_owned());
            }
        } else if name == "HEAD" {
            head_oid = Some(ObjectId::parse(left)?);
        } else if name.starts_with("refs/") && !name.ends_with("^{}") {
            refs.push(Ref { name: name.to_owned(), oid: ObjectId::parse(left)? });
        }
    }
    refs.sort();
    let object_format = refs.first().map(|r| &r.oid).or(head_oid.as_ref()).map_or(ObjectFormat::Sha1, ObjectId::format);
    let head = match (symbolic_head, head_oid) {
        (Some(name), _) => Some(Head::Symbolic(name)),
        (None, Some(oid)) => Some(Head::Detached(oid)),
        (None, None) => None,
    };
    Ok(RefState { object_format, head, refs })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn oid(s: &str) -> ObjectId {
        ObjectId::parse(s).expect("test oid is valid")
    }

    #[test]
    fn ls_remote_output_keeps_refs_and_symbolic_head() {
        let listing = format!(
            "ref: refs/heads/main\tHEAD\n{A}\tHEAD\n{A}\trefs/heads/main\n\
             ref: refs/heads/main\trefs/remotes/origin/HEAD\n{A}\trefs/remotes/origin/HEAD\n\
             {B}\trefs/tags/v1\n{A}\trefs/tags/v1^{{}}\n"
        );
        let state = parse_ls_remote(listing.as_bytes()).expect("parses");
        assert_eq!(state.head, Some(Head::Symbolic("refs/heads/main".into())));
        assert_eq!(state.object_format, ObjectFormat::Sha1);
        let names: Vec<_> = state.refs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["refs/heads/main", "refs/remotes/origin/HEAD", "refs/tags/v1"]);
        assert_eq!(state.refs[2].oid, oid(B));
    }

    #[test]
    fn ls_remote_output_detached_and_empty() {
        let state = parse_ls_remote(format!("{B}\tHEAD\n").as_bytes()).expect("parses");
        assert_eq!(state.head, Some(Head::Detached(oid(B))));
        assert!(state.refs.is_empty());
        let empty = parse_ls_remote(b"").expect("parses");
        assert_eq!(empty.head, None);
        assert_eq!(empty.object_format, ObjectFormat::Sha1);
    }

    #[test]
    fn ls_remote_output_infers_sha256() {
        let long = "3".repeat(64);
        let state = parse_ls_remote(format!("{long}\trefs/heads/main\n").as_bytes()).expect("parses");
        assert_eq!(state.object_format, ObjectFormat::Sha256);
    }

    #[test]
    fn for_each_ref_output_is_sorted_bytewise() {
        let listing = format!("{A} refs/heads/b\n{B} refs/heads/B\n{A} refs/heads/a\n");
        let refs = parse_for_each_ref(listing.as_bytes()).expect("parses");
        let names: Vec<_> = refs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["refs/heads/B", "refs/heads/a", "refs/heads/b"]);
        assert!(parse_for_each_ref(format!("{A} HEAD\n").as_bytes()).is_err());
        assert!(parse_for_each_ref(b"garbage\n").is_err());
    }

    #[test]
    fn duplicate_and_mismatched_refs_are_rejected_before_writing() {
        let state = |refs: Vec<Ref>| RefState { object_format: ObjectFormat::Sha1, head: None, refs };
        let r = |name: &str, id: &str| Ref { name: name.into(), oid: oid(id) };
        let repo = Path::new("/nowhere");
        assert!(validated_refs(repo, &state(vec![r("refs/heads/a", A), r("refs/heads/a", B)])).is_err());
        assert!(validated_refs(repo, &state(vec![r("refs/heads/a", &"4".repeat(64))])).is_err());
        assert!(validated_refs(repo, &state(vec![r("refs/heads/a b", A)])).is_err());
        let sorted = validated_refs(repo, &state(vec![r("refs/tags/x", A), r("refs/heads/y", B)])).expect("valid");
        assert_eq!(sorted[0].name, "refs/heads/y");
    }
}
