//! A backed-up repository's metadata (FORMAT.md §7.7) read into one shape whatever forge it came
//! from: what a restore recreates. Items the forge had deleted by the time of the backup
//! (`gitvault_deleted_at`) are counted and left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::ForgeKind;
use crate::error::{Error, Result};

mod gitlab;

/// Everything a restore recreates, in the order it is recreated.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    pub repo: RepoSettings,
    pub labels: Vec<Label>,
    pub milestones: Vec<Milestone>,
    /// Issues and pull requests, by number.
    pub items: Vec<Item>,
    pub releases: Vec<Release>,
    /// Items the forge no longer had at the backup, left out.
    pub deleted: usize,
    /// The source numbers merge requests apart from its issues (GitLab: issue `#1` and merge
    /// request `!1` both exist), so an item is known by its kind and number together.
    pub separate_numbers: bool,
    /// What the backup holds that this shape leaves out (GitLab's system notes...).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct RepoSettings {
    pub description: Option<String>,
    pub homepage: Option<String>,
    pub topics: Vec<String>,
    pub default_branch: Option<String>,
    pub private: bool,
    pub has_issues: bool,
    pub has_wiki: bool,
    pub archived: bool,
    /// The repository's web page on its forge.
    pub html_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Label {
    pub name: String,
    /// Six lowercase hex digits, no `#`.
    pub color: String,
    pub description: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Milestone {
    /// The forge's key for it in the backup (GitHub: its number; Gitea: its id; GitLab: its iid).
    pub key: String,
    pub title: String,
    pub description: Option<String>,
    pub open: bool,
    /// RFC 3339.
    pub due_on: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKind {
    Issue,
    Pull,
}

/// An issue or a pull (merge) request.
#[derive(Clone, Debug)]
pub struct Item {
    pub kind: ItemKind,
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    pub created_at: String,
    pub url: String,
    pub open: bool,
    /// Closed issues: `completed`, `not_planned`...
    pub state_reason: Option<String>,
    pub closed_at: Option<String>,
    pub labels: Vec<String>,
    /// The key of its milestone ([`Milestone::key`]).
    pub milestone: Option<String>,
    pub pull: Option<Pull>,
    /// Conversation comments, reviews and review comments, oldest first.
    pub posts: Vec<Post>,
}

#[derive(Clone, Debug)]
pub struct Pull {
    pub head: String,
    pub base: String,
    /// The head branch lives in this repository (not a fork's).
    pub same_repo: bool,
    pub draft: bool,
    pub merged_at: Option<String>,
    pub merged_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostKind {
    Comment,
    /// A review; `state` as the forge says it (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`...).
    Review {
        state: String,
    },
    /// A comment on a line of the diff.
    ReviewComment {
        path: String,
        line: Option<u64>,
        side: Option<String>,
        commit_id: Option<String>,
        in_reply_to: Option<String>,
        diff_hunk: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct Post {
    pub kind: PostKind,
    /// The forge's id for it, unique within its kind in the repository.
    pub id: String,
    pub author: String,
    pub created_at: String,
    pub body: String,
    pub url: String,
}

impl Post {
    /// Its key in markers and the mapping: `c123`, `r55`, `rc77`.
    pub fn key(&self) -> String {
        let prefix = match self.kind {
            PostKind::Comment => "c",
            PostKind::Review { .. } => "r",
            PostKind::ReviewComment { .. } => "rc",
        };
        format!("{prefix}{}", self.id)
    }
}

#[derive(Clone, Debug)]
pub struct Release {
    pub key: String,
    pub tag: String,
    pub name: Option<String>,
    pub body: String,
    pub draft: bool,
    pub prerelease: bool,
    pub target: Option<String>,
    pub author: String,
    pub created_at: String,
    pub url: String,
    pub assets: Vec<Asset>,
}

#[derive(Clone, Debug)]
pub struct Asset {
    pub name: String,
    pub label: Option<String>,
    pub content_type: String,
    pub size: u64,
    /// The bytes, in the metadata repository's LFS store; `None` when they were not backed up.
    pub file: Option<PathBuf>,
}

/// Reads the metadata of a `forge` repository from `tree` (the checked-out metadata repository)
/// and `git_dir` (its git directory, whose LFS store holds the release assets' bytes).
pub fn read(forge: ForgeKind, tree: &Path, git_dir: &Path) -> Result<Metadata> {
    match forge {
        ForgeKind::Github | ForgeKind::Gitea => read_github_like(forge, tree, git_dir),
        ForgeKind::Gitlab => gitlab::read(tree, git_dir),
        other => Err(Error::Usage(format!("restoring {other} metadata into a forge is not supported yet"))),
    }
}

fn read_github_like(forge: ForgeKind, tree: &Path, git_dir: &Path) -> Result<Metadata> {
    let mut meta = Metadata::default();
    if let Some(repo) = load(&tree.join("repository.json"))? {
        meta.repo = RepoSettings {
            description: text(&repo, "description"),
            homepage: text(&repo, "homepage").or_else(|| text(&repo, "website")),
            topics: repo
                .get("topics")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            default_branch: text(&repo, "default_branch"),
            private: flag(&repo, "private"),
            has_issues: repo.get("has_issues").and_then(Value::as_bool).unwrap_or(true),
            has_wiki: repo.get("has_wiki").and_then(Value::as_bool).unwrap_or(true),
            archived: flag(&repo, "archived"),
            html_url: text(&repo, "html_url"),
        };
    } else {
        meta.repo.has_issues = true;
        meta.repo.has_wiki = true;
    }
    for v in alive(files(&tree.join("labels"))?, &mut meta.deleted) {
        let Some(name) = text(&v, "name") else { continue };
        let color = text(&v, "color").unwrap_or_default().trim_start_matches('#').to_ascii_lowercase();
        meta.labels.push(Label { name, color, description: text(&v, "description") });
    }
    meta.labels.sort_by(|a, b| a.name.cmp(&b.name));
    let milestone_key = |v: &Value| match forge {
        ForgeKind::Gitea => num(v, "id"),
        _ => num(v, "number"),
    };
    for v in alive(files(&tree.join("milestones"))?, &mut meta.deleted) {
        let (Some(key), Some(title)) = (milestone_key(&v), text(&v, "title")) else { continue };
        meta.milestones.push(Milestone {
            key: key.to_string(),
            title,
            description: text(&v, "description"),
            open: text(&v, "state").as_deref() != Some("closed"),
            due_on: text(&v, "due_on"),
        });
    }
    meta.milestones.sort_by_key(|m| m.key.parse::<u64>().unwrap_or(u64::MAX));

    for (kind, dir, file) in [(ItemKind::Issue, "issues", "issue.json"), (ItemKind::Pull, "pulls", "pull.json")] {
        for entry in subdirs(&tree.join(dir))? {
            let Some(v) = load(&entry.join(file))? else { continue };
            if v.get("gitvault_deleted_at").is_some() {
                meta.deleted += 1;
                continue;
            }
            let Some(number) = num(&v, "number") else { continue };
            let mut item = Item {
                kind,
                number,
                title: text(&v, "title").unwrap_or_default(),
                body: text(&v, "body").unwrap_or_default(),
                author: login(&v, "user"),
                created_at: text(&v, "created_at").unwrap_or_default(),
                url: text(&v, "html_url").unwrap_or_default(),
                open: text(&v, "state").as_deref() != Some("closed"),
                state_reason: text(&v, "state_reason"),
                closed_at: text(&v, "closed_at"),
                labels: v
                    .get("labels")
                    .and_then(Value::as_array)
                    .map(|l| l.iter().filter_map(|x| text(x, "name")).collect())
                    .unwrap_or_default(),
                milestone: v.get("milestone").and_then(&milestone_key).map(|k| k.to_string()),
                pull: None,
                posts: Vec::new(),
            };
            if kind == ItemKind::Pull {
                let head_repo = v.pointer("/head/repo/full_name").and_then(Value::as_str);
                let base_repo = v.pointer("/base/repo/full_name").and_then(Value::as_str);
                item.pull = Some(Pull {
                    head: v.pointer("/head/ref").and_then(Value::as_str).unwrap_or_default().to_string(),
                    base: v.pointer("/base/ref").and_then(Value::as_str).unwrap_or_default().to_string(),
                    same_repo: head_repo.is_none() || head_repo == base_repo,
                    draft: flag(&v, "draft"),
                    merged_at: text(&v, "merged_at"),
                    merged_by: v.get("merged_by").filter(|m| !m.is_null()).map(|_| login(&v, "merged_by")),
                });
            }
            for c in alive(files(&entry.join("comments"))?, &mut meta.deleted) {
                let Some(id) = num(&c, "id") else { continue };
                item.posts.push(Post {
                    kind: PostKind::Comment,
                    id: id.to_string(),
                    author: login(&c, "user"),
                    created_at: text(&c, "created_at").unwrap_or_default(),
                    body: text(&c, "body").unwrap_or_default(),
                    url: text(&c, "html_url").unwrap_or_default(),
                });
            }
            for r in alive(files(&entry.join("reviews"))?, &mut meta.deleted) {
                let Some(id) = num(&r, "id") else { continue };
                item.posts.push(Post {
                    kind: PostKind::Review { state: text(&r, "state").unwrap_or_default() },
                    id: id.to_string(),
                    author: login(&r, "user"),
                    created_at: text(&r, "submitted_at").or_else(|| text(&r, "created_at")).unwrap_or_default(),
                    body: text(&r, "body").unwrap_or_default(),
                    url: text(&r, "html_url").unwrap_or_default(),
                });
            }
            for c in alive(files(&entry.join("review_comments"))?, &mut meta.deleted) {
                let Some(id) = num(&c, "id") else { continue };
                item.posts.push(Post {
                    kind: PostKind::ReviewComment {
                        path: text(&c, "path").unwrap_or_default(),
                        line: num(&c, "line")
                            .or_else(|| num(&c, "original_line"))
                            .or_else(|| num(&c, "new_position"))
                            .or_else(|| num(&c, "position")),
                        side: text(&c, "side"),
                        commit_id: text(&c, "commit_id").or_else(|| text(&c, "original_commit_id")),
                        in_reply_to: num(&c, "in_reply_to_id").map(|n| n.to_string()),
                        diff_hunk: text(&c, "diff_hunk"),
                    },
                    id: id.to_string(),
                    author: login(&c, "user"),
                    created_at: text(&c, "created_at").unwrap_or_default(),
                    body: text(&c, "body").unwrap_or_default(),
                    url: text(&c, "html_url").unwrap_or_default(),
                });
            }
            // Oldest first; a review before the comments it holds (same second: reviews first).
            item.posts.sort_by(|a, b| {
                let rank = |p: &Post| matches!(p.kind, PostKind::Review { .. }) as u8;
                a.created_at.cmp(&b.created_at).then(rank(b).cmp(&rank(a))).then(a.id.cmp(&b.id))
            });
            meta.items.push(item);
        }
    }
    meta.items.sort_by_key(|i| (i.number, i.kind));
    // GitHub lists every pull request among the issues too; the backup keeps it once, as a pull.

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
            assets.push(Asset {
                name,
                label: text(&a, "label").filter(|l| !l.is_empty()),
                content_type: text(&a, "content_type").unwrap_or_else(|| "application/octet-stream".into()),
                size: num(&a, "size").unwrap_or(0),
                file,
            });
        }
        assets.sort_by(|a, b| a.name.cmp(&b.name));
        meta.releases.push(Release {
            key: entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            tag,
            name: text(&v, "name").filter(|n| !n.is_empty()),
            body: text(&v, "body").unwrap_or_default(),
            draft: flag(&v, "draft"),
            prerelease: flag(&v, "prerelease"),
            target: text(&v, "target_commitish"),
            author: login(&v, "author"),
            created_at: text(&v, "created_at").unwrap_or_default(),
            url: text(&v, "html_url").unwrap_or_default(),
            assets,
        });
    }
    // Oldest first, so that the newest release is the newest on the target too.
    meta.releases.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.tag.cmp(&b.tag)));
    Ok(meta)
}

/// The bytes behind an asset's `.bin` (a Git LFS pointer into `git_dir`'s store), when there.
fn asset_bytes(pointer: &Path, git_dir: &Path) -> Result<Option<PathBuf>> {
    let bytes = match std::fs::read(pointer) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path: pointer.to_path_buf(), source }),
    };
    let Some(p) = gitvault_git::parse_pointer(&bytes) else { return Ok(None) };
    let path = gitvault_git::lfs_object_path(git_dir, &p.oid);
    Ok(path.is_file().then_some(path))
}

