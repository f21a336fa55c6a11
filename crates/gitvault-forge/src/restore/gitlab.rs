//! Writing into GitLab (gitlab.com or a self-managed instance) through its REST API v4.
//!
//! GitLab differs from GitHub in ways a restore has to follow: issues (`#N`) and merge requests
//! (`!N`) are numbered apart; a project is addressed by its numeric id; a label's colour has
//! its `#`; a milestone is closed by an edit after it is created; a line comment opens a
//! discussion at a position on the merge request's diff (its `diff_refs`), and a reply is a
//! note in that discussion; a release asset is a file uploaded to the project and a release
//! link to it — two writes. There are no comment-only reviews, and no one can approve a merge
//! request for someone else: a review is a note.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::TargetSpec;
use super::github::encode;
use super::github::strings;
use super::model::{ItemKind, Label, Metadata, Milestone, PostKind, RepoSettings, num, text};
use super::target::{
    Existing, Finish, FoundItem, FoundRelease, Made, NewIssue, NewLineComment, NewPull, NewRelease, RepoInfo, Writer,
    Writes,
};
use super::text::markers;
use super::upload::Upload;
use crate::error::{Error, Result};
use crate::http::Body;
use crate::{Api, ForgeKind};

/// The link types GitLab accepts for a release link.
const LINK_TYPES: [&str; 4] = ["other", "runbook", "image", "package"];

pub struct Gitlab {
    pub writes: Writes,
}

/// See [`super::resolve_target`]: a namespace path is the owner; else the parent path is, and
/// the last segment names the project.
pub(super) fn resolve_target(api: &Api, spec: TargetSpec) -> Result<TargetSpec> {
    let namespace = |path: &str| -> Result<bool> {
        match api.get(&api.url(&format!("/namespaces/{}", encode(path))), &format!("the namespace {path}")) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    };
    if namespace(&spec.owner)? {
        return Ok(spec);
    }
    if let Some((parent, name)) = spec.owner.rsplit_once('/')
        && namespace(parent)?
    {
        return Ok(TargetSpec { forge: spec.forge, owner: parent.to_string(), name: Some(name.to_string()) });
    }
    Err(Error::Usage(format!(
        "gitlab:{}: no group or user of that path on {}, nor one for its parent path (a GitLab target is gitlab:GROUP[/SUBGROUP...] or gitlab:GROUP[/SUBGROUP...]/NAME, in a group that exists)",
        spec.owner,
        api.base()
    )))
}

impl Gitlab {
    fn parse_error(what: &str, detail: &str) -> Error {
        Error::Parse { forge: ForgeKind::Gitlab, what: what.into(), detail: detail.into() }
    }

    fn repo_info(v: &Value) -> Result<RepoInfo> {
        let field = |k: &str| text(v, k).ok_or_else(|| Self::parse_error("a project", &format!("no {k}")));
        let clone_url = field("http_url_to_repo")?;
        let wiki = v.get("wiki_enabled").and_then(Value::as_bool).unwrap_or(true);
        let wiki_url = clone_url.strip_suffix(".git").filter(|_| wiki).map(|base| format!("{base}.wiki.git"));
        Ok(RepoInfo {
            html_url: field("web_url")?,
            clone_url,
            wiki_url,
            api_path: num(v, "id").ok_or_else(|| Self::parse_error("a project", "no id"))?.to_string(),
            default_branch: text(v, "default_branch"),
            topics: strings(v, "topics"),
        })
    }

    fn found(v: &Value, pull: bool) -> Option<FoundItem> {
        Some(FoundItem {
            number: num(v, "iid")?,
            pull,
            open: !matches!(text(v, "state").as_deref(), Some("closed" | "merged")),
            url: text(v, "web_url").unwrap_or_default(),
            labels: strings(v, "labels").into_iter().collect(),
            milestone: v.get("milestone").and_then(|m| num(m, "id")).map(|n| n.to_string()),
        })
    }

    fn made(v: &Value, pull: bool, what: &str) -> Result<Made> {
        match (num(v, "iid"), text(v, "web_url")) {
            (Some(number), Some(url)) => Ok(Made { number, url, pull }),
            _ => Err(Self::parse_error(what, "the answer has no iid or web_url")),
        }
    }

