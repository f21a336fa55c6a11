//! `gitvault.toml`: vaults, sources and backup policies declared once (README "Configuration
//! file"; an annotated example is `gitvault.example.toml`). Parsed strictly: an unknown key or a
//! bad value is an error naming its line.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use gitvault_engine::ops::forget::{Policy, parse_duration};
use gitvault_format::snapshot::BackupType;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cache_dir: Option<PathBuf>,
    /// The catalog (run history, logs, audit trail, API tokens).
    catalog: Option<PathBuf>,
    /// The recovery-point objective of policies that do not give their own.
    rpo: Option<Spanned<String>>,
    /// The time zone schedules are read in (IANA name; default: the system's).
    timezone: Option<Spanned<String>>,
    serve: Option<RawServe>,
    /// Where alerts go (`[[alert]]` tables, see gitvault_ops::notify).
    #[serde(default, rename = "alert")]
    alerts: Vec<Spanned<gitvault_ops::notify::AlertSpec>>,
    /// Repositories read and packed at the same time.
    jobs: Option<Spanned<u16>>,
    passphrase: Option<RawPassphrase>,
    #[serde(default, rename = "vault")]
    vaults: Vec<RawVault>,
    #[serde(default, rename = "source")]
    sources: Vec<RawSource>,
    #[serde(default, rename = "policy")]
    policies: Vec<RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    /// Address of the HTTP API and metrics (default 127.0.0.1:8750).
    listen: Option<Spanned<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

/// `schedule = "CRON"` or `[[policy.schedule]]` tables.
#[derive(Debug)]
enum RawSchedules {
    One(String),
    Many(Vec<RawJob>),
}

