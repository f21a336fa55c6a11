//! A repository's metadata — issues, pull requests, reviews, comments, labels, milestones,
//! releases and their assets, settings — fetched into a directory of canonical JSON files, one
//! per item, which the caller commits into a git repository once per backup.
//!
//! Listings are walked page by page with `If-None-Match`: a page whose `ETag` is unchanged
//! answers 304 (which GitHub does not charge against the rate limit), and its items are known
//! from the previous run's state (`.gitvault/state.json` in the directory). So a second backup
//! with nothing new costs 304s only, and every listing is still complete, which is how deleted
//! items are found: an item whose file exists and that no listing returns any more is kept,
//! marked `gitvault_deleted_at` with the time it was first found missing.
//!
//! Layout (FORMAT.md §7.7 gives the names; each file is sorted-key, two-space-indented JSON
//! with a final newline, so that an unchanged item is an unchanged git blob):
//!
//! ```text
//! repository.json                          settings: the forge's repository object
//! labels/<name>.json
//! milestones/<number>.json
//! issues/<number>/issue.json               issues/<number>/comments/<id>.json
//! pulls/<number>/pull.json                 pulls/<number>/comments/<id>.json (conversation)
//! pulls/<number>/reviews/<id>.json         pulls/<number>/review_comments/<id>.json
//! releases/<id>/release.json               releases/<id>/assets/<asset id>.json (+ .bin: an LFS pointer)
//! access/collaborators.json, access/teams.json, protection/<branch>.json
//! .gitvault/state.json                     ETags and the keys of each listed page
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::{Api, Fetched, link_next};

pub use gitvault_format::metadata::DELETED_FIELD;

/// What the previous run learned about each listing, to ask again conditionally.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct State {
    /// Listing name → its pages, in order.
    #[serde(default)]
    pub listings: BTreeMap<String, Vec<PageState>>,
    /// Single resources (settings, protection) → ETag.
    #[serde(default)]
    pub etags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageState {
    pub url: String,
    pub etag: Option<String>,
    /// The keys of the items the page held.
    pub keys: Vec<String>,
    /// The page linked to a next one although it held fewer items than asked for: the server
    /// pages by less than that (a Gitea whose `MAX_RESPONSE_ITEMS` is lowered).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    /// The page was an envelope (`{"values": [...], "next": ...}`, Bitbucket) without a `next`:
    /// the listing ends here, whatever the page's length.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last: bool,
}

const STATE_FILE: &str = ".gitvault/state.json";

