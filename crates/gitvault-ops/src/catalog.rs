//! The catalog: an embedded SQLite database of runs, the repositories of each run, log lines,
//! the audit trail and API tokens, kept on the machine that runs gitvault.
//!
//! The vault stays the source of truth (snapshots and the hash-chained ledger); the catalog is an
//! index of what happened here, fast to query for `status`, `logs`, `audit`, the HTTP API and
//! metrics, and rebuilt from the vault when lost (`gitvault catalog rebuild`). Rows written from a
//! vault by a rebuild carry `origin = 'vault'`; rows written as things happen, `'recorded'`.
//!
//! Times are stored as RFC 3339 UTC text with millisecond precision and a `Z` (so text order is
//! time order). The database runs in WAL mode with a busy timeout, so a `gitvault serve` and a
//! `gitvault backup` typed by hand can record at the same time.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot create the catalog's directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the catalog {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "the catalog {path} has schema version {found}, newer than this gitvault understands ({SCHEMA_VERSION}): \
         upgrade gitvault, or move the file away and run `gitvault catalog rebuild`"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("catalog {path}: {source}")]
    Sql { path: PathBuf, source: rusqlite::Error },
    #[error("catalog {path}: bad time {value:?} in the database")]
    BadTime { path: PathBuf, value: String },
    #[error("no API token named {0:?}")]
    NoToken(String),
    #[error("an API token named {0:?} exists already: revoke it first or choose another name")]
    TokenExists(String),
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Typed on the command line.
    Cli,
    /// A schedule fired on time.
    Schedule,
    /// A schedule's time passed while gitvault was not serving: run once on start.
    Catchup,
    /// A failed run tried again.
    Retry,
    /// Asked for through the HTTP API.
    Api,
    /// Written by `catalog rebuild` from the vault.
    Vault,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
            Trigger::Catchup => "catchup",
            Trigger::Retry => "retry",
            Trigger::Api => "api",
            Trigger::Vault => "vault",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "schedule" => Trigger::Schedule,
            "catchup" => Trigger::Catchup,
            "retry" => Trigger::Retry,
            "api" => Trigger::Api,
            "vault" => Trigger::Vault,
            _ => Trigger::Cli,
        }
    }
}

/// How a run, or one repository in it, ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still going (or the process died: a run left `running` by a process that is gone).
    Running,
    Ok,
    /// Some of it failed, the rest is done.
    Partial,
    Failed,
    /// Stopped by a signal before its end; what was done is consistent.
    Interrupted,
    /// Not run: an earlier run of the same policy was still going.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Skipped => "skipped",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "running" => Outcome::Running,
            "ok" => Outcome::Ok,
            "partial" => Outcome::Partial,
            "interrupted" => Outcome::Interrupted,
            "skipped" => Outcome::Skipped,
            _ => Outcome::Failed,
        }
    }
    /// The repository's data is in the vault (the run may have had warnings).
    pub fn is_good(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Partial)
    }
}

/// A run as it starts.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// `backup`, `verify`, `restore`, `prune`, `forget`, `copy`...
    pub command: String,
    pub policy: Option<String>,
    /// The vault(s): a configured name or a URL without credentials.
    pub vault: Option<String>,
    pub trigger: Trigger,
    /// Who: `user@host` on the command line, `schedule:POLICY` for serve, `token:NAME` for the API.
    pub actor: String,
    /// `full`, `diff` or `incr` when the run asked for one.
    pub backup_type: Option<String>,
    /// 1 for the first attempt, 2 for the first retry...
    pub attempt: u32,
    pub started_at: OffsetDateTime,
}

/// A run as it ends.
#[derive(Clone, Debug, Default)]
pub struct RunEnd {
    pub outcome: Option<Outcome>,
    /// The snapshot(s) written, comma-separated when several vaults each took one.
    pub snapshot: Option<String>,
    pub repositories: u64,
    pub objects: u64,
    pub bytes_added: u64,
    pub requests: u64,
    pub warnings: u64,
    pub error: Option<String>,
}

/// A run, as stored.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub id: i64,
    pub command: String,
    pub policy: Option<String>,
    pub vault: Option<String>,
    pub trigger: Trigger,
    pub actor: String,
    pub backup_type: Option<String>,
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub outcome: Outcome,
    pub snapshot: Option<String>,
    pub repositories: u64,
    pub objects: u64,
    pub bytes_added: u64,
    pub requests: u64,
    pub warnings: u64,
    pub error: Option<String>,
    /// `recorded` as it happened, or `vault` when rebuilt from a vault.
    pub origin: String,
}

