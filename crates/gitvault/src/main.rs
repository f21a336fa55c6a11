//! The `gitvault` command: parses arguments, resolves settings once, calls the engine, prints.

mod alerts;
mod api;
mod cli;
mod config;
mod destination;
mod forges;
mod history;
mod metadata;
mod output;
mod progress;
mod record;
mod secrets;
mod serve;
mod to_forge;
mod unlock;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow};
use clap::{CommandFactory, FromArgMatches};
use gitvault_engine::ops::{backup, copy, diff, forget, keys, prune, restore, upgrade, verify};
use gitvault_engine::progress::{NoProgress, Progress};
use gitvault_engine::{Context, LockPolicy, LockedVault, Vault, resolve_snapshot};
use gitvault_format::keys::{KdfParams, Passphrase};
use gitvault_format::snapshot::BackupType;

use cli::{Cli, Command, GlobalArgs, KdfArgs, KeyCommand, LockArgs, LockModeArg, TypeArg};

/// Documented exit codes.
mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const PARTIAL: u8 = 3;
    pub const DAMAGE: u8 = 4;
}

/// An error that is the user's invocation, not the world: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);
impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let vault_flag = matches.value_source("vault") == Some(clap::parser::ValueSource::CommandLine);
    init_logging(&cli.global);
    let result = run(cli, vault_flag);
    if let Some(kib) = peak_rss_kib() {
        tracing::info!(peak_rss_kib = kib, "gitvault's own peak memory (git subprocesses not included)");
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::from(exit::FAILURE)
            }
        }
    }
}

/// This process's peak resident memory (Linux `VmHWM`), for `-v` logs and benchmarks.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn init_logging(g: &GlobalArgs) {
    let default = match g.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GITVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Settings resolved once from flags, environment and defaults.
struct Settings {
    /// Every `--vault` given (or `GITVAULT_VAULT`), parsed; commands other than `backup` take one.
    vaults: Vec<(String, destination::Destination)>,
    /// `--vault` was typed on the command line (not taken from `GITVAULT_VAULT`).
    vault_flag: bool,
    aws: destination::AwsEnv,
    ssh: destination::SshSettings,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    ctx: Context,
    json: bool,
    quiet: bool,
    append_only: bool,
    /// `--cache-dir` (or GITVAULT_CACHE_DIR) was given: it wins over the config file's.
    cache_dir_given: bool,
    /// The catalog: run history, log lines, audit trail.
    recorder: record::Recorder,
    /// `--catalog` (or GITVAULT_CATALOG) was given: it wins over the config file's.
    catalog_given: bool,
    /// The ledger entry that records what the command did, once it is written.
    ledger_seq: std::sync::Mutex<Option<u64>>,
}

impl Settings {
    fn resolve(g: &GlobalArgs, vault_flag: bool) -> Result<Self> {
        let aws = destination::AwsEnv::from_env();
        let ssh = destination::SshSettings {
            key_file: g.ssh_key.clone(),
            config_file: g.ssh_config.clone(),
            // Short and private per connection (the ssh master makes a 0700 directory in it):
            // control socket paths are limited to about 100 bytes.
            control_dir: std::env::temp_dir(),
        };
        let mut vaults = Vec::new();
        for v in &g.vault {
            if vaults.iter().any(|(seen, _)| seen == v) {
                return Err(UsageError(format!("--vault {v} is given twice")).into());
            }
            let d = destination::Destination::parse(v, &aws, &ssh).map_err(|e| UsageError(format!("{e:#}")))?;
            vaults.push((v.clone(), d));
        }
        let cache_dir = match &g.cache_dir {
            Some(d) => d.clone(),
            None => default_cache_dir(),
        };
        let host = hostname();
        let actor = record::cli_actor(&host);
        Ok(Self {
            vaults,
            vault_flag,
            aws,
            ssh,
            password_env: std::env::var(secrets::PASSWORD_ENV).ok(),
            password_file: g.password_file.clone(),
            ctx: Context { cache_dir, host: host.clone(), actor: Some(actor.clone()) },
            json: g.json,
            quiet: g.quiet,
            append_only: g.append_only,
            cache_dir_given: g.cache_dir.is_some(),
            recorder: record::Recorder::new(g.catalog.clone(), actor, gitvault_ops::catalog::Trigger::Cli),
            catalog_given: g.catalog.is_some(),
            ledger_seq: std::sync::Mutex::new(None),
        })
    }

    /// Remember the ledger entry the command just wrote (the vault's newest, as this process
    /// saw it), for the audit trail.
    fn note_ledger(&self, vault: &Vault) {
        *self.ledger_seq.lock().unwrap_or_else(|p| p.into_inner()) = vault.seen_head().map(|h| h.seq);
    }