fn load(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Parse {
            forge: ForgeKind::Github,
            what: format!("the backed-up file {}", path.display()),
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path: path.to_path_buf(), source }),
    }
}

/// The JSON files directly in `dir`, by name.
fn files(dir: &Path) -> Result<Vec<Value>> {
    let mut found = BTreeMap::new();
    for entry in entries(dir)? {
        if entry.extension().is_some_and(|e| e == "json")
            && let Some(v) = load(&entry)?
        {
            found.insert(entry, v);
        }
    }
    Ok(found.into_values().collect())
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(entries(dir)?.into_iter().filter(|p| p.is_dir()).collect())
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path: dir.to_path_buf(), source }),
    };
    let mut paths = Vec::new();
    for entry in read {
        paths.push(entry.map_err(|source| Error::Io { path: dir.to_path_buf(), source })?.path());
    }
    paths.sort();
    Ok(paths)
}

/// Items not marked deleted; the others are counted.
fn alive(items: Vec<Value>, deleted: &mut usize) -> Vec<Value> {
    let (gone, kept): (Vec<_>, Vec<_>) = items.into_iter().partition(|v| v.get("gitvault_deleted_at").is_some());
    *deleted += gone.len();
    kept
}

pub(crate) fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

pub(crate) fn num(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// `v[key].login` (GitHub, Gitea), `username` (GitLab), or `ghost` when the account is gone.
fn login(v: &Value, key: &str) -> String {
    let who = v.get(key);
    who.and_then(|u| text(u, "login").or_else(|| text(u, "username"))).unwrap_or_else(|| "ghost".to_string())
}
