//! Forge sources (`github:ORG` ...): where their tokens come from, listing their repositories,
//! and turning what was found into sources for the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use gitvault_engine::ops::backup::SourceSpec;
use gitvault_forge::{Api, Credentials, Filter, ForgeKind, ForgeSource, Patience, RemoteRepo, Secret, Waiting};
use gitvault_git::HttpAuth;
use serde::Serialize;

/// Ref namespaces forges create for pull and merge requests: left out unless asked for.
const REVIEW_REFS: [&str; 2] = ["refs/pull/", "refs/merge-requests/"];

/// How to list and fetch the repositories of forge sources.
#[derive(Clone, Debug, Default)]
pub struct AccountOptions {
    /// The API base (`--api-url`, or the source's `api_url`); default: the public service's.
    pub api_url: Option<String>,
    /// A file holding the token (its first line), instead of the forge's environment variable.
    pub token_file: Option<PathBuf>,
    /// The variable holding the token, instead of the forge's usual one.
    pub token_env: Option<String>,
    pub filter: Filter,
    /// Back up wikis too (default).
    pub wikis: bool,
    /// Keep pull/merge request refs (`refs/pull/*`, `refs/merge-requests/*`).
    pub pull_refs: bool,
    /// Fetch git data over SSH (the forge's SSH clone URLs, the user's ssh keys and
    /// known_hosts) instead of HTTPS with the token.
    pub ssh: bool,
    /// Back up issues, pull requests, releases... too (GitHub; default on).
    pub metadata: bool,
}

/// One forge source, ready to list.
pub struct Account {
    pub source: ForgeSource,
    pub api: Api,
    pub options: AccountOptions,
}

impl Account {
    pub fn new(source: ForgeSource, options: &AccountOptions) -> Result<Self> {
        let forge = source.forge;
        let api_url = match (&options.api_url, forge.default_api_url()) {
            (Some(url), _) => url.clone(),
            (None, Some(url)) => url.to_string(),
            (None, None) => bail!(
                "{source}: {forge} has no public default instance; give the instance's API base with --api-url (or api_url in the config), e.g. https://gitea.example.org/api/v1"
            ),
        };
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            bail!("{source}: the API URL {api_url:?} is not an http(s) URL");
        }
        let credentials = credentials(forge, options).with_context(|| format!("the token for {source}"))?;
        let api = Api::new(forge, &api_url, credentials, Patience::default(), Arc::new(TellWaiting))?;
        Ok(Self { source, api, options: options.clone() })
    }
}

/// Where a forge's token comes from: the source's own file or variable, else the forge's usual
/// environment variables. None at all means anonymous access (public repositories only).
pub(crate) fn credentials(forge: ForgeKind, o: &AccountOptions) -> Result<Credentials> {
    let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if let Some(file) = &o.token_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading the token file {}", file.display()))?;
        let token = text.lines().next().map(str::trim).unwrap_or_default();
        if token.is_empty() {
            bail!("the token file {} is empty", file.display());
        }
        return Ok(Credentials::Token(Secret::new(token)));
    }
    if let Some(name) = &o.token_env {
        return match var(name) {
            Some(t) => Ok(Credentials::Token(Secret::new(t))),
            None => Err(anyhow!("the variable {name} (token_env) is not set")),
        };
    }
    let token = match forge {
        ForgeKind::Github => var("GITHUB_TOKEN"),
        ForgeKind::Gitlab => var("GITLAB_TOKEN"),
        ForgeKind::Gitea => var("GITEA_TOKEN"),
        ForgeKind::Bitbucket => var("BITBUCKET_TOKEN"),
    };
    if let Some(t) = token {
        return Ok(Credentials::Token(Secret::new(t)));
    }
    if forge == ForgeKind::Bitbucket
        && let Some(user) = var("BITBUCKET_USERNAME")
    {
        // Atlassian API tokens replace app passwords; an app password still works the same way.
        return match var("BITBUCKET_API_TOKEN").or_else(|| var("BITBUCKET_APP_PASSWORD")) {
            Some(secret) => Ok(Credentials::Basic { user, secret: Secret::new(secret) }),
            None => Err(anyhow!("BITBUCKET_USERNAME is set but BITBUCKET_API_TOKEN is not")),
        };
    }
    Ok(Credentials::None)
}

