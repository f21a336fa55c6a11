//! What the user pointed us at: a local repository or something git fetches, its stable name,
//! and its credential-free spelling.
//!
//! The syntax rules follow git's own (`connect.c`): `scheme://...` is a URL, `host:path` with
//! the colon before any slash is scp-like ssh, anything else is a path. Like `git clone`, an
//! existing path wins over the scp-like reading, so a directory named `a:b` stays local.

use std::path::{Component, Path, PathBuf};

use crate::{Error, Git};

/// A source the user gave, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A path or `file://` URL, resolved to the repository directory: the bare directory, or
    /// the `.git` directory of a work tree.
    Local(PathBuf),
    /// Anything git fetches over a transport: `https://`, `http://`, `ssh://`, `git://`,
    /// scp-like `user@host:path`. Kept verbatim, credentials included, because fetching needs
    /// them; use [`redact_source`] before storing or logging it.
    Remote(String),
}

/// How a source is spelled, before looking at the file system.
enum Syntax<'a> {
    /// `scheme://rest`.
    Url {
        scheme: &'a str,
        rest: &'a str,
    },
    /// `[user@]host:path`.
    Scp {
        path: &'a str,
    },
    Path,
}

fn syntax(source: &str) -> Syntax<'_> {
    if let Some((scheme, rest)) = source.split_once("://")
        && is_scheme(scheme)
    {
        return Syntax::Url { scheme, rest };
    }
    if let Some(colon) = scp_colon(source)
        && !Path::new(source).exists()
    {
        return Syntax::Scp { path: &source[colon + 1..] };
    }
    Syntax::Path
}

/// git's `is_urlschemechar`: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The colon separating host and path in an scp-like source, if it is one: the first colon
/// outside `[...]`, before any slash.
fn scp_colon(source: &str) -> Option<usize> {
    if cfg!(windows) && source.as_bytes().get(1) == Some(&b':') {
        return None; // `C:\repo`, a drive letter.
    }
    let mut in_brackets = false;
    for (i, c) in source.char_indices() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            '/' => return None,
            ':' if !in_brackets => return Some(i),
            _ => {}
        }
    }
    None
}

fn is_ssh_scheme(scheme: &str) -> bool {
    matches!(scheme.to_ascii_lowercase().as_str(), "ssh" | "git+ssh" | "ssh+git")
}

/// Whether git will use ssh to reach `url`.
pub(crate) fn is_ssh_url(url: &str) -> bool {
    match syntax(url) {
        Syntax::Url { scheme, .. } => is_ssh_scheme(scheme),
        Syntax::Scp { .. } => true,
        Syntax::Path => false,
    }
}

/// Classifies `source` with `git` from `PATH`; see [`Git::classify_source`].
pub fn classify_source(source: &str) -> Result<SourceKind, Error> {
    Git::new().classify_source(source)
}

impl Git {
    /// Classifies `source`: an existing path or a `file://` URL is [`SourceKind::Local`],
    /// resolved with `git rev-parse --absolute-git-dir`; a URL or scp-like address is
    /// [`SourceKind::Remote`]. A local path that exists but holds no repository is
    /// [`Error::NotARepository`]; one that does not exist is [`Error::NotFound`].
    pub fn classify_source(&self, source: &str) -> Result<SourceKind, Error> {
        let path = match syntax(source) {
            Syntax::Url { scheme, rest } if scheme.eq_ignore_ascii_case("file") => PathBuf::from(percent_decode(rest)),
            Syntax::Url { .. } | Syntax::Scp { .. } => {
                return Ok(SourceKind::Remote(source.to_owned()));
            }
            Syntax::Path => PathBuf::from(source),
        };
        if !path.exists() {
            return Err(Error::NotFound { path });
        }
        let git_dir = self.cmd(Some(&path)).args(["rev-parse", "--absolute-git-dir"]).run_text()?;
        Ok(SourceKind::Local(PathBuf::from(git_dir)))
    }
}

/// A stable, human-readable name for the repository behind `source`.
///
/// A local path gives its directory name without `.git` (`/x/api.git` → `api`, `/x/proj/.git`
/// → `proj`); a URL gives its path without scheme, host, port, credentials and a trailing
/// `.git` or `/` (`https://tok@github.com/acme/api.git` → `acme/api`). When nothing is left
/// (the root directory, a URL without a path), the redacted source itself is the name.
pub fn source_name(source: &str) -> String {
    let name = match syntax(source) {
        Syntax::Url { rest, .. } => {
            let path = rest.find('/').map_or("", |slash| &rest[slash..]);
            trim_repo_suffix(path).to_owned()
        }
        Syntax::Scp { path } => trim_repo_suffix(path).to_owned(),
        Syntax::Path => local_name(&absolute(Path::new(source))),
    };
    if name.is_empty() { redact_source(source) } else { name }
}

fn trim_repo_suffix(path: &str) -> &str {
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    path.trim_end_matches('/')
}

fn local_name(path: &Path) -> String {
    let mut names = path.components().rev().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_string_lossy()),
        _ => None,
    });
    let Some(mut name) = names.next() else {
        return String::new();
    };
    if name == ".git" {
        // The `.git` directory of a work tree is named after the work tree.
        match names.next() {
            Some(parent) => name = parent,
            None => return String::new(),
        }
    }
    match name.strip_suffix(".git") {
        Some(stem) if !stem.is_empty() => stem.to_owned(),
        _ => name.into_owned(),
    }
}

