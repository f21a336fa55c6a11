//! GitLab metadata of one project, in the layout of `meta.rs` (FORMAT.md §7.7) with GitLab's own
//! objects in the files:
//!
//! ```text
//! repository.json                      GET /projects/:id
//! labels/<name>.json                   milestones/<iid>.json
//! issues/<iid>/issue.json              issues/<iid>/comments/<note id>.json (user and system notes)
//! pulls/<iid>/pull.json                the merge request (GET /merge_requests/:iid)
//! pulls/<iid>/comments/<note id>.json  its notes but diff notes
//! pulls/<iid>/review_comments/<note id>.json   diff notes (from its discussions, with `position`)
//! pulls/<iid>/approvals.json
//! releases/<tag>/release.json          without `assets.links`
//! releases/<tag>/assets/<link id>.json (+ .bin)  each link, its target's bytes an LFS object
//! access/members/<username>.json       protection/<branch>.json
//! ```
//!
//! Issues and merge requests have numbers of their own (`iid`), so `issues/1` and `pulls/1` are
//! different items. Every listing is sorted by creation, so that a page changes only when an item
//! on it does. GitLab has no project-wide listing of notes: the notes of an issue or a merge
//! request are asked for only when its `updated_at` moved since the last backup (saving a note
//! touches its noteable).
//!
//! A release link may point anywhere. Its target is downloaded — with the token — only when it is
//! on the API's own host (scheme, host and port); a link elsewhere is recorded without its bytes,
//! and the report says so: sending the token to another host would leak it, and fetching
//! arbitrary URLs is not backing up the forge.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::RemoteRepo;
use crate::error::{Error, Result};
use crate::gitlab::encode;
use crate::http::{Api, Fetched};
use crate::meta::{
    MetaReport, State, WithParent, download_asset, entries, file_key, io_error, lfs_pointer, mark_deleted, nested,
    num_of, read_json, set_etag, str_of, walk, write_json,
};

const PER_PAGE: usize = 100;

/// Fetch the metadata of the GitLab project `repo` into `dir` (the work tree of its metadata
/// repository, holding the previous backup's files), release link targets into `git_dir`'s LFS
/// store. `now` (RFC 3339) dates items first found deleted.
pub(crate) fn fetch(api: &Api, repo: &RemoteRepo, dir: &Path, git_dir: &Path, now: &str) -> Result<MetaReport> {
    let (before_requests, before_304) = (api.requests(), api.not_modified());
    let mut state = State::load(dir);
    let mut report = MetaReport::default();
    let ctx = Ctx { api, dir, now, p: format!("/projects/{}", encode(&repo.path)), name: repo.vault_name() };

    if let Fetched::Fresh(page, etag) =
        api.get_if(&api.url(&ctx.p), &ctx.what("settings"), state.etags.get("repository").map(String::as_str))?
    {
        write_json(&dir.join("repository.json"), &page.body)?;
        set_etag(&mut state, "repository", etag);
    }

    ctx.simple_listing(&mut state, &mut report, "labels", "labels?per_page=100", "labels/{}.json", |v| {
        str_of(v, "name").map(file_key)
    })?;
    ctx.simple_listing(&mut state, &mut report, "milestones", "milestones?per_page=100", "milestones/{}.json", |v| {
        num_of(v, "iid")
    })?;
    issues(&ctx, &mut state, &mut report)?;
    merge_requests(&ctx, &mut state, &mut report)?;
    releases(&ctx, &mut state, &mut report, git_dir)?;

    // Who has access (inherited memberships included) and how branches are protected: a token
    // below Maintainer may not read them, which is said, not fatal.
    for (name, path, pattern, key) in [
        ("members", "members/all?per_page=100", "access/members/{}.json", "username"),
        ("protected_branches", "protected_branches?per_page=100", "protection/{}.json", "name"),
    ] {
        match ctx.simple_listing(&mut state, &mut report, name, path, pattern, |v| str_of(v, key).map(file_key)) {
            Ok(()) => {}
            Err(e @ (Error::Http { .. } | Error::NotFound { .. } | Error::Unauthorized { .. })) => {
                report.unavailable.push(format!("{name}: {e}"))
            }
            Err(e) => return Err(e),
        }
    }

    state.save(dir)?;
    report.issues = entries(&dir.join("issues"), "").len();
    report.pulls = entries(&dir.join("pulls"), "").len();
    report.comments = nested(dir, "issues", "comments").len() + nested(dir, "pulls", "comments").len();
    report.requests = api.requests() - before_requests;
    report.not_modified = api.not_modified() - before_304;
    Ok(report)
}

