//! Export of a metadata repository's tree (FORMAT.md §7.7): the JSON as stored, a static HTML
//! rendering that needs no server (an index, one page per issue and pull request with its
//! thread, the releases), and every release asset as a file of its original bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::meta::{DELETED_FIELD, entries, io_error, lfs_object_path, read_json};

/// What an export wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportReport {
    pub issues: usize,
    pub pulls: usize,
    pub releases: usize,
    pub assets: usize,
    pub asset_bytes: u64,
    /// Assets whose bytes the backup did not hold (listed, not written).
    pub missing_assets: Vec<String>,
}

/// Export the metadata checked out at `tree` (whose LFS objects are in `git_dir`) into
/// `target`: `json/` (the files as stored), `index.html`, `issues/<n>.html`, `pulls/<n>.html`,
/// `releases.html`, and `assets/<release id>/<asset name>`.
pub fn export(tree: &Path, git_dir: &Path, target: &Path, title: &str) -> Result<ExportReport> {
    let mut report = ExportReport::default();
    copy_json(tree, &target.join("json"))?;

    let issues = items(tree, "issues", "issue.json");
    let pulls = items(tree, "pulls", "pull.json");
    for (kind, list) in [("issues", &issues), ("pulls", &pulls)] {
        for (n, item) in list {
            let dir = tree.join(kind).join(n.to_string());
            let mut thread: Vec<(String, &'static str, Value)> = Vec::new();
            for (sub, label) in [("comments", "comment"), ("reviews", "review"), ("review_comments", "review comment")]
            {
                for id in entries(&dir.join(sub), ".json") {
                    if let Some(v) = read_json(&dir.join(sub).join(format!("{id}.json"))) {
                        let when = v
                            .get("created_at")
                            .or_else(|| v.get("submitted_at"))
                            .or_else(|| v.get("created_on"))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        thread.push((when, label, v));
                    }
                }
            }
            thread.sort_by(|a, b| a.0.cmp(&b.0));
            write(&target.join(kind).join(format!("{n}.html")), &item_page(title, kind, item, &thread))?;
        }
    }
    report.issues = issues.len();
    report.pulls = pulls.len();

    // Releases and their assets' bytes.
    let mut releases = Vec::new();
    for id in entries(&tree.join("releases"), "") {
        let dir = tree.join("releases").join(&id);
        let Some(release) = read_json(&dir.join("release.json")) else { continue };
        let mut assets = Vec::new();
        for aid in entries(&dir.join("assets"), ".json") {
            let Some(asset) = read_json(&dir.join("assets").join(format!("{aid}.json"))) else { continue };
            let name = asset.get("name").and_then(Value::as_str).unwrap_or(&aid).to_string();
            let file = Path::new("assets").join(&id).join(safe_name(&name));
            match asset.get("sha256").and_then(Value::as_str) {
                Some(oid) if lfs_object_path(git_dir, oid).is_file() => {
                    let dest = target.join(&file);
                    fs::create_dir_all(dest.parent().expect("has a parent")).map_err(|e| io_error(&dest, e))?;
                    report.asset_bytes +=
                        fs::copy(lfs_object_path(git_dir, oid), &dest).map_err(|e| io_error(&dest, e))?;
                    report.assets += 1;
                }
                _ => report.missing_assets.push(format!("release {id}: {name}")),
            }
            assets.push((asset, file));
        }
        releases.push((release, assets));
    }
    releases.sort_by_key(|r| std::cmp::Reverse(field(&r.0, "created_at")));
    report.releases = releases.len();
    write(&target.join("releases.html"), &releases_page(title, &releases))?;
    write(&target.join("index.html"), &index_page(tree, title, &issues, &pulls, releases.len()))?;
    Ok(report)
}

/// `<kind>/<n>/<file>` of every item, by number.
fn items(tree: &Path, kind: &str, file: &str) -> BTreeMap<u64, Value> {
    entries(&tree.join(kind), "")
        .into_iter()
        .filter_map(|n| Some((n.parse::<u64>().ok()?, read_json(&tree.join(kind).join(&n).join(file))?)))
        .collect()
}

fn copy_json(from: &Path, to: &Path) -> Result<()> {
    let read = fs::read_dir(from).map_err(|e| io_error(from, e))?;
    for entry in read {
        let entry = entry.map_err(|e| io_error(from, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue; // .git, .gitvault: not metadata
        }
        let (src, dest) = (entry.path(), to.join(&*name));
        if src.is_dir() {
            copy_json(&src, &dest)?;
        } else if name.ends_with(".json") {
            fs::create_dir_all(to).map_err(|e| io_error(to, e))?;
            fs::copy(&src, &dest).map_err(|e| io_error(&dest, e))?;
        }
    }
    Ok(())
}

fn write(path: &Path, html: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    fs::write(path, html).map_err(|e| io_error(path, e))
}

fn field(v: &Value, name: &str) -> String {
    match v.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Who `v` is by: its `name` user (GitHub's `user`, or GitLab's `author` — a `username`, not a
/// `login` —, or Bitbucket's `author` / `reporter` — a `nickname`).
fn login(v: &Value, name: &str) -> String {
    [name, "author", "reporter"]
        .iter()
        .filter_map(|n| v.get(*n))
        .find_map(|u| {
            u.get("login").or_else(|| u.get("username")).or_else(|| u.get("nickname")).and_then(Value::as_str)
        })
        .unwrap_or("ghost")
        .to_string()
}

/// The first of `names` that `v` has (GitHub's and GitLab's names for one thing).
fn either(v: &Value, names: &[&str]) -> String {
    names.iter().map(|n| field(v, n)).find(|s| !s.is_empty()).unwrap_or_default()
}

/// A field of a nested object: `v[outer][inner]`.
fn inner(v: &Value, outer: &str, inner: &str) -> String {
    v.get(outer).map(|o| field(o, inner)).unwrap_or_default()
}

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An asset name as a file name: no directories, nothing hidden.
fn safe_name(name: &str) -> String {
    let cleaned: String = name.chars().map(|c| if c == '/' || c == '\\' || c.is_control() { '_' } else { c }).collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() { "asset".into() } else { cleaned.to_string() }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2328}\
.meta{color:#59636e;font-size:.9rem}.body{white-space:pre-wrap;border:1px solid #d1d9e0;border-radius:6px;padding:.75rem;margin:.5rem 0 1.5rem}\
.deleted{color:#d1242f;font-weight:600}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #d1d9e0}\
code{background:#f6f8fa;padding:0 .2rem}";

fn page(title: &str, heading: &str, body: &str, depth: usize) -> String {
    let up = "../".repeat(depth);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{h} — {t}</title><style>{STYLE}</style></head>\n<body><p class=\"meta\"><a href=\"{up}index.html\">{t}</a></p><h1>{h}</h1>\n{body}</body></html>\n",
        t = escape(title),
        h = escape(heading),
    )
}

fn deleted_note(v: &Value) -> String {
    match v.get(DELETED_FIELD).and_then(Value::as_str) {
        Some(when) => format!(" <span class=\"deleted\">deleted upstream (found missing {})</span>", escape(when)),
        None => String::new(),
    }
}

fn item_page(title: &str, kind: &str, item: &Value, thread: &[(String, &'static str, Value)]) -> String {
    let mut body = String::new();
    let state = field(item, "state");
    let merged =
        item.get("merged_at").and_then(Value::as_str).map(|m| format!(", merged {}", escape(m))).unwrap_or_default();
    let _ = write!(
        body,
        "<p class=\"meta\">#{} · {}{} · opened by <b>{}</b> on {}{}</p>",
        either(item, &["number", "iid", "id"]),
        escape(&state),
        merged,
        escape(&login(item, "user")),
        escape(&either(item, &["created_at", "created_on"])),
        deleted_note(item)
    );
    if kind == "pulls" {
        // GitHub's `head.ref`, GitLab's `source_branch`, Bitbucket's `source.branch.name`.
        let branch = |end: &str| item.get(end).and_then(|e| e.get("branch")).map(|b| field(b, "name"));
        let head =
            [inner(item, "head", "ref"), field(item, "source_branch"), branch("source").unwrap_or_default()].concat();
        let base =
            [inner(item, "base", "ref"), field(item, "target_branch"), branch("destination").unwrap_or_default()]
                .concat();
        let _ = write!(
            body,
            "<p class=\"meta\">wants to merge <code>{}</code> into <code>{}</code></p>",
            escape(&head),
            escape(&base)
        );
    }
    // GitHub's labels are objects, GitLab's names.
    let labels: Vec<String> = item
        .get("labels")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(|x| x.get("name").unwrap_or(x).as_str()).map(escape).collect())
        .unwrap_or_default();
    if !labels.is_empty() {
        let _ = write!(body, "<p class=\"meta\">labels: {}</p>", labels.join(", "));
    }
    let text = [either(item, &["body", "description"]), inner(item, "content", "raw")].concat();
    let _ = write!(body, "<div class=\"body\">{}</div>", escape(&text));
    for (when, label, v) in thread {
        let mut what = (*label).to_string();
        // GitHub's review comments say `path` and `line`; GitLab's diff notes, `position`;
        // Bitbucket's inline comments, `inline`.
        let path = [field(v, "path"), inner(v, "position", "new_path"), inner(v, "inline", "path")].concat();
        if !path.is_empty() {
            let line = [
                field(v, "line"),
                inner(v, "position", "new_line"),
                inner(v, "position", "old_line"),
                inner(v, "inline", "to"),
                inner(v, "inline", "from"),
            ]
            .into_iter()
            .find(|l| !l.is_empty())
            .unwrap_or_default();
            what = format!(
                "{what} on <code>{}</code>{}",
                escape(&path),
                if line.is_empty() { String::new() } else { format!(" line {}", escape(&line)) }
            );
        }
        if let Some(state) = v.get("state").and_then(Value::as_str) {
            what = format!("{what} ({})", escape(state));
        }
        let _ = write!(
            body,
            "<p class=\"meta\"><b>{}</b> · {what} · {}{}</p><div class=\"body\">{}</div>",
            escape(&login(v, "user")),
            escape(when),
            deleted_note(v),
            escape(&[field(v, "body"), inner(v, "content", "raw")].concat())
        );
    }
    page(title, &field(item, "title"), &body, 1)
}

fn releases_page(title: &str, releases: &[(Value, Vec<(Value, PathBuf)>)]) -> String {
    let mut body = String::new();
    for (r, assets) in releases {
        let _ = write!(
            body,
            "<h2>{} <code>{}</code></h2><p class=\"meta\">published {} by <b>{}</b>{}</p><div class=\"body\">{}</div>",
            escape(&field(r, "name")),
            escape(&field(r, "tag_name")),
            escape(&either(r, &["published_at", "released_at"])),
            escape(&login(r, "author")),
            deleted_note(r),
            escape(&either(r, &["body", "description"]))
        );
        if !assets.is_empty() {
            body.push_str("<ul>");
            for (a, file) in assets {
                // GitLab's release links carry no size; one whose bytes were not backed up (a
                // link to another host) keeps its address.
                let note = match (field(a, "size"), a.get("sha256")) {
                    (size, _) if !size.is_empty() => format!("{size} bytes"),
                    (_, Some(_)) => "link".to_string(),
                    (_, None) => format!("not backed up: {}", escape(&field(a, "url"))),
                };
                let _ = write!(
                    body,
                    "<li><a href=\"{}\">{}</a> ({note})</li>",
                    escape(&file.to_string_lossy()),
                    escape(&field(a, "name")),
                );
            }
            body.push_str("</ul>");
        }
    }
    page(title, "Releases", &body, 0)
}

fn index_page(
    tree: &Path,
    title: &str,
    issues: &BTreeMap<u64, Value>,
    pulls: &BTreeMap<u64, Value>,
    releases: usize,
) -> String {
    let mut body = String::new();
    if let Some(repo) = read_json(&tree.join("repository.json")) {
        let _ = write!(body, "<p>{}</p>", escape(&field(&repo, "description")));
    }
    let _ = write!(body, "<p><a href=\"releases.html\">{releases} releases</a></p>");
    for (kind, list, heading) in [("issues", issues, "Issues"), ("pulls", pulls, "Pull requests")] {
        let _ = write!(
            body,
            "<h2>{heading} ({})</h2><table><tr><th>#</th><th>title</th><th>state</th><th>author</th><th>updated</th></tr>",
            list.len()
        );
        for (n, item) in list.iter().rev() {
            let _ = write!(
                body,
                "<tr><td>{n}</td><td><a href=\"{kind}/{n}.html\">{}</a>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&field(item, "title")),
                deleted_note(item),
                escape(&field(item, "state")),
                escape(&login(item, "user")),
                escape(&field(item, "updated_at"))
            );
        }
        body.push_str("</table>");
    }
    page(title, title, &body, 0)
        .replace("<p class=\"meta\"><a href=\"index.html\">", "<p class=\"meta\" hidden><a href=\"index.html\">")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_names_are_safe() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_name(".hidden"), "hidden");
        assert_eq!(safe_name("tool-1.0.tar.gz"), "tool-1.0.tar.gz");
    }
}
