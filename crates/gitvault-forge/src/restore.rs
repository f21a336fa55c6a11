//! Restoring a repository into a forge: create it (or find it), push its git data, wiki and LFS
//! objects, then recreate its metadata in an order that keeps references valid — labels,
//! milestones, issues and pull requests by number with their comments and reviews, their
//! states, releases and their assets.
//!
//! Forges let no client choose an author, a date or a number: every recreated item carries a
//! header naming its original author, number, date and URL, and a hidden marker
//! ([`text::marker`]) by which a rerun recognises it, so that running the same restore again —
//! after an interruption, or a failure on one item — neither duplicates nor skips anything.
//! `#123` links are rewritten where numbers changed, and the mapping of old to new numbers and
//! URLs is part of the [`Report`].

pub mod model;
pub mod text;

mod gitea;
mod github;
mod gitlab;
mod target;
pub(crate) mod upload;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use gitvault_git::{Git, HttpAuth, PushOutcome};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{Api, ForgeKind};
use model::{ItemKind, Metadata, PostKind};
use target::{Existing, Finish, FoundRelease, Made, NewIssue, NewLineComment, NewPull, NewRelease};
pub use target::{RepoInfo, Writer, Writes};
use text::{Links, NewRef};

/// Ref namespaces the forges keep for themselves: never pushed, listed as skipped.
pub const FORGE_OWNED_REFS: [&str; 5] =
    ["refs/pull/", "refs/merge-requests/", "refs/pipelines/", "refs/keep-around/", "refs/environments/"];

/// Where to restore: `github:OWNER[/NAME]`, `gitlab:GROUP[/SUBGROUP...][/NAME]`...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    pub forge: ForgeKind,
    /// The account, organisation or (GitLab) namespace path.
    pub owner: String,
    pub name: Option<String>,
}

impl TargetSpec {
    /// A GitLab target's path is kept whole as the owner until [`resolve_target`] asks the
    /// forge whether it names a namespace or a project in one.
    pub fn parse(s: &str) -> Result<Self> {
        let usage = |why: &str| {
            Error::Usage(format!(
                "--to-forge {s:?}: {why} (expected github:OWNER[/NAME], gitea:OWNER[/NAME] or gitlab:GROUP[/SUBGROUP...][/NAME])"
            ))
        };
        let source = crate::ForgeSource::parse(s).ok_or_else(|| usage("no forge prefix"))??;
        match source.forge {
            ForgeKind::Github | ForgeKind::Gitea => {}
            ForgeKind::Gitlab => return Ok(Self { forge: source.forge, owner: source.path, name: None }),
            other => return Err(usage(&format!("restoring into {other} is not supported yet"))),
        }
        Ok(Self { forge: source.forge, owner: source.owner().to_string(), name: source.repo().map(str::to_string) })
    }
}

/// `spec` with its owner and name told apart where only the forge can tell: a GitLab path
/// that names a group (or a user) is the namespace every repository is restored under; else
/// its last segment is the new project's name, in the namespace its parent path names.
pub fn resolve_target(w: &dyn Writer, spec: TargetSpec) -> Result<TargetSpec> {
    match spec.forge {
        ForgeKind::Gitlab if spec.name.is_none() => gitlab::resolve_target(&w.writes().api, spec),
        _ => Ok(spec),
    }
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}:{}/{n}", self.forge, self.owner),
            None => write!(f, "{}:{}", self.forge, self.owner),
        }
    }
}

/// The writer for `api`'s forge; writes at least `interval` apart.
pub fn writer(api: Api, interval: Duration) -> Result<Box<dyn Writer>> {
    let writes = Writes::new(api, interval);
    match writes.api.forge {
        ForgeKind::Github => Ok(Box::new(github::Github { writes })),
        ForgeKind::Gitea => Ok(Box::new(gitea::Gitea::new(writes))),
        ForgeKind::Gitlab => Ok(Box::new(gitlab::Gitlab { writes })),
        other => Err(Error::Usage(format!("restoring into {other} is not supported yet"))),
    }
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only say what would be done.
    pub dry_run: bool,
    /// Write into a repository that exists and is not empty.
    pub into_existing: bool,
    /// Targets an earlier run of this restore wrote into (from its mapping file): resumed
    /// without `into_existing`, even before any item carries a marker.
    pub known_targets: BTreeSet<String>,
}

/// What is restored: the repository as the vault gave it back.
pub struct Source<'a> {
    /// Its name in the vault (`github:acme/api`).
    pub name: &'a str,
    /// The restored bare repository.
    pub git_dir: &'a Path,
    /// Its restored wiki, when the snapshot has one.
    pub wiki_dir: Option<&'a Path>,
    /// Its metadata, when the snapshot has it.
    pub metadata: Option<&'a Metadata>,
}

/// Told how far a restore got: `kind` is `labels`, `issues`, `comments`..., `done` of `total`.
pub trait Progress {
    fn step(&self, repo: &str, kind: &str, done: u64, total: u64);
}