    fn ledger_seq(&self) -> Option<u64> {
        *self.ledger_seq.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The vault as given, for the catalog (commands that take one).
    fn vault_label(&self) -> Option<String> {
        self.vaults.first().map(|(n, _)| n.clone())
    }

    /// The one vault of a command that works on one.
    fn vault(&self) -> Result<&(String, destination::Destination)> {
        match self.vaults.as_slice() {
            [one] => Ok(one),
            [] => Err(UsageError("no vault given: pass --vault PATH|URL or set GITVAULT_VAULT".into()).into()),
            many => Err(UsageError(format!(
                "--vault is given {} times, but only `backup` writes to several vaults; this command works on one",
                many.len()
            ))
            .into()),
        }
    }

    fn passphrase(&self, confirm: bool) -> Result<Passphrase> {
        secrets::passphrase(self.password_env.clone(), self.password_file.as_deref(), confirm)
    }

    fn unlock(&self) -> Result<Vault> {
        let (name, destination) = self.vault()?;
        let pass = self.passphrase(false)?;
        let mut vault = unlock::unlock(|| destination.open(), name, &pass, &self.ctx)?;
        vault.set_append_only(self.append_only);
        Ok(vault)
    }

    fn progress(&self) -> Box<dyn Progress> {
        if self.json || self.quiet {
            return Box::new(NoProgress);
        }
        match progress::Bars::new(self.quiet) {
            Some(b) => Box::new(b),
            None => Box::new(progress::LogProgress),
        }
    }
}

fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("gitvault");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache").join("gitvault"),
        None => std::env::temp_dir().join("gitvault-cache"),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The lock policy `--lock-days`/`--lock-mode` ask for: one date for the whole run.
fn lock_policy(a: &LockArgs) -> Option<LockPolicy> {
    let mode = match a.lock_mode.unwrap_or(LockModeArg::Governance) {
        LockModeArg::Governance => gitvault_storage::LockMode::Governance,
        LockModeArg::Compliance => gitvault_storage::LockMode::Compliance,
    };
    a.lock_days.map(|days| LockPolicy::for_days(days, mode))
}

/// Set the lock policy on a vault about to be written; a vault that cannot lock is the user's
/// choice of flags meeting the wrong storage: a usage error.
fn set_lock(vault: &mut Vault, policy: Option<LockPolicy>) -> Result<()> {
    vault.set_lock(policy).map_err(|e| match e {
        e @ gitvault_engine::Error::LockUnavailable { .. } => UsageError(gitvault_engine::error::chain(&e)).into(),
        other => anyhow::Error::from(other).context("checking that the vault can lock files (--lock-days)"),
    })
}

fn kdf_params(a: &KdfArgs) -> KdfParams {
    let d = KdfParams::default();
    KdfParams {
        memory_kib: a.kdf_memory_kib.unwrap_or(d.memory_kib),
        iterations: a.kdf_iterations.unwrap_or(d.iterations),
        parallelism: d.parallelism,
    }
}

fn run(cli: Cli, vault_flag: bool) -> Result<u8> {
    // One value for the whole process (`serve` shares it with its HTTP API's threads).
    let s: &'static Settings = Box::leak(Box::new(Settings::resolve(&cli.global, vault_flag)?));
    let audited = audit_of(&cli.command, s);
    let run = audited.as_ref().filter(|a| a.run).map(|a| s.recorder.start(a.action, None, a.vault.as_deref(), None));
    let result = dispatch(cli.command, s);
    if let Some(a) = audited {
        let (outcome, error) = match &result {
            Ok(0) => (gitvault_ops::catalog::Outcome::Ok, None),
            Ok(exit::PARTIAL) => (gitvault_ops::catalog::Outcome::Partial, None),
            Ok(exit::DAMAGE) => (gitvault_ops::catalog::Outcome::Failed, Some("damage found".to_string())),
            Ok(code) => (gitvault_ops::catalog::Outcome::Failed, Some(format!("exit code {code}"))),
            Err(e) => (gitvault_ops::catalog::Outcome::Failed, Some(format!("{e:#}"))),
        };
        if let Some(run) = &run {
            run.finish(gitvault_ops::catalog::RunEnd {
                outcome: Some(outcome),
                error: error.clone(),
                ..Default::default()
            });
        }
        let outcome =
            if a.action == "verify" && matches!(result, Ok(exit::DAMAGE)) { "problems" } else { outcome.as_str() };
        s.recorder.audit(a.action, &a.target, outcome, error, a.vault.as_deref(), s.ledger_seq());
    }
    result
}

/// What the audit trail records of a command (read-only commands: nothing).
struct Audited {
    action: &'static str,
    target: String,
    vault: Option<String>,
    /// Also a run in the run history.
    run: bool,
}

fn audit_of(command: &Command, s: &Settings) -> Option<Audited> {
    let vault = s.vault_label();
    let whole = || vault.clone().unwrap_or_else(|| "-".into());
    let (action, target, run) = match command {
        Command::Init(_) => ("init", whole(), false),
        Command::Restore(a) if a.dry_run => return None,
        Command::Restore(a) => (
            if a.to_forge.is_some() { "restore_to_forge" } else { "restore" },
            format!(
                "{} of snapshot {} into {}",
                a.repo.as_deref().unwrap_or("every repository"),
                a.snapshot,
                match (&a.to_forge, &a.target) {
                    (Some(forge), _) => forge.clone(),
                    (None, Some(t)) => t.display().to_string(),
                    (None, None) => "-".into(),
                }
            ),
            true,
        ),
        Command::Export(a) => {
            ("export", format!("{} of snapshot {} into {}", a.repo, a.snapshot, a.target.display()), false)
        }
        Command::Verify(a) => ("verify", if a.read_data { format!("{} (every byte)", whole()) } else { whole() }, true),
        Command::Copy(a) => {
            return Some(Audited {
                action: "copy",
                target: format!("{} -> {}", a.from, a.to),
                vault: Some(a.to.clone()),
                run: true,
            });
        }
        Command::Key(KeyCommand::Add { .. }) => ("key_add", whole(), false),
        Command::Key(KeyCommand::Remove { id }) => ("key_remove", format!("key slot {id}"), false),
        Command::Forget(_) => ("forget", whole(), true),
        Command::Prune(a) if !a.dry_run => ("prune", whole(), true),
        Command::Upgrade => ("upgrade", whole(), false),
        Command::Token(cli::TokenCommand::Revoke { name }) => {
            return Some(Audited { action: "token_revoke", target: name.clone(), vault: None, run: false });
        }
        Command::Catalog(_) => {
            return Some(Audited { action: "catalog_rebuild", target: "catalog".into(), vault, run: false });
        }
        // `backup` records its own run and audit entries, per vault.
        _ => return None,
    };
    Some(Audited { action, target, vault, run })
}

fn dispatch(command: Command, s: &'static Settings) -> Result<u8> {
    match command {
        Command::Init(a) => cmd_init(s, &a),
        Command::Backup(a) => cmd_backup(s, a),
        Command::Snapshots => {
            let vault = s.unlock()?;
            let snaps = vault.snapshots()?;
            output::snapshots(&snaps, s.json)?;
            Ok(0)
        }
        Command::Diff(a) => {
            let vault = s.unlock()?;
            let snaps = vault.snapshots()?;
            let from = resolve_snapshot(&snaps, &a.from)?;
            let to = resolve_snapshot(&snaps, &a.to)?;
            let d = diff::diff(&vault, from, to)?;
            output::diff(&d, s.json)?;
            Ok(0)
        }
        Command::Restore(a) if a.to_forge.is_some() => to_forge::run(s, &a),
        Command::Restore(a) => {
            let target = a.target.clone().ok_or_else(|| UsageError("give --target DIR or --to-forge".into()))?;
            let vault = s.unlock()?;
            let snaps = vault.snapshots()?;
            let snap = resolve_snapshot(&snaps, &a.snapshot)?;
            let opts = restore::RestoreOptions { force: a.force };
            let report = restore::restore(&vault, snap, a.repo.as_deref(), &target, &opts, s.progress().as_ref())
                .with_context(|| format!("restoring snapshot {} into {}", snap.id.short(), target.display()))?;
            s.note_ledger(&vault);
            output::restore(&report, s.json)?;
            Ok(0)
        }
        Command::Export(a) => {
            let vault = s.unlock()?;
            let snaps = vault.snapshots()?;
            let snap = resolve_snapshot(&snaps, &a.snapshot)?;
            let report = metadata::export(&vault, snap, &a.repo, &a.target, &s.ctx)
                .with_context(|| format!("exporting the metadata of {} from snapshot {}", a.repo, snap.id.short()))?;
            let target = format!("{} of snapshot {} into {}", a.repo, snap.id.short(), a.target.display());
            if vault.append_audit("export", &target, "ok", None)?.is_some() {
                s.note_ledger(&vault);
            }
            output::export(&report, s.json)?;
            Ok(0)
        }
        Command::Verify(a) => {
            let subset = a
                .read_data_subset
                .as_deref()
                .map(verify::Subset::parse)
                .transpose()
                .map_err(|e| UsageError(format!("--read-data-subset {e}")))?;
            let vault = s.unlock()?;
            let opts = verify::VerifyOptions { read_data: a.read_data, read_data_subset: subset };
            let report = verify::verify(&vault, &opts, s.progress().as_ref())?;
            s.note_ledger(&vault);
            output::verify(&report, s.json)?;
            Ok(if report.ok { 0 } else { exit::DAMAGE })
        }
        Command::Copy(a) => cmd_copy(s, a),
        Command::Key(k) => cmd_key(s, k),
        Command::Forget(a) => cmd_forget(s, a),
        Command::Prune(a) => {
            let mut opts = prune_options(a.grace.as_deref(), a.dry_run)?;
            if a.consolidate {
                opts.consolidate = prune::When::Always;
            } else if let Some(n) = a.consolidate_after {
                opts.consolidate = prune::When::StalePacks(n);
            }
            let vault = s.unlock()?;
            let report = prune::prune(&vault, &opts, s.progress().as_ref())?;
            s.note_ledger(&vault);
            output::prune(&report, s.json)?;
            Ok(0)
        }
        Command::Config(cli::ConfigCommand::Check { config }) => {
            let cfg = config::load(&config).map_err(|e| UsageError(format!("{e:#}")))?;
            // Forge sources are listed, so the check shows the repositories a backup would take.
            let mut listings = std::collections::BTreeMap::new();
            for src in &cfg.sources {
                if let Some(options) = &src.forge {
                    let (_, found, _) = resolve_sources(&[(src.url.clone(), None, options.clone())])?;
                    listings.extend(found.accounts.into_iter().map(|l| (src.name.clone(), l)));
                }
            }
            output::config_check(&cfg, &listings, s.json)?;
            Ok(if listings.values().any(|l| l.error.is_some()) { exit::FAILURE } else { 0 })
        }
        Command::Storage(cli::StorageCommand::Check { destination }) => cmd_storage_check(s, destination.as_deref()),
        Command::Status(a) => cmd_status(s, a),
        Command::Serve(a) => serve::serve(s, &a.config, a.listen),
        Command::Alert(cli::AlertCommand::Test { config }) => {
            let cfg = config::load(&config).map_err(|e| UsageError(format!("{e:#}")))?;
            if cfg.alerts.is_empty() {
                return Err(UsageError(format!("{}: no [[alert]] to test", config.display())).into());
            }
            let alerts = alerts::Alerts::from_config(&cfg, &s.ctx.host);
            let deliveries = alerts.send_test();
            let mut failed = cfg.alerts.len() - deliveries.len();
            for d in &deliveries {
                match &d.result {
                    Ok(()) => println!("ok      {}", d.target),
                    Err(e) => {
                        failed += 1;
                        println!("FAILED  {}: {e}", d.target);
                    }
                }
            }
            Ok(if failed == 0 { 0 } else { exit::FAILURE })
        }
        Command::Logs(a) => {
            let since =
                a.since.as_deref().map(|t| history::parse_since(t, time::OffsetDateTime::now_utc())).transpose()?;
            let filter = gitvault_ops::catalog::LogFilter { run: a.run, repo: a.repo, since };
            history::logs(s.recorder.require()?, &filter, s.json)
        }
        Command::Audit(a) => {
            let since =
                a.since.as_deref().map(|t| history::parse_since(t, time::OffsetDateTime::now_utc())).transpose()?;
            history::audit(s.recorder.require()?, since, s.json, a.csv)
        }
        Command::Catalog(cli::CatalogCommand::Rebuild { config }) => cmd_catalog_rebuild(s, config.as_deref()),
        Command::Token(t) => {
            let catalog = s.recorder.require()?;
            match t {
                cli::TokenCommand::Create { role, name } => {
                    let role = match role {
                        cli::RoleArg::Operator => gitvault_ops::catalog::Role::Operator,
                        cli::RoleArg::Auditor => gitvault_ops::catalog::Role::Auditor,
                    };
                    history::token_create(catalog, role, name, &s.recorder.actor, s.json)
                }
                cli::TokenCommand::List => history::token_list(catalog, s.json),
                cli::TokenCommand::Revoke { name } => {
                    let t = catalog.revoke_token(&name).map_err(|e| UsageError(e.to_string()))?;
                    if s.json {
                        output::print_json(&t)?;
                    } else {
                        println!("Revoked token {:?}: it no longer authenticates.", t.name);
                    }
                    Ok(0)
                }
            }
        }
        Command::Upgrade => {
            let mut vault = s.unlock()?;
            let report = upgrade::upgrade(&mut vault)?;
            s.note_ledger(&vault);
            output::upgrade(&report, s.json)?;
            Ok(0)
        }
    }
}

fn cmd_status(s: &Settings, a: cli::StatusArgs) -> Result<u8> {
    let parse = |what: &str, text: &str| {
        forget::parse_duration(text).map_err(|e| anyhow::Error::from(UsageError(format!("{what}: {e}"))))
    };
    let mut objectives = history::Objectives {
        all: a.rpo.as_deref().map(|r| parse("--rpo", r)).transpose()?,
        per_policy: Default::default(),
        default: None,
    };
    if let Some(path) = &a.config {
        let cfg = config::load(path).map_err(|e| UsageError(format!("{e:#}")))?;
        if let (Some(c), false) = (&cfg.catalog, s.catalog_given) {
            s.recorder.prefer_path(c);
        }
        objectives.default = cfg.rpo;
        for p in &cfg.policies {
            if let Some(r) = p.rpo {
                objectives.per_policy.insert(p.name.clone(), r);
            }
        }
    }
    history::status(s.recorder.require()?, &objectives, s.json)
}

fn cmd_catalog_rebuild(s: &Settings, config: Option<&Path>) -> Result<u8> {
    let mut done = Vec::new();
    match config {
        Some(path) => {
            if !s.vaults.is_empty() {
                return Err(UsageError(
                    "--config names the vaults: do not give --vault (or GITVAULT_VAULT) too".into(),
                )
                .into());
            }
            let cfg = config::load(path).map_err(|e| UsageError(format!("{e:#}")))?;
            if let (Some(c), false) = (&cfg.catalog, s.catalog_given) {
                s.recorder.prefer_path(c);
            }
            let catalog = s.recorder.require()?;
            let mut ctx = s.ctx.clone();
            if let (Some(dir), false) = (&cfg.cache_dir, s.cache_dir_given) {
                ctx.cache_dir = dir.clone();
            }
            for v in &cfg.vaults {
                let vault = open_configured(s, &ctx, v).with_context(|| format!("opening the vault {}", v.name))?;
                done.push(history::rebuild(catalog, &vault, &v.name)?);
            }
        }
        None => {
            let catalog = s.recorder.require()?;
            let vault = s.unlock()?;
            let label = s.vault_label().expect("unlock needs a vault");
            done.push(history::rebuild(catalog, &vault, &label)?);
        }
    }
    history::print_rebuilt(&done, s.recorder.require()?, s.json)?;
    Ok(0)
}

fn cmd_storage_check(s: &Settings, positional: Option<&str>) -> Result<u8> {
    let parsed;
    let (name, destination) = match positional {
        Some(_) if s.vault_flag => {
            return Err(UsageError("give the destination once: as VAULT or with --vault, not both".into()).into());
        }
        Some(v) => {
            parsed = destination::Destination::parse(v, &s.aws, &s.ssh).map_err(|e| UsageError(format!("{e:#}")))?;
            (v, &parsed)
        }
        None => {
            let (name, d) = s.vault()?;
            (name.as_str(), d)
        }
    };
    if let destination::Destination::Local(path) = destination
        && !path.is_dir()
    {
        anyhow::bail!(
            "{} is not a directory; create it first (gitvault init creates a vault's directory)",
            path.display()
        );
    }
    let store = destination.open().with_context(|| format!("opening {name}"))?;
    let report = gitvault_storage::check::check(store, &gitvault_storage::check::CheckOptions::default());
    output::storage_check(&report, s.json)?;
    Ok(if report.fit() { 0 } else { exit::FAILURE })
}

fn prune_options(grace: Option<&str>, dry_run: bool) -> Result<prune::PruneOptions> {
    let grace = match grace {
        Some(g) => forget::parse_duration(g).map_err(|e| UsageError(format!("--grace {e}")))?,
        None => prune::DEFAULT_GRACE,
    };
    if grace.as_secs() < gitvault_format::mark::MIN_GRACE_SECONDS {
        return Err(UsageError(format!(
            "--grace must be at least 1h: a backup running meanwhile relies on it (got {})",
            forget::format_duration(grace)
        ))
        .into());
    }
    Ok(prune::PruneOptions { grace, dry_run, ..prune::PruneOptions::default() })
}

fn cmd_forget(s: &Settings, a: cli::ForgetArgs) -> Result<u8> {
    let selection = if a.snapshots.is_empty() {
        let within = a
            .keep_within
            .as_deref()
            .map(forget::parse_duration)
            .transpose()
            .map_err(|e| UsageError(format!("--keep-within {e}")))?;
        let policy = forget::Policy {
            last: a.keep_last.unwrap_or(0),
            hourly: a.keep_hourly.unwrap_or(0),
            daily: a.keep_daily.unwrap_or(0),
            weekly: a.keep_weekly.unwrap_or(0),
            monthly: a.keep_monthly.unwrap_or(0),
            yearly: a.keep_yearly.unwrap_or(0),
            within,
        };
        if policy.is_empty() {
            return Err(UsageError(
                "nothing to forget: give a policy (--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within) or snapshot ids"
                    .into(),
            )
            .into());
        }
        forget::Selection::Policy(policy)
    } else {
        forget::Selection::Snapshots(a.snapshots.clone())
    };
    let prune_opts = a.prune.then(|| prune_options(None, a.dry_run)).transpose()?;
    let vault = s.unlock()?;
    let report = forget::forget(&vault, &selection, a.dry_run)?;
    let pruned = match &prune_opts {
        Some(opts) => Some(prune::prune(&vault, opts, s.progress().as_ref())?),
        None => None,
    };
    output::forget(&report, pruned.as_ref(), s.json)?;
    Ok(0)
}

fn cmd_init(s: &Settings, a: &cli::InitArgs) -> Result<u8> {
    let (name, destination) = s.vault()?;
    if a.keys_from.as_deref() == Some(name) {
        return Err(UsageError(format!("--keys-from {name} is the vault being created")).into());
    }
    let source = a
        .keys_from
        .as_deref()
        .map(|from| {
            destination::Destination::parse(from, &s.aws, &s.ssh)
                .map_err(|e| anyhow::Error::from(UsageError(format!("--keys-from: {e:#}"))))
                .map(|d| (from, d))
        })
        .transpose()?;
    let pass = s.passphrase(true)?;
    // The source is unlocked before anything is created: a wrong passphrase creates nothing.
    let source =
        match &source {
            Some((from, d)) => Some(unlock::unlock(|| d.open(), from, &pass, &s.ctx).with_context(|| {
                format!("unlocking {from} to take its keys (it must open with the same passphrase)")
            })?),
            None => None,
        };
    let store = destination.open_new().with_context(|| format!("creating a vault at {name}"))?;
    let kdf = kdf_params(&a.kdf);
    let vault = match &source {
        Some(source) => LockedVault::init_sharing_keys(store, &pass, kdf, s.ctx.clone(), source),
        None => LockedVault::init(store, &pass, kdf, s.ctx.clone()),
    }
    .with_context(|| format!("creating a vault at {name}"))?;
    if let (Some(source), Some(from)) = (&source, a.keys_from.as_deref()) {
        let detail = Some(format!("holds the keys of vault {}", source.id()));
        vault
            .append_audit("init", &format!("keys from {from}"), "ok", detail)
            .with_context(|| format!("recording in {name} whose keys it holds"))?;
    }
    unlock::remember(&vault, name, &s.ctx);
    s.note_ledger(&vault);
    output::init(&vault, name, s.json)?;
    Ok(0)
}

fn cmd_copy(s: &Settings, a: cli::CopyArgs) -> Result<u8> {
    if s.vault_flag {
        return Err(UsageError("copy takes --from and --to, not --vault".into()).into());
    }
    if a.from == a.to {
        return Err(UsageError(format!("--from and --to are both {}; copy into another vault", a.from)).into());
    }
    let parse = |v: &str, flag: &str| {
        destination::Destination::parse(v, &s.aws, &s.ssh).map_err(|e| UsageError(format!("{flag}: {e:#}")))
    };
    let (from, to) = (parse(&a.from, "--from")?, parse(&a.to, "--to")?);
    // Both vaults are opened and unlocked before anything is written: a wrong passphrase or a
    // destination that is not a vault leaves the destination untouched.
    let locked_from =
        LockedVault::open(from.open()?).with_context(|| format!("opening the source vault {}", a.from))?;
    let locked_to = LockedVault::open(to.open()?).with_context(|| format!("opening the destination vault {}", a.to))?;
    let pass_from = s.passphrase(false)?;
    let pass_to = match std::env::var(secrets::TO_PASSWORD_ENV).ok().filter(|p| !p.is_empty()) {
        Some(p) => Passphrase::new(p),
        None => match &a.to_password_file {
            Some(f) => secrets::passphrase_file(f)?,
            None => pass_from.clone(),
        },
    };
    // The source first: a destination that holds its keys (`init --keys-from`) is then opened
    // with them, proven by its first ledger entry, without a second key derivation. Each
    // derivation computes two lanes on two threads, so running both side by side would save
    // nothing on two cores.
    let from_vault = locked_from
        .unlock(&pass_from, s.ctx.clone())
        .with_context(|| format!("unlocking the source vault {}", a.from))?;
    let to_vault = match locked_to.unlock_as_replica_of(&from_vault, s.ctx.clone()) {
        Ok(replica) => Ok(replica),
        Err(locked_to) => locked_to.unlock(&pass_to, s.ctx.clone()),
    };
    let mut to_vault = to_vault.with_context(|| {
        format!(
            "unlocking the destination vault {} (its passphrase comes from {}, else --to-password-file, else it is the source's)",
            a.to,
            secrets::TO_PASSWORD_ENV
        )
    })?;
    to_vault.set_append_only(s.append_only);
    set_lock(&mut to_vault, lock_policy(&a.lock))
        .with_context(|| format!("preparing the destination vault {}", a.to))?;
    let report = copy::copy(&from_vault, &to_vault, &a.snapshots, s.progress().as_ref())
        .with_context(|| format!("copying from {} to {}", a.from, a.to))?;
    let detail = Some(format!("{} snapshots copied", report.snapshots_copied.len()));
    // Only a copy that wrote something is a ledger event (a periodic copy with nothing new is not).
    if !report.snapshots_copied.is_empty()
        && to_vault.append_audit("copy", &format!("from {}", a.from), "ok", detail)?.is_some()
    {
        s.note_ledger(&to_vault);
    }
    output::copy(&report, s.json)?;
    Ok(0)
}

fn cmd_backup(s: &Settings, a: cli::BackupArgs) -> Result<u8> {
    if let Some(path) = &a.config {
        if a.api_url.is_some() || a.forge.is_given() {
            return Err(UsageError(
                "with --config, forge options (api_url, filters, wikis, pull_refs) go in each [[source]] of the file"
                    .into(),
            )
            .into());
        }
        return cmd_backup_config(s, path, a.policy.as_deref(), a.jobs.map(usize::from));
    }
    if a.name.is_some() && a.sources.len() != 1 {
        return Err(UsageError("--name applies to a single SOURCE; back the others up in another run".into()).into());
    }
    let account_options = account_options(&a.forge, a.api_url.clone())?;
    let given: Vec<(String, Option<String>, forges::AccountOptions)> =
        a.sources.iter().map(|src| (absolutize(src), a.name.clone(), account_options.clone())).collect();
    if a.name.is_some() && given.iter().any(|(src, _, _)| gitvault_forge::ForgeSource::parse(src).is_some()) {
        return Err(
            UsageError("--name does not apply to a forge source: its repositories keep their names".into()).into()
        );
    }
    if a.api_url.is_some() && !given.iter().any(|(src, _, _)| gitvault_forge::ForgeSource::parse(src).is_some()) {
        return Err(UsageError("--api-url applies to forge sources (github:ORG ...), and none was given".into()).into());
    }
    let backup_type = a.backup_type.map(|t| match t {
        TypeArg::Full => BackupType::Full,
        TypeArg::Diff => BackupType::Diff,
        TypeArg::Incr => BackupType::Incr,
    });
    let labels: Vec<String> = s.vaults.iter().map(|(n, _)| n.clone()).collect();
    let run = s.recorder.start("backup", None, Some(&labels.join(",")), backup_type.map(|t| t.as_str()));
    let result = (|| -> Result<(Vec<output::DestinationOutcome>, output::Forges, usize)> {
        let (mut sources, mut found, accounts) = resolve_sources(&given)?;
        let opts = backup::BackupOptions {
            backup_type,
            jobs: a.jobs.map_or(DEFAULT_JOBS, usize::from),
            ..backup::BackupOptions::default()
        };
        let lock = lock_policy(&a.lock);
        if s.vaults.len() <= 1 {
            let mut vault = s.unlock()?;
            set_lock(&mut vault, lock)?;
            found.gone_upstream = gone_upstream(&vault, &found.accounts);
            add_metadata(&mut sources, &mut found, &accounts, &s.ctx, Some(&vault), opts.jobs, None);
            let report = backup::backup(&vault, &sources, &opts, s.progress().as_ref())?;
            output::backup(&report, &found, s.json)?;
            if report.snapshot.is_some() {
                s.note_ledger(&vault);
            }
            let label = s.vault_label().expect("unlock needs a vault");
            return Ok((vec![output::DestinationOutcome { vault: label, result: Ok(report) }], found, sources.len()));
        }
        // Several destinations: one passphrase opens them all; a destination that cannot be opened
        // fails on its own, and the others are backed up.
        let pass = s.passphrase(false)?;
        let opened: Vec<Result<Vault>> = s
            .vaults
            .iter()
            .map(|(name, d)| {
                let vault = (|| -> Result<Vault> {
                    let mut vault = unlock::unlock(|| d.open(), name, &pass, &s.ctx)?;
                    vault.set_append_only(s.append_only);
                    set_lock(&mut vault, lock)?;
                    Ok(vault)
                })();
                vault.with_context(|| format!("opening the vault {name}"))
            })
            .collect();
        let vaults: Vec<&Vault> = opened.iter().filter_map(|v| v.as_ref().ok()).collect();
        if let Some(first) = vaults.first() {
            found.gone_upstream = gone_upstream(first, &found.accounts);
        }
        add_metadata(&mut sources, &mut found, &accounts, &s.ctx, vaults.first().copied(), opts.jobs, None);
        let mut results = backup::backup_many(&vaults, &sources, &opts, s.progress().as_ref())?.into_iter();
        let outcomes: Vec<output::DestinationOutcome> = s
            .vaults
            .iter()
            .zip(opened)
            .map(|((name, _), vault)| {
                let result = match vault {
                    Ok(_) => results
                        .next()
                        .expect("one result per opened vault")
                        .with_context(|| format!("backing up into the vault {name}")),
                    Err(e) => Err(e),
                };
                output::DestinationOutcome { vault: name.clone(), result }
            })
            .collect();
        output::backup_many(&outcomes, &found, s.json)?;
        Ok((outcomes, found, sources.len()))
    })();
    match result {
        Ok((outcomes, found, count)) => {
            let (end, _) = record::record_backup(&run, &outcomes, &found, &[], &record::Protected::default());
            run.finish(end);
            for o in &outcomes {
                let (outcome, detail) = match &o.result {
                    Ok(r) if r.snapshot.is_none() => ("failed", None),
                    Ok(r) if !r.failures.is_empty() => ("partial", r.snapshot.map(|id| format!("snapshot {id}"))),
                    Ok(r) => ("ok", r.snapshot.map(|id| format!("snapshot {id}"))),
                    Err(e) => ("failed", Some(format!("{e:#}"))),
                };
                let seq = if outcomes.len() == 1 && outcome != "failed" { s.ledger_seq() } else { None };
                s.recorder.audit("backup", &format!("{count} sources"), outcome, detail, Some(&o.vault), seq);
            }
            let codes: Vec<u8> =
                outcomes.iter().map(|o| o.result.as_ref().map_or(exit::FAILURE, backup_exit_code)).collect();
            Ok(if codes.iter().all(|&c| c == 0) {
                0
            } else if codes.iter().all(|&c| c == exit::FAILURE) {
                exit::FAILURE
            } else {
                exit::PARTIAL
            })
        }
        Err(e) => {
            run.finish(gitvault_ops::catalog::RunEnd { error: Some(format!("{e:#}")), ..Default::default() });
            s.recorder.audit("backup", "-", "failed", Some(format!("{e:#}")), Some(&labels.join(",")), None);
            Err(e)
        }
    }
}

/// `backup --config FILE`: each policy backs its sources up into its vaults, then applies its
/// retention to its own snapshots in each vault that took the backup.
fn cmd_backup_config(s: &Settings, path: &Path, only: Option<&str>, jobs: Option<usize>) -> Result<u8> {
    if !s.vaults.is_empty() {
        return Err(UsageError("--config names the vaults: do not give --vault (or GITVAULT_VAULT) too".into()).into());
    }
    let cfg = config::load(path).map_err(|e| UsageError(format!("{e:#}")))?;
    if let (Some(c), false) = (&cfg.catalog, s.catalog_given) {
        s.recorder.prefer_path(c);
    }
    let policies: Vec<&config::PolicyConf> = match only {
        Some(name) => match cfg.policies.iter().find(|p| p.name == name) {
            Some(p) => vec![p],
            None => {
                let known: Vec<&str> = cfg.policies.iter().map(|p| p.name.as_str()).collect();
                return Err(UsageError(format!(
                    "{}: no policy {name:?} (known: {})",
                    path.display(),
                    known.join(", ")
                ))
                .into());
            }
        },
        None => cfg.policies.iter().collect(),
    };
    let mut ctx = s.ctx.clone();
    if let (Some(dir), false) = (&cfg.cache_dir, s.cache_dir_given) {
        ctx.cache_dir = dir.clone();
    }
    let alerts = alerts::Alerts::from_config(&cfg, &s.ctx.host);
    let mut runs = Vec::new();
    let mut codes = Vec::new();
    for policy in policies {
        let opts = PolicyRunOptions { jobs: jobs.or(cfg.jobs).unwrap_or(DEFAULT_JOBS), ..PolicyRunOptions::default() };
        let done = match run_policy(s, &cfg, policy, &ctx, &s.recorder, &opts, s.progress().as_ref()) {
            Ok(done) => done,
            Err(e) => {
                alerts.run_error(&policy.name, "backup", &e, s.recorder.catalog());
                return Err(e);
            }
        };
        alerts.after_policy(&policy.name, &done, s.recorder.catalog());
        codes.push(done.code);
        runs.push(done.run);
    }
    output::config_backup(&runs, s.json)?;
    Ok(combine(codes.into_iter()))
}

/// Knobs of one policy run beyond the policy itself.
#[derive(Default)]
pub struct PolicyRunOptions {
    pub jobs: usize,
    /// Replace the policy's backup type (a schedule job's own type).
    pub backup_type: Option<BackupType>,
    /// Back up only this repository of the policy's sources.
    pub only_repo: Option<String>,
    /// Stop cleanly when set (SIGTERM).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// What one policy run did.
pub struct PolicyDone {
    pub run: output::PolicyRun,
    pub code: u8,
    pub end: gitvault_ops::catalog::RunEnd,
    pub suspicious: record::Suspicious,
    pub run_id: Option<i64>,
}

/// Back a policy's sources up into its vaults, apply its retention, and record it all in the
/// catalog (a run, its repositories, log lines, an audit entry per vault).
fn run_policy(
    s: &Settings,
    cfg: &config::Config,
    policy: &config::PolicyConf,
    ctx: &Context,
    rec: &record::Recorder,
    opts: &PolicyRunOptions,
    progress: &dyn Progress,
) -> Result<PolicyDone> {
    let backup_type = opts.backup_type.or(policy.backup_type);
    let vault_list = policy.vaults.join(",");
    let run = rec.start_attempt(
        "backup",
        Some(&policy.name),
        Some(&vault_list),
        backup_type.map(|t| t.as_str()),
        opts.attempt.max(1),
    );
    let result = (|| -> Result<PolicyDone> {
        let given: Vec<(String, Option<String>, forges::AccountOptions)> = policy
            .sources
            .iter()
            .map(|n| {
                let src = cfg.source(n);
                match &src.forge {
                    Some(options) => (src.url.clone(), None, options.clone()),
                    None => (src.url.clone(), Some(src.name.clone()), forges::AccountOptions::default()),
                }
            })
            .collect();
        let (mut sources, mut found, accounts) = resolve_sources(&given)?;
        if let Some(repo) = &opts.only_repo {
            sources.retain(|spec| spec.name() == *repo);
            if sources.is_empty() {
                anyhow::bail!("policy {} backs up no repository named {repo:?}", policy.name);
            }
        }
        let opened: Vec<Result<Vault>> = policy
            .vaults
            .iter()
            .map(|name| open_configured(s, ctx, cfg.vault(name)).with_context(|| format!("opening the vault {name}")))
            .collect();
        let vaults: Vec<&Vault> = opened.iter().filter_map(|v| v.as_ref().ok()).collect();
        if let Some(first) = vaults.first() {
            found.gone_upstream = gone_upstream(first, &found.accounts);
        }
        note_config_change(rec, cfg, &policy.vaults, &opened);
        add_metadata(
            &mut sources,
            &mut found,
            &accounts,
            ctx,
            vaults.first().copied(),
            opts.jobs,
            opts.only_repo.as_deref(),
        );
        let backup_opts = backup::BackupOptions {
            backup_type,
            jobs: opts.jobs.max(1),
            cancel: opts.cancel.clone(),
            ..backup::BackupOptions::default()
        };
        let mut results = backup::backup_many(&vaults, &sources, &backup_opts, progress)?.into_iter();
        let mut outcomes = Vec::new();
        let mut retention = Vec::new();
        for (name, vault) in policy.vaults.iter().zip(&opened) {
            let result = match vault {
                Ok(_) => results
                    .next()
                    .expect("one result per opened vault")
                    .with_context(|| format!("backing up into the vault {name}")),
                Err(e) => Err(anyhow!("{e:#}")),
            };
            let committed = result.as_ref().is_ok_and(|r| r.snapshot.is_some());
            let stopping = opts.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst));
            if let (Some(keep), Ok(vault), true, false) = (&policy.retention, vault, committed, stopping) {
                retention.push(apply_retention(vault, name, policy, keep, &sources, progress));
            }
            let outcome = match &result {
                Ok(r) if r.snapshot.is_none() => "failed",
                Ok(r) if !r.failures.is_empty() => "partial",
                Ok(_) => "ok",
                Err(_) => "failed",
            };
            let detail = match &result {
                Ok(r) => r.snapshot.map(|id| format!("snapshot {id}")),
                Err(e) => Some(format!("{e:#}")),
            };
            let seq = vault.as_ref().ok().and_then(|v| v.seen_head()).map(|h| h.seq);
            rec.audit(
                "backup",
                &format!("policy {} ({} sources)", policy.name, sources.len()),
                outcome,
                detail,
                Some(name),
                if committed { seq } else { None },
            );
            outcomes.push(output::DestinationOutcome { vault: name.clone(), result });
        }
        let code = combine(outcomes.iter().map(|o| o.result.as_ref().map_or(exit::FAILURE, backup_exit_code)));
        let code = if code == 0 && retention.iter().any(|r| r.error.is_some()) { exit::PARTIAL } else { code };
        let (end, suspicious) = record::record_backup(&run, &outcomes, &found, &retention, &policy.protected);
        Ok(PolicyDone {
            run: output::PolicyRun { policy: policy.name.clone(), forges: found, outcomes, retention },
            code,
            end,
            suspicious,
            run_id: run.id,
        })
    })();
    match result {
        Ok(mut done) => {
            let stopped = opts.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst));
            let mut end = done.end.clone();
            if stopped && end.outcome != Some(gitvault_ops::catalog::Outcome::Ok) {
                end.outcome = Some(gitvault_ops::catalog::Outcome::Interrupted);
            }
            run.finish(end.clone());
            done.end = end;
            Ok(done)
        }
        Err(e) => {
            run.finish(gitvault_ops::catalog::RunEnd { error: Some(format!("{e:#}")), ..Default::default() });
            rec.audit("backup", &format!("policy {}", policy.name), "failed", Some(format!("{e:#}")), None, None);
            Err(e)
        }
    }
}

