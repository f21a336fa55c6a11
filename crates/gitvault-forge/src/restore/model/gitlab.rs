//! A GitLab project's metadata tree (FORMAT.md §7.7, GitLab paragraph) in the neutral shape.
//!
//! GitLab numbers issues and merge requests apart, so the items hold an issue 1 and a merge
//! request 1: [`Metadata::separate_numbers`] tells the driver to key them apart (`#1`, `!1`).
//! What has no place in the neutral shape is counted in [`Metadata::notes`].

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{
    Asset, Item, ItemKind, Label, Metadata, Milestone, Post, PostKind, Pull, Release, RepoSettings, alive, asset_bytes,
    files, flag, load, login, num, subdirs, text,
};
use crate::error::Result;

pub(super) fn read(tree: &Path, git_dir: &Path) -> Result<Metadata> {
    let mut meta = Metadata { separate_numbers: true, ..Metadata::default() };
    meta.repo = match load(&tree.join("repository.json"))? {
        Some(p) => RepoSettings {
            description: text(&p, "description").filter(|d| !d.is_empty()),
            homepage: None,
            topics: strings(&p, "topics"),
            default_branch: text(&p, "default_branch"),
            private: text(&p, "visibility").as_deref() != Some("public"),
            has_issues: p.get("issues_enabled").and_then(Value::as_bool).unwrap_or(true),
            has_wiki: p.get("wiki_enabled").and_then(Value::as_bool).unwrap_or(true),
            archived: flag(&p, "archived"),
            html_url: text(&p, "web_url"),
        },
        None => RepoSettings { has_issues: true, has_wiki: true, ..RepoSettings::default() },
    };
    for v in alive(files(&tree.join("labels"))?, &mut meta.deleted) {
        let Some(name) = text(&v, "name") else { continue };
        let color = text(&v, "color").unwrap_or_default().trim_start_matches('#').to_ascii_lowercase();
        meta.labels.push(Label { name, color, description: text(&v, "description").filter(|d| !d.is_empty()) });
    }
    meta.labels.sort_by(|a, b| a.name.cmp(&b.name));
    for v in alive(files(&tree.join("milestones"))?, &mut meta.deleted) {
        let (Some(iid), Some(title)) = (num(&v, "iid"), text(&v, "title")) else { continue };
        meta.milestones.push(Milestone {
            key: iid.to_string(),
            title,
            description: text(&v, "description").filter(|d| !d.is_empty()),
            open: text(&v, "state").as_deref() != Some("closed"),
            // GitLab keeps a date; the neutral shape (GitHub's) a time.
            due_on: text(&v, "due_date").map(|d| format!("{d}T00:00:00Z")),
        });
    }
    meta.milestones.sort_by_key(|m| m.key.parse::<u64>().unwrap_or(u64::MAX));

    let mut system_notes = 0usize;
    for (kind, dir, file) in [(ItemKind::Issue, "issues", "issue.json"), (ItemKind::Pull, "pulls", "pull.json")] {
        for entry in subdirs(&tree.join(dir))? {
            let Some(v) = load(&entry.join(file))? else { continue };
            if v.get("gitvault_deleted_at").is_some() {
                meta.deleted += 1;
                continue;
            }
            let Some(mut item) = item(kind, &v) else { continue };
            for n in alive(files(&entry.join("comments"))?, &mut meta.deleted) {
                // "added ~bug label", "closed": GitLab's own record of what the restore sets
                // anew, and cannot write as such.
                if flag(&n, "system") {
                    system_notes += 1;
                    continue;
                }
                if let Some(post) = note(&n, PostKind::Comment, &item.url) {
                    item.posts.push(post);
                }
            }
            if kind == ItemKind::Pull {
                let diff_notes = alive(files(&entry.join("review_comments"))?, &mut meta.deleted);
                item.posts.extend(diff_posts(&diff_notes, &item.url));
                if let Some(a) = load(&entry.join("approvals.json"))? {
                    item.posts.extend(approvals(&a, &v, &item.url));
                }
            }
            item.posts.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            meta.items.push(item);
        }
    }
    meta.items.sort_by_key(|i| (i.number, i.kind));
    if system_notes > 0 {
        meta.notes.push(format!(
            "{system_notes} GitLab system notes (label, milestone and state changes recorded by GitLab) were not recreated; the restore sets the end state itself"
        ));
    }

    for entry in subdirs(&tree.join("releases"))? {
        let Some(v) = load(&entry.join("release.json"))? else { continue };
        if v.get("gitvault_deleted_at").is_some() {
            meta.deleted += 1;
            continue;
        }
        let Some(tag) = text(&v, "tag_name") else { continue };
        let mut assets = Vec::new();
        for a in alive(files(&entry.join("assets"))?, &mut meta.deleted) {
            let (Some(id), Some(name)) = (num(&a, "id"), text(&a, "name")) else { continue };
            let file = asset_bytes(&entry.join("assets").join(format!("{id}.bin")), git_dir)?;
            if file.is_none() {
                // A link to another host: the backup holds its URL, not its bytes.
                let url = text(&a, "url").unwrap_or_default();
                meta.notes.push(format!(
                    "release {tag}: the link {name:?} to {url} was not recreated (its bytes are not in the backup)"
                ));
                continue;
            }
            assets.push(Asset {
                name,
                // The link type (`package`, `image`...) is the nearest thing to a label.
                label: text(&a, "link_type").filter(|t| t != "other"),
                content_type: "application/octet-stream".into(),
                size: 0,
                file,
            });
        }
        assets.sort_by(|a, b| a.name.cmp(&b.name));
        meta.releases.push(Release {
            key: tag.clone(),
            name: text(&v, "name").filter(|n| !n.is_empty() && *n != tag),
            tag,
            body: text(&v, "description").unwrap_or_default(),
            draft: false,
            prerelease: flag(&v, "upcoming_release"),
            target: None,
            author: login(&v, "author"),
            created_at: text(&v, "created_at").unwrap_or_default(),
            url: v.pointer("/_links/self").and_then(Value::as_str).unwrap_or_default().to_string(),
            assets,
        });
    }
    meta.releases.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.tag.cmp(&b.tag)));
    Ok(meta)
}