/// No progress shown.
pub struct Quiet;
impl Progress for Quiet {
    fn step(&self, _: &str, _: &str, _: u64, _: u64) {}
}

/// Created, already there, failed — for one kind of thing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Count {
    pub created: u64,
    pub existing: u64,
    pub failed: u64,
}

/// One thing that could not be written, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    pub item: String,
    pub error: String,
}

/// An item's old and new identity.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MappedItem {
    /// `issue` or `pull` in the backup.
    pub kind: String,
    /// What it became: `issue` or `pull`.
    pub restored_as: String,
    pub old_number: u64,
    pub new_number: u64,
    pub old_url: String,
    pub new_url: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MappedRelease {
    pub tag: String,
    pub old_url: String,
    pub new_url: String,
}

/// Old → new, for one repository.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Mapping {
    pub source: String,
    pub target: String,
    pub old_url: Option<String>,
    pub new_url: Option<String>,
    pub items: Vec<MappedItem>,
    pub releases: Vec<MappedRelease>,
}

/// Refs pushed, and those that were not.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PushReport {
    pub created: u64,
    pub updated: u64,
    pub up_to_date: u64,
    /// Forge-owned refs (`refs/pull/*`...) left out.
    pub skipped: Vec<String>,
    /// Refs the forge refused, with its reason.
    pub rejected: Vec<(String, String)>,
}

/// What a restore of one repository did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub source: String,
    pub target: String,
    pub dry_run: bool,
    /// The repository was created by this run (or would be).
    pub created_repository: bool,
    pub git: PushReport,
    /// `pushed`, `up to date`, `failed: …`, or absent when there is no wiki.
    pub wiki: Option<String>,
    /// `pushed`, `failed: …`, or absent when there are no LFS objects.
    pub lfs: Option<String>,
    /// Per kind: labels, milestones, issues, pulls, pulls_as_issues, comments, reviews,
    /// review_comments, states, releases, assets.
    pub counts: BTreeMap<String, Count>,
    pub failures: Vec<Failure>,
    /// Things that exist in the backup with no equivalent on the target, or could not be
    /// recreated as they were (a review comment whose line is gone became a comment...).
    pub notes: Vec<String>,
    /// Items the forge had deleted before the backup: not recreated.
    pub deleted_in_backup: usize,
    /// Write requests sent (uploads included), reads, and the time writes were held back:
    /// by the forge (rate limits, `Retry-After`) and by the pacing between writes.
    pub writes: u64,
    pub reads: u64,
    pub forge_pauses_seconds: f64,
    pub pacing_seconds: f64,
    pub mapping: Mapping,
}

impl Report {
    fn count(&mut self, kind: &str) -> &mut Count {
        self.counts.entry(kind.to_string()).or_default()
    }

    /// Nothing failed.
    pub fn complete(&self) -> bool {
        self.failures.is_empty() && self.git.rejected.is_empty()
    }
}