/// A configuration file whose content changed since a vault last saw it: an audit entry in
/// the catalog (once) and in each such vault's ledger.
fn note_config_change(rec: &record::Recorder, cfg: &config::Config, names: &[String], opened: &[Result<Vault>]) {
    let Ok(text) = std::fs::read(&cfg.path) else { return };
    let digest = blake3::hash(&text).to_hex().to_string();
    let Some(catalog) = rec.catalog() else { return };
    let key = format!("config:{}", cfg.path.display());
    let known = catalog.get_value(&key).ok().flatten();
    if known.as_deref() != Some(digest.as_str()) {
        let detail = match &known {
            Some(old) => format!("content {} -> {}", &old[..16.min(old.len())], &digest[..16]),
            None => format!("first seen, content {}", &digest[..16]),
        };
        rec.audit("config_change", &cfg.path.display().to_string(), "ok", Some(detail), None, None);
        let _ = catalog.set_value(&key, &digest);
    }
    for (name, vault) in names.iter().zip(opened) {
        let Ok(vault) = vault else { continue };
        let vkey = format!("config:{}:vault:{name}", cfg.path.display());
        if catalog.get_value(&vkey).ok().flatten().as_deref() == Some(digest.as_str()) {
            continue;
        }
        let detail = Some(format!("configuration content {}", &digest[..16]));
        match vault.append_audit("config_change", &cfg.path.display().to_string(), "ok", detail) {
            Ok(_) => {
                let _ = catalog.set_value(&vkey, &digest);
            }
            Err(e) => tracing::warn!(vault = %name, "could not record the configuration change in the ledger: {e}"),
        }
    }
}

