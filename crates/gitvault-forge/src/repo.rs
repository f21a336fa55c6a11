//! A repository found on a forge, and the filters that choose which to back up.

use serde::Serialize;

use crate::ForgeKind;
use crate::error::{Error, Result};

/// One repository an account holds, as its forge describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteRepo {
    pub forge: ForgeKind,
    /// `OWNER/REPO` (GitLab: the full group path and the project).
    pub path: String,
    /// HTTPS clone URL from the API answer, without credentials.
    pub clone_url: String,
    /// The wiki's clone URL when the forge has wikis and this repository's is enabled (it may
    /// still never have been created: then it is skipped without error).
    pub wiki_url: Option<String>,
    /// The SSH clone URL from the API answer (`ssh_url`, `ssh_url_to_repo`, `links.clone`).
    pub ssh_url: Option<String>,
    pub fork: bool,
    pub archived: bool,
    pub private: bool,
    pub topics: Vec<String>,
    pub default_branch: Option<String>,
    pub description: Option<String>,
}

impl RemoteRepo {
    /// The wiki's SSH clone URL, beside [`RemoteRepo::ssh_url`] as the HTTPS one is beside
    /// `clone_url`.
    pub fn ssh_wiki_url(&self) -> Option<String> {
        let (ssh, https_wiki) = (self.ssh_url.as_deref()?, self.wiki_url.as_deref()?);
        Some(if https_wiki.ends_with("/wiki") {
            format!("{}/wiki", ssh.trim_end_matches('/'))
        } else {
            crate::github::wiki_url(ssh)
        })
    }

    /// The repository's name in the vault: `FORGE:OWNER/REPO`.
    pub fn vault_name(&self) -> String {
        format!("{}:{}", self.forge, self.path)
    }

    /// The wiki's name in the vault: `FORGE:OWNER/REPO.wiki`, as git forges name its URL.
    pub fn wiki_vault_name(&self) -> String {
        format!("{}.wiki", self.vault_name())
    }

    /// The last path segment.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    All,
    Public,
    Private,
}

impl std::str::FromStr for Visibility {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(Visibility::All),
            "public" => Ok(Visibility::Public),
            "private" => Ok(Visibility::Private),
            _ => Err(format!("{s:?}: expected all, public or private")),
        }
    }
}

/// Which of an account's repositories to back up. The default takes every repository the
/// token can see, forks and archived ones included.
#[derive(Clone, Debug)]
pub struct Filter {
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
    pub forks: bool,
    pub archived: bool,
    pub visibility: Visibility,
    /// When not empty, only repositories with at least one of these topics.
    pub topics: Vec<String>,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
            forks: true,
            archived: true,
            visibility: Visibility::All,
            topics: Vec::new(),
        }
    }
}

impl Filter {
    /// Include and exclude globs (`*`, `?`, `[...]`), matched against the repository's name and
    /// against its whole path (`api-*` and `acme/api-*` both select `acme/api-gateway`).
    pub fn with_globs(mut self, include: &[String], exclude: &[String]) -> Result<Self> {
        let compile = |p: &String| {
            glob::Pattern::new(p).map_err(|e| Error::Glob { pattern: p.clone(), detail: e.msg.to_string() })
        };
        self.include = include.iter().map(compile).collect::<Result<_>>()?;
        self.exclude = exclude.iter().map(compile).collect::<Result<_>>()?;
        Ok(self)
    }

    /// Why `repo` is left out, or `None` when it is backed up.
    pub fn rejects(&self, repo: &RemoteRepo) -> Option<String> {
        let matches = |p: &glob::Pattern| p.matches(repo.name()) || p.matches(&repo.path);
        if !self.include.is_empty() && !self.include.iter().any(matches) {
            return Some("matches no include pattern".into());
        }
        if let Some(p) = self.exclude.iter().find(|p| matches(p)) {
            return Some(format!("excluded by {:?}", p.as_str()));
        }
        if repo.fork && !self.forks {
            return Some("a fork".into());
        }
        if repo.archived && !self.archived {
            return Some("archived".into());
        }
        match (self.visibility, repo.private) {
            (Visibility::Public, true) => return Some("private".into()),
            (Visibility::Private, false) => return Some("public".into()),
            _ => {}
        }
        if !self.topics.is_empty() && !repo.topics.iter().any(|t| self.topics.contains(t)) {
            return Some("has none of the topics".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> RemoteRepo {
        RemoteRepo {
            forge: ForgeKind::Github,
            path: path.into(),
            clone_url: format!("https://example.invalid/{path}.git"),
            wiki_url: None,
            ssh_url: None,
            fork: false,
            archived: false,
            private: false,
            topics: vec!["backend".into()],
            default_branch: None,
            description: None,
        }
    }

    #[test]
    fn filters_narrow_the_default_of_everything() {
        let all = Filter::default();
        let mut r = repo("acme/api-gateway");
        r.fork = true;
        r.archived = true;
        assert_eq!(all.rejects(&r), None);

        let f = Filter::default().with_globs(&["api-*".into()], &["*-legacy".into()]).expect("globs");
        assert_eq!(f.rejects(&repo("acme/api-gateway")), None);
        assert!(f.rejects(&repo("acme/web")).is_some());
        assert!(f.rejects(&repo("acme/api-legacy")).is_some());
        let f = Filter::default().with_globs(&["acme/*".into()], &[]).expect("globs");
        assert_eq!(f.rejects(&repo("acme/web")), None);

        let f = Filter { forks: false, archived: false, ..Filter::default() };
        assert!(f.rejects(&r).is_some());
        let f = Filter { visibility: Visibility::Private, ..Filter::default() };
        assert!(f.rejects(&repo("acme/web")).is_some());
        let f = Filter { topics: vec!["frontend".into()], ..Filter::default() };
        assert!(f.rejects(&repo("acme/web")).is_some());
        let f = Filter { topics: vec!["backend".into()], ..Filter::default() };
        assert_eq!(f.rejects(&repo("acme/web")), None);
        assert!(Filter::default().with_globs(&["[".into()], &[]).is_err());
    }
}