/// Restores `src` into `owner/name` through `w`. Fatal problems (no access, the repository
/// cannot be created, a non-empty target without `into_existing`, a push that cannot happen)
/// are errors; a single item the forge refuses is a [`Failure`] and the rest goes on.
/// `checkpoint` is called with the report so far after each item, so that a caller can keep
/// the mapping on disk.
#[allow(clippy::too_many_arguments)]
pub fn restore_repository(
    w: &dyn Writer,
    git: &Git,
    git_auth: Option<&HttpAuth>,
    owner: &str,
    name: &str,
    src: &Source<'_>,
    opts: &Options,
    progress: &dyn Progress,
    checkpoint: &mut dyn FnMut(&Report),
) -> Result<Report> {
    let forge = w.writes().api.forge;
    let requests_before = w.writes().api.requests();
    let writes_before = w.writes().count();
    let mut report = Report {
        source: src.name.to_string(),
        target: format!("{forge}:{owner}/{name}"),
        dry_run: opts.dry_run,
        ..Report::default()
    };
    report.mapping.source = src.name.to_string();
    report.mapping.target = report.target.clone();
    let meta = src.metadata;
    if let Some(m) = meta {
        report.deleted_in_backup = m.deleted;
        report.notes.extend(w.unsupported(m));
        report.mapping.old_url = m.repo.html_url.clone();
        report.notes.extend(m.notes.iter().cloned());
    }
    let settings = meta.map(|m| m.repo.clone()).unwrap_or_else(|| model::RepoSettings {
        has_issues: true,
        has_wiki: true,
        ..Default::default()
    });

    // The repository.
    let found = w.find_repo(owner, name).map_err(|e| explain_denied(&e).unwrap_or(e))?;
    let local_refs = git.read_refs(src.git_dir).map_err(|e| git_error(src.git_dir, e))?;
    let (pushable, skipped): (Vec<_>, Vec<_>) = local_refs
        .refs
        .iter()
        .map(|r| r.name.as_str().to_string())
        .partition(|n| !FORGE_OWNED_REFS.iter().any(|p| n.starts_with(p)));
    report.git.skipped = skipped;

    let (repo, existing) = match found {
        None => {
            report.created_repository = true;
            if opts.dry_run {
                report.git.created = pushable.len() as u64;
                report.count("repository").created += 1;
                dry_plan(&mut report, meta, &Existing::default(), w, &local_branches(&pushable));
                finish_counts(&mut report, w, requests_before, writes_before);
                return Ok(report);
            }
            let repo = w.create_repo(owner, name, &settings).map_err(|e| explain_denied(&e).unwrap_or(e))?;
            report.count("repository").created += 1;
            report.mapping.new_url = Some(repo.html_url.clone());
            // From here on the mapping file names this target: a run stopped before any item
            // carries a marker is still recognised as this restore's.
            checkpoint(&report);
            (repo, Existing::default())
        }
        Some(repo) => {
            let existing = w.existing(&repo)?;
            let remote = match git_auth {
                Some(a) => git.with_http_auth(&repo.clone_url, a),
                None => git.clone(),
            }
            .ls_remote(&repo.clone_url)
            .map_err(|e| Error::Usage(format!("cannot read the git refs of {}: {e}", report.target)))?;
            let ours = !existing.items.is_empty() || opts.known_targets.contains(&report.target);
            let empty = remote.refs.is_empty() && existing.foreign_items == 0 && existing.releases.is_empty();
            if !empty && !ours && !opts.into_existing {
                return Err(Error::Usage(format!(
                    "{} exists and is not empty; give --into-existing to restore into it anyway (items a restore already created are recognised and not duplicated), or restore under another name ({forge}:{owner}/NEWNAME)",
                    report.target
                )));
            }
            (repo, existing)
        }
    };
    report.mapping.new_url = Some(repo.html_url.clone());

    if opts.dry_run {
        let remote = match git_auth {
            Some(a) => git.with_http_auth(&repo.clone_url, a),
            None => git.clone(),
        }
        .ls_remote(&repo.clone_url)
        .map_err(|e| Error::Usage(format!("cannot read the git refs of {}: {e}", report.target)))?;
        for r in &local_refs.refs {
            let n = r.name.as_str();
            if !pushable.iter().any(|p| p == n) {
                continue;
            }
            match remote.refs.iter().find(|x| x.name.as_str() == n) {
                Some(x) if x.oid == r.oid => report.git.up_to_date += 1,
                Some(_) => report.git.updated += 1,
                None => report.git.created += 1,
            }
        }
        dry_plan(&mut report, meta, &existing, w, &local_branches(&pushable));
        finish_counts(&mut report, w, requests_before, writes_before);
        return Ok(report);
    }

    // Git data: every branch, tag and other ref the forge accepts, then the default branch.
    let pusher = match git_auth {
        Some(a) => git.with_http_auth(&repo.clone_url, a),
        None => git.clone(),
    };
    progress.step(src.name, "git", 0, 1);
    let refspecs = refspecs(&pushable);
    if !refspecs.is_empty() {
        let pushed = pusher.push(src.git_dir, &repo.clone_url, &refspecs, false).map_err(|e| {
            Error::Usage(format!("pushing the git data of {} into {} failed: {e}", src.name, report.target))
        })?;
        for p in pushed {
            match p.outcome {
                PushOutcome::Created => report.git.created += 1,
                PushOutcome::Updated => report.git.updated += 1,
                PushOutcome::UpToDate => report.git.up_to_date += 1,
                PushOutcome::Rejected(why) => report.git.rejected.push((p.name, why)),
            }
        }
    }
    progress.step(src.name, "git", 1, 1);
    let branches: BTreeSet<&str> = pushable
        .iter()
        .filter_map(|n| n.strip_prefix("refs/heads/"))
        .filter(|b| !report.git.rejected.iter().any(|(r, _)| r.strip_prefix("refs/heads/") == Some(*b)))
        .collect();
    let head = match &local_refs.head {
        Some(gitvault_git::Head::Symbolic(target)) => target.strip_prefix("refs/heads/").map(str::to_string),
        _ => None,
    }
    .or_else(|| settings.default_branch.clone())
    .filter(|b| branches.contains(b.as_str()));
    match w.finish_repo(&repo, &settings, head.as_deref()) {
        Ok(n) => report.count("settings").created += n,
        Err(e) => {
            abort_if_denied(&e)?;
            fail(&mut report, "the repository's default branch and topics", &e);
        }
    }

    if has_lfs_objects(src.git_dir) {
        report.lfs = Some(match pusher.lfs_push(src.git_dir, &repo.clone_url) {
            Ok(()) => "pushed".into(),
            Err(e) => {
                report.failures.push(Failure { item: "Git LFS objects".into(), error: e.to_string() });
                format!("failed: {e}")
            }
        });
    }
    if let Some(wiki_dir) = src.wiki_dir {
        report.wiki = Some(match &repo.wiki_url {
            None => {
                report.notes.push(format!("{forge} has no wiki for this repository; the wiki was not pushed"));
                "not pushed: no wiki on the target".into()
            }
            Some(url) => {
                let wiki_git = match git_auth {
                    Some(a) => git.with_http_auth(url, a),
                    None => git.clone(),
                };
                match wiki_git.push(wiki_dir, url, &["refs/heads/*:refs/heads/*".to_string()], false) {
                    Ok(refs) if refs.iter().all(|r| !matches!(r.outcome, PushOutcome::Rejected(_))) => {
                        if refs.iter().all(|r| r.outcome == PushOutcome::UpToDate) { "up to date" } else { "pushed" }
                            .into()
                    }
                    Ok(refs) => {
                        let why: Vec<String> = refs
                            .into_iter()
                            .filter_map(|r| match r.outcome {
                                PushOutcome::Rejected(w) => Some(format!("{} ({w})", r.name)),
                                _ => None,
                            })
                            .collect();
                        report.failures.push(Failure { item: "the wiki".into(), error: why.join(", ") });
                        format!("failed: {}", why.join(", "))
                    }
                    Err(e) => {
                        // GitHub has no wiki repository until its first page is written on the web.
                        report.failures.push(Failure { item: "the wiki".into(), error: e.to_string() });
                        format!("failed: {e}")
                    }
                }
            }
        });
    }

    if let Some(meta) = meta {
        restore_metadata(w, &repo, src, meta, &branches, existing, &mut report, progress, checkpoint)?;
        if meta.repo.archived {
            if report.complete() {
                if let Err(e) = w.archive(&repo) {
                    fail(&mut report, "archiving the repository", &e);
                }
            } else {
                report.notes.push(
                    "the repository was archived; it is left unarchived until a rerun completes the restore".into(),
                );
            }
        }
    }
    finish_counts(&mut report, w, requests_before, writes_before);
    checkpoint(&report);
    Ok(report)
}

