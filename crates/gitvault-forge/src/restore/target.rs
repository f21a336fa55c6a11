//! What a restore needs from the forge it writes into, in the forge's own terms: one
//! implementation per forge ([`super::github`]...). Every write goes through [`Writes`], which
//! paces them and counts them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::model::{Label, Milestone, RepoSettings};
use crate::Api;
use crate::error::Result;
use crate::http::{Body, Page};

/// The repository written into.
#[derive(Clone, Debug)]
pub struct RepoInfo {
    /// Its web page.
    pub html_url: String,
    /// Its git URL over HTTPS (without credentials).
    pub clone_url: String,
    /// Its wiki's git URL, where the forge has wikis.
    pub wiki_url: Option<String>,
    /// How the API names it: `OWNER/NAME` (GitHub, Gitea) or GitLab's numeric id.
    pub api_path: String,
    pub default_branch: Option<String>,
    pub topics: Vec<String>,
}

/// An item found on the target that a restore created (it carries a marker).
#[derive(Clone, Debug)]
pub struct FoundItem {
    pub number: u64,
    /// It is a pull (merge) request on the target.
    pub pull: bool,
    pub open: bool,
    pub url: String,
    pub labels: BTreeSet<String>,
    /// The target milestone it has.
    pub milestone: Option<String>,
}

#[derive(Clone, Debug)]
pub struct FoundRelease {
    pub id: String,
    pub url: String,
    pub upload_url: Option<String>,
    pub assets: BTreeSet<String>,
}

/// What the target already holds.
#[derive(Clone, Debug, Default)]
pub struct Existing {
    /// Label names, lowercase.
    pub labels: BTreeSet<String>,
    /// Milestone title → the target's reference to it.
    pub milestones: BTreeMap<String, String>,
    /// Marker key → the item.
    pub items: BTreeMap<String, FoundItem>,
    /// Issues and pull requests not created by a restore.
    pub foreign_items: usize,
    /// The highest issue and pull request numbers in use (one counter on GitHub and Gitea).
    pub last_issue: u64,
    pub last_pull: u64,
    pub releases: BTreeMap<String, FoundRelease>,
}

impl Existing {
    /// An issue or pull request found on a forge with one counter for both (GitHub, Gitea):
    /// ours when its body carries a marker.
    pub(crate) fn record(&mut self, item: FoundItem, body: &str) {
        self.last_issue = self.last_issue.max(item.number);
        self.last_pull = self.last_issue;
        match super::text::markers(body).first() {
            Some(key) => {
                self.items.insert((*key).to_string(), item);
            }
            None => self.foreign_items += 1,
        }
    }

    /// A release in GitHub's (and Gitea's) shape, with the names of its assets.
    pub(crate) fn record_release(&mut self, v: &Value) {
        use super::model::{num, text};
        let (Some(tag), Some(id)) = (text(v, "tag_name"), num(v, "id")) else { return };
        let assets = v
            .get("assets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| text(x, "name")).collect())
            .unwrap_or_default();
        let release = FoundRelease {
            id: id.to_string(),
            url: text(v, "html_url").unwrap_or_default(),
            upload_url: text(v, "upload_url"),
            assets,
        };
        self.releases.insert(tag, release);
    }
}

/// An item just created.
#[derive(Clone, Debug)]
pub struct Made {
    pub number: u64,
    pub url: String,
    pub pull: bool,
}

/// A new issue.
pub struct NewIssue<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub labels: &'a [String],
    pub milestone: Option<&'a str>,
}

/// A new pull request.
pub struct NewPull<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub head: &'a str,
    pub base: &'a str,
    pub draft: bool,
    /// Label names and the target's milestone, for forges that take them with a new pull
    /// request (Gitea); the others get them from [`Writer::finish`].
    pub labels: &'a [String],
    pub milestone: Option<&'a str>,
}

/// A comment on a line of a pull request's diff.
pub struct NewLineComment<'a> {
    pub body: &'a str,
    pub path: &'a str,
    pub line: u64,
    pub side: Option<&'a str>,
    pub commit_id: &'a str,
    /// The target's id of the comment it answers.
    pub in_reply_to: Option<&'a str>,
}

/// The end state of an item: labels, milestone, open or closed.
pub struct Finish<'a> {
    pub open: bool,
    pub state_reason: Option<&'a str>,
    pub labels: &'a [String],
    pub milestone: Option<&'a str>,
}

pub struct NewRelease<'a> {
    pub tag: &'a str,
    pub name: Option<&'a str>,
    pub body: &'a str,
    pub draft: bool,
    pub prerelease: bool,
    pub target: Option<&'a str>,
}

