//! Recording what gitvault does into the catalog (run history, per-repository results, log lines,
//! the audit trail) and finding what in a backup deserves an alert.
//!
//! The catalog must never stop a backup: when it cannot be opened or written, a warning says so
//! once and the command goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use gitvault_engine::ops::backup::BackupReport;
use gitvault_engine::ops::diff::ChangeKind;
use gitvault_ops::catalog::{Catalog, NewAudit, NewRun, Outcome, RepoRun, RunEnd, Trigger};
use time::OffsetDateTime;

use crate::output::{DestinationOutcome, Forges, RetentionRun};

/// Environment variable naming the catalog file (as `--catalog`).
pub const CATALOG_ENV: &str = "GITVAULT_CATALOG";

/// `$XDG_STATE_HOME/gitvault/catalog.db`, else `~/.local/state/gitvault/catalog.db`.
pub fn default_catalog_path() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("gitvault").join("catalog.db");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/gitvault/catalog.db"),
        None => std::env::temp_dir().join("gitvault-state/catalog.db"),
    }
}

/// Who is acting, for the audit trail: `user@host` on the command line.
pub fn cli_actor(host: &str) -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_of_process)
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{host}")
}

/// The name of this process's user from /proc and /etc/passwd (when USER is not set: services,
/// containers).
fn user_of_process() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(1)?.to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
    });
    Some(name.unwrap_or(format!("uid{uid}")))
}

/// The catalog of this process, opened on first use.
pub struct Recorder {
    path: OnceLock<PathBuf>,
    catalog: OnceLock<Option<Arc<Catalog>>>,
    pub actor: String,
    pub trigger: Trigger,
    warned: AtomicBool,
}

impl Recorder {
    /// `path`: given on the command line (it wins over a config file's `catalog`).
    pub fn new(path: Option<PathBuf>, actor: String, trigger: Trigger) -> Self {
        let r =
            Self { path: OnceLock::new(), catalog: OnceLock::new(), actor, trigger, warned: AtomicBool::new(false) };
        if let Some(p) = path {
            let _ = r.path.set(p);
        }
        r
    }

    /// A recorder over a catalog already open (the daemon's).
    pub fn with_catalog(catalog: Arc<Catalog>, actor: String, trigger: Trigger) -> Self {
        let r = Self::new(Some(catalog.path().to_path_buf()), actor, trigger);
        let _ = r.catalog.set(Some(catalog));
        r
    }

    /// The config file's `catalog`, used unless `--catalog` was given.
    pub fn prefer_path(&self, path: &Path) {
        let _ = self.path.set(path.to_path_buf());
    }

    pub fn path(&self) -> &Path {
        self.path.get_or_init(default_catalog_path)
    }

    /// The catalog, or `None` (warned about once) when it cannot be opened.
    pub fn catalog(&self) -> Option<&Catalog> {
        self.catalog
            .get_or_init(|| match Catalog::open(self.path()) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    self.warn(&e);
                    None
                }
            })
            .as_deref()
    }

    /// The catalog, or the error opening it (for commands that only read it).
    pub fn require(&self) -> anyhow::Result<&Catalog> {
        match self.catalog() {
            Some(c) => Ok(c),
            None => Err(anyhow::anyhow!(
                "cannot open the catalog {} (see the warning above); give another with --catalog or {CATALOG_ENV}",
                self.path().display()
            )),
        }
    }

    fn warn(&self, e: &dyn std::fmt::Display) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("the run is not recorded in the catalog: {e}");
            eprintln!("warning: the run is not recorded in the catalog: {e}");
        }
    }

    fn ok<T>(&self, r: Result<T, gitvault_ops::catalog::CatalogError>) -> Option<T> {
        r.map_err(|e| self.warn(&e)).ok()
    }

    /// Start recording a run.
    pub fn start(
        &self,
        command: &str,
        policy: Option<&str>,
        vault: Option<&str>,
        backup_type: Option<&str>,
    ) -> RunRecord<'_> {
        self.start_attempt(command, policy, vault, backup_type, 1)
    }

    pub fn start_attempt(
        &self,
        command: &str,
        policy: Option<&str>,
        vault: Option<&str>,
        backup_type: Option<&str>,
        attempt: u32,
    ) -> RunRecord<'_> {
        let id = self.catalog().and_then(|c| {
            self.ok(c.start_run(&NewRun {
                command: command.into(),
                policy: policy.map(str::to_string),
                vault: vault.map(str::to_string),
                trigger: self.trigger,
                actor: self.actor.clone(),
                backup_type: backup_type.map(str::to_string),
                attempt,
                started_at: OffsetDateTime::now_utc(),
            }))
        });
        RunRecord { rec: self, id, command: command.to_string() }
    }

    /// An audit trail entry.
    pub fn audit(
        &self,
        action: &str,
        target: &str,
        outcome: &str,
        detail: Option<String>,
        vault: Option<&str>,
        ledger_seq: Option<u64>,
    ) {
        if let Some(c) = self.catalog() {
            self.ok(c.audit(&NewAudit {
                time: OffsetDateTime::now_utc(),
                actor: self.actor.clone(),
                action: action.into(),
                target: target.into(),
                outcome: outcome.into(),
                detail,
                vault: vault.map(str::to_string),
                ledger_seq,
            }));
        }
    }

    pub fn log(&self, run: Option<i64>, level: &str, repo: Option<&str>, message: &str) {
        if let Some(c) = self.catalog() {
            self.ok(c.log(run, level, repo, message));
        }
    }
}