fn local_branches(refs: &[String]) -> BTreeSet<&str> {
    refs.iter().filter_map(|n| n.strip_prefix("refs/heads/")).collect()
}

fn finish_counts(report: &mut Report, w: &dyn Writer, requests_before: u64, writes_before: u64) {
    let writes = w.writes().count() - writes_before;
    report.writes = writes;
    report.reads = (w.writes().api.requests() - requests_before).saturating_sub(writes);
    report.forge_pauses_seconds = w.writes().api.rate_limit_pauses().as_secs_f64();
    report.pacing_seconds = w.writes().paced().as_secs_f64();
}

/// `refs/heads/*:refs/heads/*`-style refspecs covering `names`, one per namespace.
fn refspecs(names: &[String]) -> Vec<String> {
    let mut spaces = BTreeSet::new();
    let mut single = Vec::new();
    for n in names {
        match n.rsplit_once('/') {
            Some((space, _)) if space.starts_with("refs/") && space.matches('/').count() >= 1 => {
                spaces.insert(space.split('/').take(2).collect::<Vec<_>>().join("/"));
            }
            _ => single.push(format!("{n}:{n}")),
        }
    }
    let mut specs: Vec<String> = spaces.into_iter().map(|s| format!("{s}/*:{s}/*")).collect();
    specs.extend(single);
    specs
}

fn has_lfs_objects(git_dir: &Path) -> bool {
    let dir = git_dir.join("lfs/objects");
    std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(false)
}

fn git_error(path: &Path, e: gitvault_git::Error) -> Error {
    Error::Usage(format!("reading the restored repository {}: {e}", path.display()))
}

fn fail(report: &mut Report, item: &str, e: &Error) {
    tracing::warn!(item, error = %e, "could not restore");
    report.failures.push(Failure { item: item.to_string(), error: e.to_string() });
}

/// Errors after which no other write can succeed: stop rather than fail every item.
fn abort_if_denied(e: &Error) -> Result<()> {
    match e {
        Error::Unauthorized { .. } | Error::RateLimitTooLong { .. } | Error::Unreachable { .. } => {
            Err(Error::Usage(e.to_string()))
        }
        _ => explain_denied(e).map_or(Ok(()), Err),
    }
}

/// A 403 said in terms of what to do.
fn explain_denied(e: &Error) -> Option<Error> {
    match e {
        Error::Http { status: 403, forge, .. } => Some(Error::Usage(format!(
            "{e}: the token has no write access to the target; {forge} needs {}",
            match forge {
                ForgeKind::Github =>
                    "a classic token with the `repo` scope (and `workflow` for workflow files), or a fine-grained one with Administration, Contents, Issues and Pull requests: read and write",
                ForgeKind::Gitea =>
                    "a token with the write:repository and write:issue scopes (write:organization to create in an organisation)",
                ForgeKind::Gitlab =>
                    "a token with the `api` scope, and Developer access to the group (Maintainer to set the default branch or archive)",
                _ => "a token that may create repositories and write to them",
            }
        ))),
        _ => None,
    }
}