/// Rate-limit waits and retries, said on stderr: a long wait must not look like a hang.
pub(crate) struct TellWaiting;
impl Waiting for TellWaiting {
    fn waiting(&self, forge: ForgeKind, wait: Duration, reason: &str) {
        tracing::warn!("{forge}: {reason}; waiting {:.0} s", wait.as_secs_f64().ceil());
    }
}

/// What listing one forge source found.
#[derive(Serialize)]
pub struct Listing {
    pub source: String,
    pub api_url: String,
    /// Repositories to back up (vault names).
    pub repositories: Vec<String>,
    /// Repositories the filters left out, and why.
    pub left_out: Vec<LeftOut>,
    /// API requests made.
    pub requests: u64,
    /// Why the source could not be listed.
    pub error: Option<String>,
    #[serde(skip)]
    found: Vec<RemoteRepo>,
}

#[derive(Serialize)]
pub struct LeftOut {
    pub name: String,
    pub reason: String,
}

impl Listing {
    /// The repositories the filters kept.
    pub fn kept(&self) -> Vec<RemoteRepo> {
        self.found.iter().filter(|r| self.repositories.contains(&r.vault_name())).cloned().collect()
    }

    /// Every repository the account holds (filtered or not), by vault name.
    pub fn all_names(&self) -> impl Iterator<Item = String> + '_ {
        self.found.iter().map(RemoteRepo::vault_name)
    }
}

pub fn list(account: &Account) -> Listing {
    let mut listing = Listing {
        source: account.source.to_string(),
        api_url: account.api.base().to_string(),
        repositories: Vec::new(),
        left_out: Vec::new(),
        requests: 0,
        error: None,
        found: Vec::new(),
    };
    match gitvault_forge::discover(&account.api, &account.source) {
        Ok(repos) => {
            for r in &repos {
                match account.options.filter.rejects(r) {
                    None => listing.repositories.push(r.vault_name()),
                    Some(reason) => listing.left_out.push(LeftOut { name: r.vault_name(), reason }),
                }
            }
            listing.found = repos;
        }
        Err(e) => listing.error = Some(format!("listing {}: {e}", account.source)),
    }
    listing.requests = account.api.requests();
    listing
}

/// The engine's sources for what a listing found: each repository kept by the filters and its
/// wiki (optional: an enabled wiki that was never written to does not exist), or one failed
/// source for an account that could not be listed.
pub fn specs(account: &Account, listing: &Listing) -> Vec<SourceSpec> {
    if let Some(error) = &listing.error {
        return vec![SourceSpec {
            source: listing.source.clone(),
            name: Some(listing.source.clone()),
            failed: Some(error.clone()),
            ..SourceSpec::default()
        }];
    }
    let auth = account.api.credentials().git_header(account.source.forge).map(|h| HttpAuth::new(h.expose()));
    let exclude_refs: Vec<String> =
        if account.options.pull_refs { Vec::new() } else { REVIEW_REFS.iter().map(|s| s.to_string()).collect() };
    let mut out = Vec::new();
    for r in listing.found.iter().filter(|r| listing.repositories.contains(&r.vault_name())) {
        // Over SSH, git authenticates with the user's keys; the token still serves LFS, which
        // is fetched over HTTPS.
        let (source, wiki, lfs_url, wiki_lfs_url) = if account.options.ssh {
            let Some(ssh) = r.ssh_url.clone() else {
                out.push(SourceSpec {
                    source: r.clone_url.clone(),
                    name: Some(r.vault_name()),
                    failed: Some(format!("{}: the forge gave no SSH clone URL; back it up over HTTPS", r.vault_name())),
                    ..SourceSpec::default()
                });
                continue;
            };
            (ssh, r.ssh_wiki_url(), Some(r.clone_url.clone()), r.wiki_url.clone())
        } else {
            (r.clone_url.clone(), r.wiki_url.clone(), None, None)
        };
        out.push(SourceSpec {
            source,
            name: Some(r.vault_name()),
            auth: auth.clone(),
            optional: false,
            exclude_refs: exclude_refs.clone(),
            failed: None,
            lfs_url,
        });
        if let (true, Some(wiki)) = (account.options.wikis, wiki) {
            out.push(SourceSpec {
                source: wiki,
                name: Some(r.wiki_vault_name()),
                auth: auth.clone(),
                optional: true,
                exclude_refs: Vec::new(),
                failed: None,
                lfs_url: wiki_lfs_url,
            });
        }
    }
    out
}
