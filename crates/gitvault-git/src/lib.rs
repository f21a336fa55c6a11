//! Everything gitvault does with git: classifying sources, keeping bare mirrors of remotes up
//! to date, reading and writing refs exactly, and moving objects in and out as
//! packs (self-contained, or thin against an earlier state).
//!
//! All work is done by running the `git` executable (never through a shell), so the user's
//! git configuration — credential helpers, `insteadOf` rewrites, ssh setup — keeps working.
//! Object data is streamed between git and files; nothing here holds a pack in memory. Every
//! URL that reaches an error or a log line has its credentials removed first.

mod auth;
mod command;
mod error;
mod lfs;
mod mirror;
mod oid;
mod pack;
mod push;
mod refname;
mod refs;
mod repo;
mod sole_pack;
mod source;
mod thin_pack;
mod worktree;

pub use auth::HttpAuth;
pub use command::Git;
pub use error::Error;
pub use lfs::{LfsPointer, Sha256Check, Sha256Writer, lfs_object_path, parse_pointer};
pub use oid::{ObjectFormat, ObjectId};
pub use pack::{PackFiles, StreamedPack};
pub use push::{PushOutcome, PushedRef};
pub use refs::{Head, Ref, RefState};
pub use sole_pack::{SolePack, VerifiedReader};
pub use source::{SourceKind, classify_source, redact_source, source_name};
pub use thin_pack::ThinPack;
pub use worktree::TreeChange;
