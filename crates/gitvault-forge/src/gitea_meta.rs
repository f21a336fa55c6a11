//! Gitea and Forgejo metadata of one repository, into the layout every forge shares (see
//! `meta.rs` for it and for the conditional walk; FORMAT.md §7.7). Each file holds the forge's
//! own object (`Issue`, `Comment`, `PullRequest`, `PullReview`, `PullReviewComment`, `Label`,
//! `Milestone`, `Release`, `Attachment`, `User`, `BranchProtection`).
//!
//! How Gitea differs from GitHub, and what that costs:
//! - Pages hold at most 50 items (`MAX_RESPONSE_ITEMS`); a server configured for fewer is
//!   followed by its `Link` header.
//! - Issues and pull requests are listed apart (`type=issues`, `/pulls`), both oldest first, so
//!   a page changes only when an item on it does (or one before it is deleted).
//! - Milestones have no number: they are kept by id.
//! - A conversation comment names its thread by `issue_url` or `pull_request_url` (the other is
//!   empty).
//! - Review comments are listed per review only, so reviews and their comments are asked for
//!   only for pull requests whose `updated_at` moved since the last backup (a new review or
//!   comment moves it; an edited review comment alone does not, and waits for the next move).
//!   Reviews that say they have no comments cost no request.
//! - Release attachments are downloaded from their `browser_download_url`; their bytes never
//!   change (a new upload is a new attachment), so one already stored is not downloaded again.
//! - `download_count` and the release's `archive_download_count` are left out: counters that
//!   change without the item changing.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::RemoteRepo;
use crate::error::{Error, Result};
use crate::http::{Api, Fetched};
use crate::meta::{
    Fetch, MetaReport, WithParent, download_asset, entries, file_key, io_error, lfs_pointer, nested, num_of, prefixed,
    read_json, set_etag, str_of, write_json,
};

/// Gitea's page size: the servers' default `MAX_RESPONSE_ITEMS` (asking for more gets that many).
const PER_PAGE: usize = 50;

/// Fetch the metadata of `repo` into `dir` (the work tree of its metadata repository, holding
/// the previous backup's files), release attachments into `git_dir`'s LFS store. `now` (RFC
/// 3339) dates items first found deleted.
pub(crate) fn fetch(api: &Api, repo: &RemoteRepo, dir: &Path, git_dir: &Path, now: &str) -> Result<MetaReport> {
    let base = format!("/repos/{}", repo.path);
    let mut run = Run(Fetch::new(api, repo, (dir, git_dir), now, base, PER_PAGE));
    run.settings()?;
    run.labels_and_milestones()?;
    run.issues()?;
    run.pulls()?;
    run.comments()?;
    run.releases()?;
    run.access()?;
    run.0.finish()
}

/// One repository's fetch: the shared [`Fetch`] and this forge's listings.
struct Run<'a>(Fetch<'a>);

impl<'a> std::ops::Deref for Run<'a> {
    type Target = Fetch<'a>;
    fn deref(&self) -> &Fetch<'a> {
        &self.0
    }
}