/// What every part of one project's fetch needs.
struct Ctx<'a> {
    api: &'a Api,
    dir: &'a Path,
    now: &'a str,
    /// `/projects/<url-encoded path>`.
    p: String,
    name: String,
}

impl Ctx<'_> {
    fn what(&self, x: &str) -> String {
        format!("the {x} of {}", self.name)
    }

    fn url(&self, rest: &str) -> String {
        self.api.url(&format!("{}/{rest}", self.p))
    }

    /// A listing whose items are written as they come, one file each (`pattern` with `{}` for
    /// the key), the files of items it no longer holds marked deleted.
    fn simple_listing(
        &self,
        state: &mut State,
        report: &mut MetaReport,
        name: &str,
        path: &str,
        pattern: &str,
        key: impl Fn(&Value) -> Option<String>,
    ) -> Result<()> {
        let walked = walk(self.api, state, name, &self.url(path), PER_PAGE, &self.what(name), &key)?;
        for v in walked.fresh()? {
            let v = &v?;
            if let Some(k) = key(v) {
                write_json(&self.dir.join(pattern.replace("{}", &k)), v)?;
            }
        }
        let (parent, suffix) = pattern.rsplit_once("{}").expect("a pattern has a key");
        let existing = entries(&self.dir.join(parent.trim_end_matches('/')), suffix);
        report.deleted.extend(mark_deleted(self.dir, pattern, existing, &walked.keys, self.now)?);
        Ok(())
    }

    /// The `notes` that `keep` accepts into `<base>/<sub>/<id>.json`; the files of `<base>/<sub>`
    /// that are not among them are marked deleted.
    fn notes_into(
        &self,
        report: &mut MetaReport,
        notes: &[Value],
        base: &str,
        sub: &str,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<()> {
        let mut alive = BTreeSet::new();
        for note in notes.iter().filter(|n| keep(n)) {
            let Some(id) = num_of(note, "id") else { continue };
            write_json(&self.dir.join(format!("{base}/{sub}/{id}.json")), note)?;
            alive.insert(id);
        }
        let existing = entries(&self.dir.join(base).join(sub), ".json");
        report.deleted.extend(mark_deleted(self.dir, &format!("{base}/{sub}/{{}}.json"), existing, &alive, self.now)?);
        Ok(())
    }
}

/// Issues, and the notes of those whose `updated_at` moved.
fn issues(ctx: &Ctx, state: &mut State, report: &mut MetaReport) -> Result<()> {
    let issues = walk(
        ctx.api,
        state,
        "issues",
        &ctx.url("issues?scope=all&state=all&order_by=created_at&sort=asc&per_page=100"),
        PER_PAGE,
        &ctx.what("issues"),
        |v| num_of(v, "iid"),
    )?;
    for v in issues.fresh()? {
        let v = &v?;
        let Some(iid) = num_of(v, "iid") else { continue };
        let path = ctx.dir.join(format!("issues/{iid}/issue.json"));
        // The notes before the issue: an interrupted run then asks for them again.
        if moved(&path, v) {
            let notes = ctx.api.get_all(
                &ctx.url(&format!("issues/{iid}/notes?sort=asc&order_by=created_at&per_page=100")),
                &ctx.what("issue notes"),
            )?;
            ctx.notes_into(report, &notes, &format!("issues/{iid}"), "comments", |_| true)?;
        }
        write_json(&path, &without_votes(v))?;
    }
    report.deleted.extend(mark_deleted(
        ctx.dir,
        "issues/{}/issue.json",
        entries(&ctx.dir.join("issues"), ""),
        &issues.keys,
        ctx.now,
    )?);
    Ok(())
}