impl Run {
    pub fn duration(&self) -> Option<Duration> {
        let end = self.ended_at?;
        Some((end - self.started_at).try_into().unwrap_or_default())
    }
}

/// One repository of one run in one vault.
#[derive(Clone, Debug, Serialize)]
pub struct RepoRun {
    pub run_id: i64,
    pub vault: Option<String>,
    pub repo: String,
    /// `full`, `diff`, `incr`.
    pub backup_type: Option<String>,
    pub outcome: Outcome,
    pub snapshot: Option<String>,
    pub refs: u64,
    pub objects: u64,
    pub bytes_added: u64,
    pub requests: u64,
    pub duration_ms: u64,
    /// Force-pushes, deleted branches, missing LFS objects...
    pub warnings: Vec<String>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
}

/// A log line of a run.
#[derive(Clone, Debug, Serialize)]
pub struct LogLine {
    pub id: i64,
    pub run_id: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// `info`, `warn` or `error`.
    pub level: String,
    pub repo: Option<String>,
    pub message: String,
}

/// Who did what, to what, and how it ended.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub actor: String,
    /// `backup`, `restore`, `verify`, `forget`, `prune`, `copy`, `key_add`, `config_change`,
    /// `token_create`, `api_trigger`...
    pub action: String,
    /// The vault, repository, policy or token acted on.
    pub target: String,
    /// `ok`, `partial`, `failed`, `denied`.
    pub outcome: String,
    pub detail: Option<String>,
    pub vault: Option<String>,
    /// The vault ledger entry that records the same action, when one was written.
    pub ledger_seq: Option<u64>,
    pub origin: String,
}

/// An audit entry to record.
#[derive(Clone, Debug)]
pub struct NewAudit {
    pub time: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: Option<String>,
    pub vault: Option<String>,
    pub ledger_seq: Option<u64>,
}

/// The newest good and newest failed backup of one repository in one vault.
#[derive(Clone, Debug, Serialize)]
pub struct RepoStatus {
    pub repo: String,
    pub vault: Option<String>,
    /// The policy of the newest run that touched it (its RPO applies).
    pub policy: Option<String>,
    pub last_good: Option<RepoRun>,
    pub last_failure: Option<RepoRun>,
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub policy: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub command: Option<String>,
    /// Newest first, at most this many (all when `None`).
    pub limit: Option<u32>,
}

/// Which log lines to list.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    pub run: Option<i64>,
    pub repo: Option<String>,
    pub since: Option<OffsetDateTime>,
}

/// A role of an API token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything and triggers runs.
    Operator,
    /// Reads everything, changes nothing.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(Role::Operator),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }
}

