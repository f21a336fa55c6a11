//! Writing into GitHub (and GitHub Enterprise Server) through its REST API: the request bodies
//! of api.github.com's OpenAPI description.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::model::{Label, Milestone, RepoSettings, num, text};
use super::target::{
    Existing, Finish, FoundItem, FoundRelease, Made, NewIssue, NewLineComment, NewPull, NewRelease, RepoInfo, Writer,
    Writes,
};
use super::text::markers;
use super::upload::Upload;
use crate::error::{Error, Result};
use crate::http::Body;

pub struct Github {
    pub writes: Writes,
}

impl Github {
    fn repo_info(v: &Value) -> Result<RepoInfo> {
        let field = |k: &str| {
            text(v, k).ok_or_else(|| Error::Parse {
                forge: crate::ForgeKind::Github,
                what: "a repository".into(),
                detail: format!("no {k}"),
            })
        };
        let html_url = field("html_url")?;
        let clone_url = field("clone_url")?;
        let wiki_url = clone_url.strip_suffix(".git").map(|base| format!("{base}.wiki.git"));
        Ok(RepoInfo {
            html_url,
            clone_url,
            wiki_url,
            api_path: field("full_name")?,
            default_branch: text(v, "default_branch"),
            topics: strings(v, "topics"),
        })
    }

    fn found(v: &Value) -> Option<FoundItem> {
        Some(FoundItem {
            number: num(v, "number")?,
            pull: v.get("pull_request").is_some(),
            open: text(v, "state").as_deref() != Some("closed"),
            url: text(v, "html_url").unwrap_or_default(),
            labels: v
                .get("labels")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(|x| text(x, "name")).collect())
                .unwrap_or_default(),
            milestone: v.get("milestone").and_then(|m| num(m, "number")).map(|n| n.to_string()),
        })
    }

    fn made(v: &Value, pull: bool, what: &str) -> Result<Made> {
        match (num(v, "number"), text(v, "html_url")) {
            (Some(number), Some(url)) => Ok(Made { number, url, pull }),
            _ => Err(Error::Parse {
                forge: crate::ForgeKind::Github,
                what: what.into(),
                detail: "the answer has no number or html_url".into(),
            }),
        }
    }
}