    fn project(repo: &RepoInfo) -> String {
        format!("/projects/{}", repo.api_path)
    }

    /// `issues/N` or `merge_requests/N` of `repo`.
    fn item_path(repo: &RepoInfo, item: &Made) -> String {
        let kind = if item.pull { "merge_requests" } else { "issues" };
        format!("{}/{kind}/{}", Self::project(repo), item.number)
    }

    fn reference(item: &Made) -> String {
        format!("{}{}", if item.pull { '!' } else { '#' }, item.number)
    }
}

impl Writer for Gitlab {
    fn writes(&self) -> &Writes {
        &self.writes
    }

    fn sigils(&self) -> (char, char) {
        ('#', '!')
    }

    fn shared_numbers(&self) -> bool {
        false
    }

    fn find_repo(&self, owner: &str, name: &str) -> Result<Option<RepoInfo>> {
        let api = &self.writes.api;
        let path = format!("{owner}/{name}");
        match api.get(&api.url(&format!("/projects/{}", encode(&path))), &format!("the project {path}")) {
            Ok(page) => Ok(Some(Self::repo_info(&page.body)?)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_repo(&self, owner: &str, name: &str, s: &RepoSettings) -> Result<RepoInfo> {
        let api = &self.writes.api;
        let namespace =
            api.get(&api.url(&format!("/namespaces/{}", encode(owner))), &format!("the namespace {owner}"))?;
        let id = num(&namespace.body, "id").ok_or_else(|| Self::parse_error("a namespace", "no id"))?;
        let mut body = json!({
            "name": name,
            "path": name,
            "namespace_id": id,
            "visibility": if s.private { "private" } else { "public" },
            "issues_enabled": s.has_issues,
            "wiki_enabled": s.has_wiki,
        });
        if let Some(d) = s.description.as_ref().filter(|d| !d.is_empty()) {
            body["description"] = json!(d);
        }
        let created = self.writes.post("/projects", &format!("creating the project {owner}/{name}"), &body)?;
        Self::repo_info(&created)
    }

    fn finish_repo(&self, repo: &RepoInfo, s: &RepoSettings, default_branch: Option<&str>) -> Result<u64> {
        // Read again: the push has just given the project its first branch.
        let api = &self.writes.api;
        let now = Self::repo_info(&api.get(&api.url(&Self::project(repo)), "the project")?.body)?;
        let mut body = json!({});
        if let Some(branch) = default_branch.filter(|b| now.default_branch.as_deref() != Some(*b)) {
            body["default_branch"] = json!(branch);
        }
        let wanted: BTreeSet<String> = s.topics.iter().map(|t| t.to_lowercase()).collect();
        let has: BTreeSet<String> = now.topics.iter().map(|t| t.to_lowercase()).collect();
        if !wanted.is_empty() && wanted != has {
            body["topics"] = json!(s.topics);
        }
        if body.as_object().is_some_and(serde_json::Map::is_empty) {
            return Ok(0);
        }
        self.writes.put(&Self::project(repo), "the project's default branch and topics", &body)?;
        Ok(1)
    }

    fn archive(&self, repo: &RepoInfo) -> Result<()> {
        self.writes.post(&format!("{}/archive", Self::project(repo)), "archiving the project", &json!({}))?;
        Ok(())
    }

    fn existing(&self, repo: &RepoInfo) -> Result<Existing> {
        let api = &self.writes.api;
        let base = Self::project(repo);
        let all = |path: &str, what: &str| api.get_all(&api.url(&format!("{base}/{path}")), what);
        let mut found = Existing::default();
        for l in all("labels?per_page=100", "the target's labels")? {
            if let Some(name) = text(&l, "name") {
                found.labels.insert(name.to_lowercase());
            }
        }
        for m in all("milestones?per_page=100", "the target's milestones")? {
            if let (Some(title), Some(id)) = (text(&m, "title"), num(&m, "id")) {
                found.milestones.insert(title, id.to_string());
            }
        }
        let listings =
            [("issues", false, "the target's issues"), ("merge_requests", true, "the target's merge requests")];
        for (kind, pull, what) in listings {
            let path = format!("{kind}?scope=all&state=all&order_by=created_at&sort=asc&per_page=100");
            for v in all(&path, what)? {
                let Some(item) = Self::found(&v, pull) else { continue };
                if pull {
                    found.last_pull = found.last_pull.max(item.number);
                } else {
                    found.last_issue = found.last_issue.max(item.number);
                }
                match markers(&text(&v, "description").unwrap_or_default()).first() {
                    Some(key) => {
                        found.items.insert((*key).to_string(), item);
                    }
                    None => found.foreign_items += 1,
                }
            }
        }
        for r in all("releases?per_page=100", "the target's releases")? {
            let Some(tag) = text(&r, "tag_name") else { continue };
            let assets = r
                .pointer("/assets/links")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| text(x, "name")).collect())
                .unwrap_or_default();
            let url = r.pointer("/_links/self").and_then(Value::as_str).unwrap_or_default().to_string();
            found.releases.insert(tag.clone(), FoundRelease { id: tag, url, upload_url: None, assets });
        }
        Ok(found)
    }

    fn existing_posts(&self, repo: &RepoInfo, item: &FoundItem) -> Result<BTreeMap<String, Option<String>>> {
        let api = &self.writes.api;
        let base = Self::project(repo);
        let n = item.number;
        let mut posts = BTreeMap::new();
        if !item.pull {
            for v in api.get_all(&api.url(&format!("{base}/issues/{n}/notes?per_page=100")), "notes")? {
                for key in markers(&text(&v, "body").unwrap_or_default()) {
                    posts.insert(key.to_string(), None);
                }
            }
            return Ok(posts);
        }
        // A merge request's discussions hold every note, and give a line comment's thread, which
        // its replies are posted into.
        let url = api.url(&format!("{base}/merge_requests/{n}/discussions?per_page=100"));
        for d in api.get_all(&url, "discussions")? {
            let id = text(&d, "id");
            for note in d.get("notes").and_then(Value::as_array).into_iter().flatten() {
                let on_line = text(note, "type").as_deref() == Some("DiffNote");
                for key in markers(&text(note, "body").unwrap_or_default()) {
                    posts.insert(key.to_string(), id.clone().filter(|_| on_line));
                }
            }
        }
        Ok(posts)
    }

    fn create_label(&self, repo: &RepoInfo, label: &Label) -> Result<()> {
        let mut body = json!({"name": label.name, "color": format!("#{}", label.color)});
        if let Some(d) = &label.description {
            body["description"] = json!(d);
        }
        let path = format!("{}/labels", Self::project(repo));
        self.writes.post(&path, &format!("the label {:?}", label.name), &body)?;
        Ok(())
    }

    fn create_milestone(&self, repo: &RepoInfo, m: &Milestone) -> Result<String> {
        let mut body = json!({"title": m.title});
        if let Some(d) = &m.description {
            body["description"] = json!(d);
        }
        if let Some(due) = &m.due_on {
            body["due_date"] = json!(due.get(..10).unwrap_or(due));
        }
        let what = format!("the milestone {:?}", m.title);
        let v = self.writes.post(&format!("{}/milestones", Self::project(repo)), &what, &body)?;
        let id = num(&v, "id").ok_or_else(|| Self::parse_error(&what, "no id in the answer"))?;
        if !m.open {
            // A milestone is created active; closing it is an edit (a second write).
            let path = format!("{}/milestones/{id}", Self::project(repo));
            self.writes.put(&path, &format!("closing {what}"), &json!({"state_event": "close"}))?;
        }
        Ok(id.to_string())
    }

    fn create_issue(&self, repo: &RepoInfo, issue: &NewIssue<'_>) -> Result<Made> {
        let mut body = json!({"title": issue.title, "description": issue.body});
        if !issue.labels.is_empty() {
            body["labels"] = json!(issue.labels.join(","));
        }
        if let Some(m) = issue.milestone.and_then(|m| m.parse::<u64>().ok()) {
            body["milestone_id"] = json!(m);
        }
        let what = format!("the issue {:?}", issue.title);
        Self::made(&self.writes.post(&format!("{}/issues", Self::project(repo)), &what, &body)?, false, &what)
    }

    fn create_pull(&self, repo: &RepoInfo, pull: &NewPull<'_>) -> Result<Made> {
        // GitLab marks a draft by its title.
        let title = if pull.draft { format!("Draft: {}", pull.title) } else { pull.title.to_string() };
        let mut body = json!({"source_branch": pull.head, "target_branch": pull.base, "title": title,
                              "description": pull.body});
        if !pull.labels.is_empty() {
            body["labels"] = json!(pull.labels.join(","));
        }
        if let Some(m) = pull.milestone.and_then(|m| m.parse::<u64>().ok()) {
            body["milestone_id"] = json!(m);
        }
        let what = format!("the merge request {:?}", pull.title);
        Self::made(&self.writes.post(&format!("{}/merge_requests", Self::project(repo)), &what, &body)?, true, &what)
    }

    fn comment(&self, repo: &RepoInfo, item: &Made, body: &str) -> Result<()> {
        let path = format!("{}/notes", Self::item_path(repo, item));
        self.writes.post(&path, &format!("a note on {}", Self::reference(item)), &json!({"body": body}))?;
        Ok(())
    }

    fn review(&self, repo: &RepoInfo, item: &Made, body: &str) -> Result<()> {
        // No comment-only reviews on GitLab, and approving for someone else is impossible.
        self.comment(repo, item, body)
    }

    fn line_comment(&self, repo: &RepoInfo, item: &Made, c: &NewLineComment<'_>) -> Result<String> {
        let what = format!("a line comment on {}", Self::reference(item));
        let discussions = format!("{}/discussions", Self::item_path(repo, item));
        if let Some(thread) = c.in_reply_to {
            self.writes.post(&format!("{discussions}/{thread}/notes"), &what, &json!({"body": c.body}))?;
            return Ok(thread.to_string());
        }
        // The position is on the merge request's diff as the target has it now.
        let api = &self.writes.api;
        let mr = api.get(&api.url(&Self::item_path(repo, item)), &format!("the merge request {}", item.number))?.body;
        let sha = |k: &str| mr.pointer(&format!("/diff_refs/{k}")).and_then(Value::as_str).unwrap_or_default();
        let mut position = json!({"position_type": "text", "base_sha": sha("base_sha"), "start_sha": sha("start_sha"),
                                  "head_sha": sha("head_sha"), "old_path": c.path, "new_path": c.path});
        if c.side == Some("LEFT") {
            position["old_line"] = json!(c.line);
        } else {
            position["new_line"] = json!(c.line);
        }
        let v = self.writes.post(&discussions, &what, &json!({"body": c.body, "position": position}))?;
        text(&v, "id").ok_or_else(|| Self::parse_error(&what, "no discussion id in the answer"))
    }

    fn needs_finish(&self, _made: &Made, found: Option<&FoundItem>, f: &Finish<'_>) -> bool {
        let wanted_labels: BTreeSet<String> = f.labels.iter().cloned().collect();
        match found {
            Some(found) => {
                found.open != f.open || found.labels != wanted_labels || found.milestone.as_deref() != f.milestone
            }
            // A new issue or merge request got its labels and milestone when created.
            None => !f.open,
        }
    }

    fn finish(&self, repo: &RepoInfo, item: &Made, found: Option<&FoundItem>, f: &Finish<'_>) -> Result<()> {
        let mut body = json!({
            "labels": f.labels.join(","),
            "milestone_id": f.milestone.and_then(|m| m.parse::<u64>().ok()).unwrap_or(0),
        });
        if found.is_none_or(|found| found.open != f.open) {
            body["state_event"] = json!(if f.open { "reopen" } else { "close" });
        }
        let path = Self::item_path(repo, item);
        self.writes.put(&path, &format!("the state of {}", Self::reference(item)), &body)?;
        Ok(())
    }

    fn create_release(&self, repo: &RepoInfo, r: &NewRelease<'_>) -> Result<FoundRelease> {
        let mut body = json!({"tag_name": r.tag, "description": r.body});
        if let Some(name) = r.name {
            body["name"] = json!(name);
        }
        // Used only when the tag is not in the repository: GitLab then creates it there.
        if let Some(at) = r.target.or(repo.default_branch.as_deref()) {
            body["ref"] = json!(at);
        }
        let what = format!("the release {:?}", r.tag);
        let v = self.writes.post(&format!("{}/releases", Self::project(repo)), &what, &body)?;
        Ok(FoundRelease {
            id: r.tag.to_string(),
            url: v.pointer("/_links/self").and_then(Value::as_str).unwrap_or_default().to_string(),
            upload_url: None,
            assets: BTreeSet::new(),
        })
    }

    fn upload_asset(
        &self,
        repo: &RepoInfo,
        release: &FoundRelease,
        name: &str,
        label: Option<&str>,
        _content_type: &str,
        file: &std::path::Path,
    ) -> Result<()> {
        let what = format!("the asset {name:?}");
        let upload = Upload::multipart("file", name, file)?;
        let uploaded = self.writes.send(
            reqwest::Method::POST,
            &format!("{}/uploads", Self::project(repo)),
            &what,
            Body::Upload(&upload),
        )?;
        // `url` is relative to the project's web page: `/uploads/SECRET/NAME`.
        let relative = text(&uploaded.body, "url").ok_or_else(|| Self::parse_error(&what, "the upload has no url"))?;
        let link_type = label.filter(|l| LINK_TYPES.contains(l)).unwrap_or("other");
        let link = json!({"name": name, "url": format!("{}{relative}", repo.html_url), "link_type": link_type});
        let path = format!("{}/releases/{}/assets/links", Self::project(repo), encode(&release.id));
        self.writes.post(&path, &format!("the release link to {name:?}"), &link)?;
        Ok(())
    }

    fn item_url(&self, repo: &RepoInfo, number: u64, pull: bool) -> String {
        format!("{}/-/{}/{number}", repo.html_url, if pull { "merge_requests" } else { "issues" })
    }

    /// Also what takes more than one write (a closed milestone, an asset).
    fn unsupported(&self, meta: &Metadata) -> Vec<String> {
        let mut notes = Vec::new();
        let mut say = |n: usize, what: &str| {
            if n > 0 {
                notes.push(format!("{n} {what}"));
            }
        };
        let posts = || meta.items.iter().flat_map(|i| &i.posts);
        let approvals = posts().filter(|p| p.kind == PostKind::Review { state: "APPROVED".into() }).count();
        say(approvals, "approvals are notes saying so: GitLab lets no one approve for someone else");
        let reviews = posts().filter(|p| matches!(p.kind, PostKind::Review { .. })).count() - approvals;
        say(reviews, "reviews are notes: GitLab has no comment-only reviews");
        let merged = meta
            .items
            .iter()
            .filter(|i| i.kind == ItemKind::Pull && i.pull.as_ref().is_some_and(|p| p.merged_at.is_some()))
            .count();
        say(
            merged,
            "merged pull requests are closed, not merged: GitLab marks a merge request merged only by merging it",
        );
        let reasons = meta.items.iter().filter(|i| !i.open && i.state_reason.as_deref() == Some("not_planned")).count();
        say(reasons, "issues closed as not planned are just closed: GitLab keeps no reason");
        let closed = meta.milestones.iter().filter(|m| !m.open).count();
        say(closed, "closed milestones take two writes each: created, then closed");
        let assets: Vec<_> = meta.releases.iter().flat_map(|r| &r.assets).filter(|a| a.file.is_some()).collect();
        say(
            assets.len(),
            "release assets take two writes each: the file is uploaded to the project, then linked from the release",
        );
        let labelled = assets.iter().filter(|a| a.label.as_deref().is_some_and(|l| !LINK_TYPES.contains(&l))).count();
        say(labelled, "asset labels are lost: a GitLab release link has a name and a type only");
        let unusual = meta.releases.iter().filter(|r| r.draft || r.prerelease).count();
        say(unusual, "draft or pre-releases are plain releases: GitLab has neither");
        if let Some(h) = meta.repo.homepage.as_ref().filter(|h| !h.is_empty()) {
            notes.push(format!("the homepage {h} is not kept: a GitLab project has none"));
        }
        notes
    }
}