/// A run being recorded.
pub struct RunRecord<'a> {
    rec: &'a Recorder,
    pub id: Option<i64>,
    command: String,
}

impl RunRecord<'_> {
    pub fn log(&self, level: &str, repo: Option<&str>, message: &str) {
        if self.id.is_some() {
            self.rec.log(self.id, level, repo, message);
        }
    }

    pub fn repo(&self, r: RepoRun) {
        if let (Some(id), Some(c)) = (self.id, self.rec.catalog()) {
            self.rec.ok(c.add_repo(&RepoRun { run_id: id, ..r }));
        }
    }

    pub fn finish(&self, end: RunEnd) {
        let outcome = end.outcome.unwrap_or(if end.error.is_some() { Outcome::Failed } else { Outcome::Ok });
        let message = match &end.error {
            Some(e) => format!("{} {}: {e}", self.command, outcome.as_str()),
            None => format!("{} {}", self.command, outcome.as_str()),
        };
        self.log(if outcome == Outcome::Ok { "info" } else { "error" }, None, &message);
        if let (Some(id), Some(c)) = (self.id, self.rec.catalog()) {
            self.rec.ok(c.finish_run(id, &RunEnd { outcome: Some(outcome), ..end }, OffsetDateTime::now_utc()));
        }
    }
}

/// What in a backup deserves a "suspicious change" alert.
#[derive(Clone, Debug, Default)]
pub struct Suspicious {
    pub lines: Vec<String>,
    pub repositories: Vec<String>,
}

/// Which branches count as protected (globs over the short branch name).
#[derive(Clone, Debug)]
pub struct Protected(pub Vec<glob::Pattern>);

impl Default for Protected {
    fn default() -> Self {
        Self(
            ["main", "master", "release/*", "release-*"]
                .iter()
                .map(|p| glob::Pattern::new(p).expect("valid default pattern"))
                .collect(),
        )
    }
}

impl Protected {
    pub fn parse(globs: &[String]) -> Result<Self, glob::PatternError> {
        Ok(Self(globs.iter().map(|g| glob::Pattern::new(g)).collect::<Result<_, _>>()?))
    }
    fn matches(&self, refname: &str) -> bool {
        refname.strip_prefix("refs/heads/").is_some_and(|b| self.0.iter().any(|p| p.matches(b)))
    }
}

/// Deletions of issues and pull requests in one run from which a metadata change is a possible
/// incident (as `gitvault diff` flags between two snapshots).
pub const MASS_DELETION: usize = 10;