impl Writer for Github {
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
        let account = api.get(&api.url(&format!("/users/{owner}")), &format!("the account {owner}"))?.body;
        let path = if text(&account, "type").as_deref() == Some("Organization") {
            format!("/orgs/{owner}/repos")
        } else {
            let me = api.get(&api.url("/user"), "the token's own account")?.body;
            if text(&me, "login").is_some_and(|l| !l.eq_ignore_ascii_case(owner)) {
                return Err(Error::Usage(format!(
                    "github:{owner} is a user account other than the token's own; a repository can only be created for the token's user or in an organisation"
                )));
            }
            "/user/repos".to_string()
        };
        let mut body = json!({
            "name": name,
            "private": s.private,
            "has_issues": s.has_issues,
            "has_wiki": s.has_wiki,
        });
        if let Some(d) = &s.description {
            body["description"] = json!(d);
        }
        if let Some(h) = s.homepage.as_ref().filter(|h| !h.is_empty()) {
            body["homepage"] = json!(h);
        }
        let created = self.writes.post(&path, &format!("creating the repository {owner}/{name}"), &body)?;
        Self::repo_info(&created)
    }

    fn finish_repo(&self, repo: &RepoInfo, s: &RepoSettings, default_branch: Option<&str>) -> Result<u64> {
        let path = format!("/repos/{}", repo.api_path);
        let mut writes = 0;
        if let Some(branch) = default_branch.filter(|b| repo.default_branch.as_deref() != Some(*b)) {
            let what = format!("setting the default branch of {}", repo.api_path);
            self.writes.patch(&path, &what, &json!({"default_branch": branch}))?;
            writes += 1;
        }
        let wanted: BTreeSet<String> = s.topics.iter().map(|t| t.to_lowercase()).collect();
        let has: BTreeSet<String> = repo.topics.iter().map(|t| t.to_lowercase()).collect();
        if !wanted.is_empty() && wanted != has {
            let what = format!("the topics of {}", repo.api_path);
            self.writes.put(&format!("{path}/topics"), &what, &json!({"names": s.topics}))?;
            writes += 1;
        }
        Ok(writes)
    }

    fn archive(&self, repo: &RepoInfo) -> Result<()> {
        archive(&self.writes, repo)
    }

    fn existing(&self, repo: &RepoInfo) -> Result<Existing> {
        let api = &self.writes.api;
        let base = format!("/repos/{}", repo.api_path);
        let mut found = Existing::default();
        for l in api.get_all(&api.url(&format!("{base}/labels?per_page=100")), "the target's labels")? {
            if let Some(name) = text(&l, "name") {
                found.labels.insert(name.to_lowercase());
            }
        }
        for m in
            api.get_all(&api.url(&format!("{base}/milestones?state=all&per_page=100")), "the target's milestones")?
        {
            if let (Some(title), Some(n)) = (text(&m, "title"), num(&m, "number")) {
                found.milestones.insert(title, n.to_string());
            }
        }
        for i in api.get_all(
            &api.url(&format!("{base}/issues?state=all&per_page=100&sort=created&direction=asc")),
            "the target's issues",
        )? {
            if let Some(item) = Self::found(&i) {
                found.record(item, &text(&i, "body").unwrap_or_default());
            }
        }
        for r in api.get_all(&api.url(&format!("{base}/releases?per_page=100")), "the target's releases")? {
            found.record_release(&r);
        }
        Ok(found)
    }

    fn existing_posts(&self, repo: &RepoInfo, item: &FoundItem) -> Result<BTreeMap<String, Option<String>>> {
        let api = &self.writes.api;
        let base = format!("/repos/{}", repo.api_path);
        let mut posts = BTreeMap::new();
        let mut take = |list: Vec<Value>, keep_id: bool| {
            for v in list {
                let body = text(&v, "body").unwrap_or_default();
                for key in markers(&body) {
                    posts.insert(key.to_string(), if keep_id { num(&v, "id").map(|n| n.to_string()) } else { None });
                }
            }
        };
        let n = item.number;
        take(api.get_all(&api.url(&format!("{base}/issues/{n}/comments?per_page=100")), "comments")?, false);
        if item.pull {
            take(api.get_all(&api.url(&format!("{base}/pulls/{n}/reviews?per_page=100")), "reviews")?, false);
            take(api.get_all(&api.url(&format!("{base}/pulls/{n}/comments?per_page=100")), "review comments")?, true);
        }
        Ok(posts)
    }

    fn create_label(&self, repo: &RepoInfo, label: &Label) -> Result<()> {
        let mut body = json!({"name": label.name, "color": label.color});
        if let Some(d) = &label.description {
            body["description"] = json!(d);
        }
        self.writes.post(&format!("/repos/{}/labels", repo.api_path), &format!("the label {:?}", label.name), &body)?;
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
        let v = self.writes.post(
            &format!("/repos/{}/milestones", repo.api_path),
            &format!("the milestone {:?}", m.title),
            &body,
        )?;
        num(&v, "number").map(|n| n.to_string()).ok_or_else(|| Error::Parse {
            forge: crate::ForgeKind::Github,
            what: format!("the milestone {:?}", m.title),
            detail: "no number in the answer".into(),
        })
    }

    fn create_issue(&self, repo: &RepoInfo, issue: &NewIssue<'_>) -> Result<Made> {
        let mut body = json!({"title": issue.title, "body": issue.body});
        if !issue.labels.is_empty() {
            body["labels"] = json!(issue.labels);
        }
        if let Some(m) = issue.milestone.and_then(|m| m.parse::<u64>().ok()) {
            body["milestone"] = json!(m);
        }
        let what = format!("the issue {:?}", issue.title);
        Self::made(&self.writes.post(&format!("/repos/{}/issues", repo.api_path), &what, &body)?, false, &what)
    }

    fn create_pull(&self, repo: &RepoInfo, pull: &NewPull<'_>) -> Result<Made> {
        let body = json!({"title": pull.title, "body": pull.body, "head": pull.head, "base": pull.base,
                          "draft": pull.draft});
        let what = format!("the pull request {:?}", pull.title);
        Self::made(&self.writes.post(&format!("/repos/{}/pulls", repo.api_path), &what, &body)?, true, &what)
    }

    fn comment(&self, repo: &RepoInfo, item: &Made, body: &str) -> Result<()> {
        post_comment(&self.writes, repo, item, body)
    }

    fn review(&self, repo: &RepoInfo, item: &Made, body: &str) -> Result<()> {
        post_review(&self.writes, repo, item, body)
    }

    fn line_comment(&self, repo: &RepoInfo, item: &Made, c: &NewLineComment<'_>) -> Result<String> {
        let path = format!("/repos/{}/pulls/{}/comments", repo.api_path, item.number);
        let body = match c.in_reply_to.and_then(|id| id.parse::<u64>().ok()) {
            Some(parent) => json!({"body": c.body, "in_reply_to": parent}),
            None => json!({"body": c.body, "path": c.path, "line": c.line, "side": c.side.unwrap_or("RIGHT"),
                           "commit_id": c.commit_id}),
        };
        let v = self.writes.post(&path, &format!("a review comment on #{}", item.number), &body)?;
        Ok(num(&v, "id").map(|n| n.to_string()).unwrap_or_default())
    }

    fn needs_finish(&self, made: &Made, found: Option<&FoundItem>, f: &Finish<'_>) -> bool {
        let wanted_labels: BTreeSet<String> = f.labels.iter().cloned().collect();
        match found {
            Some(found) => {
                found.open != f.open || found.labels != wanted_labels || found.milestone.as_deref() != f.milestone
            }
            // A new issue got its labels and milestone when created; a pull request did not.
            None => !f.open || (made.pull && (!f.labels.is_empty() || f.milestone.is_some())),
        }
    }

    fn finish(&self, repo: &RepoInfo, item: &Made, _found: Option<&FoundItem>, f: &Finish<'_>) -> Result<()> {
        let mut body = json!({
            "state": if f.open { "open" } else { "closed" },
            "labels": f.labels,
            "milestone": f.milestone.and_then(|m| m.parse::<u64>().ok()),
        });
        if !f.open
            && let Some(reason) = f.state_reason.filter(|r| ["completed", "not_planned"].contains(r))
        {
            body["state_reason"] = json!(reason);
        }
        let path = format!("/repos/{}/issues/{}", repo.api_path, item.number);
        self.writes.patch(&path, &format!("the state of #{}", item.number), &body)?;
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
            id: num(&v, "id").map(|n| n.to_string()).unwrap_or_default(),
            url: text(&v, "html_url").unwrap_or_default(),
            upload_url: text(&v, "upload_url"),
            assets: BTreeSet::new(),
        })
    }

    fn upload_asset(
        &self,
        _repo: &RepoInfo,
        release: &FoundRelease,
        name: &str,
        label: Option<&str>,
        content_type: &str,
        file: &std::path::Path,
    ) -> Result<()> {
        let Some(template) = &release.upload_url else {
            return Err(Error::Usage(format!("the release has no upload_url for the asset {name:?}")));
        };
        // `https://uploads.github.com/repos/o/r/releases/1/assets{?name,label}`
        let base = template.split('{').next().unwrap_or(template);
        let mut url = format!("{base}?name={}", encode(name));
        if let Some(label) = label {
            url.push_str(&format!("&label={}", encode(label)));
        }
        self.writes.send(
            reqwest::Method::POST,
            &url,
            &format!("the asset {name:?}"),
            Body::Upload(&Upload::raw(file, content_type)?),
        )?;
        Ok(())
    }

    fn item_url(&self, repo: &RepoInfo, number: u64, pull: bool) -> String {
        format!("{}/{}/{number}", repo.html_url, if pull { "pull" } else { "issues" })
    }
}

/// Archive the repository (GitHub's `PATCH`; Gitea's has the same shape).
pub(crate) fn archive(writes: &Writes, repo: &RepoInfo) -> Result<()> {
    let path = format!("/repos/{}", repo.api_path);
    writes.patch(&path, &format!("archiving {}", repo.api_path), &json!({"archived": true}))?;
    Ok(())
}

/// A comment on an issue or pull request (GitHub's endpoint; Gitea's has the same shape).
pub(crate) fn post_comment(writes: &Writes, repo: &RepoInfo, item: &Made, body: &str) -> Result<()> {
    let path = format!("/repos/{}/issues/{}/comments", repo.api_path, item.number);
    writes.post(&path, &format!("a comment on #{}", item.number), &json!({"body": body}))?;
    Ok(())
}

/// A review that only comments (GitHub's endpoint; Gitea's has the same shape).
pub(crate) fn post_review(writes: &Writes, repo: &RepoInfo, item: &Made, body: &str) -> Result<()> {
    let path = format!("/repos/{}/pulls/{}/reviews", repo.api_path, item.number);
    writes.post(&path, &format!("a review on #{}", item.number), &json!({"event": "COMMENT", "body": body}))?;
    Ok(())
}

pub(crate) fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Percent-encoding of a query value.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