// By hand rather than `untagged`, which buffers the input and so loses the spans (line numbers)
// of the tables' values.
impl<'de> Deserialize<'de> for RawSchedules {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSchedules;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a cron expression, or [[policy.schedule]] tables with `cron`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<RawSchedules, E> {
                Ok(RawSchedules::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<RawSchedules, A::Error> {
                let mut jobs = Vec::new();
                while let Some(job) = seq.next_element::<RawJob>()? {
                    jobs.push(job);
                }
                Ok(RawSchedules::Many(jobs))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    cron: Spanned<String>,
    /// `backup` (default) or `verify`.
    action: Option<Spanned<String>>,
    /// Backup type of this job (default: the policy's).
    #[serde(rename = "type")]
    backup_type: Option<Spanned<String>>,
    /// `verify` only: read every byte.
    #[serde(default)]
    read_data: bool,
    timezone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPassphrase {
    /// A file whose first line is the passphrase.
    file: Option<PathBuf>,
    /// An environment variable holding it.
    env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    name: Spanned<String>,
    url: String,
    /// This vault's own passphrase file (else the global passphrase).
    passphrase_file: Option<PathBuf>,
    ssh_key: Option<PathBuf>,
    #[serde(default)]
    append_only: bool,
    /// S3 Object Lock for every file written, in days (as `backup --lock-days`).
    lock_days: Option<Spanned<u32>>,
    /// `governance` (default) or `compliance`.
    lock_mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    /// A local path, any URL git can fetch, or a forge source (`github:ORG`).
    url: Spanned<String>,
    /// The name in the vault (default: from the URL, as on the command line).
    name: Option<String>,
    // Forge sources only:
    /// The forge's API base (self-hosted instances).
    api_url: Option<String>,
    /// A file whose first line is the token.
    token_file: Option<PathBuf>,
    /// The environment variable holding the token (default: the forge's usual one).
    token_env: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    forks: Option<bool>,
    archived: Option<bool>,
    visibility: Option<Spanned<String>>,
    #[serde(default)]
    topics: Vec<String>,
    wikis: Option<bool>,
    pull_refs: Option<bool>,
    /// `https` (default) or `ssh`: how git data is fetched.
    clone: Option<Spanned<String>>,
    /// Back up issues, pull requests, releases... (default true).
    metadata: Option<bool>,
}

impl RawSource {
    fn has_forge_keys(&self) -> bool {
        self.api_url.is_some()
            || self.token_file.is_some()
            || self.token_env.is_some()
            || !self.include.is_empty()
            || !self.exclude.is_empty()
            || self.forks.is_some()
            || self.archived.is_some()
            || self.visibility.is_some()
            || !self.topics.is_empty()
            || self.wikis.is_some()
            || self.pull_refs.is_some()
            || self.clone.is_some()
            || self.metadata.is_some()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    /// Vault names; default: every vault.
    vaults: Option<Vec<Spanned<String>>>,
    /// Source names; default: every source.
    sources: Option<Vec<Spanned<String>>>,
    #[serde(rename = "type")]
    backup_type: Option<Spanned<String>>,
    retention: Option<RawRetention>,
    /// Run `prune` after applying the retention.
    #[serde(default)]
    prune: bool,
    /// The grace period of `prune`.
    grace: Option<Spanned<String>>,
    /// Recovery-point objective: `status` flags a repository whose newest good backup is older.
    rpo: Option<Spanned<String>>,
    /// Branches whose force-push raises a "suspicious change" alert (globs; default main,
    /// master, release/*, release-*).
    protected: Option<Vec<String>>,
    /// When `gitvault serve` runs the policy.
    schedule: Option<RawSchedules>,
    /// The time zone of this policy's schedules.
    timezone: Option<Spanned<String>>,
    /// Attempts after a failed scheduled run (default 2).
    retries: Option<Spanned<u32>>,
    /// The first retry's delay (doubling each time; default 1m).
    retry_delay: Option<Spanned<String>>,
    /// A run due while the previous one still runs: `skip` (default) or `queue`.
    overlap: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<Spanned<String>>,
}

/// Where the passphrase of a vault comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassphraseFrom {
    File(PathBuf),
    Env(String),
}

#[derive(Clone, Debug)]
pub struct VaultConf {
    pub name: String,
    /// As written, with relative local paths made absolute against the config's directory.
    pub url: String,
    pub passphrase: PassphraseFrom,
    pub ssh_key: Option<PathBuf>,
    pub append_only: bool,
    /// Days of S3 Object Lock, and whether in compliance mode (else governance).
    pub lock: Option<(u32, bool)>,
}

#[derive(Clone, Debug)]
pub struct SourceConf {
    pub name: String,
    pub url: String,
    /// For a forge source: how to list it and which of its repositories to take.
    pub forge: Option<crate::forges::AccountOptions>,
}

#[derive(Clone, Debug)]
pub struct PolicyConf {
    pub name: String,
    pub vaults: Vec<String>,
    pub sources: Vec<String>,
    pub backup_type: Option<BackupType>,
    pub retention: Option<Policy>,
    pub prune: bool,
    pub grace: Option<Duration>,
    pub rpo: Option<Duration>,
    pub protected: crate::record::Protected,
    pub jobs: Vec<JobConf>,
    pub retries: u32,
    pub retry_delay: Duration,
    pub overlap: Overlap,
}

/// One schedule of a policy.
#[derive(Clone, Debug)]
pub struct JobConf {
    /// Stable within the policy: `0`, `1`... in the order written (the catalog keys the last
    /// time each fired by it, to catch up after downtime).
    pub id: String,
    pub cron: gitvault_ops::schedule::Cron,
    pub action: JobAction,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobAction {
    Backup(Option<BackupType>),
    Verify { read_data: bool },
}

impl JobAction {
    pub fn describe(&self) -> String {
        match self {
            JobAction::Backup(None) => "backup".into(),
            JobAction::Backup(Some(t)) => format!("{} backup", t.as_str()),
            JobAction::Verify { read_data: true } => "verify --read-data".into(),
            JobAction::Verify { read_data: false } => "verify".into(),
        }
    }
}

/// What to do with a run that comes due while the policy's previous run is still going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    Skip,
    Queue,
}

#[derive(Clone, Debug)]
pub struct ServeConf {
    pub listen: std::net::SocketAddr,
    /// Certificate chain and private key (PEM): serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Where `gitvault serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8750";

#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub catalog: Option<PathBuf>,
    /// The RPO of policies without their own.
    pub rpo: Option<Duration>,
    pub serve: ServeConf,
    /// Alert destinations, validated; their secrets are read when they are resolved.
    pub alerts: Vec<gitvault_ops::notify::AlertSpec>,
    pub jobs: Option<usize>,
    pub vaults: Vec<VaultConf>,
    pub sources: Vec<SourceConf>,
    pub policies: Vec<PolicyConf>,
}

impl Config {
    pub fn vault(&self, name: &str) -> &VaultConf {
        self.vaults.iter().find(|v| v.name == name).expect("validated")
    }
    pub fn source(&self, name: &str) -> &SourceConf {
        self.sources.iter().find(|s| s.name == name).expect("validated")
    }
}

/// `line N` of the byte offset `at` in `text`.
fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Relative local paths are relative to the config file's directory; URLs stay as they are.
fn resolve_path(base: &Path, value: &str) -> String {
    let is_url = value.contains("://") || (value.contains(':') && !value.starts_with('/') && !value.starts_with('.'));
    if is_url || Path::new(value).is_absolute() {
        value.to_string()
    } else {
        base.join(value).to_string_lossy().into_owned()
    }
}

fn parse_type(t: &str) -> std::result::Result<BackupType, String> {
    match t {
        "full" => Ok(BackupType::Full),
        "diff" => Ok(BackupType::Diff),
        "incr" => Ok(BackupType::Incr),
        other => Err(format!("type {other:?} is not one of full, diff, incr")),
    }
}

pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the config file {}", path.display()))?;
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let shown = path.display();
    let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let at = |span: Range<usize>| format!("{shown}, line {}", line_of(text, span));

    let global = match &raw.passphrase {
        None => PassphraseFrom::Env(crate::secrets::PASSWORD_ENV.to_string()),
        Some(RawPassphrase { file: Some(f), env: None }) => PassphraseFrom::File(base.join(f)),
        Some(RawPassphrase { file: None, env: Some(e) }) => PassphraseFrom::Env(e.clone()),
        Some(_) => bail!("{shown}: [passphrase] takes exactly one of `file` or `env`"),
    };

    let mut vaults = Vec::new();
    for v in &raw.vaults {
        let name = v.name.get_ref().clone();
        if name.is_empty() || vaults.iter().any(|x: &VaultConf| x.name == name) {
            bail!("{}: vault name {name:?} is empty or given twice", at(v.name.span()));
        }
        let compliance = match v.lock_mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("governance", _)) => false,
            Some(("compliance", _)) => true,
            Some((other, span)) => bail!("{}: lock_mode {other:?} is not governance or compliance", at(span)),
        };
        let lock = match &v.lock_days {
            Some(d) if !(1..=36500).contains(d.get_ref()) => bail!("{}: lock_days must be 1 to 36500", at(d.span())),
            Some(d) => Some((*d.get_ref(), compliance)),
            None if v.lock_mode.is_some() => bail!("{}: lock_mode needs lock_days", at(v.name.span())),
            None => None,
        };
        vaults.push(VaultConf {
            lock,
            name,
            url: resolve_path(&base, &v.url),
            passphrase: v.passphrase_file.as_ref().map_or(global.clone(), |f| PassphraseFrom::File(base.join(f))),
            ssh_key: v.ssh_key.as_ref().map(|k| base.join(k)),
            append_only: v.append_only,
        });
    }
    let mut sources = Vec::new();
    for s in &raw.sources {
        let (name, url, forge) = match gitvault_forge::ForgeSource::parse(s.url.get_ref()) {
            Some(parsed) => {
                let parsed = parsed.map_err(|e| anyhow::anyhow!("{}: {e}", at(s.url.span())))?;
                if s.name.is_some() {
                    bail!(
                        "{}: `name` does not apply to a forge source: its repositories are named FORGE:OWNER/REPO",
                        at(s.url.span())
                    );
                }
                let mut filter = gitvault_forge::Filter::default()
                    .with_globs(&s.include, &s.exclude)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", at(s.url.span())))?;
                filter.forks = s.forks.unwrap_or(true);
                filter.archived = s.archived.unwrap_or(true);
                if let Some(v) = &s.visibility {
                    filter.visibility =
                        v.get_ref().parse().map_err(|e| anyhow::anyhow!("{}: visibility {e}", at(v.span())))?;
                }
                filter.topics = s.topics.clone();
                let ssh = match s.clone.as_ref().map(|c| (c.get_ref().as_str(), c.span())) {
                    None | Some(("https", _)) => false,
                    Some(("ssh", _)) => true,
                    Some((other, span)) => bail!("{}: clone {other:?} is not https or ssh", at(span)),
                };
                let options = crate::forges::AccountOptions {
                    ssh,
                    metadata: s.metadata.unwrap_or(true),
                    api_url: s.api_url.clone(),
                    token_file: s.token_file.as_ref().map(|f| base.join(f)),
                    token_env: s.token_env.clone(),
                    filter,
                    wikis: s.wikis.unwrap_or(true),
                    pull_refs: s.pull_refs.unwrap_or(false),
                };
                (parsed.to_string(), parsed.to_string(), Some(options))
            }
            None => {
                if s.has_forge_keys() {
                    bail!(
                        "{}: api_url, token_*, include/exclude, forks, archived, visibility, topics, wikis, pull_refs, clone and metadata apply to forge sources (github:ORG ...) only",
                        at(s.url.span())
                    );
                }
                let url = resolve_path(&base, s.url.get_ref());
                let name = gitvault_engine::ops::backup::SourceSpec::new(url.clone(), s.name.clone()).name();
                (name, url, None)
            }
        };
        if sources.iter().any(|x: &SourceConf| x.name == name) {
            bail!("{}: two sources are named {name:?}; give one of them another `name`", at(s.url.span()));
        }
        sources.push(SourceConf { name, url, forge });
    }
    let jobs = match &raw.jobs {
        Some(j) if !(1..=64).contains(j.get_ref()) => bail!("{}: jobs must be 1 to 64", at(j.span())),
        Some(j) => Some(usize::from(*j.get_ref())),
        None => None,
    };
    if vaults.is_empty() {
        bail!("{shown}: no [[vault]]: declare at least one (name and url)");
    }
    if sources.is_empty() {
        bail!("{shown}: no [[source]]: declare at least one (url)");
    }