/// An API token as stored: only a hash of its secret.
#[derive(Clone, Debug, Serialize)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// The catalog database. Cheap to share between threads (one connection behind a mutex).
pub struct Catalog {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT NOT NULL,
    policy TEXT,
    vault TEXT,
    trigger TEXT NOT NULL,
    actor TEXT NOT NULL,
    backup_type TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT NOT NULL,
    snapshot TEXT,
    repositories INTEGER NOT NULL DEFAULT 0,
    objects INTEGER NOT NULL DEFAULT 0,
    bytes_added INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    warnings INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    origin TEXT NOT NULL DEFAULT 'recorded'
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS run_repos (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    vault TEXT,
    repo TEXT NOT NULL,
    backup_type TEXT,
    outcome TEXT NOT NULL,
    snapshot TEXT,
    refs INTEGER NOT NULL DEFAULT 0,
    objects INTEGER NOT NULL DEFAULT 0,
    bytes_added INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    warnings TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    finished_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS run_repos_repo ON run_repos (repo, vault, finished_at);
CREATE INDEX IF NOT EXISTS run_repos_run ON run_repos (run_id);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER REFERENCES runs (id) ON DELETE CASCADE,
    time TEXT NOT NULL,
    level TEXT NOT NULL,
    repo TEXT,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_run ON logs (run_id);
CREATE INDEX IF NOT EXISTS logs_time ON logs (time);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT,
    vault TEXT,
    ledger_seq INTEGER,
    origin TEXT NOT NULL DEFAULT 'recorded'
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT,
    last_used_at TEXT
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_state (
    policy TEXT NOT NULL,
    job TEXT NOT NULL,
    last_fire TEXT NOT NULL,
    PRIMARY KEY (policy, job)
);
";

/// RFC 3339, UTC, milliseconds, `Z`: text order is time order.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(t.millisecond() as u32 * 1_000_000).unwrap_or(t);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&fmt).expect("a UTC time formats")
}

impl Catalog {
    /// Open (creating the file and its directory if needed) and bring the schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CatalogError::Dir { path: dir.to_path_buf(), source })?;
        }
        let conn = Connection::open(path).map_err(|source| CatalogError::Open { path: path.to_path_buf(), source })?;
        let catalog = Self { path: path.to_path_buf(), conn: Mutex::new(conn) };
        catalog.init()?;
        Ok(catalog)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> CatalogError {
        match source {
            rusqlite::Error::SqliteFailure(ref e, _)
                if matches!(e.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) =>
            {
                CatalogError::Open { path: self.path.clone(), source }
            }
            source => CatalogError::Sql { path: self.path.clone(), source },
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves a connection that is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn init(&self) -> Result<()> {
        let conn = self.conn();
        conn.busy_timeout(Duration::from_secs(30)).map_err(|e| self.sql(e))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.sql(e))?;
        if version > SCHEMA_VERSION {
            return Err(CatalogError::TooNew { path: self.path.clone(), found: version });
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| self.sql(e))?;
        // WAL + NORMAL: a commit is not fsynced (a checkpoint is). A power cut may lose the last
        // rows, never corrupt the file — and the catalog is an index the vault can rebuild. A
        // backup of a thousand repositories writes thousands of rows: one fsync each would cost
        // seconds.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| self.sql(e))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(|e| self.sql(e))?;
        conn.execute_batch(SCHEMA).map_err(|e| self.sql(e))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(|e| self.sql(e))?;
        Ok(())
    }

    fn parse_time(&self, value: String) -> Result<OffsetDateTime> {
        OffsetDateTime::parse(&value, &Rfc3339).map_err(|_| CatalogError::BadTime { path: self.path.clone(), value })
    }

    fn parse_opt_time(&self, value: Option<String>) -> Result<Option<OffsetDateTime>> {
        value.map(|v| self.parse_time(v)).transpose()
    }

    // ---- runs -----------------------------------------------------------------------------

    /// Record a run's start; returns its id.
    pub fn start_run(&self, run: &NewRun) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO runs (command, policy, vault, trigger, actor, backup_type, attempt, started_at, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running')",
            params![
                run.command,
                run.policy,
                run.vault,
                run.trigger.as_str(),
                run.actor,
                run.backup_type,
                run.attempt,
                format_time(run.started_at)
            ],
        )
        .map_err(|e| self.sql(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Record a run's end.
    pub fn finish_run(&self, id: i64, end: &RunEnd, at: OffsetDateTime) -> Result<()> {
        let outcome = end.outcome.unwrap_or(if end.error.is_some() { Outcome::Failed } else { Outcome::Ok });
        self.conn()
            .execute(
                "UPDATE runs SET ended_at = ?2, outcome = ?3, snapshot = ?4, repositories = ?5, objects = ?6,
                 bytes_added = ?7, requests = ?8, warnings = ?9, error = ?10 WHERE id = ?1",
                params![
                    id,
                    format_time(at),
                    outcome.as_str(),
                    end.snapshot,
                    end.repositories as i64,
                    end.objects as i64,
                    end.bytes_added as i64,
                    end.requests as i64,
                    end.warnings as i64,
                    end.error
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Record one repository of a run.
    pub fn add_repo(&self, r: &RepoRun) -> Result<()> {
        let warnings = serde_json::to_string(&r.warnings).expect("strings serialize");
        self.conn()
            .execute(
                "INSERT INTO run_repos (run_id, vault, repo, backup_type, outcome, snapshot, refs, objects,
                 bytes_added, requests, duration_ms, warnings, error, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    r.run_id,
                    r.vault,
                    r.repo,
                    r.backup_type,
                    r.outcome.as_str(),
                    r.snapshot,
                    r.refs as i64,
                    r.objects as i64,
                    r.bytes_added as i64,
                    r.requests as i64,
                    r.duration_ms as i64,
                    warnings,
                    r.error,
                    format_time(r.finished_at)
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Runs left `running` by a process that is gone are marked interrupted (call on start of a
    /// long-lived process that owns every run of this catalog, or with the ids it knows dead).
    pub fn mark_abandoned(&self, ids: &[i64], at: OffsetDateTime) -> Result<usize> {
        let conn = self.conn();
        let mut n = 0;
        for id in ids {
            n += conn
                .execute(
                    "UPDATE runs SET outcome = 'interrupted', ended_at = ?2,
                     error = 'the process running it stopped before it ended' WHERE id = ?1 AND outcome = 'running'",
                    params![id, format_time(at)],
                )
                .map_err(|e| self.sql(e))?;
        }
        Ok(n)
    }

    fn run_from_row(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<(Run, String, Option<String>)> {
        let started: String = r.get("started_at")?;
        let ended: Option<String> = r.get("ended_at")?;
        let run = Run {
            id: r.get("id")?,
            command: r.get("command")?,
            policy: r.get("policy")?,
            vault: r.get("vault")?,
            trigger: Trigger::parse(&r.get::<_, String>("trigger")?),
            actor: r.get("actor")?,
            backup_type: r.get("backup_type")?,
            attempt: r.get("attempt")?,
            started_at: OffsetDateTime::UNIX_EPOCH,
            ended_at: None,
            outcome: Outcome::parse(&r.get::<_, String>("outcome")?),
            snapshot: r.get("snapshot")?,
            repositories: r.get::<_, i64>("repositories")? as u64,
            objects: r.get::<_, i64>("objects")? as u64,
            bytes_added: r.get::<_, i64>("bytes_added")? as u64,
            requests: r.get::<_, i64>("requests")? as u64,
            warnings: r.get::<_, i64>("warnings")? as u64,
            error: r.get("error")?,
            origin: r.get("origin")?,
        };
        Ok((run, started, ended))
    }

    fn finish_run_row(&self, (mut run, started, ended): (Run, String, Option<String>)) -> Result<Run> {
        run.started_at = self.parse_time(started)?;
        run.ended_at = self.parse_opt_time(ended)?;
        Ok(run)
    }

    /// Runs, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT * FROM runs WHERE (?1 IS NULL OR policy = ?1) AND (?2 IS NULL OR started_at >= ?2)
                 AND (?3 IS NULL OR command = ?3) ORDER BY started_at DESC, id DESC LIMIT ?4",
            )
            .map_err(|e| self.sql(e))?;
        let limit = filter.limit.map_or(-1, i64::from);
        let rows = stmt
            .query_map(params![filter.policy, filter.since.map(format_time), filter.command, limit], |r| {
                self.run_from_row(r)
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.finish_run_row(row.map_err(|e| self.sql(e))?)?);
        }
        Ok(out)
    }

    pub fn run(&self, id: i64) -> Result<Option<Run>> {
        let row = self
            .conn()
            .query_row("SELECT * FROM runs WHERE id = ?1", [id], |r| self.run_from_row(r))
            .optional()
            .map_err(|e| self.sql(e))?;
        row.map(|r| self.finish_run_row(r)).transpose()
    }

    fn repo_run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(RepoRun, String)> {
        let warnings: String = r.get("warnings")?;
        Ok((
            RepoRun {
                run_id: r.get("run_id")?,
                vault: r.get("vault")?,
                repo: r.get("repo")?,
                backup_type: r.get("backup_type")?,
                outcome: Outcome::parse(&r.get::<_, String>("outcome")?),
                snapshot: r.get("snapshot")?,
                refs: r.get::<_, i64>("refs")? as u64,
                objects: r.get::<_, i64>("objects")? as u64,
                bytes_added: r.get::<_, i64>("bytes_added")? as u64,
                requests: r.get::<_, i64>("requests")? as u64,
                duration_ms: r.get::<_, i64>("duration_ms")? as u64,
                warnings: serde_json::from_str(&warnings).unwrap_or_default(),
                error: r.get("error")?,
                finished_at: OffsetDateTime::UNIX_EPOCH,
            },
            r.get("finished_at")?,
        ))
    }

    fn collect_repo_runs(
        &self,
        rows: impl Iterator<Item = rusqlite::Result<(RepoRun, String)>>,
    ) -> Result<Vec<RepoRun>> {
        let mut out = Vec::new();
        for row in rows {
            let (mut r, finished) = row.map_err(|e| self.sql(e))?;
            r.finished_at = self.parse_time(finished)?;
            out.push(r);
        }
        Ok(out)
    }

    /// The repositories of a run, in the order recorded.
    pub fn run_repos(&self, run_id: i64) -> Result<Vec<RepoRun>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT * FROM run_repos WHERE run_id = ?1 ORDER BY rowid").map_err(|e| self.sql(e))?;
        let rows = stmt.query_map([run_id], Self::repo_run_from_row).map_err(|e| self.sql(e))?;
        self.collect_repo_runs(rows)
    }

    /// Every repository ever recorded, per vault: its newest good and newest failed backup (a
    /// repository left out of a run that was asked to stop is not a failure).
    pub fn repo_status(&self) -> Result<Vec<RepoStatus>> {
        let conn = self.conn();
        let mut keys = conn
            .prepare(
                "SELECT rr.repo, rr.vault, (SELECT r.policy FROM run_repos x JOIN runs r ON r.id = x.run_id
                   WHERE x.repo = rr.repo AND x.vault IS rr.vault ORDER BY x.finished_at DESC LIMIT 1)
                 FROM run_repos rr WHERE rr.repo IS NOT NULL GROUP BY rr.repo, rr.vault ORDER BY rr.repo, rr.vault",
            )
            .map_err(|e| self.sql(e))?;
        let keys: Vec<(String, Option<String>, Option<String>)> = keys
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.sql(e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.sql(e))?;
        let mut good = conn
            .prepare(
                "SELECT * FROM run_repos WHERE repo = ?1 AND vault IS ?2 AND outcome IN ('ok', 'partial')
                 ORDER BY finished_at DESC LIMIT 1",
            )
            .map_err(|e| self.sql(e))?;
        let mut bad = conn
            .prepare(
                "SELECT * FROM run_repos WHERE repo = ?1 AND vault IS ?2 AND outcome = 'failed'
                 ORDER BY finished_at DESC LIMIT 1",
            )
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for (repo, vault, policy) in keys {
            let g = good.query_map(params![repo, vault], Self::repo_run_from_row).map_err(|e| self.sql(e))?;
            let last_good = self.collect_repo_runs(g)?.into_iter().next();
            let b = bad.query_map(params![repo, vault], Self::repo_run_from_row).map_err(|e| self.sql(e))?;
            let last_failure = self.collect_repo_runs(b)?.into_iter().next();
            out.push(RepoStatus { repo, vault, policy, last_good, last_failure });
        }
        Ok(out)
    }

    // ---- logs -----------------------------------------------------------------------------

    pub fn log(&self, run_id: Option<i64>, level: &str, repo: Option<&str>, message: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO logs (run_id, time, level, repo, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run_id, format_time(OffsetDateTime::now_utc()), level, repo, message],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Log lines, oldest first.
    pub fn logs(&self, filter: &LogFilter) -> Result<Vec<LogLine>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, run_id, time, level, repo, message FROM logs
                 WHERE (?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR repo = ?2) AND (?3 IS NULL OR time >= ?3)
                 ORDER BY time, id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![filter.run, filter.repo, filter.since.map(format_time)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, run_id, time, level, repo, message) = row.map_err(|e| self.sql(e))?;
            out.push(LogLine { id, run_id, time: self.parse_time(time)?, level, repo, message });
        }
        Ok(out)
    }

    // ---- audit ----------------------------------------------------------------------------

    pub fn audit(&self, a: &NewAudit) -> Result<i64> {
        self.insert_audit(a, "recorded")
    }

    fn insert_audit(&self, a: &NewAudit, origin: &str) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit (time, actor, action, target, outcome, detail, vault, ledger_seq, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                format_time(a.time),
                a.actor,
                a.action,
                a.target,
                a.outcome,
                a.detail,
                a.vault,
                a.ledger_seq.map(|s| s as i64),
                origin
            ],
        )
        .map_err(|e| self.sql(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Audit entries, oldest first.
    pub fn audit_entries(&self, since: Option<OffsetDateTime>) -> Result<Vec<AuditEntry>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, time, actor, action, target, outcome, detail, vault, ledger_seq, origin FROM audit
                 WHERE (?1 IS NULL OR time >= ?1) ORDER BY time, id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![since.map(format_time)], |r| {
                Ok((
                    AuditEntry {
                        id: r.get(0)?,
                        time: OffsetDateTime::UNIX_EPOCH,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        outcome: r.get(5)?,
                        detail: r.get(6)?,
                        vault: r.get(7)?,
                        ledger_seq: r.get::<_, Option<i64>>(8)?.map(|s| s as u64),
                        origin: r.get(9)?,
                    },
                    r.get::<_, String>(1)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (mut a, time) = row.map_err(|e| self.sql(e))?;
            a.time = self.parse_time(time)?;
            out.push(a);
        }
        Ok(out)
    }

    // ---- rebuild --------------------------------------------------------------------------

    /// Forget what an earlier rebuild wrote from `vault` (recorded rows stay), so a rebuild can
    /// write it again. Returns the runs removed.
    pub fn clear_rebuilt(&self, vault: &str) -> Result<usize> {
        let conn = self.conn();
        conn.execute("DELETE FROM audit WHERE origin = 'vault' AND vault = ?1", [vault]).map_err(|e| self.sql(e))?;
        let n =
            conn.execute("DELETE FROM runs WHERE origin = 'vault' AND vault = ?1", [vault]).map_err(|e| self.sql(e))?;
        Ok(n)
    }

    /// Whether a snapshot of `vault` is already known (recorded by a run here, or rebuilt).
    pub fn knows_snapshot(&self, vault: &str, snapshot: &str) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT 1 FROM run_repos WHERE vault = ?1 AND snapshot = ?2 LIMIT 1",
                params![vault, snapshot],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.sql(e))
    }

    /// Whether an audit entry for ledger entry `seq` of `vault` exists.
    pub fn knows_ledger_entry(&self, vault: &str, seq: u64) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT 1 FROM audit WHERE vault = ?1 AND ledger_seq = ?2 LIMIT 1",
                params![vault, seq as i64],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.sql(e))
    }

    /// A run rebuilt from a vault's snapshot, with its repositories.
    pub fn insert_rebuilt_run(
        &self,
        run: &NewRun,
        end: &RunEnd,
        ended_at: OffsetDateTime,
        repos: &[RepoRun],
    ) -> Result<i64> {
        let id = {
            let conn = self.conn();
            conn.execute(
                "INSERT INTO runs (command, policy, vault, trigger, actor, backup_type, attempt, started_at, ended_at,
                 outcome, snapshot, repositories, objects, bytes_added, requests, warnings, error, origin)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, 'vault')",
                params![
                    run.command,
                    run.policy,
                    run.vault,
                    run.trigger.as_str(),
                    run.actor,
                    run.backup_type,
                    run.attempt,
                    format_time(run.started_at),
                    format_time(ended_at),
                    end.outcome.unwrap_or(Outcome::Ok).as_str(),
                    end.snapshot,
                    end.repositories as i64,
                    end.objects as i64,
                    end.bytes_added as i64,
                    end.requests as i64,
                    end.warnings as i64,
                    end.error
                ],
            )
            .map_err(|e| self.sql(e))?;
            conn.last_insert_rowid()
        };
        for r in repos {
            self.add_repo(&RepoRun { run_id: id, ..r.clone() })?;
        }
        Ok(id)
    }

    /// An audit entry rebuilt from a vault's ledger.
    pub fn insert_rebuilt_audit(&self, a: &NewAudit) -> Result<i64> {
        self.insert_audit(a, "vault")
    }

    // ---- tokens ---------------------------------------------------------------------------

    /// Store a new token's hash under a unique name.
    pub fn create_token(&self, name: &str, role: Role, hash: &str, by: &str) -> Result<Token> {
        let now = OffsetDateTime::now_utc();
        {
            let conn = self.conn();
            let taken: bool = conn
                .query_row("SELECT 1 FROM tokens WHERE name = ?1 AND revoked_at IS NULL", [name], |_| Ok(()))
                .optional()
                .map_err(|e| self.sql(e))?
                .is_some();
            if taken {
                return Err(CatalogError::TokenExists(name.to_string()));
            }
            conn.execute(
                "INSERT INTO tokens (name, role, hash, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, role.as_str(), hash, format_time(now), by],
            )
            .map_err(|e| self.sql(e))?;
        }
        self.tokens()?
            .into_iter()
            .rev()
            .find(|t| t.name == name && t.revoked_at.is_none())
            .ok_or_else(|| CatalogError::NoToken(name.to_string()))
    }

    /// Every token, revoked ones included, oldest first.
    pub fn tokens(&self) -> Result<Vec<Token>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, name, role, created_at, created_by, revoked_at, last_used_at FROM tokens ORDER BY id")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, role, created, by, revoked, used) = row.map_err(|e| self.sql(e))?;
            out.push(Token {
                id,
                name,
                role: Role::parse(&role).unwrap_or(Role::Auditor),
                created_at: self.parse_time(created)?,
                created_by: by,
                revoked_at: self.parse_opt_time(revoked)?,
                last_used_at: self.parse_opt_time(used)?,
            });
        }
        Ok(out)
    }

    /// Revoke the live token named `name`.
    pub fn revoke_token(&self, name: &str) -> Result<Token> {
        let n = self
            .conn()
            .execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, format_time(OffsetDateTime::now_utc())],
            )
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(CatalogError::NoToken(name.to_string()));
        }
        self.tokens()?.into_iter().rev().find(|t| t.name == name).ok_or_else(|| CatalogError::NoToken(name.to_string()))
    }

    /// The live token whose hash is `hash`, its use recorded.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<Token>> {
        let id: Option<i64> = self
            .conn()
            .query_row("SELECT id FROM tokens WHERE hash = ?1 AND revoked_at IS NULL", [hash], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some(id) = id else { return Ok(None) };
        self.conn()
            .execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
                params![id, format_time(OffsetDateTime::now_utc())],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.tokens()?.into_iter().find(|t| t.id == id))
    }

    // ---- small facts ----------------------------------------------------------------------

    /// A value remembered under `key` (such as the digest of a configuration file last seen).
    pub fn get_value(&self, key: &str) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    pub fn set_value(&self, key: &str, value: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    // ---- schedules ------------------------------------------------------------------------

    /// When a schedule job last fired (for catching up after downtime).
    pub fn last_fire(&self, policy: &str, job: &str) -> Result<Option<OffsetDateTime>> {
        let v: Option<String> = self
            .conn()
            .query_row(
                "SELECT last_fire FROM schedule_state WHERE policy = ?1 AND job = ?2",
                params![policy, job],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        self.parse_opt_time(v)
    }

    pub fn set_last_fire(&self, policy: &str, job: &str, at: OffsetDateTime) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO schedule_state (policy, job, last_fire) VALUES (?1, ?2, ?3)
                 ON CONFLICT (policy, job) DO UPDATE SET last_fire = excluded.last_fire",
                params![policy, job, format_time(at)],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = Catalog::open(&dir.path().join("state/catalog.db")).expect("open");
        (dir, c)
    }

    fn new_run(policy: &str, at: OffsetDateTime) -> NewRun {
        NewRun {
            command: "backup".into(),
            policy: Some(policy.into()),
            vault: Some("local".into()),
            trigger: Trigger::Schedule,
            actor: "schedule:nightly".into(),
            backup_type: None,
            attempt: 1,
            started_at: at,
        }
    }

    fn repo(run_id: i64, name: &str, outcome: Outcome, at: OffsetDateTime) -> RepoRun {
        RepoRun {
            run_id,
            vault: Some("local".into()),
            repo: name.into(),
            backup_type: Some("incr".into()),
            outcome,
            snapshot: Some("s1".into()),
            refs: 3,
            objects: 10,
            bytes_added: 1000,
            requests: 2,
            duration_ms: 5,
            warnings: vec!["force-push refs/heads/main".into()],
            error: (outcome == Outcome::Failed).then(|| "boom".into()),
            finished_at: at,
        }
    }

    #[test]
    fn times_sort_as_text() {
        let a = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let b = a + time::Duration::milliseconds(5);
        assert!(format_time(a) < format_time(b));
        assert_eq!(format_time(a), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn runs_and_status_round_trip() {
        let (_d, c) = open();
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let id = c.start_run(&new_run("nightly", t0)).expect("start");
        c.add_repo(&repo(id, "acme/app", Outcome::Ok, t0 + time::Duration::seconds(1))).expect("repo");
        c.add_repo(&repo(id, "acme/web", Outcome::Failed, t0 + time::Duration::seconds(2))).expect("repo");
        let end = RunEnd { outcome: Some(Outcome::Partial), error: Some("1 failed".into()), ..RunEnd::default() };
        c.finish_run(id, &end, t0 + time::Duration::seconds(3)).expect("finish");
        let id2 = c.start_run(&new_run("nightly", t0 + time::Duration::hours(1))).expect("start");
        c.add_repo(&repo(id2, "acme/web", Outcome::Ok, t0 + time::Duration::hours(1))).expect("repo");

        let runs = c.runs(&RunFilter::default()).expect("runs");
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].id, id2, "newest first");
        assert_eq!(runs[0].outcome, Outcome::Running);
        assert_eq!(runs[1].outcome, Outcome::Partial);
        assert_eq!(runs[1].duration(), Some(Duration::from_secs(3)));
        assert_eq!(c.run_repos(id).expect("repos").len(), 2);
        assert_eq!(c.run_repos(id).expect("repos")[0].warnings, vec!["force-push refs/heads/main".to_string()]);

        let status = c.repo_status().expect("status");
        assert_eq!(status.len(), 2);
        let web = status.iter().find(|s| s.repo == "acme/web").expect("web");
        assert_eq!(web.last_good.as_ref().map(|r| r.run_id), Some(id2));
        assert_eq!(web.last_failure.as_ref().map(|r| r.run_id), Some(id));
        assert_eq!(web.policy.as_deref(), Some("nightly"));

        assert_eq!(c.mark_abandoned(&[id, id2], t0 + time::Duration::hours(2)).expect("abandon"), 1);
        assert_eq!(c.run(id2).expect("run").expect("some").outcome, Outcome::Interrupted);
    }

    #[test]
    fn logs_filter_by_run_and_repo() {
        let (_d, c) = open();
        let id = c.start_run(&new_run("p", OffsetDateTime::now_utc())).expect("start");
        c.log(Some(id), "info", None, "started").expect("log");
        c.log(Some(id), "warn", Some("a/b"), "force-push").expect("log");
        c.log(None, "info", None, "serve started").expect("log");
        assert_eq!(c.logs(&LogFilter::default()).expect("logs").len(), 3);
        assert_eq!(c.logs(&LogFilter { run: Some(id), ..LogFilter::default() }).expect("logs").len(), 2);
        let by_repo = c.logs(&LogFilter { repo: Some("a/b".into()), ..LogFilter::default() }).expect("logs");
        assert_eq!(by_repo.len(), 1);
        assert_eq!(by_repo[0].message, "force-push");
    }

    #[test]
    fn tokens_are_unique_by_live_name_and_revocable() {
        let (_d, c) = open();
        let t = c.create_token("ci", Role::Operator, "h1", "ada@host").expect("create");
        assert_eq!(t.role, Role::Operator);
        assert!(matches!(c.create_token("ci", Role::Auditor, "h2", "x"), Err(CatalogError::TokenExists(_))));
        assert_eq!(c.token_by_hash("h1").expect("lookup").map(|t| t.name), Some("ci".into()));
        assert!(c.token_by_hash("nope").expect("lookup").is_none());
        c.revoke_token("ci").expect("revoke");
        assert!(c.token_by_hash("h1").expect("lookup").is_none(), "revoked tokens do not authenticate");
        assert!(matches!(c.revoke_token("ci"), Err(CatalogError::NoToken(_))));
        c.create_token("ci", Role::Auditor, "h3", "x").expect("name free again");
    }

    #[test]
    fn audit_and_rebuild_rows_are_told_apart() {
        let (_d, c) = open();
        let now = OffsetDateTime::now_utc();
        let a = NewAudit {
            time: now,
            actor: "ada@host".into(),
            action: "restore".into(),
            target: "acme/app".into(),
            outcome: "ok".into(),
            detail: None,
            vault: Some("v".into()),
            ledger_seq: Some(7),
        };
        c.audit(&a).expect("audit");
        c.insert_rebuilt_audit(&NewAudit { ledger_seq: Some(8), ..a.clone() }).expect("audit");
        assert!(c.knows_ledger_entry("v", 7).expect("q"));
        assert_eq!(c.audit_entries(None).expect("audit").len(), 2);
        c.clear_rebuilt("v").expect("clear");
        let left = c.audit_entries(None).expect("audit");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].origin, "recorded");
    }

    #[test]
    fn values_round_trip() {
        let (_d, c) = open();
        assert_eq!(c.get_value("k").expect("get"), None);
        c.set_value("k", "a").expect("set");
        c.set_value("k", "b").expect("set");
        assert_eq!(c.get_value("k").expect("get").as_deref(), Some("b"));
    }

    #[test]
    fn schedule_state_round_trips() {
        let (_d, c) = open();
        assert!(c.last_fire("p", "0").expect("q").is_none());
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        c.set_last_fire("p", "0", t).expect("set");
        c.set_last_fire("p", "0", t + time::Duration::hours(1)).expect("set");
        assert_eq!(c.last_fire("p", "0").expect("q"), Some(t + time::Duration::hours(1)));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("catalog.db");
        std::fs::write(&path, b"this is not sqlite, it is text that happens to be long enough").expect("write");
        let err = Catalog::open(&path).err().expect("refused");
        assert!(err.to_string().contains("cannot open the catalog"), "{err}");
    }
}
