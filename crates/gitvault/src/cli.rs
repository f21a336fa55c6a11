//! Command-line arguments. Every flag here is part of the documented interface (README.md).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "gitvault",
    version,
    about = "Encrypted, verifiable, exactly restorable backups of git repositories",
    long_about = "gitvault backs git repositories up into an encrypted vault: full, differential and \
incremental backups stored as git packs, every ref recorded, a tamper-evident ledger, and restores \
that reproduce every ref exactly.\n\nThe passphrase comes from GITVAULT_PASSWORD, --password-file, \
or a prompt on a terminal.\n\nExit codes: 0 success, 1 failure, 2 usage error, 3 partial (some \
sources or destinations failed), 4 damage found by verify."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// The vault: a local directory (or file://PATH), s3://BUCKET/PREFIX (endpoint, region and
    /// credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_PROFILE), or sftp://USER@HOST[:PORT]/PATH (PATH absolute; /~/PATH for one in the login
    /// directory; keys from ssh-agent, ~/.ssh or --ssh-key; the host checked against known_hosts).
    /// `backup` takes it several times to write to several vaults in one run (the same
    /// passphrase opens them all); every other command takes exactly one.
    #[arg(long, global = true, env = "GITVAULT_VAULT", value_name = "PATH|URL", action = clap::ArgAction::Append)]
    pub vault: Vec<String>,
    /// Private key for an sftp:// vault, offered instead of the agent's and the default ~/.ssh keys
    /// (IdentitiesOnly; IdentityFile lines of the ssh config still count).
    #[arg(long, global = true, env = "GITVAULT_SSH_KEY", value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// ssh_config file for an sftp:// vault, read instead of ~/.ssh/config (ssh -F).
    #[arg(long, global = true, env = "GITVAULT_SSH_CONFIG", value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Read the passphrase from this file (its first line). GITVAULT_PASSWORD takes precedence.
    #[arg(long, global = true, env = "GITVAULT_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Local cache for mirrors of remote sources and scratch space [default: ~/.cache/gitvault].
    #[arg(long, global = true, env = "GITVAULT_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (logs and progress go to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Show no progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Append-only mode: refuse every command that would delete or overwrite vault files
    /// (forget, prune, key remove, upgrade) and leave interrupted writes in place. For hosts
    /// that should only ever add to a vault. Also GITVAULT_APPEND_ONLY=1.
    #[arg(long, global = true, env = "GITVAULT_APPEND_ONLY")]
    pub append_only: bool,
    /// The catalog: the local SQLite database of runs, log lines, the audit trail and API tokens
    /// [default: `catalog` in the config file, else $XDG_STATE_HOME/gitvault/catalog.db, else
    /// ~/.local/state/gitvault/catalog.db].
    #[arg(long, global = true, env = "GITVAULT_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// More log output on stderr (repeat for more).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new vault.
    Init(InitArgs),
    /// Back up git repositories (local paths or any URL git can fetch) into a new snapshot.
    Backup(BackupArgs),
    /// List snapshots, oldest first.
    Snapshots,
    /// Show what changed between two snapshots: refs created, deleted, moved, force-pushed.
    Diff(DiffArgs),
    /// Rebuild bare repositories whose refs are exactly those of a snapshot, or bring them back
    /// onto a forge with their issues, pull requests and releases (--to-forge).
    Restore(RestoreArgs),
    /// Write a repository's forge metadata of a snapshot as JSON, a static HTML rendering and
    /// its release assets' original bytes.
    Export(ExportArgs),
    /// Check the vault: structure, ledger chain, snapshots, data files (every byte with --read-data).
    Verify(VerifyArgs),
    /// Copy snapshots from one vault into another (which must exist: `init` it first), sending
    /// only what the destination lacks.
    ///
    /// Every data object is decrypted from the source, checked, and sealed again under the
    /// destination's key — or, into a replica made with `init --keys-from` (the same keys),
    /// copied as it is stored once each chunk's authentication tag has been checked.
    /// Snapshots and data objects keep their ids. The source's passphrase comes from
    /// GITVAULT_PASSWORD or --password-file; the destination's from GITVAULT_TO_PASSWORD or
    /// --to-password-file, else it is the source's.
    Copy(CopyArgs),
    /// Manage the passphrase key slots.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Remove snapshots by a retention policy (or by id); `prune` then disposes of their data.
    Forget(ForgetArgs),
    /// Delete data no snapshot needs, in two phases: mark now, delete on a later run after a
    /// grace period.
    Prune(PruneArgs),
    /// Upgrade the vault to the newest format version (older gitvault versions then refuse it).
    Upgrade,
    /// Work with a gitvault.toml configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Test a destination for what a vault needs.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Every repository's newest good backup (age, type, size), newest failure, and whether it
    /// is older than its policy's recovery-point objective (RPO), from the catalog.
    ///
    /// Exit code 0 when every repository is within its RPO and its newest attempt succeeded, 3
    /// otherwise (so a monitoring check can run it).
    Status(StatusArgs),
    /// Log lines of runs from the catalog, oldest first.
    Logs(LogsArgs),
    /// The audit trail from the catalog (who did what, when, to what, with what outcome), for an
    /// auditor: a table, --json or --csv.
    Audit(AuditArgs),
    /// Work with the catalog.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Manage the bearer tokens of the HTTP API of `gitvault serve`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run the policies of a configuration file on their schedules, until SIGTERM or SIGINT.
    ///
    /// Two runs of one policy never overlap (a run due while the previous one still goes is
    /// skipped and logged, or queued with `overlap = "queue"`); a failed run is retried with
    /// backoff (`retries`, `retry_delay`); a schedule missed while gitvault was not serving runs
    /// once on start. SIGTERM lets a running backup finish the repositories in hand and commit,
    /// then exits 0.
    Serve(ServeArgs),
    /// Work with the alerts of a configuration file.
    #[command(subcommand)]
    Alert(AlertCommand),
}