/// The forge-specific half of a restore.
pub trait Writer {
    /// The repository, when it exists (and the token sees it).
    fn find_repo(&self, owner: &str, name: &str) -> Result<Option<RepoInfo>>;
    fn create_repo(&self, owner: &str, name: &str, settings: &RepoSettings) -> Result<RepoInfo>;
    /// Settings that need the git data first (default branch) or a call of their own (topics),
    /// where they differ. Returns the writes made.
    fn finish_repo(&self, repo: &RepoInfo, settings: &RepoSettings, default_branch: Option<&str>) -> Result<u64>;
    fn archive(&self, repo: &RepoInfo) -> Result<()>;
    fn existing(&self, repo: &RepoInfo) -> Result<Existing>;
    /// The marker keys of the posts (comments, reviews, review comments) of item `number`, and
    /// for review comments the target's id of each (so that replies find their thread).
    fn existing_posts(&self, repo: &RepoInfo, item: &FoundItem) -> Result<BTreeMap<String, Option<String>>>;
    fn create_label(&self, repo: &RepoInfo, label: &Label) -> Result<()>;
    /// Returns the target's reference to the milestone.
    fn create_milestone(&self, repo: &RepoInfo, milestone: &Milestone) -> Result<String>;
    fn create_issue(&self, repo: &RepoInfo, issue: &NewIssue<'_>) -> Result<Made>;
    fn create_pull(&self, repo: &RepoInfo, pull: &NewPull<'_>) -> Result<Made>;
    fn comment(&self, repo: &RepoInfo, item: &Made, body: &str) -> Result<()>;
    /// A review that comments (forges do not let a restore approve for someone else).
    fn review(&self, repo: &RepoInfo, item: &Made, body: &str) -> Result<()>;
    /// Returns the new comment's id.
    fn line_comment(&self, repo: &RepoInfo, item: &Made, c: &NewLineComment<'_>) -> Result<String>;
    /// Whether [`Writer::finish`] has anything to write for `found`.
    fn needs_finish(&self, made: &Made, found: Option<&FoundItem>, finish: &Finish<'_>) -> bool;
    /// Writes what [`Writer::needs_finish`] found to differ from `found` (`None`: just created).
    fn finish(&self, repo: &RepoInfo, item: &Made, found: Option<&FoundItem>, finish: &Finish<'_>) -> Result<()>;
    fn create_release(&self, repo: &RepoInfo, release: &NewRelease<'_>) -> Result<FoundRelease>;
    fn upload_asset(
        &self,
        repo: &RepoInfo,
        release: &FoundRelease,
        name: &str,
        label: Option<&str>,
        content_type: &str,
        file: &std::path::Path,
    ) -> Result<()>;
    /// What of `meta` this forge has no place for (listed in the report, not an error).
    fn unsupported(&self, meta: &super::model::Metadata) -> Vec<String> {
        let _ = meta;
        Vec::new()
    }
    /// Sigils for references on this forge: (issue, pull request).
    fn sigils(&self) -> (char, char) {
        ('#', '#')
    }
    /// One counter numbers issues and pull requests (GitHub, Gitea), or two (GitLab).
    fn shared_numbers(&self) -> bool {
        true
    }
    /// The web URL of item `number` in `repo`.
    fn item_url(&self, repo: &RepoInfo, number: u64, pull: bool) -> String;
    /// The requests and pauses so far.
    fn writes(&self) -> &Writes;
}

/// Writes, paced at least `interval` apart, counted; waits the forge asked for are counted by
/// the [`Api`].
pub struct Writes {
    pub api: Api,
    interval: Duration,
    state: std::sync::Mutex<PaceState>,
}

#[derive(Default)]
struct PaceState {
    last: Option<Instant>,
    count: u64,
    paced: Duration,
}

impl Writes {
    pub fn new(api: Api, interval: Duration) -> Self {
        Self { api, interval, state: std::sync::Mutex::new(PaceState::default()) }
    }

    /// Write requests sent.
    pub fn count(&self) -> u64 {
        self.state.lock().map(|s| s.count).unwrap_or(0)
    }

    /// Time spent keeping writes `interval` apart.
    pub fn paced(&self) -> Duration {
        self.state.lock().map(|s| s.paced).unwrap_or_default()
    }

    pub(crate) fn send(&self, method: reqwest::Method, path_or_url: &str, what: &str, body: Body<'_>) -> Result<Page> {
        {
            let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(last) = s.last {
                let since = last.elapsed();
                if since < self.interval {
                    let wait = self.interval - since;
                    std::thread::sleep(wait);
                    s.paced += wait;
                }
            }
            s.count += 1;
        }
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            self.api.url(path_or_url)
        };
        let answer = self.api.send(method, &url, what, body);
        if let Ok(mut s) = self.state.lock() {
            s.last = Some(Instant::now());
        }
        answer
    }

    pub(crate) fn post(&self, path: &str, what: &str, body: &Value) -> Result<Value> {
        Ok(self.send(reqwest::Method::POST, path, what, Body::Json(body))?.body)
    }

    pub(crate) fn patch(&self, path: &str, what: &str, body: &Value) -> Result<Value> {
        Ok(self.send(reqwest::Method::PATCH, path, what, Body::Json(body))?.body)
    }

    pub(crate) fn put(&self, path: &str, what: &str, body: &Value) -> Result<Value> {
        Ok(self.send(reqwest::Method::PUT, path, what, Body::Json(body))?.body)
    }
}