impl State {
    pub fn load(dir: &Path) -> State {
        fs::read(dir.join(STATE_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let value =
            serde_json::to_value(self).map_err(|e| io_error(&dir.join(STATE_FILE), std::io::Error::other(e)))?;
        write_json(&dir.join(STATE_FILE), &value)
    }
}

/// A listing walked in full: every item's key, and the items of the pages that changed.
pub(crate) struct Walked {
    pub keys: BTreeSet<String>,
    /// The items of the pages that changed, spooled to a temporary file as they arrive (one JSON
    /// document per line), so that memory holds one page whatever the listing's size.
    spool: Spool,
}

struct Spool {
    file: tempfile::NamedTempFile,
    count: usize,
}

impl Walked {
    /// The items of the pages that changed, read back one at a time.
    pub fn fresh(&self) -> Result<impl Iterator<Item = Result<Value>> + '_> {
        use std::io::{BufRead, Seek};
        let path = self.spool.file.path();
        let mut f = self.spool.file.reopen().map_err(|e| io_error(path, e))?;
        f.rewind().map_err(|e| io_error(path, e))?;
        let lines = std::io::BufReader::new(f).lines().take(self.spool.count);
        Ok(lines.map(move |line| {
            let line = line.map_err(|e| io_error(path, e))?;
            serde_json::from_str(&line).map_err(|e| io_error(path, std::io::Error::other(e)))
        }))
    }
}

/// Walk the listing `base` (a URL with its query, without `page`) in pages of `per_page`,
/// conditionally against `state.listings[name]`. Pages are asked for by number until one holds
/// fewer than `per_page` items and links to no next page; the first page past the end is asked
/// for too (with its ETag from last time), since a full last page says nothing of what came
/// after it. A page may also be Bitbucket's envelope, `{"values": [...], "next": ...}`, whose
/// `next` says whether more follow: without one the walk ends there.
pub(crate) fn walk(
    api: &Api,
    state: &mut State,
    name: &str,
    base: &str,
    per_page: usize,
    what: &str,
    key: impl Fn(&Value) -> Option<String>,
) -> Result<Walked> {
    let previous = state.listings.remove(name).unwrap_or_default();
    let mut pages = Vec::new();
    let file = tempfile::NamedTempFile::new().map_err(|e| io_error(Path::new("a temporary file"), e))?;
    let mut walked = Walked { keys: BTreeSet::new(), spool: Spool { file, count: 0 } };
    let mut out = std::io::BufWriter::new(
        walked.spool.file.as_file().try_clone().map_err(|e| io_error(Path::new("a temporary file"), e))?,
    );
    for number in 1.. {
        let url = format!("{base}&page={number}");
        let before = previous.get(number - 1).filter(|p| p.url == url);
        let page = match api.get_if(&url, what, before.and_then(|p| p.etag.as_deref()))? {
            Fetched::NotModified => before.cloned().expect("a 304 answers a conditional request"),
            Fetched::Fresh(page, etag) => {
                let not_a_list =
                    || Error::Parse { forge: api.forge, what: what.to_string(), detail: "a page is not a list".into() };
                let (items, envelope_next) = match page.body {
                    Value::Array(items) => (items, None),
                    Value::Object(mut obj) => match obj.remove("values") {
                        Some(Value::Array(items)) => (items, Some(obj.get("next").is_some_and(Value::is_string))),
                        _ => return Err(not_a_list()),
                    },
                    _ => return Err(not_a_list()),
                };
                let keys: Vec<String> = items.iter().filter_map(&key).collect();
                let next = envelope_next.unwrap_or_else(|| link_next(&page.headers).is_some());
                let more = keys.len() < per_page && next;
                let last = envelope_next == Some(false);
                for item in items {
                    serde_json::to_writer(&mut out, &item)
                        .map_err(|e| io_error(walked.spool.file.path(), std::io::Error::other(e)))?;
                    out.write_all(b"\n").map_err(|e| io_error(walked.spool.file.path(), e))?;
                    walked.spool.count += 1;
                }
                PageState { url, etag, keys, more, last }
            }
        };
        let len = page.keys.len();
        walked.keys.extend(page.keys.iter().cloned());
        let (more, last) = (page.more, page.last);
        pages.push(page);
        if last || (len < per_page && !more) {
            break;
        }
    }
    out.flush().map_err(|e| io_error(walked.spool.file.path(), e))?;
    state.listings.insert(name.to_string(), pages);
    Ok(walked)
}

/// Write `value` as canonical JSON (sorted keys, two-space indent, final newline), only when
/// the file's content differs. Returns whether it was written.
pub(crate) fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| io_error(path, std::io::Error::other(e)))?;
    text.push('\n');
    if fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(text.as_bytes()).map_err(|e| io_error(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

pub(crate) fn read_json(path: &Path) -> Option<Value> {
    fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.to_path_buf(), source }
}

/// Mark every item file matching `pattern` (a path relative to `dir` with one `{}` for the
/// key, such as `issues/{}/issue.json`) whose key is not in `alive` as deleted at `now`, unless
/// it is already. Returns the paths newly marked.
pub(crate) fn mark_deleted(
    dir: &Path,
    pattern: &str,
    existing: impl IntoIterator<Item = String>,
    alive: &BTreeSet<String>,
    now: &str,
) -> Result<Vec<String>> {
    let mut marked = Vec::new();
    for key in existing {
        if alive.contains(&key) {
            continue;
        }
        let rel = pattern.replace("{}", &key);
        let path = dir.join(&rel);
        let Some(mut item) = read_json(&path) else { continue };
        if item.get(DELETED_FIELD).is_some() {
            continue;
        }
        if let Some(obj) = item.as_object_mut() {
            obj.insert(DELETED_FIELD.into(), Value::String(now.to_string()));
        }
        write_json(&path, &item)?;
        marked.push(rel);
    }
    Ok(marked)
}

/// The names of the entries of `dir` (none when it does not exist), without `suffix`.
pub(crate) fn entries(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(read) = fs::read_dir(dir) else { return Vec::new() };
    read.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(suffix)).map(str::to_string))
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
        .collect()
}