impl std::ops::DerefMut for Run<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Run<'_> {
    fn labels_and_milestones(&mut self) -> Result<()> {
        let labels = self.walk("labels", "labels?limit=50", |v| str_of(v, "name").map(file_key))?;
        for v in labels.fresh()? {
            let v = &v?;
            if let Some(name) = str_of(v, "name") {
                write_json(&self.dir.join(format!("labels/{}.json", file_key(name))), v)?;
            }
        }
        self.0.mark("labels/{}.json", entries(&self.dir.join("labels"), ".json"), &labels.keys)?;
        let milestones = self.walk("milestones", "milestones?state=all&limit=50", |v| num_of(v, "id"))?;
        for v in milestones.fresh()? {
            let v = &v?;
            if let Some(id) = num_of(v, "id") {
                write_json(&self.dir.join(format!("milestones/{id}.json")), v)?;
            }
        }
        self.0.mark("milestones/{}.json", entries(&self.dir.join("milestones"), ".json"), &milestones.keys)
    }

    fn issues(&mut self) -> Result<()> {
        let issues =
            self.walk("issues", "issues?state=all&type=issues&sort=oldest&limit=50", |v| num_of(v, "number"))?;
        for v in issues.fresh()? {
            let v = &v?;
            if let Some(n) = num_of(v, "number") {
                write_json(&self.dir.join(format!("issues/{n}/issue.json")), v)?;
            }
        }
        self.0.mark("issues/{}/issue.json", entries(&self.dir.join("issues"), ""), &issues.keys)
    }

    /// Pull requests, and the reviews of those that moved.
    fn pulls(&mut self) -> Result<()> {
        let pulls = self.walk("pulls", "pulls?state=all&sort=oldest&limit=50", |v| num_of(v, "number"))?;
        for v in pulls.fresh()? {
            let v = &v?;
            let Some(n) = num_of(v, "number") else { continue };
            let path = self.dir.join(format!("pulls/{n}/pull.json"));
            if read_json(&path).is_none_or(|old| old.get("updated_at") != v.get("updated_at")) {
                self.reviews(&n)?;
            }
            // Written after its reviews: a run that fails in between finds it moved again.
            write_json(&path, v)?;
        }
        self.0.mark("pulls/{}/pull.json", entries(&self.dir.join("pulls"), ""), &pulls.keys)
    }

    /// Every review of pull request `n` and the comments of each; those no longer there are
    /// marked deleted.
    fn reviews(&mut self, n: &str) -> Result<()> {
        let reviews = self.api.get_all(&self.url(&format!("pulls/{n}/reviews?limit=50")), &self.what("reviews"))?;
        let (mut alive, mut alive_comments) = (BTreeSet::new(), BTreeSet::new());
        for review in &reviews {
            let Some(id) = num_of(review, "id") else { continue };
            write_json(&self.dir.join(format!("pulls/{n}/reviews/{id}.json")), review)?;
            alive.insert(id.clone());
            // Gitea counts a review's comments; most reviews have none and cost no request.
            if review.get("comments_count").and_then(Value::as_u64) == Some(0) {
                continue;
            }
            let what = self.what("review comments");
            let page = self.api.get(&self.url(&format!("pulls/{n}/reviews/{id}/comments")), &what)?;
            let Value::Array(comments) = page.body else {
                return Err(Error::Parse { forge: self.api.forge, what, detail: "not a list".into() });
            };
            for comment in &comments {
                if let Some(cid) = num_of(comment, "id") {
                    write_json(&self.dir.join(format!("pulls/{n}/review_comments/{cid}.json")), comment)?;
                    alive_comments.insert(cid);
                }
            }
        }
        let base = self.dir.join("pulls").join(n);
        self.0.mark(&format!("pulls/{n}/reviews/{{}}.json"), entries(&base.join("reviews"), ".json"), &alive)?;
        let existing = entries(&base.join("review_comments"), ".json");
        self.0.mark(&format!("pulls/{n}/review_comments/{{}}.json"), existing, &alive_comments)
    }

    /// Conversation comments of issues and pull requests alike, from the repository-wide
    /// listing (oldest first).
    fn comments(&mut self) -> Result<()> {
        let comments = self.walk("issue_comments", "issues/comments?limit=50", |v| {
            let (_, n) = thread_of(v)?;
            Some(format!("{n}/{}", num_of(v, "id")?))
        })?;
        for v in comments.fresh()? {
            let v = &v?;
            let (Some((kind, n)), Some(id)) = (thread_of(v), num_of(v, "id")) else { continue };
            write_json(&self.dir.join(format!("{kind}/{n}/comments/{id}.json")), v)?;
        }
        let alive = prefixed(&comments.keys, "comments");
        for kind in ["issues", "pulls"] {
            self.0.mark(&format!("{kind}/{{}}.json"), nested(self.dir, kind, "comments"), &alive)?;
        }
        self.report.comments = comments.keys.len();
        Ok(())
    }

    /// Releases (drafts too, for a token that may write) and the bytes of every attachment.
    fn releases(&mut self) -> Result<()> {
        let releases = self.walk("releases", "releases?limit=50", |v| num_of(v, "id"))?;
        for v in releases.fresh()? {
            let v = &v?;
            let Some(id) = num_of(v, "id") else { continue };
            let mut release = v.clone();
            let assets = release.as_object_mut().and_then(|o| {
                o.remove("archive_download_count");
                o.remove("assets")
            });
            write_json(&self.dir.join(format!("releases/{id}/release.json")), &release)?;
            let tag = str_of(v, "tag_name").unwrap_or_default();
            let mut alive = BTreeSet::new();
            for asset in assets.as_ref().and_then(Value::as_array).into_iter().flatten() {
                let Some(aid) = num_of(asset, "id") else { continue };
                self.asset(&id, tag, &aid, asset)?;
                alive.insert(aid);
            }
            let existing = entries(&self.dir.join(format!("releases/{id}/assets")), ".json");
            self.0.mark(&format!("releases/{id}/assets/{{}}.json"), existing, &alive)?;
        }
        self.0.mark("releases/{}/release.json", entries(&self.dir.join("releases"), ""), &releases.keys)?;
        self.report.releases = releases.keys.len();
        Ok(())
    }

    /// One attachment of release `release`: its record, with the `sha256` of its bytes, which
    /// are downloaded unless the same attachment (`uuid`, `size`) is stored already.
    fn asset(&mut self, release: &str, tag: &str, aid: &str, asset: &Value) -> Result<()> {
        let path = self.dir.join(format!("releases/{release}/assets/{aid}.json"));
        let mut asset = asset.clone();
        if let Some(o) = asset.as_object_mut() {
            o.remove("download_count");
        }
        let old = read_json(&path);
        let stored = old
            .filter(|o| o.get("uuid") == asset.get("uuid") && o.get("size") == asset.get("size"))
            .and_then(|o| str_of(&o, "sha256").map(str::to_string));
        let oid = match stored {
            Some(oid) => oid,
            None => {
                let url = download_url(self.api.base(), &self.repo.path, tag, &asset);
                let (oid, bytes) = download_asset(self.api, &url, self.git_dir, &self.what("release attachments"))?;
                self.report.assets_downloaded += 1;
                self.report.asset_bytes += bytes;
                let pointer = self.dir.join(format!("releases/{release}/assets/{aid}.bin")).with_parent()?;
                fs::write(&pointer, lfs_pointer(&oid, bytes)).map_err(|e| io_error(&pointer, e))?;
                oid
            }
        };
        if let Some(o) = asset.as_object_mut() {
            o.insert("sha256".into(), Value::String(oid));
        }
        write_json(&path, &asset)
    }

    /// Who has access, and how branches are protected: read-only records for access reviews.
    /// A token that may not read them (branch protections need a repository administrator) is
    /// said, not fatal.
    fn access(&mut self) -> Result<()> {
        match self.walk("collaborators", "collaborators?limit=50", |v| str_of(v, "login").map(file_key)) {
            Ok(walked) => {
                for v in walked.fresh()? {
                    let v = &v?;
                    if let Some(login) = str_of(v, "login") {
                        write_json(&self.dir.join(format!("access/collaborators/{}.json", file_key(login))), v)?;
                    }
                }
                let existing = entries(&self.dir.join("access/collaborators"), ".json");
                self.0.mark("access/collaborators/{}.json", existing, &walked.keys)?;
            }
            Err(e @ (Error::Http { .. } | Error::NotFound { .. } | Error::Unauthorized { .. })) => {
                self.report.unavailable.push(format!("collaborators: {e}"))
            }
            Err(e) => return Err(e),
        }
        let (url, what) = (self.url("branch_protections"), self.what("branch protections"));
        let etag = self.state.etags.get("branch_protections").map(String::as_str);
        match self.api.get_if(&url, &what, etag) {
            Ok(Fetched::NotModified) => Ok(()),
            Ok(Fetched::Fresh(page, etag)) => {
                let mut alive = BTreeSet::new();
                for rule in page.body.as_array().into_iter().flatten() {
                    let Some(name) = rule_name(rule) else { continue };
                    write_json(&self.dir.join(format!("protection/{}.json", file_key(name))), rule)?;
                    alive.insert(file_key(name));
                }
                self.0.mark("protection/{}.json", entries(&self.dir.join("protection"), ".json"), &alive)?;
                set_etag(&mut self.state, "branch_protections", etag);
                Ok(())
            }
            Err(e @ (Error::Http { .. } | Error::NotFound { .. } | Error::Unauthorized { .. })) => {
                self.report.unavailable.push(format!("branch protections: {e}"));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Which thread a conversation comment belongs to — `("pulls" | "issues", number)` — from
/// whichever of `pull_request_url` and `issue_url` Gitea filled in (the other is empty).
fn thread_of(comment: &Value) -> Option<(&'static str, String)> {
    [("pull_request_url", "pulls"), ("issue_url", "issues")].into_iter().find_map(|(field, kind)| {
        let url = str_of(comment, field).filter(|u| !u.is_empty())?;
        let n = url.trim_end_matches('/').rsplit('/').next()?;
        n.parse::<u64>().ok().map(|n| (kind, n.to_string()))
    })
}

/// The name a branch protection rule is kept under: its `rule_name` (a branch or a glob), else
/// the `branch_name` older servers give.
fn rule_name(rule: &Value) -> Option<&str> {
    ["rule_name", "branch_name"].into_iter().find_map(|f| str_of(rule, f).filter(|n| !n.is_empty()))
}

/// Where an attachment's bytes are: its `browser_download_url` when that is on the server the
/// API base names (the token is sent with the request, and must go nowhere else); else the same
/// path under that server — Gitea writes the URL from its configured `ROOT_URL`, which a server
/// reached by another name does not match.
fn download_url(api_base: &str, repo_path: &str, tag: &str, asset: &Value) -> String {
    let base = api_base.trim_end_matches('/');
    let root = base.strip_suffix("/api/v1").unwrap_or(base);
    match str_of(asset, "browser_download_url") {
        Some(url) if url.starts_with(&format!("{root}/")) => url.to_string(),
        _ => {
            let name = str_of(asset, "name").unwrap_or_default();
            // `file_key` percent-encodes all but unreserved characters: a safe path segment.
            format!("{root}/{repo_path}/releases/download/{}/{}", file_key(tag), file_key(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comments_name_their_thread_by_the_url_gitea_filled_in() {
        let on_pull = json!({"id": 7, "issue_url": "", "pull_request_url": "https://g.example/acme/api/pulls/12"});
        let on_issue = json!({"id": 8, "issue_url": "https://g.example/acme/api/issues/3", "pull_request_url": ""});
        assert_eq!(thread_of(&on_pull), Some(("pulls", "12".to_string())));
        assert_eq!(thread_of(&on_issue), Some(("issues", "3".to_string())));
        assert_eq!(thread_of(&json!({"id": 9, "issue_url": "", "pull_request_url": ""})), None);
        assert_eq!(thread_of(&json!({"id": 9, "issue_url": "https://g.example/acme/api/issues/x"})), None);
    }

    #[test]
    fn protection_rules_are_named_by_rule_then_branch() {
        assert_eq!(rule_name(&json!({"rule_name": "release/*", "branch_name": ""})), Some("release/*"));
        assert_eq!(rule_name(&json!({"branch_name": "main"})), Some("main"));
        assert_eq!(rule_name(&json!({"rule_name": "", "branch_name": ""})), None);
    }

    #[test]
    fn attachments_are_fetched_from_the_api_server_only() {
        let base = "https://git.example.org/forge/api/v1";
        let same = json!({"name": "a.tgz", "browser_download_url":
            "https://git.example.org/forge/acme/api/releases/download/v1/a.tgz"});
        assert_eq!(
            download_url(base, "acme/api", "v1", &same),
            "https://git.example.org/forge/acme/api/releases/download/v1/a.tgz"
        );
        // ROOT_URL names another host (or one that merely starts alike): the path under ours.
        for other in ["https://internal:3000/acme/api/releases/download/v1/a b", "https://git.example.org.evil/x"] {
            let asset = json!({"name": "a b", "browser_download_url": other});
            assert_eq!(
                download_url(base, "acme/api", "v 1", &asset),
                "https://git.example.org/forge/acme/api/releases/download/v%201/a%20b"
            );
        }
    }
}
