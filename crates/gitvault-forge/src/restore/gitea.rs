//! Writing into Gitea and Forgejo through their API v1: the request bodies of
//! forgejo-swagger.v1.json (`CreateRepoOption`, `EditRepoOption`, `CreateIssueOption`,
//! `IssueLabelsOption`, `CreatePullReviewOptions`...).
//!
//! Where GitHub names labels and milestones, Gitea wants their ids: the writer keeps the label
//! ids it learns (from the target's listing or from each label it creates), and milestones are
//! referred to by id throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde_json::{Value, json};

use super::github::encode;
use super::model::{Label, Metadata, Milestone, RepoSettings, num, text};
use super::target::{
    Existing, Finish, FoundItem, FoundRelease, Made, NewIssue, NewLineComment, NewPull, NewRelease, RepoInfo, Writer,
    Writes,
};
use super::text::markers;
use super::upload::Upload;
use crate::ForgeKind;
use crate::error::{Error, Result};
use crate::http::Body;

/// Gitea's listings answer at most 50 items a page (`MAX_RESPONSE_ITEMS`' default).
const PAGE: &str = "limit=50";

pub struct Gitea {
    pub writes: Writes,
    /// Label name (lowercase) → the target's id, as far as known.
    label_ids: Mutex<BTreeMap<String, u64>>,
}

impl Gitea {
    pub fn new(writes: Writes) -> Self {
        Self { writes, label_ids: Mutex::new(BTreeMap::new()) }
    }

    fn parse_error(what: &str, detail: &str) -> Error {
        Error::Parse { forge: ForgeKind::Gitea, what: what.into(), detail: detail.into() }
    }

    fn repo_info(v: &Value) -> Result<RepoInfo> {
        let field = |k: &str| text(v, k).ok_or_else(|| Self::parse_error("a repository", &format!("no {k}")));
        let html_url = field("html_url")?;
        let clone_url = field("clone_url")?;
        let wiki_url = clone_url.strip_suffix(".git").map(|base| format!("{base}.wiki.git"));
        Ok(RepoInfo {
            html_url,
            clone_url,
            wiki_url,
            api_path: field("full_name")?,
            default_branch: text(v, "default_branch"),
            topics: v
                .get("topics")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        })
    }

    fn found(v: &Value) -> Option<FoundItem> {
        Some(FoundItem {
            number: num(v, "number")?,
            // Gitea lists pull requests among the issues, with `pull_request` set (null otherwise).
            pull: v.get("pull_request").is_some_and(|p| !p.is_null()),
            open: text(v, "state").as_deref() != Some("closed"),
            url: text(v, "html_url").unwrap_or_default(),
            labels: v
                .get("labels")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(|x| text(x, "name")).collect())
                .unwrap_or_default(),
            milestone: v.get("milestone").and_then(|m| num(m, "id")).map(|n| n.to_string()),
        })
    }

    fn made(v: &Value, pull: bool, what: &str) -> Result<Made> {
        match (num(v, "number"), text(v, "html_url")) {
            (Some(number), Some(url)) => Ok(Made { number, url, pull }),
            _ => Err(Self::parse_error(what, "the answer has no number or html_url")),
        }
    }

    fn learn_label(&self, v: &Value) {
        if let (Some(name), Some(id)) = (text(v, "name"), num(v, "id"))
            && let Ok(mut ids) = self.label_ids.lock()
        {
            ids.insert(name.to_lowercase(), id);
        }
    }

    /// The ids of the labels named, leaving out those the target does not have.
    fn label_ids(&self, names: &[String]) -> Vec<u64> {
        let ids = self.label_ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<u64> = names.iter().filter_map(|n| ids.get(&n.to_lowercase()).copied()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The names among `names` that the target has, lowercase: what an item can carry there.
    fn known_labels<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
        let ids = self.label_ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        names.into_iter().map(|n| n.to_lowercase()).filter(|n| ids.contains_key(n)).collect()
    }

    fn milestone_id(m: Option<&str>) -> Option<u64> {
        m.and_then(|m| m.parse::<u64>().ok())
    }

    /// Whether the state or milestone of `found` differs from `f` (one `PATCH`), and whether its
    /// labels do (one `PUT`: Gitea's issue edit takes no labels).
    fn differences(&self, found: Option<&FoundItem>, f: &Finish<'_>) -> (bool, bool) {
        match found {
            Some(found) => (
                found.open != f.open || found.milestone.as_deref() != f.milestone,
                self.known_labels(&found.labels) != self.known_labels(f.labels),
            ),
            // A new issue or pull request got its labels and milestone when created.
            None => (!f.open, false),
        }
    }
}