    let mut policies = Vec::new();
    let all_vaults: Vec<String> = vaults.iter().map(|v| v.name.clone()).collect();
    let all_sources: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    for p in &raw.policies {
        let name = p.name.get_ref().clone();
        if name.is_empty() || policies.iter().any(|x: &PolicyConf| x.name == name) {
            bail!("{}: policy name {name:?} is empty or given twice", at(p.name.span()));
        }
        let pick = |list: &Option<Vec<Spanned<String>>>, known: &[String], what: &str| -> Result<Vec<String>> {
            let Some(list) = list else { return Ok(known.to_vec()) };
            let mut out = Vec::new();
            for item in list {
                if !known.contains(item.get_ref()) {
                    bail!("{}: no {what} is named {:?} (known: {})", at(item.span()), item.get_ref(), known.join(", "));
                }
                if !out.contains(item.get_ref()) {
                    out.push(item.get_ref().clone());
                }
            }
            if out.is_empty() {
                bail!("{}: policy {name:?} lists no {what}", at(p.name.span()));
            }
            Ok(out)
        };
        let backup_type = match &p.backup_type {
            None => None,
            Some(t) => Some(parse_type(t.get_ref()).map_err(|e| anyhow::anyhow!("{}: {e}", at(t.span())))?),
        };
        let duration =
            |d: &Spanned<String>| parse_duration(d.get_ref()).map_err(|e| anyhow::anyhow!("{}: {e}", at(d.span())));
        let retention = match &p.retention {
            None => None,
            Some(r) => {
                let policy = Policy {
                    last: r.keep_last.unwrap_or(0),
                    hourly: r.keep_hourly.unwrap_or(0),
                    daily: r.keep_daily.unwrap_or(0),
                    weekly: r.keep_weekly.unwrap_or(0),
                    monthly: r.keep_monthly.unwrap_or(0),
                    yearly: r.keep_yearly.unwrap_or(0),
                    within: r.keep_within.as_ref().map(duration).transpose()?,
                };
                if policy.is_empty() {
                    bail!(
                        "{}: policy {name:?} has a [retention] that keeps nothing: give keep_* values",
                        at(p.name.span())
                    );
                }
                Some(policy)
            }
        };
        let grace = p.grace.as_ref().map(duration).transpose()?;
        let rpo = p.rpo.as_ref().map(duration).transpose()?;
        let protected = match &p.protected {
            None => crate::record::Protected::default(),
            Some(globs) => crate::record::Protected::parse(globs)
                .map_err(|e| anyhow::anyhow!("{}: protected: {e}", at(p.name.span())))?,
        };
        let zone = p.timezone.as_ref().or(raw.timezone.as_ref());
        let cron = |expr: &str, span: Range<usize>, zone: Option<&Spanned<String>>| {
            gitvault_ops::schedule::Cron::parse(expr, zone.map(|z| z.get_ref().as_str())).map_err(|e| {
                let zone_error = matches!(e, gitvault_ops::schedule::ScheduleError::TimeZone { .. });
                let span = match zone {
                    Some(z) if zone_error => z.span(),
                    _ => span,
                };
                anyhow::anyhow!("{}: {e}", at(span))
            })
        };
        let mut jobs = Vec::new();
        match &p.schedule {
            None => {}
            Some(RawSchedules::One(expr)) => jobs.push(JobConf {
                id: "0".into(),
                cron: cron(expr, p.name.span(), zone)?,
                action: JobAction::Backup(backup_type),
            }),
            Some(RawSchedules::Many(list)) => {
                for (i, j) in list.iter().enumerate() {
                    let action = match j.action.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
                        None | Some(("backup", _)) => JobAction::Backup(match &j.backup_type {
                            None => backup_type,
                            Some(t) => {
                                Some(parse_type(t.get_ref()).map_err(|e| anyhow::anyhow!("{}: {e}", at(t.span())))?)
                            }
                        }),
                        Some(("verify", span)) => {
                            if j.backup_type.is_some() {
                                bail!("{}: a verify job has no `type`", at(span));
                            }
                            JobAction::Verify { read_data: j.read_data }
                        }
                        Some((other, span)) => bail!("{}: action {other:?} is not backup or verify", at(span)),
                    };
                    if j.read_data && !matches!(action, JobAction::Verify { .. }) {
                        bail!("{}: read_data applies to action = \"verify\"", at(j.cron.span()));
                    }
                    jobs.push(JobConf {
                        id: i.to_string(),
                        cron: cron(j.cron.get_ref(), j.cron.span(), j.timezone.as_ref().or(zone))?,
                        action,
                    });
                }
            }
        }
        let retries = match &p.retries {
            Some(r) if *r.get_ref() > 10 => bail!("{}: retries must be 0 to 10", at(r.span())),
            Some(r) => *r.get_ref(),
            None => 2,
        };
        let retry_delay = match &p.retry_delay {
            Some(d) => gitvault_ops::schedule::parse_delay(d.get_ref())
                .map_err(|e| anyhow::anyhow!("{}: retry_delay {e}", at(d.span())))?,
            None => Duration::from_secs(60),
        };
        let overlap = match p.overlap.as_ref().map(|o| (o.get_ref().as_str(), o.span())) {
            None | Some(("skip", _)) => Overlap::Skip,
            Some(("queue", _)) => Overlap::Queue,
            Some((other, span)) => bail!("{}: overlap {other:?} is not skip or queue", at(span)),
        };
        if let (Some(g), Some(span)) = (grace, p.grace.as_ref().map(|g| g.span()))
            && g.as_secs() < gitvault_format::mark::MIN_GRACE_SECONDS
        {
            bail!("{}: grace must be at least 1h", at(span));
        }
        if p.prune && retention.is_none() {
            bail!("{}: policy {name:?} prunes but has no [retention]", at(p.name.span()));
        }
        let (vaults, sources) = (pick(&p.vaults, &all_vaults, "vault")?, pick(&p.sources, &all_sources, "source")?);
        if retention.is_some()
            && let Some(v) = vaults.iter().find(|v| raw.vaults.iter().any(|r| r.name.get_ref() == *v && r.append_only))
        {
            bail!("{}: policy {name:?} has a [retention], but its vault {v:?} is append-only", at(p.name.span()));
        }
        policies.push(PolicyConf {
            name,
            vaults,
            sources,
            backup_type,
            retention,
            prune: p.prune,
            grace,
            rpo,
            protected,
            jobs,
            retries,
            retry_delay,
            overlap,
        });
    }
    if policies.is_empty() {
        // No policy: back every source up into every vault.
        policies.push(PolicyConf {
            name: "default".into(),
            vaults: all_vaults,
            sources: all_sources,
            backup_type: None,
            retention: None,
            prune: false,
            grace: None,
            rpo: None,
            protected: crate::record::Protected::default(),
            jobs: Vec::new(),
            retries: 2,
            retry_delay: Duration::from_secs(60),
            overlap: Overlap::Skip,
        });
    }
    let names: BTreeSet<&str> = policies.iter().map(|p| p.name.as_str()).collect();
    debug_assert_eq!(names.len(), policies.len());
    let rpo = match &raw.rpo {
        Some(d) => Some(parse_duration(d.get_ref()).map_err(|e| anyhow::anyhow!("{}: rpo {e}", at(d.span())))?),
        None => None,
    };
    if let Some(z) = &raw.timezone {
        gitvault_ops::schedule::Cron::parse("0 0 * * *", Some(z.get_ref()))
            .map_err(|e| anyhow::anyhow!("{}: {e}", at(z.span())))?;
    }
    let serve = match &raw.serve {
        None => ServeConf { listen: DEFAULT_LISTEN.parse().expect("valid default address"), tls: None },
        Some(r) => {
            let listen = match &r.listen {
                None => DEFAULT_LISTEN.parse().expect("valid default address"),
                Some(l) => l.get_ref().parse().map_err(|_| {
                    anyhow::anyhow!(
                        "{}: listen {:?} is not an address:port such as 127.0.0.1:8750",
                        at(l.span()),
                        l.get_ref()
                    )
                })?,
            };
            let tls = match (&r.tls_cert, &r.tls_key) {
                (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
                (None, None) => None,
                _ => bail!("{shown}: [serve] needs both tls_cert and tls_key for HTTPS (or neither)"),
            };
            ServeConf { listen, tls }
        }
    };
    let mut alert_names = BTreeSet::new();
    for a in &raw.alerts {
        // Validate the shape now (secrets are read when the alerts are used).
        if let Some(name) = &a.get_ref().name
            && !alert_names.insert(name.clone())
        {
            bail!("{}: two [[alert]] tables are named {name:?}", at(a.span()));
        }
    }
    Ok(Config {
        path: path.to_path_buf(),
        serve,
        alerts: raw.alerts.into_iter().map(Spanned::into_inner).collect(),
        cache_dir: raw.cache_dir.map(|d| base.join(d)),
        catalog: raw.catalog.map(|c| base.join(c)),
        rpo,
        jobs,
        vaults,
        sources,
        policies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", parse(text, Path::new("/etc/gitvault/gitvault.toml")).expect_err("an error"))
    }

    const GOOD: &str = r#"
[[vault]]
name = "local"
url = "vaults/local"

[[vault]]
name = "offsite"
url = "s3://backups/git"
passphrase_file = "offsite.pass"

[[source]]
url = "https://git.example.org/acme/api.git"

[[source]]
url = "/srv/git/web.git"
name = "acme/web"

[[policy]]
name = "nightly"
vaults = ["local", "offsite"]
type = "incr"
prune = true
retention = { keep_daily = 7, keep_within = "2w" }
"#;

    #[test]
    fn a_good_file_resolves_names_paths_and_defaults() {
        let c = parse(GOOD, Path::new("/etc/gitvault/gitvault.toml")).expect("parses");
        assert_eq!(c.vaults[0].url, "/etc/gitvault/vaults/local");
        assert_eq!(c.vaults[1].url, "s3://backups/git");
        assert_eq!(c.vaults[0].passphrase, PassphraseFrom::Env("GITVAULT_PASSWORD".into()));
        assert_eq!(c.vaults[1].passphrase, PassphraseFrom::File("/etc/gitvault/offsite.pass".into()));
        assert_eq!(c.sources[0].name, "acme/api");
        let p = &c.policies[0];
        assert_eq!(p.sources, ["acme/api", "acme/web"]);
        assert_eq!(p.retention.as_ref().map(|r| r.daily), Some(7));
        assert_eq!(p.retention.as_ref().and_then(|r| r.within), Some(Duration::from_secs(14 * 86400)));
    }

    #[test]
    fn the_annotated_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gitvault.example.toml");
        let text = std::fs::read_to_string(&path).expect("the example exists");
        let c = parse(&text, &path).expect("the example parses");
        assert_eq!(c.policies.len(), 2);
        assert!(c.vaults.iter().any(|v| v.append_only));
        let jobs: Vec<String> = c.policies[0].jobs.iter().map(|j| j.action.describe()).collect();
        assert_eq!(jobs, ["full backup", "incr backup", "verify --read-data"]);
        assert_eq!(c.alerts.len(), 3);
        assert_eq!(c.rpo, Some(Duration::from_secs(26 * 3600)));
    }

    #[test]
    fn mistakes_name_their_line() {
        let unknown = GOOD.replace("prune = true", "prune = true\ncolour = \"blue\"");
        let e = err(&unknown);
        assert!(e.contains("line 23") && e.contains("colour"), "{e}");
        let e = err(&GOOD.replace(r#"vaults = ["local", "offsite"]"#, r#"vaults = ["local", "ofsite"]"#));
        assert!(e.contains("line 20") && e.contains("\"ofsite\"") && e.contains("known: local, offsite"), "{e}");
        let e = err(&GOOD.replace(r#"type = "incr""#, r#"type = "weekly""#));
        assert!(e.contains("line 21") && e.contains("weekly"), "{e}");
        let e = err(&GOOD.replace("2w", "2 fortnights"));
        assert!(e.contains("line 23") && e.contains("unit"), "{e}");
        let e = err(&GOOD.replace("keep_daily = 7, ", "keep_daily = -7, "));
        assert!(e.contains("line 23"), "{e}");
        assert!(err("[[source]]\nurl = \"/x\"\n").contains("no [[vault]]"));
    }
}
