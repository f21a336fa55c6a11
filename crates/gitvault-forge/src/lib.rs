//! Forge accounts: which repositories a `github:`, `gitlab:`, `bitbucket:` or `gitea:` source
//! names, found through the forge's HTTP API, with the clone URLs and the credentials git needs.
//!
//! The library reads no environment variables: the binary decides where tokens come from and
//! hands them over as [`Credentials`].

mod auth;
mod bitbucket;
mod bitbucket_meta;
mod error;
pub mod export;
mod gitea;
mod gitea_meta;
mod github;
mod github_meta;
mod gitlab;
mod gitlab_meta;
mod http;
pub mod meta;
mod repo;
pub mod restore;
mod source;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::{Credentials, Secret};
pub use error::{Error, Result};
pub use http::{Api, LogWaiting, Patience, Waiting};
pub use meta::MetaReport;
pub use repo::{Filter, RemoteRepo, Visibility};
pub use source::{ForgeKind, ForgeSource};

/// Every repository `source` names on its forge, sorted by path (filters are applied by the
/// caller, which reports what they left out).
pub fn discover(api: &Api, source: &ForgeSource) -> Result<Vec<RemoteRepo>> {
    if api.forge != source.forge {
        return Err(Error::Usage(format!("{source} cannot be listed through a {} API client", api.forge)));
    }
    let mut repos = match source.forge {
        ForgeKind::Github => github::discover(api, source, &github::GITHUB)?,
        ForgeKind::Gitlab => gitlab::discover(api, source)?,
        ForgeKind::Bitbucket => bitbucket::discover(api, source)?,
        ForgeKind::Gitea => github::discover(api, source, &gitea::GITEA)?,
    };
    repos.sort_by(|a, b| a.path.cmp(&b.path));
    repos.dedup_by(|a, b| a.path == b.path);
    Ok(repos)
}

/// Whether gitvault backs up the metadata (issues, pull requests, releases...) of `forge`'s
/// repositories yet.
pub fn metadata_supported(forge: ForgeKind) -> bool {
    matches!(forge, ForgeKind::Github | ForgeKind::Gitlab | ForgeKind::Bitbucket | ForgeKind::Gitea)
}

/// Fetch the metadata of `repo` into `dir`, the work tree of its metadata repository holding the
/// previous backup's files (FORMAT.md §7.7); release assets go into `git_dir`'s LFS store.
/// `now` (RFC 3339) dates the items first found deleted.
pub fn fetch_metadata(
    api: &Api,
    repo: &RemoteRepo,
    dir: &std::path::Path,
    git_dir: &std::path::Path,
    now: &str,
) -> Result<MetaReport> {
    match repo.forge {
        ForgeKind::Github => github_meta::fetch(api, repo, dir, git_dir, now),
        ForgeKind::Gitlab => gitlab_meta::fetch(api, repo, dir, git_dir, now),
        ForgeKind::Bitbucket => bitbucket_meta::fetch(api, repo, dir, now),
        ForgeKind::Gitea => gitea_meta::fetch(api, repo, dir, git_dir, now),
    }
}
