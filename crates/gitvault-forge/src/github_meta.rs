//! GitHub metadata of one repository (see `meta.rs` for the layout and the conditional walk).
//!
//! Every listing is sorted by creation, so that a page changes only when an item on it does (or
//! one before it is deleted). Issues and pull requests share numbers: `/issues` returns both, and
//! a pull request is recognised by its `pull_request` object; its own data comes from `/pulls`.
//! Reviews are asked for only for pull requests whose `updated_at` moved since the last backup
//! (GitHub has no repository-wide review listing); review comments and conversation comments
//! come from the repository-wide listings.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::RemoteRepo;
use crate::error::{Error, Result};
use crate::http::{Api, Fetched};
use crate::meta::{
    MetaReport, State, WithParent, download_asset, entries, file_key, io_error, lfs_pointer, mark_deleted, nested,
    num_of, prefixed, read_json, set_etag, str_of, walk, write_json,
};

const PER_PAGE: usize = 100;

/// Fetch the metadata of `repo` into `dir` (the work tree of its metadata repository, holding
/// the previous backup's files), release assets into `git_dir`'s LFS store. `now` (RFC 3339)
/// dates items first found deleted.
pub(crate) fn fetch(api: &Api, repo: &RemoteRepo, dir: &Path, git_dir: &Path, now: &str) -> Result<MetaReport> {
    let (before_requests, before_304) = (api.requests(), api.not_modified());
    let mut state = State::load(dir);
    let mut report = MetaReport::default();
    let r = format!("/repos/{}", repo.path);
    let what = |x: &str| format!("the {x} of {}", repo.vault_name());

    // Settings: the repository object (description, homepage, topics, default branch,
    // visibility, features).
    if let Fetched::Fresh(page, etag) =
        api.get_if(&api.url(&r), &what("settings"), state.etags.get("repository").map(String::as_str))?
    {
        write_json(&dir.join("repository.json"), &page.body)?;
        set_etag(&mut state, "repository", etag);
    }

    // Labels and milestones.
    let labels = walk(
        api,
        &mut state,
        "labels",
        &api.url(&format!("{r}/labels?per_page=100")),
        PER_PAGE,
        &what("labels"),
        |v| str_of(v, "name").map(file_key),
    )?;
    for v in labels.fresh()? {
        let v = &v?;
        if let Some(name) = str_of(v, "name") {
            write_json(&dir.join(format!("labels/{}.json", file_key(name))), v)?;
        }
    }
    report.deleted.extend(mark_deleted(
        dir,
        "labels/{}.json",
        entries(&dir.join("labels"), ".json"),
        &labels.keys,
        now,
    )?);
    let milestones = walk(
        api,
        &mut state,
        "milestones",
        &api.url(&format!("{r}/milestones?state=all&per_page=100")),
        PER_PAGE,
        &what("milestones"),
        |v| num_of(v, "number"),
    )?;
    for v in milestones.fresh()? {
        let v = &v?;
        if let Some(n) = num_of(v, "number") {
            write_json(&dir.join(format!("milestones/{n}.json")), v)?;
        }
    }
    report.deleted.extend(mark_deleted(
        dir,
        "milestones/{}.json",
        entries(&dir.join("milestones"), ".json"),
        &milestones.keys,
        now,
    )?);

    // Issues (pull requests appear there too, keyed `pr-<n>`).
    let issues = walk(
        api,
        &mut state,
        "issues",
        &api.url(&format!("{r}/issues?state=all&sort=created&direction=asc&per_page=100")),
        PER_PAGE,
        &what("issues"),
        |v| num_of(v, "number").map(|n| if v.get("pull_request").is_some() { format!("pr-{n}") } else { n }),
    )?;
    for v in issues.fresh()? {
        let v = &v?;
        if v.get("pull_request").is_some() {
            continue;
        }
        if let Some(n) = num_of(v, "number") {
            write_json(&dir.join(format!("issues/{n}/issue.json")), &without_reactions(v))?;
        }
    }
    let alive_issues: BTreeSet<String> = issues.keys.iter().filter(|k| !k.starts_with("pr-")).cloned().collect();
    report.deleted.extend(mark_deleted(
        dir,
        "issues/{}/issue.json",
        entries(&dir.join("issues"), ""),
        &alive_issues,
        now,
    )?);
    let is_pull = |n: &str| issues.keys.contains(&format!("pr-{n}"));

    // Conversation comments of issues and pull requests alike.
    let comments = walk(
        api,
        &mut state,
        "issue_comments",
        &api.url(&format!("{r}/issues/comments?sort=created&direction=asc&per_page=100")),
        PER_PAGE,
        &what("comments"),
        |v| {
            let n = str_of(v, "issue_url")?.rsplit('/').next()?.to_string();
            Some(format!("{n}/{}", num_of(v, "id")?))
        },
    )?;
    for v in comments.fresh()? {
        let v = &v?;
        let (Some(n), Some(id)) = (str_of(v, "issue_url").and_then(|u| u.rsplit('/').next()), num_of(v, "id")) else {
            continue;
        };
        let kind = if is_pull(n) { "pulls" } else { "issues" };
        write_json(&dir.join(format!("{kind}/{n}/comments/{id}.json")), &without_reactions(v))?;
    }
    for kind in ["issues", "pulls"] {
        let existing = nested(dir, kind, "comments");
        report.deleted.extend(mark_deleted(
            dir,
            &format!("{kind}/{{}}.json"),
            existing,
            &prefixed(&comments.keys, "comments"),
            now,
        )?);
    }
    report.comments = comments.keys.len();

    // Pull requests, their reviews (when they moved) and review comments.
    let pulls = walk(
        api,
        &mut state,
        "pulls",
        &api.url(&format!("{r}/pulls?state=all&sort=created&direction=asc&per_page=100")),
        PER_PAGE,
        &what("pull requests"),
        |v| num_of(v, "number"),
    )?;
    for v in pulls.fresh()? {
        let v = &v?;
        let Some(n) = num_of(v, "number") else { continue };
        let path = dir.join(format!("pulls/{n}/pull.json"));
        let moved = read_json(&path).is_none_or(|old| old.get("updated_at") != v.get("updated_at"));
        if moved {
            let reviews = api.get_all(&api.url(&format!("{r}/pulls/{n}/reviews?per_page=100")), &what("reviews"))?;
            for review in &reviews {
                if let Some(id) = num_of(review, "id") {
                    write_json(&dir.join(format!("pulls/{n}/reviews/{id}.json")), review)?;
                }
            }
        }
        // Written after its reviews: should fetching them fail, the pull request still looks
        // moved next time, and they are fetched then.
        write_json(&path, &without_reactions(v))?;
    }
    report.deleted.extend(mark_deleted(dir, "pulls/{}/pull.json", entries(&dir.join("pulls"), ""), &pulls.keys, now)?);
    let review_comments = walk(
        api,
        &mut state,
        "review_comments",
        &api.url(&format!("{r}/pulls/comments?sort=created&direction=asc&per_page=100")),
        PER_PAGE,
        &what("review comments"),
        |v| {
            let n = str_of(v, "pull_request_url")?.rsplit('/').next()?.to_string();
            Some(format!("{n}/{}", num_of(v, "id")?))
        },
    )?;
    for v in review_comments.fresh()? {
        let v = &v?;
        let (Some(n), Some(id)) = (str_of(v, "pull_request_url").and_then(|u| u.rsplit('/').next()), num_of(v, "id"))
        else {
            continue;
        };
        write_json(&dir.join(format!("pulls/{n}/review_comments/{id}.json")), &without_reactions(v))?;
    }
    report.deleted.extend(mark_deleted(
        dir,
        "pulls/{}.json",
        nested(dir, "pulls", "review_comments"),
        &prefixed(&review_comments.keys, "review_comments"),
        now,
    )?);

    // Releases and the bytes of every asset.
    let releases = walk(
        api,
        &mut state,
        "releases",
        &api.url(&format!("{r}/releases?per_page=100")),
        PER_PAGE,
        &what("releases"),
        |v| num_of(v, "id"),
    )?;
    for v in releases.fresh()? {
        let v = &v?;
        let Some(id) = num_of(v, "id") else { continue };
        let mut release = v.clone();
        let assets = release.as_object_mut().and_then(|o| o.remove("assets")).unwrap_or(Value::Null);
        write_json(&dir.join(format!("releases/{id}/release.json")), &release)?;
        for asset in assets.as_array().into_iter().flatten() {
            let Some(aid) = num_of(asset, "id") else { continue };
            let path = dir.join(format!("releases/{id}/assets/{aid}.json"));
            let mut asset = asset.clone();
            if let Some(o) = asset.as_object_mut() {
                // Changes with every download: not the asset, and churn in the history.
                o.remove("download_count");
            }
            let old = read_json(&path);
            let same = old.as_ref().is_some_and(|o| {
                o.get("updated_at") == asset.get("updated_at")
                    && o.get("size") == asset.get("size")
                    && o.get("sha256").is_some()
            });
            let oid = if same {
                old.and_then(|o| o.get("sha256").and_then(Value::as_str).map(str::to_string))
            } else {
                let url = api.url(&format!("{r}/releases/assets/{aid}"));
                let (oid, bytes) = download_asset(api, &url, git_dir, &what("release assets"))?;
                report.assets_downloaded += 1;
                report.asset_bytes += bytes;
                fs::write(dir.join(format!("releases/{id}/assets/{aid}.bin")).with_parent()?, lfs_pointer(&oid, bytes))
                    .map_err(|e| io_error(dir, e))?;
                Some(oid)
            };
            if let (Some(o), Some(oid)) = (asset.as_object_mut(), oid) {
                o.insert("sha256".into(), Value::String(oid));
            }
            write_json(&path, &asset)?;
        }
    }
    report.deleted.extend(mark_deleted(
        dir,
        "releases/{}/release.json",
        entries(&dir.join("releases"), ""),
        &releases.keys,
        now,
    )?);
    report.releases = releases.keys.len();

    // Who has access, and how the default branch is protected: read-only records for access
    // reviews; a token without admin rights cannot read them, which is said, not fatal.
    for (name, path, key) in [
        ("collaborators", "collaborators?affiliation=all&per_page=100", "login"),
        ("teams", "teams?per_page=100", "slug"),
    ] {
        let listing = format!("{r}/{path}");
        match walk(api, &mut state, name, &api.url(&listing), PER_PAGE, &what(name), |v| str_of(v, key).map(file_key)) {
            Ok(walked) => {
                for v in walked.fresh()? {
                    let v = &v?;
                    if let Some(k) = str_of(v, key) {
                        write_json(&dir.join(format!("access/{name}/{}.json", file_key(k))), v)?;
                    }
                }
                let existing = entries(&dir.join("access").join(name), ".json");
                report.deleted.extend(mark_deleted(
                    dir,
                    &format!("access/{name}/{{}}.json"),
                    existing,
                    &walked.keys,
                    now,
                )?);
            }
            Err(e @ (Error::Http { .. } | Error::NotFound { .. } | Error::Unauthorized { .. })) => {
                report.unavailable.push(format!("{name}: {e}"))
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(branch) = &repo.default_branch {
        let url = api.url(&format!("{r}/branches/{branch}/protection"));
        let file = dir.join(format!("protection/{}.json", file_key(branch)));
        let tag = format!("protection/{branch}");
        match api.get_if(&url, &what("branch protection"), state.etags.get(&tag).map(String::as_str)) {
            Ok(Fetched::NotModified) => {}
            Ok(Fetched::Fresh(page, etag)) => {
                write_json(&file, &page.body)?;
                set_etag(&mut state, &tag, etag);
            }
            Err(Error::NotFound { .. }) => write_json(&file, &serde_json::json!({"protected": false}))?,
            Err(e @ (Error::Http { .. } | Error::Unauthorized { .. })) => {
                report.unavailable.push(format!("branch protection: {e}"))
            }
            Err(e) => return Err(e),
        }
    }

    state.save(dir)?;
    report.issues = entries(&dir.join("issues"), "").len();
    report.pulls = entries(&dir.join("pulls"), "").len();
    report.requests = api.requests() - before_requests;
    report.not_modified = api.not_modified() - before_304;
    Ok(report)
}

/// Reaction counts change without the item changing: left out, so that they do not churn.
fn without_reactions(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("reactions");
    }
    v
}
