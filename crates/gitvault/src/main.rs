//! The `gitvault` command: parses arguments, resolves settings once, calls the engine, prints.

mod cli;
mod destination;
mod output;
mod progress;
mod secrets;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow};
use clap::Parser;
use gitvault_engine::ops::{backup, diff, keys, restore, verify};
use gitvault_engine::progress::{NoProgress, Progress};
use gitvault_engine::{Context, LockedVault, Vault, resolve_snapshot};
use gitvault_format::keys::KdfParams;
use gitvault_format::snapshot::BackupType;

use cli::{Cli, Command, GlobalArgs, KdfArgs, KeyCommand, TypeArg};

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
    let cli = Cli::parse();
    init_logging(&cli.global);
    let result = run(cli);
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
    vault: String,
    destination: destination::Destination,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    ctx: Context,
    json: bool,
    quiet: bool,
}

impl Settings {
    fn resolve(g: &GlobalArgs) -> Result<Self> {
        let vault = g
            .vault
            .clone()
            .ok_or_else(|| UsageError("no vault given: pass --vault PATH|URL or set GITVAULT_VAULT".into()))?;
        let ssh = destination::SshSettings {
            key_file: g.ssh_key.clone(),
            config_file: g.ssh_config.clone(),
            // Short and private per connection (the ssh master makes a 0700 directory in it):
            // control socket paths are limited to about 100 bytes.
            control_dir: std::env::temp_dir(),
        };
        let destination = destination::Destination::parse(&vault, &destination::AwsEnv::from_env(), &ssh)
            .map_err(|e| UsageError(format!("{e:#}")))?;
        let cache_dir = match &g.cache_dir {
            Some(d) => d.clone(),
            None => default_cache_dir(),
        };
        Ok(Self {
            vault,
            destination,
            password_env: std::env::var(secrets::PASSWORD_ENV).ok(),
            password_file: g.password_file.clone(),
            ctx: Context { cache_dir, host: hostname() },
            json: g.json,
            quiet: g.quiet,
        })
    }

    fn unlock(&self) -> Result<Vault> {
        let locked = LockedVault::open(self.destination.open()?)?;
        let pass = secrets::passphrase(self.password_env.clone(), self.password_file.as_deref(), false)?;
        Ok(locked.unlock(&pass, self.ctx.clone())?)
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

fn kdf_params(a: &KdfArgs) -> KdfParams {
    let d = KdfParams::default();
    KdfParams {
        memory_kib: a.kdf_memory_kib.unwrap_or(d.memory_kib),
        iterations: a.kdf_iterations.unwrap_or(d.iterations),
        parallelism: d.parallelism,
    }
}

fn run(cli: Cli) -> Result<u8> {
    let s = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Init(a) => cmd_init(&s, &a.kdf),
        Command::Backup(a) => cmd_backup(&s, a),
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
        Command::Restore(a) => {
            let vault = s.unlock()?;
            let snaps = vault.snapshots()?;
            let snap = resolve_snapshot(&snaps, &a.snapshot)?;
            let opts = restore::RestoreOptions { force: a.force };
            let report = restore::restore(&vault, snap, a.repo.as_deref(), &a.target, &opts, s.progress().as_ref())
                .with_context(|| format!("restoring snapshot {} into {}", snap.id.short(), a.target.display()))?;
            output::restore(&report, s.json)?;
            Ok(0)
        }
        Command::Verify(a) => {
            let vault = s.unlock()?;
            let report =
                verify::verify(&vault, &verify::VerifyOptions { read_data: a.read_data }, s.progress().as_ref())?;
            output::verify(&report, s.json)?;
            Ok(if report.ok { 0 } else { exit::DAMAGE })
        }
        Command::Key(k) => cmd_key(&s, k),
    }
}

fn cmd_init(s: &Settings, kdf: &KdfArgs) -> Result<u8> {
    let pass = secrets::passphrase(s.password_env.clone(), s.password_file.as_deref(), true)?;
    let store = s.destination.open_new().with_context(|| format!("creating a vault at {}", s.vault))?;
    let vault = LockedVault::init(store, &pass, kdf_params(kdf), s.ctx.clone())
        .with_context(|| format!("creating a vault at {}", s.vault))?;
    output::init(&vault, &s.vault, s.json)?;
    Ok(0)
}

fn cmd_backup(s: &Settings, a: cli::BackupArgs) -> Result<u8> {
    if a.name.is_some() && a.sources.len() != 1 {
        return Err(UsageError("--name applies to a single SOURCE; back the others up in another run".into()).into());
    }
    let vault = s.unlock()?;
    let sources: Vec<backup::SourceSpec> =
        a.sources.iter().map(|src| backup::SourceSpec { source: absolutize(src), name: a.name.clone() }).collect();
    let opts = backup::BackupOptions {
        backup_type: a.backup_type.map(|t| match t {
            TypeArg::Full => BackupType::Full,
            TypeArg::Diff => BackupType::Diff,
            TypeArg::Incr => BackupType::Incr,
        }),
    };
    let report = backup::backup(&vault, &sources, &opts, s.progress().as_ref())?;
    output::backup(&report, s.json)?;
    Ok(match (report.snapshot, report.failures.is_empty()) {
        (Some(_), true) => 0,
        (Some(_), false) => exit::PARTIAL,
        (None, _) => exit::FAILURE,
    })
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
            output::key_changed("added", &id.to_hex(), s.json)?;
        }
        KeyCommand::Remove { id } => {
            let removed = keys::remove_key(&vault, &id).map_err(|e| anyhow!(e))?;
            output::key_changed("removed", &removed.to_hex(), s.json)?;
        }
    }
    Ok(0)
}