/// 0 when all are 0, failure when all failed, else partial.
fn combine(codes: impl Iterator<Item = u8>) -> u8 {
    let codes: Vec<u8> = codes.collect();
    if codes.iter().all(|&c| c == 0) {
        0
    } else if codes.iter().all(|&c| c == exit::FAILURE) {
        exit::FAILURE
    } else {
        exit::PARTIAL
    }
}

/// Open and unlock a vault the config declares, with its own passphrase source and ssh key.
fn open_configured(s: &Settings, ctx: &Context, v: &config::VaultConf) -> Result<Vault> {
    let ssh = destination::SshSettings {
        key_file: v.ssh_key.clone().or_else(|| s.ssh.key_file.clone()),
        config_file: s.ssh.config_file.clone(),
        control_dir: s.ssh.control_dir.clone(),
    };
    let destination = destination::Destination::parse(&v.url, &s.aws, &ssh)?;
    let pass = match &v.passphrase {
        config::PassphraseFrom::File(f) => secrets::passphrase_file(f)?,
        config::PassphraseFrom::Env(name) => match std::env::var(name).ok().filter(|p| !p.is_empty()) {
            Some(p) => Passphrase::new(p),
            None => anyhow::bail!(
                "no passphrase for the vault {}: set {name}, or give it a passphrase_file in the config",
                v.name
            ),
        },
    };
    let mut vault = unlock::unlock(|| destination.open(), &v.url, &pass, ctx)?;
    vault.set_append_only(s.append_only || v.append_only);
    if let Some((days, compliance)) = v.lock {
        let mode =
            if compliance { gitvault_storage::LockMode::Compliance } else { gitvault_storage::LockMode::Governance };
        vault.set_lock(Some(LockPolicy::for_days(days, mode)))?;
    }
    Ok(vault)
}