/// Merge requests; for those whose `updated_at` moved, the full object, the notes, the diff notes
/// of the discussions and the approvals.
fn merge_requests(ctx: &Ctx, state: &mut State, report: &mut MetaReport) -> Result<()> {
    let mrs = walk(
        ctx.api,
        state,
        "merge_requests",
        &ctx.url("merge_requests?scope=all&state=all&order_by=created_at&sort=asc&per_page=100"),
        PER_PAGE,
        &ctx.what("merge requests"),
        |v| num_of(v, "iid"),
    )?;
    for v in mrs.fresh()? {
        let v = &v?;
        let Some(iid) = num_of(v, "iid") else { continue };
        let path = ctx.dir.join(format!("pulls/{iid}/pull.json"));
        if !moved(&path, v) {
            continue;
        }
        let base = format!("pulls/{iid}");
        let full = ctx.api.get(&ctx.url(&format!("merge_requests/{iid}")), &ctx.what("merge requests"))?.body;
        let notes = ctx.api.get_all(
            &ctx.url(&format!("merge_requests/{iid}/notes?sort=asc&order_by=created_at&per_page=100")),
            &ctx.what("merge request notes"),
        )?;
        ctx.notes_into(report, &notes, &base, "comments", |n| !is_diff_note(n))?;
        // Diff notes come from the discussions, which hold them with their position and thread.
        let discussions = ctx
            .api
            .get_all(&ctx.url(&format!("merge_requests/{iid}/discussions?per_page=100")), &ctx.what("discussions"))?;
        let diff_notes: Vec<Value> = discussions
            .iter()
            .filter_map(|d| d.get("notes").and_then(Value::as_array))
            .flatten()
            .filter(|n| is_diff_note(n))
            .cloned()
            .collect();
        ctx.notes_into(report, &diff_notes, &base, "review_comments", |_| true)?;
        match ctx.api.get(&ctx.url(&format!("merge_requests/{iid}/approvals")), &ctx.what("approvals")) {
            Ok(page) => write_json(&ctx.dir.join(format!("{base}/approvals.json")), &page.body)?,
            Err(e @ (Error::Http { .. } | Error::NotFound { .. })) => {
                report.unavailable.push(format!("approvals of !{iid}: {e}"))
            }
            Err(e) => return Err(e),
        }
        write_json(&path, &without_votes(&full))?;
    }
    report.deleted.extend(mark_deleted(
        ctx.dir,
        "pulls/{}/pull.json",
        entries(&ctx.dir.join("pulls"), ""),
        &mrs.keys,
        ctx.now,
    )?);
    Ok(())
}

