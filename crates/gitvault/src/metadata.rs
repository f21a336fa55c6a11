//! Forge metadata (issues, pull requests, reviews, comments, labels, milestones, releases with
//! their assets, settings): fetched per repository into a metadata repository in the cache,
//! committed once per backup, and handed to the engine as one more source, `<repo>#metadata`,
//! stored through the same chain of packs as code (its release assets as LFS objects).
//!
//! The metadata repository is state as well as content: it remembers the ETags of the last run
//! (`.gitvault/state.json`), so that what did not change costs 304s. When the cache lost it, it
//! is restored from the newest snapshot that holds it before fetching, so history continues and
//! deleted items stay marked; without any, it starts afresh.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result};
use gitvault_engine::Vault;
use gitvault_engine::ops::backup::SourceSpec;
use gitvault_engine::ops::restore::{RestoreOptions, restore};
use gitvault_engine::progress::NoProgress;
use gitvault_forge::{MetaReport, RemoteRepo};
use gitvault_git::Git;
use serde::Serialize;

use crate::forges::Account;

use gitvault_format::metadata::SUFFIX;

/// What one repository's metadata run did.
#[derive(Serialize)]
pub struct MetaRun {
    pub name: String,
    #[serde(flatten)]
    pub report: Option<MetaReport>,
    /// Whether this run changed anything (a new commit in the metadata repository).
    pub changed: bool,
    /// Restored from the vault because the cache did not have it.
    pub recovered: bool,
    pub error: Option<String>,
}

/// Fetch and commit the metadata of every repository `accounts` found (on the forges whose
/// metadata is supported: [`gitvault_forge::metadata_supported`]), `jobs` at a time. Returns the engine sources (one
/// per repository: the metadata repository, or a failed source saying why) and the runs.
pub fn prepare(
    work: &[(&Account, Vec<RemoteRepo>)],
    cache_dir: &Path,
    vault: Option<&Vault>,
    jobs: usize,
    now: &str,
) -> (Vec<SourceSpec>, Vec<MetaRun>) {
    let items: Vec<(&Account, &RemoteRepo)> = work
        .iter()
        .filter(|(a, _)| gitvault_forge::metadata_supported(a.source.forge))
        .flat_map(|(a, repos)| repos.iter().map(move |r| (*a, r)))
        .collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let worker = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((account, repo)) = items.get(i) else { break };
            let name = format!("{}{SUFFIX}", repo.vault_name());
            let outcome = one(account, repo, &name, cache_dir, vault, now);
            results.lock().expect("results lock").push((i, name, outcome));
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(worker);
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(i, ..)| *i);
    let mut sources = Vec::new();
    let mut runs = Vec::new();
    for (_, name, outcome) in results {
        match outcome {
            Ok((dir, report, changed, recovered)) => {
                sources.push(SourceSpec::new(dir.display().to_string(), Some(name.clone())));
                runs.push(MetaRun { name, report: Some(report), changed, recovered, error: None });
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(repo = %name, error = %error, "metadata could not be backed up");
                sources.push(SourceSpec {
                    source: name.clone(),
                    name: Some(name.clone()),
                    failed: Some(error.clone()),
                    ..SourceSpec::default()
                });
                runs.push(MetaRun { name, report: None, changed: false, recovered: false, error: Some(error) });
            }
        }
    }
    (sources, runs)
}

/// The metadata of one repository: its directory in the cache, what the fetch did, whether it
/// committed, whether the repository was restored from the vault first.
fn one(
    account: &Account,
    repo: &RemoteRepo,
    name: &str,
    cache_dir: &Path,
    vault: Option<&Vault>,
    now: &str,
) -> Result<(PathBuf, MetaReport, bool, bool)> {
    let git = Git::new();
    let root = cache_dir.join("metadata");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let key = blake3::hash(name.as_bytes()).to_hex();
    let dir = root.join(&key[..32]);
    // One run at a time per metadata repository; the engine reads it after this returns, and a
    // second run waits here meanwhile only for the fetch.
    let lock_path = root.join(format!("{}.lock", &key[..32]));
    let lock = std::fs::File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
    let mut recovered = false;
    if !dir.join(".git").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        recovered = match vault {
            Some(v) => recover(v, name, &dir, &git)?,
            None => false,
        };
        if !recovered {
            git.init_work_tree(&dir)?;
        }
    }
    let report = gitvault_forge::fetch_metadata(&account.api, repo, &dir, &dir.join(".git"), now)
        .with_context(|| format!("fetching the metadata of {}", repo.vault_name()))?;
    let changed = git.commit_all(&dir, &format!("gitvault: metadata of {} at {now}", repo.vault_name()), now)?;
    Ok((dir, report, changed, recovered))
}

/// Restore the newest metadata repository `name` from `vault` into `dir` with its work tree;
/// false when the vault has none.
fn recover(vault: &Vault, name: &str, dir: &Path, git: &Git) -> Result<bool> {
    let snapshots = vault.snapshots()?;
    let Some(snap) = snapshots.iter().rev().find(|s| s.repositories.iter().any(|r| r.name == name)) else {
        return Ok(false);
    };
    restore(vault, snap, Some(name), &dir.join(".git"), &RestoreOptions::default(), &NoProgress)
        .with_context(|| format!("restoring the metadata repository {name} from the vault (the cache lost it)"))?;
    git.adopt_work_tree(dir)?;
    tracing::info!(repo = name, snapshot = %snap.id.short(), "metadata repository restored from the vault");
    Ok(true)
}

/// What `gitvault export` did.
#[derive(Serialize)]
pub struct Exported {
    pub snapshot: String,
    pub repository: String,
    pub target: PathBuf,
    #[serde(flatten)]
    pub report: gitvault_forge::export::ExportReport,
}

/// Export the metadata of the repository `query` names in `snap` into `target` (new or empty).
pub fn export(
    vault: &Vault,
    snap: &gitvault_format::snapshot::Snapshot,
    query: &str,
    target: &Path,
    ctx: &gitvault_engine::Context,
) -> Result<Exported> {
    let wanted = query.strip_suffix(SUFFIX).unwrap_or(query);
    let found: Vec<&str> = snap
        .repositories
        .iter()
        .filter_map(|r| r.name.strip_suffix(SUFFIX))
        .filter(|base| gitvault_engine::ops::restore::name_matches(base, wanted))
        .collect();
    let base = match found.as_slice() {
        [one] => *one,
        [] => anyhow::bail!(
            "snapshot {} holds no metadata of a repository named {query:?} (metadata is backed up for GitHub, GitLab and Gitea sources; see `gitvault snapshots --json`)",
            snap.id.short()
        ),
        many => anyhow::bail!("{query:?} names several repositories: {}; give the full name", many.join(", ")),
    };
    if target.exists() && std::fs::read_dir(target).map(|mut d| d.next().is_some()).unwrap_or(true) {
        anyhow::bail!("{} is not an empty directory; export into a new or empty one", target.display());
    }
    let name = format!("{base}{SUFFIX}");
    let scratch = ctx.cache_dir.join("tmp").join(format!("export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let result = (|| -> Result<gitvault_forge::export::ExportReport> {
        restore(vault, snap, Some(&name), &scratch.join(".git"), &RestoreOptions::default(), &NoProgress)?;
        Git::new().adopt_work_tree(&scratch)?;
        Ok(gitvault_forge::export::export(&scratch, &scratch.join(".git"), target, base)?)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Exported {
        snapshot: snap.id.to_string(),
        repository: base.to_string(),
        target: target.to_path_buf(),
        report: result?,
    })
}
