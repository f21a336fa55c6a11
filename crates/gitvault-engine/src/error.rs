use gitvault_format::FormatError;
use gitvault_storage::StorageError;

/// Everything that can go wrong in an engine operation, with what the user needs to act.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{path} is not a gitvault vault (no readable `config` file); check the path, or create one with `gitvault init`"
    )]
    NotAVault { path: String },
    #[error(
        "the vault at {path} uses format version {found}, newer than this gitvault supports ({supported}); upgrade gitvault"
    )]
    NewerFormat { path: String, found: u32, supported: u32 },
    #[error("wrong passphrase: no key slot of the vault at {path} opens with it")]
    WrongPassphrase { path: String },
    #[error("vault at {path} has no key slots; it cannot be opened")]
    NoKeySlots { path: String },
    #[error("no snapshot matches {query:?}; list them with `gitvault snapshots`")]
    SnapshotNotFound { query: String },
    #[error("{query:?} matches several snapshots ({candidates}); give more digits")]
    AmbiguousSnapshot { query: String, candidates: String },
    #[error("the vault holds no snapshot yet")]
    NoSnapshots,
    #[error("snapshot {snapshot} holds no repository matching {query:?} (it holds: {available})")]
    RepoNotFound { snapshot: String, query: String, available: String },
    #[error("{query:?} matches several repositories of snapshot {snapshot}: {candidates}; give more of the name")]
    AmbiguousRepo { snapshot: String, query: String, candidates: String },
    #[error(
        "restore target {path} is not empty; choose an empty or new directory, or pass --force to restore into an existing bare repository"
    )]
    TargetNotEmpty { path: String },
    #[error("damaged vault file {path}")]
    Damaged {
        path: String,
        #[source]
        source: FormatError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("git: {0}")]
    Git(#[from] gitvault_git::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("two sources would both be named {name:?} in the vault; give one of them another name with --name")]
    DuplicateName { name: String },
    #[error("key slot {slot} {problem}")]
    KeySlot { slot: String, problem: String },
    #[error(
        "`{operation}` needs vault format version {needed}, and the vault at {path} is version {found}; run `gitvault upgrade` first (older gitvault versions then refuse the vault)"
    )]
    NeedsUpgrade { path: String, operation: &'static str, found: u32, needed: u32 },
    #[error(
        "`{operation}` would delete or overwrite vault files, and this gitvault runs in append-only mode (--append-only / GITVAULT_APPEND_ONLY); run it from a host allowed to delete"
    )]
    AppendOnly { operation: &'static str },
    #[error(
        "the vault at {vault} cannot lock files, so --lock-days cannot be honoured; lock a vault in an S3 bucket with Object Lock enabled, or back up without --lock-days"
    )]
    LockUnavailable {
        vault: String,
        #[source]
        source: Box<StorageError>,
    },
    #[error("{0}")]
    Refused(String),
    #[error(
        "the ledger is busy: gave up appending after {attempts} attempts (many writers at once?); run the command again"
    )]
    LedgerBusy { attempts: u32 },
    #[error(
        "git could not install the thin pack {path}, which it completes from the packs before it in the \
         snapshot's chain (its message follows); if it names missing or bad objects, `gitvault verify \
         --read-data` checks every vault file, and an earlier snapshot may still restore"
    )]
    ThinPack {
        path: String,
        #[source]
        source: gitvault_git::Error,
    },
    #[error("copying {what}")]
    Copy {
        what: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and all its causes on one line (`a: b: c`), for reports that outlive the error.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.ends_with(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}