/// `source` without credentials, safe to store and log.
///
/// For URLs the `user:password@` or `token@` part is removed. ssh is the exception: its user
/// name is not a secret and is needed to connect again (`ssh://git@host/...` must keep `git@`),
/// so only a password after it is removed. scp-like addresses cannot carry a password and are
/// returned unchanged. A local path becomes absolute (lexically; symlinks are not resolved).
pub fn redact_source(source: &str) -> String {
    match syntax(source) {
        Syntax::Url { scheme, rest } => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = match authority.rfind('@') {
                None => authority.to_owned(),
                Some(at) if is_ssh_scheme(scheme) => {
                    let user = authority[..at].split(':').next().unwrap_or_default();
                    format!("{user}@{}", &authority[at + 1..])
                }
                Some(at) => authority[at + 1..].to_owned(),
            };
            format!("{scheme}://{host}{path}")
        }
        Syntax::Scp { .. } => source.to_owned(),
        Syntax::Path => absolute(Path::new(source)).to_string_lossy().into_owned(),
    }
}

/// Removes the user information from every `scheme://user:secret@host` found in free text,
/// such as git's stderr or a command line.
pub(crate) fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let authority_start = pos + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_len =
            after.find(|c: char| c == '/' || c.is_whitespace() || "\"'<>`".contains(c)).unwrap_or(after.len());
        match after[..authority_len].rfind('@') {
            Some(at) => rest = &after[at + 1..],
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// An absolute, lexically normalised path: `.` and `..` resolved without touching symlinks, so
/// the name of a directory is the one the user typed.
fn absolute(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// Decodes `%XX` escapes in a `file://` URL, as git does; invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escape) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_name_strips_everything_but_the_repository_path() {
        let cases = [
            ("/x/api.git", "api"),
            ("/x/api.git/", "api"),
            ("/x/proj", "proj"),
            ("/x/proj/.git", "proj"),
            ("/x/proj/.git/", "proj"),
            ("/x/proj/sub/../other", "other"),
            ("https://tok@github.com/acme/api.git", "acme/api"),
            ("https://user:pass@github.com/acme/api.git/", "acme/api"),
            ("https://github.com/acme/api/", "acme/api"),
            ("http://host:8080/git/acme/api", "git/acme/api"),
            ("ssh://git@host:2222/acme/api.git", "acme/api"),
            ("git+ssh://git@host/acme/api.git", "acme/api"),
            ("git://host/acme/api.git", "acme/api"),
            ("git@host:acme/api.git", "acme/api"),
            ("host:/srv/api.git", "srv/api"),
            ("file:///srv/repos/api.git", "srv/repos/api"),
        ];
        for (source, name) in cases {
            assert_eq!(source_name(source), name, "source {source:?}");
        }
    }

    #[test]
    fn source_name_of_relative_path_is_its_directory_name() {
        let cwd = std::env::current_dir().expect("current dir");
        let expected = cwd.file_name().expect("cwd has a name").to_string_lossy().into_owned();
        assert_eq!(source_name("."), expected.trim_end_matches(".git"));
    }

    #[test]
    fn redact_source_removes_credentials_only() {
        let cases = [
            ("https://tok@github.com/acme/api.git", "https://github.com/acme/api.git"),
            ("https://user:p%40ss@github.com/acme/api.git", "https://github.com/acme/api.git"),
            ("https://a:b@c@host:443/x", "https://host:443/x"),
            ("https://github.com/acme/api.git", "https://github.com/acme/api.git"),
            ("http://x:y@host", "http://host"),
            ("ssh://git@host:2222/acme/api.git", "ssh://git@host:2222/acme/api.git"),
            ("ssh://git:hunter2@host/acme/api.git", "ssh://git@host/acme/api.git"),
            ("git@host:acme/api.git", "git@host:acme/api.git"),
            ("file:///srv/repos/api.git", "file:///srv/repos/api.git"),
            ("/srv/repos/./api.git", "/srv/repos/api.git"),
        ];
        for (source, redacted) in cases {
            assert_eq!(redact_source(source), redacted, "source {source:?}");
        }
    }

    #[test]
    fn redact_source_makes_local_paths_absolute() {
        let redacted = redact_source("some/repo");
        assert!(Path::new(&redacted).is_absolute(), "{redacted}");
        assert!(redacted.ends_with("some/repo"), "{redacted}");
    }

    #[test]
    fn redact_text_removes_userinfo_from_every_url() {
        let text = "fatal: unable to access 'https://tok:secret@host/a.git/': \
                    see also http://u@h2 and ssh://git@h3/x";
        let redacted = redact_text(text);
        assert_eq!(redacted, "fatal: unable to access 'https://host/a.git/': see also http://h2 and ssh://h3/x");
    }

    #[test]
    fn classification_follows_git_syntax() {
        assert!(is_ssh_url("git@github.com:acme/api.git"));
        assert!(is_ssh_url("ssh://git@github.com/acme/api.git"));
        assert!(is_ssh_url("git+ssh://host/x"));
        assert!(!is_ssh_url("https://github.com/acme/api.git"));
        assert!(!is_ssh_url("./dir:with/colon"));
        assert!(!is_ssh_url("/abs/path"));
        assert!(matches!(syntax("[::1]:repo"), Syntax::Scp { path: "repo" }));
        assert!(!is_scheme("1http"));
    }

    #[test]
    fn file_urls_are_percent_decoded() {
        assert_eq!(percent_decode("/srv/my%20repo"), "/srv/my repo");
        assert_eq!(percent_decode("/srv/100%"), "/srv/100%");
        assert_eq!(percent_decode("/srv/%zz"), "/srv/%zz");
    }
}