/// A key as a file name: what a forge allows in a label name (`/`, spaces...) must not make a
/// path. Percent-encodes everything but `[A-Za-z0-9._-]` (and a leading `.`).
pub fn file_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, b) in key.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What fetching one repository's metadata did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MetaReport {
    /// API requests made, and how many of them were answered 304 (free of rate limit on GitHub).
    pub requests: u64,
    pub not_modified: u64,
    /// Items the metadata now holds (deleted ones included).
    pub issues: usize,
    pub pulls: usize,
    pub comments: usize,
    pub releases: usize,
    /// Release assets downloaded this run, and their bytes.
    pub assets_downloaded: usize,
    pub asset_bytes: u64,
    /// Files newly marked deleted (items the forge no longer returns).
    pub deleted: Vec<String>,
    /// What could not be read with this token (branch protection, teams...), and why.
    pub unavailable: Vec<String>,
}

pub(crate) use gitvault_git::lfs_object_path;

/// Remember the `ETag` of a single resource (or forget it when the answer had none).
pub(crate) fn set_etag(state: &mut State, name: &str, etag: Option<String>) {
    match etag {
        Some(e) => state.etags.insert(name.to_string(), e),
        None => state.etags.remove(name),
    };
}

/// A string field of an item.
pub(crate) fn str_of<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// A numeric field of an item (a number, an index, an id), as a key.
pub(crate) fn num_of(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_u64).map(|n| n.to_string())
}

/// `<n>/<sub>/<id>` for every `<dir>/<kind>/<n>/<sub>/<id>.json`.
pub(crate) fn nested(dir: &Path, kind: &str, sub: &str) -> Vec<String> {
    let mut out = Vec::new();
    for n in entries(&dir.join(kind), "") {
        for id in entries(&dir.join(kind).join(&n).join(sub), ".json") {
            out.push(format!("{n}/{sub}/{id}"));
        }
    }
    out
}

/// Keys `<n>/<id>` as `<n>/<sub>/<id>`, to compare with [`nested`].
pub(crate) fn prefixed(keys: &BTreeSet<String>, sub: &str) -> BTreeSet<String> {
    keys.iter().filter_map(|k| k.split_once('/').map(|(n, id)| format!("{n}/{sub}/{id}"))).collect()
}

/// Download a release asset into the metadata repository's LFS store; returns its SHA-256 and
/// size.
pub(crate) fn download_asset(api: &Api, url: &str, git_dir: &Path, what: &str) -> Result<(String, u64)> {
    let tmp_dir = git_dir.join("lfs").join("tmp");
    fs::create_dir_all(&tmp_dir).map_err(|e| io_error(&tmp_dir, e))?;
    let tmp = tmp_dir.join(format!("asset-{}", std::process::id()));
    let file = fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    let mut out = gitvault_git::Sha256Writer::new(std::io::BufWriter::new(file));
    let bytes = api.download(url, what, &mut out)?;
    let (mut file, oid) = out.hex();
    file.flush().map_err(|e| io_error(&tmp, e))?;
    let dest = lfs_object_path(git_dir, &oid);
    fs::create_dir_all(dest.parent().expect("an object path has a parent")).map_err(|e| io_error(&dest, e))?;
    fs::rename(&tmp, &dest).map_err(|e| io_error(&dest, e))?;
    Ok((oid, bytes))
}

/// A Git LFS pointer file for an object.
pub(crate) fn lfs_pointer(oid: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n")
}

pub(crate) trait WithParent {
    fn with_parent(self) -> Result<std::path::PathBuf>;
}

impl WithParent for std::path::PathBuf {
    /// The path, once its parent directory exists.
    fn with_parent(self) -> Result<std::path::PathBuf> {
        if let Some(dir) = self.parent() {
            fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        Ok(self)
    }
}

/// One repository's metadata fetch: where it reads and writes, what it learned so far, and the
/// helpers every forge's fetcher shares. A fetcher wraps it (`Deref`) and adds its listings.
pub(crate) struct Fetch<'a> {
    pub api: &'a Api,
    pub repo: &'a crate::RemoteRepo,
    pub dir: &'a Path,
    pub git_dir: &'a Path,
    pub now: &'a str,
    pub state: State,
    pub report: MetaReport,
    /// The repository's API path (`/repos/acme/api`, `/repositories/team/api`).
    base: String,
    per_page: usize,
    /// Counters when the fetch began, to report this repository's requests only.
    before: (u64, u64),
}

