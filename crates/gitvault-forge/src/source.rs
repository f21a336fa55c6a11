//! Forge sources as users write them: `github:ORG`, `gitlab:GROUP/SUB/PROJECT`, ...

use std::fmt;

use crate::error::{Error, Result};

/// The forges gitvault discovers repositories on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    Github,
    Gitlab,
    Bitbucket,
    Gitea,
}

impl ForgeKind {
    pub const ALL: [ForgeKind; 4] = [ForgeKind::Github, ForgeKind::Gitlab, ForgeKind::Bitbucket, ForgeKind::Gitea];

    /// The prefix of its sources, and of repository names in the vault.
    pub fn prefix(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
            ForgeKind::Bitbucket => "bitbucket",
            ForgeKind::Gitea => "gitea",
        }
    }

    /// The public service's API base, when there is one.
    pub fn default_api_url(self) -> Option<&'static str> {
        match self {
            ForgeKind::Github => Some("https://api.github.com"),
            ForgeKind::Gitlab => Some("https://gitlab.com/api/v4"),
            ForgeKind::Bitbucket => Some("https://api.bitbucket.org/2.0"),
            ForgeKind::Gitea => None,
        }
    }

    /// What to set when the forge refuses the credentials.
    pub(crate) fn token_hint(self) -> &'static str {
        match self {
            ForgeKind::Github => "GITHUB_TOKEN (or the source's token_file)",
            ForgeKind::Gitlab => "GITLAB_TOKEN (or the source's token_file)",
            ForgeKind::Bitbucket => {
                "BITBUCKET_TOKEN, or BITBUCKET_USERNAME with BITBUCKET_API_TOKEN (or the source's token_file)"
            }
            ForgeKind::Gitea => "GITEA_TOKEN (or the source's token_file)",
        }
    }

    pub(crate) fn accept(self) -> &'static str {
        match self {
            ForgeKind::Github => "application/vnd.github+json",
            _ => "application/json",
        }
    }
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// A forge source: an account (organisation, user, group, workspace) or one repository in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgeSource {
    pub forge: ForgeKind,
    /// `ORG` or `OWNER/REPO`; on GitLab a group path that may name a subgroup or a project
    /// (the API tells which).
    pub path: String,
}

impl ForgeSource {
    /// `Some` when `source` starts with a forge prefix (`github:` ...); an error when the rest
    /// is not a valid account or repository path.
    pub fn parse(source: &str) -> Option<Result<Self>> {
        let (prefix, rest) = source.split_once(':')?;
        let forge = ForgeKind::ALL.into_iter().find(|f| f.prefix() == prefix)?;
        Some(Self::parse_path(forge, rest).map_err(|why| {
            Error::Usage(format!("{source:?} is not a {forge} source: {why} (expected {})", forge.syntax()))
        }))
    }

    fn parse_path(forge: ForgeKind, rest: &str) -> std::result::Result<Self, &'static str> {
        let path = rest.trim_matches('/');
        if path.is_empty() {
            return Err("no account");
        }
        let segments: Vec<&str> = path.split('/').collect();
        if segments.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
            return Err("empty or relative path segment");
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control() || "?#\\%".contains(c)) {
            return Err("unexpected character");
        }
        if forge != ForgeKind::Gitlab && segments.len() > 2 {
            return Err("too many path segments");
        }
        Ok(Self { forge, path: path.to_string() })
    }

    /// The account part (GitLab: the first group; use [`ForgeSource::path`] for the rest).
    pub fn owner(&self) -> &str {
        self.path.split('/').next().unwrap_or_default()
    }

    /// For `OWNER/REPO` on GitHub, Bitbucket and Gitea, the repository.
    pub fn repo(&self) -> Option<&str> {
        if self.forge == ForgeKind::Gitlab {
            return None;
        }
        self.path.split_once('/').map(|(_, r)| r)
    }
}

impl ForgeKind {
    fn syntax(self) -> &'static str {
        match self {
            ForgeKind::Github => "github:ORG, github:USER or github:OWNER/REPO",
            ForgeKind::Gitlab => "gitlab:GROUP[/SUBGROUP...] or gitlab:GROUP/PROJECT",
            ForgeKind::Bitbucket => "bitbucket:WORKSPACE or bitbucket:WORKSPACE/REPO",
            ForgeKind::Gitea => "gitea:OWNER or gitea:OWNER/REPO",
        }
    }
}

impl fmt::Display for ForgeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.forge, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forge_sources_parse() {
        let s = ForgeSource::parse("github:acme").expect("forge").expect("valid");
        assert_eq!((s.forge, s.owner(), s.repo()), (ForgeKind::Github, "acme", None));
        let s = ForgeSource::parse("gitea:acme/api").expect("forge").expect("valid");
        assert_eq!((s.owner(), s.repo()), ("acme", Some("api")));
        let s = ForgeSource::parse("gitlab:acme/platform/api").expect("forge").expect("valid");
        assert_eq!((s.path.as_str(), s.repo()), ("acme/platform/api", None));
        assert!(ForgeSource::parse("git@github.com:acme/api.git").is_none());
        assert!(ForgeSource::parse("/srv/repo").is_none());
        assert!(ForgeSource::parse("https://github.com/acme").is_none());
        for bad in ["github:", "github:a/b/c", "bitbucket:a//b", "gitea:../x", "github:a b"] {
            assert!(ForgeSource::parse(bad).expect("forge").is_err(), "{bad}");
        }
    }
}