/// A policy's retention in one vault: forget among the policy's own snapshots, then prune.
fn apply_retention(
    vault: &Vault,
    name: &str,
    policy: &config::PolicyConf,
    keep: &forget::Policy,
    sources: &[backup::SourceSpec],
    progress: &dyn Progress,
) -> output::RetentionRun {
    let group: Vec<String> = sources.iter().map(backup::SourceSpec::name).collect();
    let result = (|| -> Result<(forget::ForgetReport, Option<prune::PruneReport>)> {
        let forgot = forget::forget(vault, &forget::Selection::Group(keep.clone(), group), false)?;
        let pruned = if policy.prune {
            let mut opts = prune::PruneOptions::default();
            if let Some(g) = policy.grace {
                opts.grace = g;
            }
            Some(prune::prune(vault, &opts, progress)?)
        } else {
            None
        };
        Ok((forgot, pruned))
    })();
    match result {
        Ok((forget, prune)) => {
            output::RetentionRun { vault: name.to_string(), forget: Some(forget), prune, error: None }
        }
        Err(e) => output::RetentionRun {
            vault: name.to_string(),
            forget: None,
            prune: None,
            error: Some(format!("applying the retention of policy {}: {e:#}", policy.name)),
        },
    }
}

fn backup_exit_code(report: &backup::BackupReport) -> u8 {
    // A repository whose LFS objects could not all be had is backed up only in part.
    let whole = report.failures.is_empty() && report.repositories.iter().all(|r| r.lfs_missing == 0);
    match (report.snapshot, whole) {
        (Some(_), true) => 0,
        (Some(_), false) => exit::PARTIAL,
        (None, _) => exit::FAILURE,
    }
}