impl Writer for Gitea {
    fn unsupported(&self, meta: &Metadata) -> Vec<String> {
        let mut notes = Vec::new();
        let drafts = meta.items.iter().filter(|i| i.pull.as_ref().is_some_and(|p| p.draft)).count();
        if drafts > 0 {
            notes.push(format!("{drafts} draft pull requests come back ready: Gitea has no draft flag"));
        }
        let reasons = meta
            .items
            .iter()
            .filter(|i| !i.open && i.state_reason.as_deref().is_some_and(|r| r != "completed"))
            .count();
        if reasons > 0 {
            notes.push(format!("{reasons} issues closed as not planned are closed: Gitea keeps no state reason"));
        }
        let labelled = meta.releases.iter().flat_map(|r| &r.assets).filter(|a| a.label.is_some()).count();
        if labelled > 0 {
            notes.push(format!("{labelled} release assets lose their label: Gitea attachments have none"));
        }
        notes
    }

    fn writes(&self) -> &Writes {
        &self.writes
    }

    fn find_repo(&self, owner: &str, name: &str) -> Result<Option<RepoInfo>> {
        let api = &self.writes.api;
        match api.get(&api.url(&format!("/repos/{owner}/{name}")), &format!("the repository {owner}/{name}")) {
            Ok(page) => Ok(Some(Self::repo_info(&page.body)?)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_repo(&self, owner: &str, name: &str, s: &RepoSettings) -> Result<RepoInfo> {
        let api = &self.writes.api;
        let path = match api.get(&api.url(&format!("/orgs/{owner}")), &format!("the organisation {owner}")) {
            Ok(_) => format!("/orgs/{owner}/repos"),
            Err(Error::NotFound { .. }) => {
                let me = api.get(&api.url("/user"), "the token's own account")?.body;
                if !text(&me, "login").is_some_and(|l| l.eq_ignore_ascii_case(owner)) {
                    return Err(Error::Usage(format!(
                        "gitea:{owner} is neither an organisation nor the token's own user; a repository can only be created for the token's user or in an organisation"
                    )));
                }
                "/user/repos".to_string()
            }
            Err(e) => return Err(e),
        };
        let mut body = json!({"name": name, "private": s.private});
        if let Some(d) = &s.description {
            body["description"] = json!(d);
        }
        // The branch the repository's HEAD will name once pushed; `finish_repo` corrects it
        // where the restored HEAD says otherwise.
        if let Some(b) = &s.default_branch {
            body["default_branch"] = json!(b);
        }
        let created = self.writes.post(&path, &format!("creating the repository {owner}/{name}"), &body)?;
        Self::repo_info(&created)
    }

    fn finish_repo(&self, repo: &RepoInfo, s: &RepoSettings, default_branch: Option<&str>) -> Result<u64> {
        // `CreateRepoOption` takes neither the website nor the features: they are edits, made
        // only where the repository differs (a rerun finds them done).
        let api = &self.writes.api;
        let path = format!("/repos/{}", repo.api_path);
        let now = api.get(&api.url(&path), &format!("the repository {}", repo.api_path))?.body;
        let mut edit = serde_json::Map::new();
        if let Some(branch) = default_branch.filter(|b| text(&now, "default_branch").as_deref() != Some(*b)) {
            edit.insert("default_branch".into(), json!(branch));
        }
        let website = s.homepage.clone().unwrap_or_default();
        if text(&now, "website").unwrap_or_default() != website {
            edit.insert("website".into(), json!(website));
        }
        for (key, wanted) in [("has_issues", s.has_issues), ("has_wiki", s.has_wiki)] {
            if now.get(key).and_then(Value::as_bool) != Some(wanted) {
                edit.insert(key.into(), json!(wanted));
            }
        }
        let mut writes = 0;
        if !edit.is_empty() {
            self.writes.patch(&path, &format!("the settings of {}", repo.api_path), &Value::Object(edit))?;
            writes += 1;
        }
        let wanted: BTreeSet<String> = s.topics.iter().map(|t| t.to_lowercase()).collect();
        let has: BTreeSet<String> = now
            .get("topics")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_lowercase).collect())
            .unwrap_or_default();
        if !wanted.is_empty() && wanted != has {
            let what = format!("the topics of {}", repo.api_path);
            // In their original order; Gitea takes lowercase topics only.
            let topics: Vec<String> = s.topics.iter().map(|t| t.to_lowercase()).collect();
            self.writes.put(&format!("{path}/topics"), &what, &json!({"topics": topics}))?;
            writes += 1;
        }
        Ok(writes)
    }

    fn archive(&self, repo: &RepoInfo) -> Result<()> {
        super::github::archive(&self.writes, repo)
    }

    fn existing(&self, repo: &RepoInfo) -> Result<Existing> {
        let api = &self.writes.api;
        let base = format!("/repos/{}", repo.api_path);
        let mut found = Existing::default();
        for l in api.get_all(&api.url(&format!("{base}/labels?{PAGE}")), "the target's labels")? {
            self.learn_label(&l);
            if let Some(name) = text(&l, "name") {
                found.labels.insert(name.to_lowercase());
            }
        }
        for m in api.get_all(&api.url(&format!("{base}/milestones?state=all&{PAGE}")), "the target's milestones")? {
            if let (Some(title), Some(id)) = (text(&m, "title"), num(&m, "id")) {
                found.milestones.insert(title, id.to_string());
            }
        }
        // Without `type`, Gitea lists pull requests among the issues (its `type` knows only
        // `issues` and `pulls`).
        for i in api.get_all(&api.url(&format!("{base}/issues?state=all&sort=oldest&{PAGE}")), "the target's issues")? {
            if let Some(item) = Self::found(&i) {
                found.record(item, &text(&i, "body").unwrap_or_default());
            }
        }
        for r in api.get_all(&api.url(&format!("{base}/releases?{PAGE}")), "the target's releases")? {
            found.record_release(&r);
        }
        Ok(found)
    }

    fn existing_posts(&self, repo: &RepoInfo, item: &FoundItem) -> Result<BTreeMap<String, Option<String>>> {
        let api = &self.writes.api;
        let base = format!("/repos/{}", repo.api_path);
        let mut posts = BTreeMap::new();
        let mut take = |list: &[Value]| {
            for v in list {
                let body = text(v, "body").unwrap_or_default();
                for key in markers(&body) {
                    posts.insert(key.to_string(), num(v, "id").map(|n| n.to_string()));
                }
            }
        };
        let n = item.number;
        // Not paged by Gitea: every comment of the issue in one answer.
        let comments = api.get(&api.url(&format!("{base}/issues/{n}/comments")), "comments")?.body;
        take(comments.as_array().map(Vec::as_slice).unwrap_or_default());
        if item.pull {
            let reviews = api.get_all(&api.url(&format!("{base}/pulls/{n}/reviews?{PAGE}")), "reviews")?;
            take(&reviews);
            for r in &reviews {
                let Some(id) = num(r, "id") else { continue };
                if num(r, "comments_count") == Some(0) {
                    continue;
                }
                let url = api.url(&format!("{base}/pulls/{n}/reviews/{id}/comments"));
                let comments = api.get(&url, "review comments")?.body;
                take(comments.as_array().map(Vec::as_slice).unwrap_or_default());
            }
        }
        Ok(posts)
    }

    fn create_label(&self, repo: &RepoInfo, label: &Label) -> Result<()> {
        let mut body = json!({"name": label.name, "color": format!("#{}", label.color)});
        if let Some(d) = &label.description {
            body["description"] = json!(d);
        }
        let v = self.writes.post(
            &format!("/repos/{}/labels", repo.api_path),
            &format!("the label {:?}", label.name),
            &body,
        )?;
        self.learn_label(&v);
        Ok(())
    }

    fn create_milestone(&self, repo: &RepoInfo, m: &Milestone) -> Result<String> {
        let mut body = json!({"title": m.title, "state": if m.open { "open" } else { "closed" }});
        if let Some(d) = &m.description {
            body["description"] = json!(d);
        }
        if let Some(due) = &m.due_on {
            body["due_on"] = json!(due);
        }
        let what = format!("the milestone {:?}", m.title);
        let v = self.writes.post(&format!("/repos/{}/milestones", repo.api_path), &what, &body)?;
        num(&v, "id").map(|n| n.to_string()).ok_or_else(|| Self::parse_error(&what, "no id in the answer"))
    }

    fn create_issue(&self, repo: &RepoInfo, issue: &NewIssue<'_>) -> Result<Made> {
        let mut body = json!({"title": issue.title, "body": issue.body});
        let labels = self.label_ids(issue.labels);
        if !labels.is_empty() {
            body["labels"] = json!(labels);
        }
        if let Some(m) = Self::milestone_id(issue.milestone) {
            body["milestone"] = json!(m);
        }
        let what = format!("the issue {:?}", issue.title);
        Self::made(&self.writes.post(&format!("/repos/{}/issues", repo.api_path), &what, &body)?, false, &what)
    }

    fn create_pull(&self, repo: &RepoInfo, pull: &NewPull<'_>) -> Result<Made> {
        // `CreatePullRequestOption` has no `draft`: Gitea marks drafts by a `WIP:` title prefix,
        // which would change the title, so a draft comes back as a ready pull request.
        let mut body = json!({"title": pull.title, "body": pull.body, "head": pull.head, "base": pull.base});
        let labels = self.label_ids(pull.labels);
        if !labels.is_empty() {
            body["labels"] = json!(labels);
        }
        if let Some(m) = Self::milestone_id(pull.milestone) {
            body["milestone"] = json!(m);
        }
        let what = format!("the pull request {:?}", pull.title);
        Self::made(&self.writes.post(&format!("/repos/{}/pulls", repo.api_path), &what, &body)?, true, &what)
    }

    fn comment(&self, repo: &RepoInfo, item: &Made, body: &str) -> Result<()> {
        super::github::post_comment(&self.writes, repo, item, body)
    }

    fn review(&self, repo: &RepoInfo, item: &Made, body: &str) -> Result<()> {
        super::github::post_review(&self.writes, repo, item, body)
    }

    fn line_comment(&self, repo: &RepoInfo, item: &Made, c: &NewLineComment<'_>) -> Result<String> {
        // Gitea has no endpoint for a single review comment, nor for a reply: each becomes a
        // review of its own holding it. Gitea shows the comments on one line of one file as one
        // conversation, so a reply placed on its parent's line lands in its thread. No
        // `commit_id`: Gitea then anchors it on the head, where the original commit may be
        // unknown to it.
        let position = if c.side == Some("LEFT") { "old_position" } else { "new_position" };
        let body = json!({
            "event": "COMMENT",
            "body": "",
            "comments": [{"path": c.path, "body": c.body, position: c.line}],
        });
        let path = format!("/repos/{}/pulls/{}/reviews", repo.api_path, item.number);
        let v = self.writes.post(&path, &format!("a review comment on #{}", item.number), &body)?;
        Ok(num(&v, "id").map(|n| n.to_string()).unwrap_or_default())
    }

    fn needs_finish(&self, _made: &Made, found: Option<&FoundItem>, f: &Finish<'_>) -> bool {
        let (edit, labels) = self.differences(found, f);
        edit || labels
    }

    fn finish(&self, repo: &RepoInfo, item: &Made, found: Option<&FoundItem>, f: &Finish<'_>) -> Result<()> {
        let (edit, labels) = self.differences(found, f);
        let path = format!("/repos/{}/issues/{}", repo.api_path, item.number);
        if edit {
            let body = json!({
                "state": if f.open { "open" } else { "closed" },
                // 0 takes the milestone away.
                "milestone": Self::milestone_id(f.milestone).unwrap_or(0),
            });
            self.writes.patch(&path, &format!("the state of #{}", item.number), &body)?;
        }
        if labels {
            let body = json!({"labels": self.label_ids(f.labels)});
            self.writes.put(&format!("{path}/labels"), &format!("the labels of #{}", item.number), &body)?;
        }
        Ok(())
    }

    fn create_release(&self, repo: &RepoInfo, r: &NewRelease<'_>) -> Result<FoundRelease> {
        let mut body = json!({"tag_name": r.tag, "body": r.body, "draft": r.draft, "prerelease": r.prerelease});
        if let Some(name) = r.name {
            body["name"] = json!(name);
        }
        if let Some(target) = r.target {
            body["target_commitish"] = json!(target);
        }
        let what = format!("the release {:?}", r.tag);
        let v = self.writes.post(&format!("/repos/{}/releases", repo.api_path), &what, &body)?;
        Ok(FoundRelease {
            id: num(&v, "id").map(|n| n.to_string()).ok_or_else(|| Self::parse_error(&what, "no id in the answer"))?,
            url: text(&v, "html_url").unwrap_or_default(),
            upload_url: None,
            assets: BTreeSet::new(),
        })
    }

    fn upload_asset(
        &self,
        repo: &RepoInfo,
        release: &FoundRelease,
        name: &str,
        _label: Option<&str>,
        _content_type: &str,
        file: &std::path::Path,
    ) -> Result<()> {
        // Gitea keeps neither a label nor a content type for an attachment.
        let upload = Upload::multipart("attachment", name, file)?;
        let path = format!("/repos/{}/releases/{}/assets?name={}", repo.api_path, release.id, encode(name));
        self.writes.send(reqwest::Method::POST, &path, &format!("the asset {name:?}"), Body::Upload(&upload))?;
        Ok(())
    }

    fn item_url(&self, repo: &RepoInfo, number: u64, pull: bool) -> String {
        format!("{}/{}/{number}", repo.html_url, if pull { "pulls" } else { "issues" })
    }
}