impl<'a> Fetch<'a> {
    pub fn new(
        api: &'a Api,
        repo: &'a crate::RemoteRepo,
        (dir, git_dir): (&'a Path, &'a Path),
        now: &'a str,
        base: String,
        per_page: usize,
    ) -> Self {
        let before = (api.requests(), api.not_modified());
        Self {
            api,
            repo,
            dir,
            git_dir,
            now,
            state: State::load(dir),
            report: MetaReport::default(),
            base,
            per_page,
            before,
        }
    }

    pub fn what(&self, x: &str) -> String {
        format!("the {x} of {}", self.repo.vault_name())
    }

    /// `rest` under the repository's API URL.
    pub fn url(&self, rest: &str) -> String {
        self.api.url(&format!("{}/{rest}", self.base))
    }

    pub fn walk(&mut self, name: &str, rest: &str, key: impl Fn(&Value) -> Option<String>) -> Result<Walked> {
        let (url, what) = (self.url(rest), self.what(&name.replace('_', " ")));
        walk(self.api, &mut self.state, name, &url, self.per_page, &what, key)
    }

    /// Mark the files `pattern` names for `existing` keys not in `alive` as deleted.
    pub fn mark(&mut self, pattern: &str, existing: Vec<String>, alive: &BTreeSet<String>) -> Result<()> {
        self.report.deleted.extend(mark_deleted(self.dir, pattern, existing, alive, self.now)?);
        Ok(())
    }

    /// Settings: the repository object, asked for conditionally.
    pub fn settings(&mut self) -> Result<()> {
        let (url, what) = (self.api.url(&self.base), self.what("settings"));
        let etag = self.state.etags.get("repository").map(String::as_str);
        if let Fetched::Fresh(page, etag) = self.api.get_if(&url, &what, etag)? {
            write_json(&self.dir.join("repository.json"), &page.body)?;
            set_etag(&mut self.state, "repository", etag);
        }
        Ok(())
    }

    /// Save the state and report: counts of the items the metadata holds, requests made.
    pub fn finish(self) -> Result<MetaReport> {
        self.state.save(self.dir)?;
        let mut report = self.report;
        report.issues = entries(&self.dir.join("issues"), "").len();
        report.pulls = entries(&self.dir.join("pulls"), "").len();
        report.requests = self.api.requests() - self.before.0;
        report.not_modified = self.api.not_modified() - self.before.1;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_are_safe_names() {
        assert_eq!(file_key("bug"), "bug");
        assert_eq!(file_key("good first issue"), "good%20first%20issue");
        assert_eq!(file_key("area/ui"), "area%2Fui");
        assert_eq!(file_key(".hidden"), "%2Ehidden");
        assert_eq!(file_key("v1.2"), "v1.2");
    }

    #[test]
    fn canonical_json_is_sorted_and_rewritten_only_when_it_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a/b.json");
        write_json(&path, &serde_json::json!({"b": 1, "a": [2, {"z": 1, "y": 2}]})).expect("write");
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(text, "{\n  \"a\": [\n    2,\n    {\n      \"y\": 2,\n      \"z\": 1\n    }\n  ],\n  \"b\": 1\n}\n");
        let before = fs::metadata(&path).expect("meta").modified().expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_json(&path, &serde_json::json!({"a": [2, {"y": 2, "z": 1}], "b": 1})).expect("write");
        assert_eq!(fs::metadata(&path).expect("meta").modified().expect("mtime"), before);
    }

    #[test]
    fn items_no_longer_listed_are_marked_once() {
        let dir = tempfile::tempdir().expect("tmp");
        for n in ["1", "2"] {
            write_json(&dir.path().join(format!("issues/{n}/issue.json")), &serde_json::json!({"number": n}))
                .expect("w");
        }
        let alive: BTreeSet<String> = ["1".to_string()].into();
        let marked =
            mark_deleted(dir.path(), "issues/{}/issue.json", entries(&dir.path().join("issues"), ""), &alive, "T1")
                .expect("mark");
        assert_eq!(marked, ["issues/2/issue.json"]);
        let again =
            mark_deleted(dir.path(), "issues/{}/issue.json", entries(&dir.path().join("issues"), ""), &alive, "T2")
                .expect("mark");
        assert!(again.is_empty());
        let item = read_json(&dir.path().join("issues/2/issue.json")).expect("item");
        assert_eq!(item[DELETED_FIELD], "T1");
    }
}
