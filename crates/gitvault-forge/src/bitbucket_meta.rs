//! Bitbucket Cloud metadata of one repository, into the layout every forge shares (see `meta.rs`
//! for it and for the conditional walk; FORMAT.md §7.7). Each file holds Bitbucket's own object
//! (`repository`, `pullrequest`, `pullrequest_comment`, `issue`, `issue_comment`).
//!
//! How Bitbucket differs, and what that costs:
//! - Pages are envelopes, `{"values": [...], "next": ...}`, asked for by `page` and `pagelen`
//!   (at most 50 for pull requests and issues): a page without `next` ends the listing.
//! - Pull requests are listed by state, every state asked for, oldest first. The listing leaves
//!   out `reviewers` and `participants`, so `pull.json` is `GET pullrequests/{id}`, asked for —
//!   with the comments and the activity — only for pull requests whose `updated_on` moved since
//!   the last backup (a comment or an approval moves it).
//! - Comments are listed per pull request: those with `inline` ({path, from, to}) are kept under
//!   `review_comments/`, the others under `comments/`. A deleted comment usually stays, with
//!   `deleted: true`; one that disappears is marked like any other item.
//! - `activity.json` is the pull request's whole activity (updates, approvals, changes
//!   requested), in the order Bitbucket lists it.
//! - Issues exist only when the repository's issue tracker is enabled (`has_issues`); their
//!   comments too are asked for only when the issue's `updated_on` moved.
//! - Bitbucket has no labels, milestones or releases in this sense: none are kept.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::RemoteRepo;
use crate::error::{Error, Result};
use crate::http::Api;
use crate::meta::{DELETED_FIELD, Fetch, MetaReport, entries, num_of, read_json, write_json};

/// The page size asked for: the most Bitbucket's pull request and issue listings give.
const PER_PAGE: usize = 50;

/// Fetch the metadata of `repo` into `dir` (the work tree of its metadata repository, holding
/// the previous backup's files). `now` (RFC 3339) dates items first found deleted.
pub(crate) fn fetch(api: &Api, repo: &RemoteRepo, dir: &Path, now: &str) -> Result<MetaReport> {
    let base = format!("/repositories/{}", repo.path);
    let mut run = Run(Fetch::new(api, repo, (dir, dir), now, base, PER_PAGE));
    run.settings()?;
    run.pulls()?;
    if read_json(&dir.join("repository.json")).is_some_and(|r| r.get("has_issues") == Some(&Value::Bool(true))) {
        run.issues()?;
    }
    let mut report = run.0.finish()?;
    report.comments = ["issues", "pulls"]
        .iter()
        .flat_map(|kind| {
            entries(&dir.join(kind), "").into_iter().map(move |n| {
                let thread = dir.join(kind).join(n);
                entries(&thread.join("comments"), ".json").len()
                    + entries(&thread.join("review_comments"), ".json").len()
            })
        })
        .sum();
    Ok(report)
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
    /// Pull requests in every state; the whole object, comments and activity of those that
    /// moved.
    fn pulls(&mut self) -> Result<()> {
        let rest = "pullrequests?state=OPEN&state=MERGED&state=DECLINED&state=SUPERSEDED&sort=created_on&pagelen=50";
        let pulls = self.walk("pulls", rest, |v| num_of(v, "id"))?;
        for v in pulls.fresh()? {
            let v = &v?;
            let Some(n) = num_of(v, "id") else { continue };
            let path = self.dir.join(format!("pulls/{n}/pull.json"));
            if unmoved(&path, v) {
                continue;
            }
            let full = self.api.get(&self.url(&format!("pullrequests/{n}")), &self.what("pull requests"))?.body;
            self.comments("pulls", &format!("pullrequests/{n}/comments?pagelen=100"), &n)?;
            let activity = self.api.get_all(
                &self.url(&format!("pullrequests/{n}/activity?pagelen=50")),
                &self.what("pull request activity"),
            )?;
            write_json(&self.dir.join(format!("pulls/{n}/activity.json")), &Value::Array(activity))?;
            // Written last: a run that fails in between finds it moved again.
            write_json(&path, &full)?;
        }
        self.0.mark("pulls/{}/pull.json", entries(&self.dir.join("pulls"), ""), &pulls.keys)
    }

    /// Issues, and the comments of those that moved. A tracker the token may not read (or
    /// that went away since the settings were read) is said, not fatal.
    fn issues(&mut self) -> Result<()> {
        let issues = match self.walk("issues", "issues?sort=created_on&pagelen=50", |v| num_of(v, "id")) {
            Ok(walked) => walked,
            Err(e @ (Error::NotFound { .. } | Error::Unauthorized { .. } | Error::Http { .. })) => {
                self.report.unavailable.push(format!("issues: {e}"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for v in issues.fresh()? {
            let v = &v?;
            let Some(n) = num_of(v, "id") else { continue };
            let path = self.dir.join(format!("issues/{n}/issue.json"));
            if unmoved(&path, v) {
                continue;
            }
            self.comments("issues", &format!("issues/{n}/comments?pagelen=100"), &n)?;
            write_json(&path, v)?;
        }
        self.0.mark("issues/{}/issue.json", entries(&self.dir.join("issues"), ""), &issues.keys)
    }

    /// Every comment of thread `n` (`kind` is `pulls` or `issues`): inline ones into
    /// `review_comments/`, the others into `comments/`; those gone are marked deleted.
    fn comments(&mut self, kind: &str, rest: &str, n: &str) -> Result<()> {
        let comments = self.api.get_all(&self.url(rest), &self.what("comments"))?;
        let (mut general, mut inline) = (BTreeSet::new(), BTreeSet::new());
        for c in &comments {
            let Some(id) = num_of(c, "id") else { continue };
            let (sub, alive) = match c.get("inline") {
                Some(i) if !i.is_null() => ("review_comments", &mut inline),
                _ => ("comments", &mut general),
            };
            write_json(&self.dir.join(format!("{kind}/{n}/{sub}/{id}.json")), c)?;
            alive.insert(id);
        }
        let base = self.dir.join(kind).join(n);
        for (sub, alive) in [("comments", &general), ("review_comments", &inline)] {
            let existing = entries(&base.join(sub), ".json");
            self.0.mark(&format!("{kind}/{n}/{sub}/{{}}.json"), existing, alive)?;
        }
        Ok(())
    }
}

/// Whether the item stored at `path` is `listed` as it was: same `updated_on`, and not marked
/// deleted (one that came back is fetched again, and so unmarked).
fn unmoved(path: &Path, listed: &Value) -> bool {
    read_json(path)
        .is_some_and(|old| old.get("updated_on") == listed.get("updated_on") && old.get(DELETED_FIELD).is_none())
}
