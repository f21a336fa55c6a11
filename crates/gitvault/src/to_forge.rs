//! `gitvault restore SNAPSHOT --to-forge FORGE:OWNER[/NAME]`: each repository of the snapshot
//! (or the one `--repo` names) is restored from the vault into a scratch directory — its git
//! data, wiki and metadata repository — and handed to `gitvault_forge::restore`, which writes
//! it into the forge. The mapping goes to `--map FILE` as it grows and, at the end, into the
//! vault's ledger (an `audit` entry `restore_to_forge`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use gitvault_engine::ops::restore::{RestoreOptions, name_matches, restore};
use gitvault_engine::progress::NoProgress;
use gitvault_engine::{Vault, resolve_snapshot};
use gitvault_forge::restore::{self as fr, TargetSpec};
use gitvault_forge::{Api, ForgeKind, Patience};
use gitvault_git::{Git, HttpAuth};
use serde::Serialize;

use crate::cli::RestoreArgs;
use crate::{Settings, UsageError, exit, forges};

const METADATA: &str = "#metadata";
const WIKI: &str = ".wiki";

/// The whole run, as `--json` prints it and `--map` stores it.
#[derive(Serialize)]
pub struct Run {
    pub snapshot: String,
    pub target: String,
    pub dry_run: bool,
    pub repositories: Vec<fr::Report>,
    /// Repositories that could not be restored at all, and why.
    pub errors: Vec<fr::Failure>,
}

/// The `--map` file: the mapping of every repository so far.
#[derive(Serialize)]
struct MapFile<'a> {
    snapshot: &'a str,
    target: &'a str,
    repositories: Vec<&'a fr::Mapping>,
}