/// Repositories worked on at once unless `--jobs` or the config says otherwise.
const DEFAULT_JOBS: usize = 4;

/// The forge options of `backup` flags.
fn account_options(f: &cli::ForgeArgs, api_url: Option<String>) -> Result<forges::AccountOptions> {
    let mut filter =
        gitvault_forge::Filter::default().with_globs(&f.include, &f.exclude).map_err(|e| UsageError(e.to_string()))?;
    filter.forks = !f.no_forks;
    filter.archived = !f.no_archived;
    if let Some(v) = &f.visibility {
        filter.visibility = v.parse().map_err(UsageError)?;
    }
    filter.topics = f.topic.clone();
    Ok(forges::AccountOptions {
        api_url,
        token_file: None,
        token_env: None,
        filter,
        wikis: !f.no_wikis,
        pull_refs: f.pull_refs,
        ssh: f.ssh,
        metadata: !f.no_metadata,
    })
}

/// Sources as given, in order: a forge source is listed on its forge and becomes its
/// repositories (and wikis); anything else is a path or git URL.
fn resolve_sources(
    given: &[(String, Option<String>, forges::AccountOptions)],
) -> Result<(Vec<backup::SourceSpec>, output::Forges, Vec<forges::Account>)> {
    let mut sources = Vec::new();
    let mut found = output::Forges::default();
    let mut accounts = Vec::new();
    for (src, name, options) in given {
        match gitvault_forge::ForgeSource::parse(src) {
            None => sources.push(backup::SourceSpec::new(src.clone(), name.clone())),
            Some(parsed) => {
                let parsed = parsed.map_err(|e| UsageError(e.to_string()))?;
                let account = forges::Account::new(parsed, options).map_err(|e| UsageError(format!("{e:#}")))?;
                let listing = forges::list(&account);
                match &listing.error {
                    Some(e) => tracing::warn!(source = %listing.source, error = %e, "listing failed"),
                    None => tracing::info!(
                        source = %listing.source,
                        repositories = listing.repositories.len(),
                        left_out = listing.left_out.len(),
                        requests = listing.requests,
                        "listed"
                    ),
                }
                sources.extend(forges::specs(&account, &listing));
                found.accounts.push(listing);
                accounts.push(account);
            }
        }
    }
    Ok((sources, found, accounts))
}

