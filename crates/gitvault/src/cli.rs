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
sources failed), 4 damage found by verify."
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
    #[arg(long, global = true, env = "GITVAULT_VAULT", value_name = "PATH|URL")]
    pub vault: Option<String>,
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
    /// Rebuild bare repositories whose refs are exactly those of a snapshot.
    Restore(RestoreArgs),
    /// Check the vault: structure, ledger chain, snapshots, data files (every byte with --read-data).
    Verify(VerifyArgs),
    /// Manage the passphrase key slots.
    #[command(subcommand)]
    Key(KeyCommand),
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
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TypeArg {
    Full,
    Diff,
    Incr,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Backup type; without it: full for a repository never backed up, else incremental.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub backup_type: Option<TypeArg>,
    /// Name to file the repository under (only with a single SOURCE).
    #[arg(long)]
    pub name: Option<String>,
    /// Local paths or git URLs (file://, https://, ssh://, user@host:path).
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// First snapshot: id, unique id prefix, or `latest`.
    pub from: String,
    /// Second snapshot.
    pub to: String,
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
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Restore into an existing non-empty bare repository, replacing its refs.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Decrypt and authenticate every byte of every data file.
    #[arg(long)]
    pub read_data: bool,
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