pub fn run(s: &Settings, a: &RestoreArgs) -> Result<u8> {
    let spec = a.to_forge.as_deref().unwrap_or_default();
    let target = TargetSpec::parse(spec).map_err(|e| UsageError(e.to_string()))?;
    let interval = match &a.write_interval {
        Some(d) => parse_duration(d).map_err(|e| UsageError(format!("--write-interval {d:?}: {e}")))?,
        None => Duration::ZERO,
    };
    let api_url = match (&a.api_url, target.forge.default_api_url()) {
        (Some(url), _) => url.clone(),
        (None, Some(url)) => url.to_string(),
        (None, None) => {
            return Err(UsageError(format!(
                "{} has no public default instance; give its API base with --api-url",
                target.forge
            ))
            .into());
        }
    };
    // api.github.com asks for a second between content-creating requests.
    let interval = if a.write_interval.is_none() && api_url.contains("//api.github.com") {
        Duration::from_secs(1)
    } else {
        interval
    };
    let credentials = forges::credentials(target.forge, &forges::AccountOptions::default())
        .with_context(|| format!("the token for {target}"))?;
    if credentials.is_none() {
        let var = match target.forge {
            ForgeKind::Gitea => "GITEA_TOKEN",
            ForgeKind::Gitlab => "GITLAB_TOKEN",
            _ => "GITHUB_TOKEN",
        };
        return Err(UsageError(format!("restoring into {target} needs a token with write access: set {var}")).into());
    }
    let git_auth = credentials.git_header(target.forge).map(|h| HttpAuth::new(h.expose()));
    let api = Api::new(target.forge, &api_url, credentials, Patience::default(), Arc::new(forges::TellWaiting))?;
    let writer = fr::writer(api, interval)?;
    let target = fr::resolve_target(writer.as_ref(), target).with_context(|| format!("the target {spec}"))?;

    let vault = s.unlock()?;
    let snaps = vault.snapshots()?;
    let snap = resolve_snapshot(&snaps, &a.snapshot)?;
    let names = select(snap, a.repo.as_deref())?;
    if target.name.is_some() && names.len() > 1 {
        return Err(UsageError(format!(
            "{target} names one repository, but snapshot {} holds {} ({}); pick one with --repo or give only the owner",
            snap.id.short(),
            names.len(),
            names.join(", ")
        ))
        .into());
    }

    let mut result = Run {
        snapshot: snap.id.to_string(),
        target: target.to_string(),
        dry_run: a.dry_run,
        repositories: Vec::new(),
        errors: Vec::new(),
    };
    let progress = Steps::new(s.quiet || s.json);
    let known_targets = a.map.as_deref().map(previous_targets).unwrap_or_default();
    let git = Git::new();
    for name in &names {
        let new_name = target.name.clone().unwrap_or_else(|| short_name(name).to_string());
        let scratch = s.ctx.cache_dir.join("tmp").join(format!("to-forge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let done = (|| -> Result<fr::Report> {
            let local = restore_locally(&vault, snap, name, &scratch)?;
            let meta = match (&local.meta, source_forge(name)) {
                (Some(tree), Some(forge)) => Some(
                    fr::model::read(forge, tree, &tree.join(".git"))
                        .with_context(|| format!("reading the backed-up metadata of {name}"))?,
                ),
                _ => None,
            };
            let src =
                fr::Source { name, git_dir: &local.code, wiki_dir: local.wiki.as_deref(), metadata: meta.as_ref() };
            let opts = fr::Options {
                dry_run: a.dry_run,
                into_existing: a.into_existing,
                known_targets: known_targets.clone(),
            };
            let done_so_far: Vec<fr::Mapping> = result.repositories.iter().map(|r| r.mapping.clone()).collect();
            let mut checkpoint = |r: &fr::Report| {
                if let Some(map) = &a.map
                    && !a.dry_run
                {
                    let mut all: Vec<&fr::Mapping> = done_so_far.iter().collect();
                    all.push(&r.mapping);
                    if let Err(e) = write_map(map, &result.snapshot, &result.target, all) {
                        tracing::warn!("cannot write the mapping to {}: {e:#}", map.display());
                    }
                }
            };
            Ok(fr::restore_repository(
                writer.as_ref(),
                &git,
                git_auth.as_ref(),
                &target.owner,
                &new_name,
                &src,
                &opts,
                &progress,
                &mut checkpoint,
            )?)
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        match done {
            Ok(report) => result.repositories.push(report),
            Err(e) => {
                if names.len() > 1 {
                    tracing::error!("{name}: {e:#}");
                }
                result.errors.push(fr::Failure { item: name.clone(), error: format!("{e:#}") });
            }
        }
    }
    progress.done();
    if let Some(map) = &a.map
        && !a.dry_run
    {
        let all = result.repositories.iter().map(|r| &r.mapping).collect();
        write_map(map, &result.snapshot, &result.target, all)?;
    }
    let complete = result.errors.is_empty() && result.repositories.iter().all(fr::Report::complete);
    if !a.dry_run && !result.repositories.is_empty() {
        let outcome = if complete { "ok" } else { "partial" };
        let detail = ledger_detail(&result);
        let what = format!("snapshot {} into {}", snap.id.short(), result.target);
        if vault.append_audit("restore_to_forge", &what, outcome, Some(detail))?.is_some() {
            s.note_ledger(&vault);
        }
    }
    if result.repositories.is_empty() && !result.errors.is_empty() {
        let all: Vec<String> = result.errors.iter().map(|e| format!("{}: {}", e.item, e.error)).collect();
        bail!("{}", all.join("\n"));
    }
    print(&result, s.json)?;
    Ok(if complete { 0 } else { exit::PARTIAL })
}

/// The repositories of `snap` to restore: code repositories, not their wikis or metadata.
fn select(snap: &gitvault_format::snapshot::Snapshot, query: Option<&str>) -> Result<Vec<String>> {
    let code: Vec<String> = snap
        .repositories
        .iter()
        .map(|r| r.name.clone())
        .filter(|n| !n.ends_with(METADATA) && !n.ends_with(WIKI))
        .collect();
    let Some(q) = query else {
        if code.is_empty() {
            bail!("snapshot {} holds no repository to restore", snap.id.short());
        }
        return Ok(code);
    };
    if let Some(exact) = code.iter().find(|n| *n == q) {
        return Ok(vec![exact.clone()]);
    }
    let found: Vec<String> = code.into_iter().filter(|n| name_matches(n, q)).collect();
    match found.len() {
        0 => Err(UsageError(format!("snapshot {} holds no repository named {q:?}", snap.id.short())).into()),
        1 => Ok(found),
        _ => {
            Err(UsageError(format!("{q:?} names several repositories: {}; give the full name", found.join(", ")))
                .into())
        }
    }
}

/// `github:acme/api` → `api`; a path source's name as it is.
fn short_name(name: &str) -> &str {
    let rest = name.split_once(':').map_or(name, |(_, r)| r);
    rest.rsplit('/').next().unwrap_or(rest).trim_end_matches(".git")
}

/// The forge a repository was backed up from, by its name's prefix.
fn source_forge(name: &str) -> Option<ForgeKind> {
    let (prefix, _) = name.split_once(':')?;
    ForgeKind::ALL.into_iter().find(|f| f.prefix() == prefix)
}

struct Local {
    code: PathBuf,
    wiki: Option<PathBuf>,
    /// The metadata repository's work tree (its git directory is `.git` in it).
    meta: Option<PathBuf>,
}

/// Restores `name`, its wiki and its metadata repository from `snap` under `scratch`.
fn restore_locally(
    vault: &Vault,
    snap: &gitvault_format::snapshot::Snapshot,
    name: &str,
    scratch: &Path,
) -> Result<Local> {
    let has = |n: &str| snap.repositories.iter().any(|r| r.name == n);
    let opts = RestoreOptions::default();
    let code = scratch.join("code.git");
    restore(vault, snap, Some(name), &code, &opts, &NoProgress)
        .with_context(|| format!("restoring {name} from the vault"))?;
    let wiki_name = format!("{name}{WIKI}");
    let wiki = if has(&wiki_name) {
        let dir = scratch.join("wiki.git");
        restore(vault, snap, Some(&wiki_name), &dir, &opts, &NoProgress)
            .with_context(|| format!("restoring {wiki_name} from the vault"))?;
        Some(dir)
    } else {
        None
    };
    let meta_name = format!("{name}{METADATA}");
    let meta = if has(&meta_name) {
        let tree = scratch.join("meta");
        restore(vault, snap, Some(&meta_name), &tree.join(".git"), &opts, &NoProgress)
            .with_context(|| format!("restoring {meta_name} from the vault"))?;
        Git::new().adopt_work_tree(&tree)?;
        Some(tree)
    } else {
        None
    };
    Ok(Local { code, wiki, meta })
}

/// The targets an earlier run recorded in the mapping file `path` (none when there is no file
/// or it cannot be read).
fn previous_targets(path: &Path) -> std::collections::BTreeSet<String> {
    let Ok(text) = std::fs::read_to_string(path) else { return Default::default() };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else { return Default::default() };
    doc["repositories"]
        .as_array()
        .map(|r| r.iter().filter_map(|m| m["target"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn write_map(path: &Path, snapshot: &str, target: &str, repositories: Vec<&fr::Mapping>) -> Result<()> {
    let doc = MapFile { snapshot, target, repositories };
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The mapping in the ledger: per repository, `source -> target` and `old:new` numbers.
fn ledger_detail(run: &Run) -> String {
    let repos: Vec<serde_json::Value> = run
        .repositories
        .iter()
        .map(|r| {
            let items: Vec<String> = r
                .mapping
                .items
                .iter()
                .map(|i| format!("{}:{}{}", i.old_number, i.new_number, if i.restored_as != i.kind { "i" } else { "" }))
                .collect();
            serde_json::json!({"source": r.source, "target": r.target, "url": r.mapping.new_url, "items": items.join(" ")})
        })
        .collect();
    serde_json::json!({"repositories": repos}).to_string()
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = digits.parse().map_err(|_| "expected a number with ms, s or m".to_string())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        _ => return Err("expected a number with ms, s or m".into()),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// Progress: a bar per repository on a terminal (the kind of item being written, done of
/// total), else a log line when a kind starts and every hundred items.
enum Steps {
    Quiet,
    Log,
    Bar(indicatif::ProgressBar),
}

impl Steps {
    fn new(quiet: bool) -> Self {
        use std::io::IsTerminal as _;
        if quiet {
            Steps::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template("{prefix:.bold} {msg} [{bar:30}] {pos}/{len}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            Steps::Bar(bar)
        } else {
            Steps::Log
        }
    }

    fn done(&self) {
        if let Steps::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl fr::Progress for Steps {
    fn step(&self, repo: &str, kind: &str, done: u64, total: u64) {
        match self {
            Steps::Quiet => {}
            Steps::Log => {
                if done == 0 || done.is_multiple_of(100) {
                    tracing::info!("{repo}: {kind} {done}/{total}");
                }
            }
            Steps::Bar(bar) => {
                bar.set_prefix(repo.to_string());
                bar.set_message(kind.to_string());
                bar.set_length(total);
                bar.set_position(done);
            }
        }
    }
}

fn print(r: &Run, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let verb = if r.dry_run { "would restore" } else { "restored" };
    for rep in &r.repositories {
        let url = rep.mapping.new_url.as_deref().unwrap_or("");
        println!(
            "{verb} {} -> {}{}{}",
            rep.source,
            rep.target,
            if rep.created_repository { " (new repository)" } else { "" },
            if url.is_empty() { String::new() } else { format!(" {url}") }
        );
        let g = &rep.git;
        println!("  git: {} refs created, {} updated, {} up to date", g.created, g.updated, g.up_to_date);
        if !g.skipped.is_empty() {
            println!("  skipped {} forge-owned refs: {}", g.skipped.len(), abbreviate(&g.skipped));
        }
        for (name, why) in &g.rejected {
            println!("  ! {name} refused: {why}");
        }
        if let Some(w) = &rep.wiki {
            println!("  wiki: {w}");
        }
        if let Some(l) = &rep.lfs {
            println!("  LFS objects: {l}");
        }
        for (kind, c) in rep.counts.iter().filter(|(_, c)| **c != fr::Count::default()) {
            let mut parts = vec![format!("{} {}", c.created, if r.dry_run { "to create" } else { "created" })];
            if c.existing > 0 {
                parts.push(format!("{} already there", c.existing));
            }
            if c.failed > 0 {
                parts.push(format!("{} failed", c.failed));
            }
            println!("  {}: {}", kind.replace('_', " "), parts.join(", "));
        }
        let moved: Vec<String> = rep
            .mapping
            .items
            .iter()
            .filter(|i| i.old_number != i.new_number || i.kind != i.restored_as)
            .map(|i| {
                let became = if i.kind != i.restored_as { format!(" (as {})", i.restored_as) } else { String::new() };
                format!("#{} -> #{}{became}", i.old_number, i.new_number)
            })
            .collect();
        if !moved.is_empty() {
            let verb = if r.dry_run { "would be renumbered" } else { "renumbered" };
            let shown: Vec<&str> = moved.iter().take(20).map(String::as_str).collect();
            let more = if moved.len() > 20 {
                format!(" and {} more (see --json or --map)", moved.len() - 20)
            } else {
                String::new()
            };
            println!("  {verb}: {}{more}", shown.join(", "));
        }
        if rep.deleted_in_backup > 0 {
            println!("  left out, deleted on the forge before the backup: {}", rep.deleted_in_backup);
        }
        for n in &rep.notes {
            println!("  note: {n}");
        }
        for f in &rep.failures {
            println!("  ! {}: {}", f.item, f.error);
        }
        if !r.dry_run {
            println!(
                "  {} writes, {} reads; waited {:.1} s for the forge's rate limits, {:.1} s pacing writes",
                rep.writes, rep.reads, rep.forge_pauses_seconds, rep.pacing_seconds
            );
        }
    }
    for e in &r.errors {
        println!("! {}: {}", e.item, e.error);
    }
    Ok(())
}

fn abbreviate(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    if names.len() > 5 { format!("{}, ...", shown.join(", ")) } else { shown.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_durations() {
        assert_eq!(short_name("github:acme/api"), "api");
        assert_eq!(short_name("gitlab:acme/sub/tool"), "tool");
        assert_eq!(short_name("project.git"), "project");
        assert_eq!(source_forge("gitea:x/y"), Some(ForgeKind::Gitea));
        assert_eq!(source_forge("/srv/git/a"), None);
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("1h").is_err());
    }
}