/// The dry-run plan: what would be created, by kind, against what `existing` already holds.
fn dry_plan(
    report: &mut Report,
    meta: Option<&Metadata>,
    existing: &Existing,
    w: &dyn Writer,
    branches: &BTreeSet<&str>,
) {
    let Some(meta) = meta else { return };
    for l in &meta.labels {
        let c = report.count("labels");
        if existing.labels.contains(&l.name.to_lowercase()) { c.existing += 1 } else { c.created += 1 }
    }
    for m in &meta.milestones {
        let c = report.count("milestones");
        if existing.milestones.contains_key(&m.title) { c.existing += 1 } else { c.created += 1 }
    }
    let predicted = predict(meta, existing, &report.source, w, branches);
    for item in &meta.items {
        let key = item_key(&report.source, meta, item);
        let kind = if item.kind == ItemKind::Pull { "pulls" } else { "issues" };
        if existing.items.contains_key(&key) {
            report.count(kind).existing += 1;
            continue;
        }
        let as_pull = as_pull(item, branches);
        report.count(if item.kind == ItemKind::Pull && !as_pull { "pulls_as_issues" } else { kind }).created += 1;
        for p in &item.posts {
            let k = post_kind(&p.kind);
            report.count(k).created += 1;
        }
        if let Some(new) = predicted.lookup(is_merge_request(meta, item), item.number) {
            report.mapping.items.push(MappedItem {
                kind: kind_name(item.kind).into(),
                restored_as: if as_pull { "pull" } else { "issue" }.into(),
                old_number: item.number,
                new_number: new.number,
                old_url: item.url.clone(),
                new_url: new.url.clone(),
            });
        }
    }
    for r in &meta.releases {
        let c = report.count("releases");
        if existing.releases.contains_key(&r.tag) {
            c.existing += 1;
        } else {
            c.created += 1;
            report.count("assets").created += r.assets.len() as u64;
        }
    }
}

/// Whether `item` is recreated as a pull request: it was one, from a branch of this repository,
/// and both its branches are there after the push.
fn as_pull(item: &model::Item, branches: &BTreeSet<&str>) -> bool {
    item.kind == ItemKind::Pull
        && item
            .pull
            .as_ref()
            .is_some_and(|p| p.same_repo && branches.contains(p.head.as_str()) && branches.contains(p.base.as_str()))
}

fn post_kind(k: &PostKind) -> &'static str {
    match k {
        PostKind::Comment => "comments",
        PostKind::Review { .. } => "reviews",
        PostKind::ReviewComment { .. } => "review_comments",
    }
}

fn kind_name(k: ItemKind) -> &'static str {
    match k {
        ItemKind::Issue => "issue",
        ItemKind::Pull => "pull",
    }
}

/// The marker key of `item` of `source`: `github:acme/api#12`; a GitLab source's merge
/// requests, numbered apart from its issues, `gitlab:acme/api!12`.
fn item_key(source: &str, meta: &Metadata, item: &model::Item) -> String {
    format!("{source}{}", old_ref(meta, item))
}

/// How the source referred to `item`: `#12`, or `!12` for a GitLab merge request.
fn old_ref(meta: &Metadata, item: &model::Item) -> String {
    format!("{}{}", if is_merge_request(meta, item) { '!' } else { '#' }, item.number)
}

/// `item` is numbered apart from the source's issues (a GitLab merge request).
fn is_merge_request(meta: &Metadata, item: &model::Item) -> bool {
    meta.separate_numbers && item.kind == ItemKind::Pull
}

