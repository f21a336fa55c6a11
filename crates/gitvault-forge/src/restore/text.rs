//! The text a restore writes: the header naming each item's original author, number, date and
//! URL; the hidden marker by which a rerun recognises what it already created; and `#123` links
//! rewritten through the mapping where numbers changed.

use std::collections::BTreeMap;

const MARKER_OPEN: &str = "<!-- gitvault-restore: ";
const MARKER_CLOSE: &str = " -->";

/// The hidden marker of `key` (`github:acme/api#12`, `github:acme/api#12/c1001`...).
pub fn marker(key: &str) -> String {
    format!("{MARKER_OPEN}{key}{MARKER_CLOSE}")
}

/// Every marker key in `body`.
pub fn markers(body: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find(MARKER_OPEN) {
        let after = &rest[start + MARKER_OPEN.len()..];
        let Some(end) = after.find(MARKER_CLOSE) else { break };
        let key = &after[..end];
        if !key.is_empty() && !key.contains(char::is_whitespace) {
            found.push(key);
        }
        rest = &after[end..];
    }
    found
}

/// A recreated item's or post's body: the header line(s), the marker, then the original text.
pub fn with_header(header: &str, key: &str, body: &str) -> String {
    let mut out = String::with_capacity(header.len() + body.len() + 80);
    for line in header.lines() {
        out.push_str("> ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&marker(key));
    if !body.trim().is_empty() {
        out.push_str("\n\n");
        out.push_str(body);
    }
    out
}

/// A reference to an item as the target forge writes it: `#N`, or `!N` for GitLab merge requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRef {
    pub sigil: char,
    pub number: u64,
    pub url: String,
}

/// How links between items change.
#[derive(Clone, Debug, Default)]
pub struct Links {
    /// Old number → where it went.
    pub numbers: BTreeMap<u64, NewRef>,
    /// A GitLab source's merge requests (`!N`), numbered apart from its issues: old number →
    /// where it went. Empty when the source numbers everything together, and `!N` then looks
    /// in `numbers`.
    pub merge_requests: BTreeMap<u64, NewRef>,
    /// The source repository's web URL (`https://github.com/acme/api`), whose item URLs are
    /// rewritten.
    pub old_base: Option<String>,
}

impl Links {
    /// `text` with every `#N` (and `!N` when `bang` — a GitLab source's merge requests) and
    /// every URL of an item of the old repository pointing at the new one, when it changed.
    /// Code spans and fenced code blocks are left alone.
    pub fn rewrite(&self, text: &str, bang: bool) -> String {
        if self.numbers.is_empty() && self.merge_requests.is_empty() {
            return text.to_string();
        }
        let text = self.rewrite_urls(text);
        let mut out = String::with_capacity(text.len());
        let mut fenced = false;
        for line in text.split_inclusive('\n') {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                out.push_str(line);
                continue;
            }
            if fenced {
                out.push_str(line);
                continue;
            }
            self.rewrite_line(line, bang, &mut out);
        }
        out
    }

    /// Where old item `number` went: a merge request's or an issue's (a shared counter's).
    pub fn lookup(&self, merge_request: bool, number: u64) -> Option<&NewRef> {
        if merge_request && !self.merge_requests.is_empty() {
            self.merge_requests.get(&number)
        } else {
            self.numbers.get(&number)
        }
    }

    /// The table item `number` goes into: `merge_request` for a GitLab source's merge request.
    pub fn table(&mut self, merge_request: bool) -> &mut BTreeMap<u64, NewRef> {
        if merge_request { &mut self.merge_requests } else { &mut self.numbers }
    }

    fn rewrite_line(&self, line: &str, bang: bool, out: &mut String) {
        let bytes = line.as_bytes();
        let mut i = 0;
        let mut in_code = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'`' {
                in_code = !in_code;
            }
            let sigil_ok = c == b'#' || (bang && c == b'!');
            let before_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || b"_&/#!".contains(&bytes[i - 1]));
            if sigil_ok && before_ok && !in_code {
                let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                let after = i + 1 + digits;
                let after_ok = after >= bytes.len() || !(bytes[after].is_ascii_alphanumeric() || bytes[after] == b'_');
                if digits > 0 && digits < 20 && after_ok {
                    let old: u64 = line[i + 1..after].parse().unwrap_or(0);
                    // A GitLab source's `#N` names an issue, `!N` a merge request.
                    if let Some(new) = self.lookup(c == b'!', old) {
                        out.push(new.sigil);
                        out.push_str(&new.number.to_string());
                        i = after;
                        continue;
                    }
                }
            }
            // Copy one whole UTF-8 character.
            let len = utf8_len(c);
            out.push_str(&line[i..(i + len).min(line.len())]);
            i += len;
        }
    }

    fn rewrite_urls(&self, text: &str) -> String {
        let Some(base) = self.old_base.as_deref().filter(|b| !b.is_empty()) else { return text.to_string() };
        let base = base.trim_end_matches('/');
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(base) {
            out.push_str(&rest[..at]);
            let after = &rest[at + base.len()..];
            let replaced =
                ["/issues/", "/pull/", "/pulls/", "/-/issues/", "/-/merge_requests/"].iter().find_map(|kind| {
                    let tail = after.strip_prefix(kind)?;
                    let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
                    let next = tail.as_bytes().get(digits);
                    if digits == 0 || next.is_some_and(|b| b.is_ascii_alphanumeric()) {
                        return None;
                    }
                    let new = self.lookup(*kind == "/-/merge_requests/", tail[..digits].parse::<u64>().ok()?)?;
                    Some((new.url.clone(), kind.len() + digits))
                });
            match replaced {
                Some((url, used)) => {
                    out.push_str(&url);
                    rest = &after[used..];
                }
                None => {
                    out.push_str(base);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Links {
        let mut numbers = BTreeMap::new();
        numbers.insert(3, NewRef { sigil: '#', number: 2, url: "https://new/acme/api/pull/2".into() });
        numbers.insert(5, NewRef { sigil: '!', number: 1, url: "https://new/acme/api/-/merge_requests/1".into() });
        Links { numbers, old_base: Some("https://github.com/acme/api".into()), ..Links::default() }
    }

    #[test]
    fn a_gitlab_source_s_issues_and_merge_requests_are_told_apart() {
        let mut l = Links { old_base: Some("https://gitlab.example/acme/api".into()), ..Links::default() };
        l.numbers.insert(1, NewRef { sigil: '#', number: 4, url: "https://new/acme/api/issues/4".into() });
        l.merge_requests.insert(1, NewRef { sigil: '#', number: 7, url: "https://new/acme/api/pull/7".into() });
        assert_eq!(l.rewrite("Closes #1, see !1 (not x!1)", true), "Closes #4, see #7 (not x!1)");
        assert_eq!(
            l.rewrite(
                "https://gitlab.example/acme/api/-/merge_requests/1 https://gitlab.example/acme/api/-/issues/1",
                true
            ),
            "https://new/acme/api/pull/7 https://new/acme/api/issues/4"
        );
    }

    #[test]
    fn markers_are_found_again() {
        let body = with_header("Originally #3 by alice", "github:acme/api#3", "Fixes #1");
        assert!(body.starts_with("> Originally #3 by alice\n<!-- gitvault-restore: github:acme/api#3 -->\n\nFixes #1"));
        assert_eq!(markers(&body), ["github:acme/api#3"]);
        assert_eq!(markers("no marker <!-- gitvault-restore: -->"), Vec::<&str>::new());
    }

    #[test]
    fn item_links_follow_the_mapping() {
        let l = links();
        assert_eq!(l.rewrite("Fixes #3, see #4 and #5.", false), "Fixes #2, see #4 and !1.");
        assert_eq!(l.rewrite("x#3 &#3; `#3` #33 #3a", false), "x#3 &#3; `#3` #33 #3a");
        assert_eq!(l.rewrite("```\n#3\n```\n#3 ünï #3", false), "```\n#3\n```\n#2 ünï #2");
        assert_eq!(l.rewrite("!3 is a merge request", true), "#2 is a merge request");
        assert_eq!(
            l.rewrite("see https://github.com/acme/api/pull/3 and https://github.com/acme/api/issues/30", false),
            "see https://new/acme/api/pull/2 and https://github.com/acme/api/issues/30"
        );
    }
}