/// An issue or merge request without its posts.
fn item(kind: ItemKind, v: &Value) -> Option<Item> {
    let state = text(v, "state").unwrap_or_default();
    let pull = (kind == ItemKind::Pull).then(|| Pull {
        head: text(v, "source_branch").unwrap_or_default(),
        base: text(v, "target_branch").unwrap_or_default(),
        same_repo: num(v, "source_project_id") == num(v, "target_project_id"),
        draft: flag(v, "draft") || flag(v, "work_in_progress"),
        merged_at: text(v, "merged_at"),
        merged_by: v.get("merged_by").filter(|m| !m.is_null()).map(|_| login(v, "merged_by")),
    });
    Some(Item {
        kind,
        number: num(v, "iid")?,
        title: text(v, "title").unwrap_or_default(),
        body: text(v, "description").unwrap_or_default(),
        author: login(v, "author"),
        created_at: text(v, "created_at").unwrap_or_default(),
        url: text(v, "web_url").unwrap_or_default(),
        // `opened` (and `locked`, an open item whose discussion is locked) are open; `closed`
        // and `merged` are not.
        open: !matches!(state.as_str(), "closed" | "merged"),
        state_reason: None,
        closed_at: text(v, "closed_at").or_else(|| text(v, "merged_at")),
        labels: strings(v, "labels"),
        milestone: v.get("milestone").and_then(|m| num(m, "iid")).map(|k| k.to_string()),
        pull,
        posts: Vec::new(),
    })
}

fn note(n: &Value, kind: PostKind, item_url: &str) -> Option<Post> {
    let id = num(n, "id")?;
    Some(Post {
        kind,
        id: id.to_string(),
        author: login(n, "author"),
        created_at: text(n, "created_at").unwrap_or_default(),
        body: text(n, "body").unwrap_or_default(),
        url: format!("{item_url}#note_{id}"),
    })
}

/// Diff notes as review comments. The backup keeps each note with its `position` but not its
/// discussion: notes at the same position (commit, path and lines) are taken to be one thread,
/// the oldest its start and the others replies to it — what GitLab shows unless two threads
/// were opened on the very same line.
fn diff_posts(notes: &[Value], item_url: &str) -> Vec<Post> {
    let mut sorted: Vec<&Value> = notes.iter().collect();
    sorted.sort_by_key(|n| (text(n, "created_at"), num(n, "id")));
    let mut threads: BTreeMap<String, String> = BTreeMap::new();
    let mut posts = Vec::new();
    for n in sorted {
        let p = n.get("position").cloned().unwrap_or(Value::Null);
        let where_ = format!(
            "{}|{}|{}|{}|{}",
            text(&p, "head_sha").unwrap_or_default(),
            text(&p, "old_path").unwrap_or_default(),
            text(&p, "new_path").unwrap_or_default(),
            num(&p, "old_line").map(|l| l.to_string()).unwrap_or_default(),
            num(&p, "new_line").map(|l| l.to_string()).unwrap_or_default(),
        );
        let Some(id) = num(n, "id") else { continue };
        let in_reply_to = threads.get(&where_).cloned();
        threads.entry(where_).or_insert_with(|| id.to_string());
        let new_line = num(&p, "new_line");
        let kind = PostKind::ReviewComment {
            path: text(&p, "new_path").or_else(|| text(&p, "old_path")).unwrap_or_default(),
            line: new_line.or_else(|| num(&p, "old_line")),
            side: Some(if new_line.is_some() { "RIGHT" } else { "LEFT" }.to_string()),
            commit_id: text(&p, "head_sha"),
            in_reply_to,
            diff_hunk: None,
        };
        posts.extend(note(n, kind, item_url));
    }
    posts
}

/// Each approval as an `APPROVED` review. GitLab keeps no time per approval: the merge request's
/// last update stands for it.
fn approvals(a: &Value, mr: &Value, item_url: &str) -> Vec<Post> {
    let at = text(mr, "merged_at").or_else(|| text(mr, "updated_at")).unwrap_or_default();
    a.get("approved_by")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let who = text(entry.get("user")?, "username")?;
            Some(Post {
                kind: PostKind::Review { state: "APPROVED".into() },
                id: format!("approval-{who}"),
                author: who,
                created_at: at.clone(),
                body: String::new(),
                url: item_url.to_string(),
            })
        })
        .collect()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}