/// The numbers items will get: those already restored keep theirs; the others are numbered
/// in order after the highest number in use (forges number sequentially). A pull request
/// whose branches are not both in `branches` is counted as the issue it becomes (it matters
/// where issues and pull requests are numbered apart).
fn predict(meta: &Metadata, existing: &Existing, source: &str, w: &dyn Writer, branches: &BTreeSet<&str>) -> Links {
    let (issue_sigil, pull_sigil) = w.sigils();
    let mut next_issue = existing.last_issue;
    let mut next_pull = existing.last_pull;
    let mut out = Links::default();
    for item in &meta.items {
        let table = out.table(is_merge_request(meta, item));
        if let Some(found) = existing.items.get(&item_key(source, meta, item)) {
            let sigil = if found.pull { pull_sigil } else { issue_sigil };
            table.insert(item.number, NewRef { sigil, number: found.number, url: found.url.clone() });
            continue;
        }
        let pull = as_pull(item, branches);
        let number = if w.shared_numbers() || !pull {
            next_issue += 1;
            if w.shared_numbers() {
                next_pull = next_issue;
            }
            next_issue
        } else {
            next_pull += 1;
            next_pull
        };
        // The URL a repository answers for an issue number also works for a pull request
        // on GitHub and Gitea (they redirect); the real one is recorded once created.
        table.insert(
            item.number,
            NewRef { sigil: if pull { pull_sigil } else { issue_sigil }, number, url: String::new() },
        );
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn restore_metadata(
    w: &dyn Writer,
    repo: &RepoInfo,
    src: &Source<'_>,
    meta: &Metadata,
    branches: &BTreeSet<&str>,
    existing: Existing,
    report: &mut Report,
    progress: &dyn Progress,
    checkpoint: &mut dyn FnMut(&Report),
) -> Result<()> {
    let source = src.name;
    // Labels.
    let total = meta.labels.len() as u64;
    for (i, label) in meta.labels.iter().enumerate() {
        progress.step(source, "labels", i as u64, total);
        if existing.labels.contains(&label.name.to_lowercase()) {
            report.count("labels").existing += 1;
            continue;
        }
        match w.create_label(repo, label) {
            Ok(()) => report.count("labels").created += 1,
            Err(e) => {
                abort_if_denied(&e)?;
                report.count("labels").failed += 1;
                fail(report, &format!("label {:?}", label.name), &e);
            }
        }
    }
    // Milestones: old key → target reference.
    let mut milestones: BTreeMap<&str, String> = BTreeMap::new();
    for m in &meta.milestones {
        if let Some(r) = existing.milestones.get(&m.title) {
            report.count("milestones").existing += 1;
            milestones.insert(&m.key, r.clone());
            continue;
        }
        match w.create_milestone(repo, m) {
            Ok(r) => {
                report.count("milestones").created += 1;
                milestones.insert(&m.key, r);
            }
            Err(e) => {
                abort_if_denied(&e)?;
                report.count("milestones").failed += 1;
                fail(report, &format!("milestone {:?}", m.title), &e);
            }
        }
    }

    // Issues and pull requests, in their original order.
    let mut links = Links { old_base: meta.repo.html_url.clone(), ..predict(meta, &existing, source, w, branches) };
    let bang = meta.separate_numbers;
    let old_repo = meta.repo.html_url.as_deref().unwrap_or(source);
    let total = meta.items.len() as u64;
    for (i, item) in meta.items.iter().enumerate() {
        progress.step(source, "issues and pull requests", i as u64, total);
        let key = item_key(source, meta, item);
        let merge_request = is_merge_request(meta, item);
        let kind = if item.kind == ItemKind::Pull { "pulls" } else { "issues" };
        let labels: Vec<String> = item.labels.clone();
        let milestone = item.milestone.as_deref().and_then(|k| milestones.get(k)).map(String::as_str);
        let found = existing.items.get(&key);
        let made = match found {
            Some(f) => {
                report.count(kind).existing += 1;
                Made { number: f.number, url: f.url.clone(), pull: f.pull }
            }
            None => {
                let as_pull = as_pull(item, branches);
                let header = item_header(meta, item, old_repo, as_pull);
                let body = text::with_header(&header, &key, &links.rewrite(&item.body, bang));
                let created = if as_pull {
                    let p = item.pull.as_ref().expect("a pull");
                    let np = NewPull {
                        title: &item.title,
                        body: &body,
                        head: &p.head,
                        base: &p.base,
                        draft: p.draft,
                        labels: &labels,
                        milestone,
                    };
                    match w.create_pull(repo, &np) {
                        Ok(m) => Ok(m),
                        Err(e @ Error::Http { status: 422 | 409, .. }) => {
                            // The branches are there but the forge will not open it (GitHub: no
                            // commits between them, once merged; Gitea: 409, one is open for
                            // them already): an issue carries it instead.
                            report.notes.push(format!(
                                "#{} could not be recreated as a pull request ({e}); it is an issue",
                                item.number
                            ));
                            let header = item_header(meta, item, old_repo, false);
                            let body = text::with_header(&header, &key, &links.rewrite(&item.body, bang));
                            w.create_issue(
                                repo,
                                &NewIssue { title: &item.title, body: &body, labels: &labels, milestone },
                            )
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    w.create_issue(repo, &NewIssue { title: &item.title, body: &body, labels: &labels, milestone })
                };
                match created {
                    Ok(m) => {
                        let counted = if item.kind == ItemKind::Pull && !m.pull { "pulls_as_issues" } else { kind };
                        report.count(counted).created += 1;
                        m
                    }
                    Err(e) => {
                        abort_if_denied(&e)?;
                        report.count(kind).failed += 1;
                        fail(report, &format!("#{} {:?}", item.number, item.title), &e);
                        checkpoint(report);
                        continue;
                    }
                }
            }
        };
        // The real number and URL, for the mapping and for the links of later items.
        let (issue_sigil, pull_sigil) = w.sigils();
        if let Some(expected) = links.lookup(merge_request, item.number).filter(|p| p.number != made.number)
            && found.is_none()
        {
            report.notes.push(format!(
                "{} became {}{} rather than the expected {}{}: links to it written before may point elsewhere",
                old_ref(meta, item),
                if made.pull { pull_sigil } else { issue_sigil },
                made.number,
                expected.sigil,
                expected.number
            ));
        }
        links.table(merge_request).insert(
            item.number,
            NewRef {
                sigil: if made.pull { pull_sigil } else { issue_sigil },
                number: made.number,
                url: made.url.clone(),
            },
        );
        report.mapping.items.push(MappedItem {
            kind: kind_name(item.kind).into(),
            restored_as: if made.pull { "pull" } else { "issue" }.into(),
            old_number: item.number,
            new_number: made.number,
            old_url: item.url.clone(),
            new_url: made.url.clone(),
        });

        // Its conversation.
        let done_posts = match found {
            Some(f) => match w.existing_posts(repo, f) {
                Ok(p) => p,
                Err(e) => {
                    abort_if_denied(&e)?;
                    fail(report, &format!("reading the comments of #{}", made.number), &e);
                    continue;
                }
            },
            None => BTreeMap::new(),
        };
        let mut thread_ids: BTreeMap<String, String> =
            done_posts.iter().filter_map(|(k, id)| Some((k.rsplit('/').next()?.to_string(), id.clone()?))).collect();
        for post in &item.posts {
            let post_key = format!("{key}/{}", post.key());
            let counted = post_kind(&post.kind);
            if done_posts.contains_key(&post_key) {
                report.count(counted).existing += 1;
                continue;
            }
            let body = links.rewrite(&post.body, bang);
            let result = match &post.kind {
                PostKind::Comment => {
                    let header =
                        format!("**{}** commented on {} — [original]({})", post.author, post.created_at, post.url);
                    w.comment(repo, &made, &text::with_header(&header, &post_key, &body))
                }
                PostKind::Review { state } => {
                    // GitHub says `COMMENTED`, Gitea `COMMENT`.
                    if matches!(state.as_str(), "COMMENTED" | "COMMENT") && post.body.trim().is_empty() {
                        // The container of line comments, which are restored one by one.
                        continue;
                    }
                    let header = format!(
                        "**{}** reviewed ({}) on {} — [original]({})",
                        post.author,
                        review_state(state),
                        post.created_at,
                        post.url
                    );
                    let body = text::with_header(&header, &post_key, &body);
                    if made.pull { w.review(repo, &made, &body) } else { w.comment(repo, &made, &body) }
                }
                PostKind::ReviewComment { path, line, side, commit_id, in_reply_to, diff_hunk } => {
                    let header = format!(
                        "**{}** commented on `{path}`{} on {} — [original]({})",
                        post.author,
                        line.map(|l| format!(" line {l}")).unwrap_or_default(),
                        post.created_at,
                        post.url
                    );
                    let full = text::with_header(&header, &post_key, &body);
                    let parent = in_reply_to.as_ref().and_then(|p| thread_ids.get(&format!("rc{p}")));
                    let on_line = match (made.pull, line, commit_id) {
                        (true, Some(line), Some(commit)) => {
                            let c = NewLineComment {
                                body: &full,
                                path,
                                line: *line,
                                side: side.as_deref(),
                                commit_id: commit,
                                in_reply_to: parent.map(String::as_str),
                            };
                            match w.line_comment(repo, &made, &c) {
                                Ok(id) => {
                                    thread_ids.insert(post.key(), id);
                                    Some(Ok(()))
                                }
                                // GitHub says 422 for a line not in the diff, GitLab 400.
                                Err(e @ Error::Http { status: 400 | 422, .. }) => {
                                    report.notes.push(format!(
                                        "a review comment on #{} ({path}) could not be placed on its line ({e}); it is a comment",
                                        made.number
                                    ));
                                    None
                                }
                                Err(e) => Some(Err(e)),
                            }
                        }
                        _ => None,
                    };
                    match on_line {
                        Some(r) => r,
                        None => {
                            let hunk =
                                diff_hunk.as_deref().map(|h| format!("\n\n```diff\n{h}\n```")).unwrap_or_default();
                            let body = text::with_header(&header, &post_key, &format!("{body}{hunk}"));
                            w.comment(repo, &made, &body)
                        }
                    }
                }
            };
            match result {
                Ok(()) => report.count(counted).created += 1,
                Err(e) => {
                    abort_if_denied(&e)?;
                    report.count(counted).failed += 1;
                    fail(report, &format!("a {} on #{}", counted.trim_end_matches('s'), made.number), &e);
                }
            }
        }

        // Its end state.
        let finish = Finish { open: item.open, state_reason: item.state_reason.as_deref(), labels: &labels, milestone };
        if w.needs_finish(&made, found, &finish) {
            match w.finish(repo, &made, found, &finish) {
                Ok(()) => report.count("states").created += 1,
                Err(e) => {
                    abort_if_denied(&e)?;
                    report.count("states").failed += 1;
                    fail(report, &format!("the state of #{}", made.number), &e);
                }
            }
        }
        checkpoint(report);
    }

    // Releases, oldest first, and their assets.
    let total = meta.releases.len() as u64;
    for (i, r) in meta.releases.iter().enumerate() {
        progress.step(source, "releases", i as u64, total);
        let release: FoundRelease = match existing.releases.get(&r.tag) {
            Some(found) => {
                report.count("releases").existing += 1;
                found.clone()
            }
            None => {
                let header =
                    format!("Release {} by **{}**, created {} — [original]({})", r.tag, r.author, r.created_at, r.url);
                let body = text::with_header(&header, &format!("{source}@{}", r.tag), &links.rewrite(&r.body, bang));
                let nr = NewRelease {
                    tag: &r.tag,
                    name: r.name.as_deref(),
                    body: &body,
                    draft: r.draft,
                    prerelease: r.prerelease,
                    target: r.target.as_deref().filter(|t| branches.contains(t)),
                };
                match w.create_release(repo, &nr) {
                    Ok(created) => {
                        report.count("releases").created += 1;
                        created
                    }
                    Err(e) => {
                        abort_if_denied(&e)?;
                        report.count("releases").failed += 1;
                        fail(report, &format!("release {}", r.tag), &e);
                        continue;
                    }
                }
            }
        };
        report.mapping.releases.push(MappedRelease {
            tag: r.tag.clone(),
            old_url: r.url.clone(),
            new_url: release.url.clone(),
        });
        for a in &r.assets {
            if release.assets.contains(&a.name) {
                report.count("assets").existing += 1;
                continue;
            }
            let Some(file) = &a.file else {
                report.notes.push(format!("release {}: the bytes of {} were not in the backup", r.tag, a.name));
                continue;
            };
            let uploaded = w.upload_asset(repo, &release, &a.name, a.label.as_deref(), &a.content_type, file);
            match uploaded {
                Ok(()) => report.count("assets").created += 1,
                Err(e) => {
                    abort_if_denied(&e)?;
                    report.count("assets").failed += 1;
                    fail(report, &format!("release {} asset {}", r.tag, a.name), &e);
                }
            }
        }
        checkpoint(report);
    }
    Ok(())
}

fn review_state(state: &str) -> &str {
    match state {
        "APPROVED" => "approved",
        "CHANGES_REQUESTED" | "REQUEST_CHANGES" => "changes requested",
        "DISMISSED" => "dismissed",
        _ => "commented",
    }
}

/// The header of a recreated issue or pull request.
fn item_header(meta: &Metadata, item: &model::Item, old_repo: &str, as_pull: bool) -> String {
    let what = match item.kind {
        ItemKind::Issue => "issue",
        ItemKind::Pull if meta.separate_numbers => "merge request",
        ItemKind::Pull => "pull request",
    };
    let mut h = format!(
        "Originally {what} [{}]({}) by **{}**, opened {} in {old_repo}",
        old_ref(meta, item),
        item.url,
        item.author,
        item.created_at
    );
    if !item.open
        && let Some(at) = &item.closed_at
    {
        h.push_str(&format!(", closed {at}"));
    }
    if let Some(p) = &item.pull {
        if let Some(at) = &p.merged_at {
            h.push_str(&format!(", merged {at}"));
            if let Some(by) = &p.merged_by {
                h.push_str(&format!(" by **{by}**"));
            }
        }
        if !as_pull {
            h.push_str(&format!(
                ".\nIt was a {what} from `{}` into `{}`; those branches are not both in the restored repository, so it is recreated as an issue that carries its whole discussion",
                p.head, p.base
            ));
        }
    }
    h.push('.');
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = TargetSpec::parse("github:acme/api2").expect("valid");
        assert_eq!((t.forge, t.owner.as_str(), t.name.as_deref()), (ForgeKind::Github, "acme", Some("api2")));
        assert_eq!(TargetSpec::parse("github:acme").expect("valid").name, None);
        let t = TargetSpec::parse("gitea:neworg").expect("valid");
        assert_eq!((t.forge, t.owner.as_str(), t.name), (ForgeKind::Gitea, "neworg", None));
        assert!(TargetSpec::parse("acme/api").is_err());
        assert!(TargetSpec::parse("bitbucket:team").is_err());
        let t = TargetSpec::parse("gitlab:acme/sub/api").expect("valid");
        assert_eq!((t.forge, t.owner.as_str(), t.name), (ForgeKind::Gitlab, "acme/sub/api", None));
    }

    #[test]
    fn refspecs_cover_each_namespace_once() {
        let names: Vec<String> =
            ["refs/heads/main", "refs/heads/a/b", "refs/tags/v1", "refs/notes/commits"].map(String::from).to_vec();
        assert_eq!(
            refspecs(&names),
            ["refs/heads/*:refs/heads/*", "refs/notes/*:refs/notes/*", "refs/tags/*:refs/tags/*"]
        );
    }
}
