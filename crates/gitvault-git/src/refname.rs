//! The rules of `git check-ref-format`, in Rust.
//!
//! Checked here rather than by git because `write_refs` must validate up to hundreds of
//! thousands of names and one process per name would dominate a restore. The names are also
//! written into `packed-refs` verbatim, so a newline or space slipping through would corrupt it.

use crate::Error;

/// Checks a full ref name (`refs/...`) against `git check-ref-format`'s rules.
pub(crate) fn check_ref_name(name: &str) -> Result<(), Error> {
    ref_name_problem(name).map_or(Ok(()), |reason| Err(Error::InvalidRefName { name: name.to_owned(), reason }))
}

fn ref_name_problem(name: &str) -> Option<&'static str> {
    if !name.starts_with("refs/") {
        return Some("must start with refs/");
    }
    if name.ends_with('/') {
        return Some("must not end with /");
    }
    if name.ends_with('.') {
        return Some("must not end with .");
    }
    if name.contains("..") {
        return Some("must not contain ..");
    }
    if name.contains("@{") {
        return Some("must not contain @{");
    }
    if let Some(c) = name.chars().find(|&c| is_forbidden(c)) {
        return Some(if c.is_ascii_control() {
            "must not contain control characters"
        } else {
            "must not contain space, ~, ^, :, ?, *, [ or \\"
        });
    }
    for component in name.split('/') {
        if component.is_empty() {
            return Some("must not contain an empty component (//)");
        }
        if component.starts_with('.') {
            return Some("a component must not start with .");
        }
        if component.ends_with(".lock") {
            return Some("a component must not end with .lock");
        }
    }
    None
}

fn is_forbidden(c: char) -> bool {
    c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_git_accepts() {
        for name in [
            "refs/heads/main",
            "refs/heads/feature/x-1",
            "refs/tags/v1.0",
            "refs/notes/commits",
            "refs/custom/x",
            "refs/heads/caf\u{e9}",
            "refs/heads/a@b",
            "refs/pull/12/head",
        ] {
            assert!(check_ref_name(name).is_ok(), "{name:?} must be accepted");
        }
    }

    #[test]
    fn rejects_what_git_rejects() {
        for name in [
            "HEAD",
            "heads/main",
            "refs/heads/",
            "refs/heads/a.",
            "refs/heads/a..b",
            "refs/heads/a@{1}",
            "refs/heads/a b",
            "refs/heads/a\nb",
            "refs/heads/a\x7f",
            "refs/heads/a~1",
            "refs/heads/a^",
            "refs/heads/a:b",
            "refs/heads/a?",
            "refs/heads/a*",
            "refs/heads/a[",
            "refs/heads/a\\b",
            "refs//heads",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/x.lock/y",
        ] {
            assert!(check_ref_name(name).is_err(), "{name:?} must be rejected");
        }
    }
}