/// Releases, keyed by tag, and the bytes behind each link on the forge's own host.
fn releases(ctx: &Ctx, state: &mut State, report: &mut MetaReport, git_dir: &Path) -> Result<()> {
    let releases = walk(
        ctx.api,
        state,
        "releases",
        &ctx.url("releases?order_by=created_at&sort=asc&per_page=100"),
        PER_PAGE,
        &ctx.what("releases"),
        |v| str_of(v, "tag_name").map(file_key),
    )?;
    for v in releases.fresh()? {
        let v = &v?;
        let Some(tag) = str_of(v, "tag_name") else { continue };
        let key = file_key(tag);
        let mut release = v.clone();
        let links = release
            .get_mut("assets")
            .and_then(Value::as_object_mut)
            .and_then(|a| a.remove("links"))
            .unwrap_or(Value::Null);
        write_json(&ctx.dir.join(format!("releases/{key}/release.json")), &release)?;
        let mut alive = BTreeSet::new();
        for link in links.as_array().into_iter().flatten() {
            let Some(id) = num_of(link, "id") else { continue };
            alive.insert(id.clone());
            let path = ctx.dir.join(format!("releases/{key}/assets/{id}.json"));
            let target = str_of(link, "direct_asset_url").or_else(|| str_of(link, "url")).unwrap_or_default();
            let old = read_json(&path);
            let kept = old.filter(|o| {
                o.get("url") == link.get("url") && o.get("direct_asset_url") == link.get("direct_asset_url")
            });
            let oid = match kept.as_ref().and_then(|o| str_of(o, "sha256")) {
                Some(oid) => Some(oid.to_string()),
                None if same_origin(ctx.api.base(), target) => {
                    let (oid, bytes) = download_asset(ctx.api, target, git_dir, &ctx.what("release links"))?;
                    report.assets_downloaded += 1;
                    report.asset_bytes += bytes;
                    let pointer = ctx.dir.join(format!("releases/{key}/assets/{id}.bin")).with_parent()?;
                    fs::write(&pointer, lfs_pointer(&oid, bytes)).map_err(|e| io_error(&pointer, e))?;
                    Some(oid)
                }
                None => {
                    report.unavailable.push(format!(
                        "release {tag}: the link {:?} points to {target}, outside the forge: recorded, not downloaded",
                        str_of(link, "name").unwrap_or_default()
                    ));
                    None
                }
            };
            let mut record = link.clone();
            if let (Some(o), Some(oid)) = (record.as_object_mut(), oid) {
                o.insert("sha256".into(), Value::String(oid));
            }
            write_json(&path, &record)?;
        }
        let existing = entries(&ctx.dir.join(format!("releases/{key}/assets")), ".json");
        report.deleted.extend(mark_deleted(
            ctx.dir,
            &format!("releases/{key}/assets/{{}}.json"),
            existing,
            &alive,
            ctx.now,
        )?);
    }
    report.deleted.extend(mark_deleted(
        ctx.dir,
        "releases/{}/release.json",
        entries(&ctx.dir.join("releases"), ""),
        &releases.keys,
        ctx.now,
    )?);
    report.releases = releases.keys.len();
    Ok(())
}

/// Whether the item's `updated_at` differs from the one stored at `path` (or nothing is).
fn moved(path: &Path, item: &Value) -> bool {
    read_json(path).is_none_or(|old| old.get("updated_at") != item.get("updated_at"))
}

fn is_diff_note(note: &Value) -> bool {
    str_of(note, "type") == Some("DiffNote")
}

/// Award counts change without the item changing: left out, so that they do not churn.
fn without_votes(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("upvotes");
        o.remove("downvotes");
    }
    v
}

/// Whether `url` is on the same scheme, host and port as the API base `base`.
fn same_origin(base: &str, url: &str) -> bool {
    match (reqwest::Url::parse(base), reqwest::Url::parse(url)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_links_on_the_forge_itself_are_downloaded() {
        let base = "https://gitlab.example.com/api/v4";
        assert!(same_origin(base, "https://gitlab.example.com/acme/api/-/releases/v1/downloads/tool"));
        assert!(same_origin(base, "https://gitlab.example.com:443/acme/api/uploads/abc/tool.bin"));
        assert!(!same_origin(base, "https://downloads.example.com/tool.bin"));
        assert!(!same_origin(base, "http://gitlab.example.com/acme/api/uploads/abc/tool.bin"));
        assert!(!same_origin(base, "https://gitlab.example.com.evil.test/x"));
        assert!(!same_origin(base, "not a url"));
    }

    #[test]
    fn diff_notes_are_told_from_the_others() {
        assert!(is_diff_note(&serde_json::json!({"type": "DiffNote"})));
        assert!(!is_diff_note(&serde_json::json!({"type": null})));
        assert!(!is_diff_note(&serde_json::json!({"type": "DiscussionNote"})));
    }
}