#[derive(Subcommand, Debug)]
pub enum AlertCommand {
    /// Send a test alert to every [[alert]] of the file (whatever its `on`), and say how each
    /// delivery went. Exit code 0 when all were delivered, 1 otherwise.
    Test {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The configuration file: vaults, sources, policies with their `schedule`.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Address of the HTTP API and /metrics [default: `listen` of [serve] in the config, else
    /// 127.0.0.1:8750]. Port 0 picks a free port (printed on start).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Take each policy's `rpo` (and the catalog) from this configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The recovery-point objective for every repository (overrides the config's), e.g. 26h.
    #[arg(long, value_name = "DURATION")]
    pub rpo: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Only this run's lines (its id, as `status` and `--json` outputs show).
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// Only lines about this repository.
    #[arg(long, value_name = "NAME")]
    pub repo: Option<String>,
    /// Only lines since then: a duration ago (30m, 26h, 7d) or a date (2026-11-28, RFC 3339).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Comma-separated values with a header line, for a spreadsheet.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Only entries since then: a duration ago (26h, 30d) or a date (2026-11-01, RFC 3339).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Rebuild the catalog's history from the vault(s): a run per snapshot, an audit entry per
    /// ledger entry. Rows recorded as things happened are kept; what the vault holds that the
    /// catalog lacks is added.
    Rebuild {
        /// Rebuild from every vault of this configuration file (else --vault).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// operator: read and trigger runs; auditor: read only.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A unique name, shown in the audit trail as `token:NAME` [default: ROLE-N].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// List tokens (names, roles, when created, last used, revoked).
    List,
    /// Revoke a token by name: it stops working at once.
    Revoke {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Operator,
    Auditor,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the file and print what each policy would back up, and where; writes nothing
    /// and contacts no vault.
    Check {
        /// The configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Test a destination for what gitvault needs: create-only writes (and an atomic race),
    /// read-after-write, a streamed multi-part write read back in ranges, listing with sizes and
    /// modification times, stat, delete, replace, and Object Lock (optional).
    ///
    /// Works on an empty destination or a vault in use: it writes only under
    /// tmp/storage-check-<random>/ and removes what it wrote (a locked test object stays until its
    /// 5-minute lock ends). Prints one line per check (ok, MISSING, FAILED). Exit code 0 when
    /// everything a vault needs works, 1 otherwise.
    Check {
        /// The destination (as --vault: a path, s3://BUCKET/PREFIX or sftp://USER@HOST/PATH);
        /// default: --vault or GITVAULT_VAULT.
        #[arg(value_name = "VAULT")]
        destination: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Keep the N most recent snapshots.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,
    /// Keep the most recent snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_hourly: Option<u32>,
    /// Keep the most recent snapshot of each of the last N days that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_daily: Option<u32>,
    /// Keep the most recent snapshot of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_weekly: Option<u32>,
    /// Keep the most recent snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_monthly: Option<u32>,
    /// Keep the most recent snapshot of each of the last N years that have one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot within DURATION of the newest one (e.g. 30d, 2w, 1y6m, 36h).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Show what would be removed and why each kept snapshot is kept; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run `prune` afterwards.
    #[arg(long)]
    pub prune: bool,
    /// Forget exactly these snapshots (ids, unique prefixes or `latest`) instead of a policy.
    #[arg(value_name = "SNAPSHOT", conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within"])]
    pub snapshots: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// How long data stays marked before a later prune may delete it, on the storage's clock
    /// (at least 1h) [default: 1d].
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<String>,
    /// Consolidate a repository once its kept snapshots depend on N packs written by forgotten
    /// snapshots: rewrite what they need into new packs so the old ones can go (0: never)
    /// [default: 16].
    #[arg(long, value_name = "N")]
    pub consolidate_after: Option<usize>,
    /// Consolidate now every repository whose kept snapshots depend on any pack of a forgotten
    /// snapshot (to dispose of deleted history promptly).
    #[arg(long, conflicts_with = "consolidate_after")]
    pub consolidate: bool,
    /// Show what would be deleted and marked; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct KdfArgs {
    /// Argon2id memory in KiB for the new key slot [default: 131072].
    #[arg(long, value_name = "KIB")]
    pub kdf_memory_kib: Option<u32>,
    /// Argon2id passes for the new key slot [default: 3].
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Give the new vault the keys of this existing vault (unlocked with the same passphrase),
    /// so that `copy` between the two moves data objects as they are, without decrypting and
    /// sealing them again: a replica. Anyone who can open either vault can read both; change
    /// the new vault's passphrase afterwards with `gitvault key add` and `key remove`.
    #[arg(long, value_name = "PATH|URL")]
    pub keys_from: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TypeArg {
    Full,
    Diff,
    Incr,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LockModeArg {
    /// Nobody can delete a locked file or shorten its lock, except users granted
    /// s3:BypassGovernanceRetention who ask for it explicitly.
    Governance,
    /// Nobody can, not even the account's root user, until the lock ends.
    Compliance,
}

/// Object Lock for the files a command writes into a vault.
#[derive(Args, Debug)]
pub struct LockArgs {
    /// Lock every file written (data, snapshot, ledger entry) for N days with S3 Object Lock,
    /// and lengthen the locks of the older data the new snapshots depend on to the same date.
    /// The bucket must have Object Lock enabled; other vaults refuse the flag.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub lock_days: Option<u32>,
    /// Object Lock mode for --lock-days [default: governance].
    #[arg(long, value_enum, value_name = "MODE", requires = "lock_days")]
    pub lock_mode: Option<LockModeArg>,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Backup type; without it: full for a repository never backed up, else incremental.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub backup_type: Option<TypeArg>,
    /// Name to file the repository under (only with a single SOURCE).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Local paths, git URLs (file://, https://, ssh://, user@host:path), or forge accounts
    /// and repositories: github:ORG|USER|OWNER/REPO, gitlab:GROUP[/SUBGROUP...]|GROUP/PROJECT,
    /// bitbucket:WORKSPACE|WORKSPACE/REPO, gitea:OWNER|OWNER/REPO.
    #[arg(required_unless_present = "config", value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// API base of the forge for every forge source on this command line, for self-hosted or
    /// test instances: the GitHub /api/v3 base (as on GitHub Enterprise Server), the GitLab
    /// /api/v4 base, the Bitbucket /2.0 base, the Gitea /api/v1 base (required for gitea:).
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    pub api_url: Option<String>,
    /// Repositories read and packed at the same time [default: 4, or `jobs` in the config].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,
    #[command(flatten)]
    pub forge: ForgeArgs,
    /// Run the policies of this gitvault.toml (sources, vaults, type, retention) instead of
    /// SOURCE arguments and --vault.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sources", "name", "backup_type"])]
    pub config: Option<PathBuf>,
    /// With --config: run only this policy (default: every policy, in order).
    #[arg(long, value_name = "NAME", requires = "config")]
    pub policy: Option<String>,
}

/// Which repositories of a forge account to back up, and what of them. Without these, every
/// repository the token can see is backed up, forks and archived ones included, with its wiki.
#[derive(Args, Debug, Default)]
pub struct ForgeArgs {
    /// Only repositories whose name (or OWNER/NAME) matches this glob; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out repositories whose name (or OWNER/NAME) matches this glob; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Leave out forks.
    #[arg(long)]
    pub no_forks: bool,
    /// Leave out archived repositories.
    #[arg(long)]
    pub no_archived: bool,
    /// Only public or only private repositories [default: all].
    #[arg(long, value_name = "WHICH", value_parser = ["all", "public", "private"])]
    pub visibility: Option<String>,
    /// Only repositories with this topic; repeatable (any of them).
    #[arg(long, value_name = "TOPIC")]
    pub topic: Vec<String>,
    /// Do not back up wikis.
    #[arg(long)]
    pub no_wikis: bool,
    /// Also back up pull/merge-request refs (refs/pull/*, refs/merge-requests/*).
    #[arg(long)]
    pub pull_refs: bool,
    /// Fetch git data over SSH with your ssh keys and known_hosts (the forge's SSH clone
    /// URLs), instead of HTTPS with the token; the token still lists repositories and fetches
    /// LFS objects.
    #[arg(long)]
    pub ssh: bool,
    /// Do not back up issues, pull requests, reviews, comments, labels, milestones, releases
    /// and settings (GitHub, GitLab and Gitea/Forgejo sources; backed up by default).
    #[arg(long)]
    pub no_metadata: bool,
}

impl ForgeArgs {
    pub fn is_given(&self) -> bool {
        !self.include.is_empty()
            || !self.exclude.is_empty()
            || self.no_forks
            || self.no_archived
            || self.visibility.is_some()
            || !self.topic.is_empty()
            || self.no_wikis
            || self.pull_refs
            || self.ssh
            || self.no_metadata
    }
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// First snapshot: id, unique id prefix, or `latest`.
    pub from: String,
    /// Second snapshot.
    pub to: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Snapshot: id, unique id prefix, or `latest`.
    pub snapshot: String,
    /// The repository whose metadata to export: its full name (`github:acme/api`) or an
    /// unambiguous suffix (`acme/api`).
    #[arg(long)]
    pub repo: String,
    /// A new or empty directory.
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot: id, unique id prefix, or `latest`.
    pub snapshot: String,
    /// Restore only this repository: its full name or an unambiguous suffix (`acme/api`, `api`).
    #[arg(long)]
    pub repo: Option<String>,
    /// Where to restore: the bare repository itself for one repository, else a directory that
    /// receives `<name>.git` for each.
    #[arg(long, value_name = "DIR", required_unless_present = "to_forge", conflicts_with = "to_forge")]
    pub target: Option<PathBuf>,
    /// Restore into an existing non-empty bare repository, replacing its refs.
    #[arg(long, conflicts_with = "to_forge")]
    pub force: bool,
    /// Restore into a forge instead: `github:OWNER[/NAME]`, `gitea:OWNER[/NAME]` or
    /// `gitlab:GROUP[/SUBGROUP...][/NAME]`. The repository is created when missing, its git
    /// data, wiki and LFS objects pushed, its issues, pull requests, comments, reviews, labels,
    /// milestones and releases recreated. The token comes from GITHUB_TOKEN / GITEA_TOKEN /
    /// GITLAB_TOKEN. Without NAME each repository keeps its name. On GitLab the path is asked
    /// about: when it names a group (or user), every repository goes under it; otherwise its
    /// last segment is the new project's name, in the group its parent path names.
    #[arg(long, value_name = "FORGE:OWNER[/NAME]")]
    pub to_forge: Option<String>,
    /// The target forge's API base (GitHub Enterprise, Gitea, GitLab's `https://HOST/api/v4`;
    /// the fake forge in tests).
    #[arg(long, value_name = "URL", requires = "to_forge")]
    pub api_url: Option<String>,
    /// Write the mapping of old to new numbers and URLs here (JSON), kept current as items are
    /// created.
    #[arg(long, value_name = "FILE", requires = "to_forge")]
    pub map: Option<PathBuf>,
    /// Print what would be created, skipped and mapped, and write nothing.
    #[arg(long, requires = "to_forge")]
    pub dry_run: bool,
    /// Restore into a target repository that exists and is not empty (items an earlier restore
    /// created are recognised and not duplicated).
    #[arg(long, requires = "to_forge")]
    pub into_existing: bool,
    /// The least time between two writes to the forge [default: 1s on api.github.com, which
    /// asks for it, else 0s]. Waits the forge asks for (Retry-After) are always honoured.
    #[arg(long, value_name = "DURATION", requires = "to_forge")]
    pub write_interval: Option<String>,
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The vault to copy from (PATH, file://PATH, s3://BUCKET/PREFIX or
    /// sftp://USER@HOST[:PORT]/PATH, as --vault); it is only read.
    #[arg(long, value_name = "PATH|URL")]
    pub from: String,
    /// The vault to copy into (the same forms); it must already be a vault.
    #[arg(long, value_name = "PATH|URL")]
    pub to: String,
    /// Read the destination's passphrase from this file (its first line). GITVAULT_TO_PASSWORD
    /// takes precedence; without either, the source's passphrase is used.
    #[arg(long, value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Snapshots to copy: ids, unique id prefixes, or `latest` [default: every snapshot].
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Lock what is written into the destination (see `backup --lock-days`).
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Decrypt and authenticate every byte of every data file.
    #[arg(long)]
    pub read_data: bool,
    /// Decrypt and authenticate part of the data files: K/N reads the K-th of N fixed slices
    /// (run 1/N … N/N over N runs to read everything), P% a random P percent.
    #[arg(long, value_name = "K/N|P%", conflicts_with = "read_data")]
    pub read_data_subset: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List key slots.
    List,
    /// Add a key slot for another passphrase (from GITVAULT_NEW_PASSWORD, --new-password-file or a prompt).
    Add {
        /// Read the new passphrase from this file.
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Remove a key slot by id or unique id prefix (not the last one, nor the one in use).
    Remove {
        /// Key slot id or prefix, as shown by `gitvault key list`.
        id: String,
    },
}