/// Record a backup's results per vault and repository, with log lines; returns the run's end
/// and what looks suspicious.
pub fn record_backup(
    run: &RunRecord<'_>,
    outcomes: &[DestinationOutcome],
    forges: &Forges,
    retention: &[RetentionRun],
    protected: &Protected,
) -> (RunEnd, Suspicious) {
    let mut end = RunEnd::default();
    let mut suspicious = Suspicious::default();
    let mut snapshots = Vec::new();
    let mut any_failed = false;
    let mut any_good = false;
    let requests: u64 = forges.requests.values().map(|r| r.requests).sum();
    end.requests = requests;
    for m in &forges.metadata {
        if let Some(e) = &m.error {
            run.log("error", Some(&m.name), &format!("metadata: {e}"));
        }
        let Some(report) = &m.report else { continue };
        let deleted = report.deleted.iter().filter(|d| d.starts_with("issues/") || d.starts_with("pulls/")).count();
        if deleted >= MASS_DELETION {
            let line = format!(
                "{}: {deleted} issues and pull requests deleted upstream since the last backup (possible mass deletion)",
                m.name
            );
            run.log("warn", Some(&m.name), &line);
            suspicious.lines.push(line);
            suspicious.repositories.push(m.name.clone());
        }
    }
    // API requests of each repository's metadata run, recorded on its `#metadata` repository.
    let meta_requests: std::collections::HashMap<String, u64> =
        forges.metadata.iter().filter_map(|m| m.report.as_ref().map(|r| (m.name.clone(), r.requests))).collect();
    for gone in &forges.gone_upstream {
        run.log("warn", Some(&gone.name), &format!("{} is no longer listed upstream; its backups stay", gone.name));
    }
    for o in outcomes {
        let report: &BackupReport = match &o.result {
            Ok(r) => r,
            Err(e) => {
                any_failed = true;
                run.log("error", None, &format!("vault {}: {e:#}", o.vault));
                continue;
            }
        };
        let snapshot = report.snapshot.map(|s| s.to_string());
        if let Some(s) = &snapshot {
            snapshots.push(s.clone());
        }
        for r in &report.repositories {
            let mut warnings = Vec::new();
            for c in &r.changes {
                let w = match c.change {
                    ChangeKind::ForcePush => Some(format!("force-push on {}", c.name)),
                    ChangeKind::Deleted if c.name.starts_with("refs/heads/") || c.name.starts_with("refs/tags/") => {
                        Some(format!("{} deleted", c.name))
                    }
                    ChangeKind::TagMoved => Some(format!("tag {} moved", c.name)),
                    _ => None,
                };
                let Some(w) = w else { continue };
                let flagged = match c.change {
                    ChangeKind::ForcePush => protected.matches(&c.name),
                    ChangeKind::Deleted | ChangeKind::TagMoved => true,
                    _ => false,
                };
                if flagged {
                    let line = format!("{}: {w}", r.name);
                    if !suspicious.lines.contains(&line) {
                        suspicious.lines.push(line);
                    }
                    if !suspicious.repositories.contains(&r.name) {
                        suspicious.repositories.push(r.name.clone());
                    }
                }
                run.log("warn", Some(&r.name), &w);
                warnings.push(w);
            }
            if r.lfs_missing > 0 {
                let w = format!("{} Git LFS objects could not be fetched", r.lfs_missing);
                run.log("warn", Some(&r.name), &w);
                warnings.push(w);
            }
            let outcome = if r.lfs_missing > 0 { Outcome::Partial } else { Outcome::Ok };
            any_good = true;
            end.repositories += 1;
            end.objects += r.objects_added;
            end.bytes_added += r.bytes_added;
            end.warnings += warnings.len() as u64;
            run.log(
                "info",
                Some(&r.name),
                &format!(
                    "{} backup into {}: {} refs, {} objects, {} bytes added",
                    r.backup_type.as_str(),
                    o.vault,
                    r.refs,
                    r.objects_added,
                    r.bytes_added
                ),
            );
            run.repo(RepoRun {
                run_id: 0,
                vault: Some(o.vault.clone()),
                repo: r.name.clone(),
                backup_type: Some(r.backup_type.as_str().to_string()),
                outcome,
                snapshot: snapshot.clone(),
                refs: r.refs as u64,
                objects: r.objects_added,
                bytes_added: r.bytes_added,
                requests: meta_requests.get(&r.name).copied().unwrap_or(0),
                duration_ms: r.duration_ms,
                warnings,
                error: None,
                finished_at: report.time,
            });
        }
        for f in &report.failures {
            any_failed = true;
            run.log("error", Some(&f.name), &format!("into {}: {}", o.vault, f.error));
            run.repo(RepoRun {
                run_id: 0,
                vault: Some(o.vault.clone()),
                repo: f.name.clone(),
                backup_type: None,
                outcome: if f.error.starts_with(gitvault_engine::ops::backup::INTERRUPTED) {
                    Outcome::Interrupted
                } else {
                    Outcome::Failed
                },
                snapshot: snapshot.clone(),
                refs: 0,
                objects: 0,
                bytes_added: 0,
                requests: 0,
                duration_ms: 0,
                warnings: vec![],
                error: Some(f.error.clone()),
                finished_at: report.time,
            });
        }
        if report.snapshot.is_none() {
            any_failed = true;
        }
    }
    for r in retention {
        if let Some(e) = &r.error {
            any_failed = true;
            run.log("error", None, e);
        } else if let Some(f) = &r.forget {
            run.log("info", None, &format!("retention in {}: {} snapshots forgotten", r.vault, f.removed));
        }
    }
    end.snapshot = (!snapshots.is_empty()).then(|| snapshots.join(","));
    end.outcome = Some(match (any_good || !snapshots.is_empty(), any_failed) {
        (_, false) => Outcome::Ok,
        (true, true) => Outcome::Partial,
        (false, true) => Outcome::Failed,
    });
    if any_failed {
        let failed: usize = outcomes.iter().map(|o| o.result.as_ref().map_or(0, |r| r.failures.len())).sum();
        let lost: usize = outcomes.iter().filter(|o| o.result.as_ref().map_or(true, |r| r.snapshot.is_none())).count();
        let mut parts = Vec::new();
        if failed > 0 {
            parts.push(format!("{failed} repository backups failed"));
        }
        if lost > 0 {
            parts.push(format!("{lost} of {} vaults took no snapshot", outcomes.len()));
        }
        if parts.is_empty() {
            parts.push("the retention failed".into());
        }
        end.error = Some(format!("{}; see `gitvault logs --run {}`", parts.join(", "), run.id.unwrap_or_default()));
    }
    (end, suspicious)
}