/// The metadata of every repository the forge accounts listed (those whose options ask for
/// it), as more sources; `vault` restores a metadata repository the cache lost.
fn add_metadata(
    sources: &mut Vec<backup::SourceSpec>,
    found: &mut output::Forges,
    accounts: &[forges::Account],
    ctx: &Context,
    vault: Option<&Vault>,
    jobs: usize,
    only: Option<&str>,
) {
    let work: Vec<(&forges::Account, Vec<gitvault_forge::RemoteRepo>)> = accounts
        .iter()
        .zip(&found.accounts)
        .filter(|(a, l)| a.options.metadata && l.error.is_none())
        .map(|(a, l)| (a, l.kept().into_iter().filter(|r| only.is_none_or(|o| r.vault_name() == o)).collect()))
        .collect();
    if work.is_empty() {
        found.count_requests();
        return;
    }
    let now = gitvault_format::timestamp::now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    let (more, runs) = metadata::prepare(&work, &ctx.cache_dir, vault, jobs, &now);
    sources.extend(more);
    found.metadata = runs;
    found.count_requests();
}

/// Repositories an account held at its newest backup in `vault` that its listing no longer
/// shows: deleted, renamed or hidden from the token upstream. Their backups stay.
fn gone_upstream(vault: &Vault, accounts: &[forges::Listing]) -> Vec<output::Gone> {
    let listed: Vec<&forges::Listing> = accounts.iter().filter(|l| l.error.is_none()).collect();
    if listed.is_empty() {
        return Vec::new();
    }
    let snapshots = match vault.snapshots() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the snapshots to find repositories gone upstream");
            return Vec::new();
        }
    };
    let mut gone = Vec::new();
    for l in listed {
        let prefix = format!("{}/", l.source);
        let belongs = |name: &str| name == l.source || name.starts_with(&prefix);
        let names: std::collections::BTreeSet<String> = l.all_names().collect();
        // The newest snapshot that holds any repository of this account.
        let Some(last) = snapshots.iter().rev().find(|s| s.repositories.iter().any(|r| belongs(&r.name))) else {
            continue;
        };
        for r in last.repositories.iter().filter(|r| belongs(&r.name)) {
            let repo = r.name.strip_suffix(".wiki").unwrap_or(&r.name);
            if !names.contains(repo) && !gone.iter().any(|g: &output::Gone| g.name == repo) {
                tracing::info!(repo, account = %l.source, "no longer listed upstream; its backups stay");
                gone.push(output::Gone {
                    name: repo.to_string(),
                    account: l.source.clone(),
                    last_snapshot: last.id.to_string(),
                });
            }
        }
    }
    gone
}

/// Local relative paths become absolute, so the recorded source means the same thing later.
fn absolutize(src: &str) -> String {
    let p = Path::new(src);
    if p.exists()
        && p.is_relative()
        && let Ok(abs) = std::path::absolute(p)
    {
        return abs.to_string_lossy().into_owned();
    }
    src.to_string()
}

fn cmd_key(s: &Settings, k: KeyCommand) -> Result<u8> {
    let vault = s.unlock()?;
    match k {
        KeyCommand::List => output::keys(&keys::list_keys(&vault)?, s.json)?,
        KeyCommand::Add { new_password_file, kdf } => {
            let pass =
                secrets::new_passphrase(std::env::var(secrets::NEW_PASSWORD_ENV).ok(), new_password_file.as_deref())?;
            let id = keys::add_key(&vault, &pass, kdf_params(&kdf))?;
            s.note_ledger(&vault);
            output::key_changed("added", &id.to_hex(), s.json)?;
        }
        KeyCommand::Remove { id } => {
            let removed = keys::remove_key(&vault, &id).map_err(|e| anyhow!(e))?;
            s.note_ledger(&vault);
            output::key_changed("removed", &removed.to_hex(), s.json)?;
        }
    }
    Ok(0)
}
