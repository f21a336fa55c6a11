//! GitHub (and GitHub Enterprise Server), and Gitea/Forgejo, whose API follows GitHub's
//! shapes: organisations, users and single repositories.
//!
//! An organisation lists with `GET /orgs/{org}/repos`; a user with `GET /users/{user}/repos`,
//! or, when the token is that user's own, `GET /user/repos` (the only listing that includes
//! their private repositories). The organisation listing is tried first — accounts backed up
//! are mostly organisations, and then listing costs one request per page and nothing more; its
//! 404 says the account is a user.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::Api;
use crate::{ForgeKind, ForgeSource, RemoteRepo};

/// The listings of one forge of the GitHub family.
pub(crate) struct Listings {
    /// Query of every listing: the page size, and GitHub's `type`/`affiliation`.
    pub org_query: &'static str,
    pub own_query: &'static str,
    pub user_query: &'static str,
}

/// GitHub: 100 per page; `type=all` takes forks, sources and private repositories an
/// organisation member can see; `affiliation=owner` keeps the user's own.
pub(crate) const GITHUB: Listings = Listings {
    org_query: "type=all&per_page=100",
    own_query: "affiliation=owner&per_page=100",
    user_query: "type=owner&per_page=100",
};

pub(crate) fn discover(api: &Api, source: &ForgeSource, listings: &Listings) -> Result<Vec<RemoteRepo>> {
    let owner = source.owner();
    if let Some(repo) = source.repo() {
        let what = format!("the repository {owner}/{repo}");
        let page = api.get(&api.url(&format!("/repos/{owner}/{repo}")), &what)?;
        return Ok(vec![parse_repo(api.forge, &page.body, &what)?]);
    }
    let what = format!("the repositories of {owner}");
    let org = api.url(&format!("/orgs/{owner}/repos?{}", listings.org_query));
    let items = match api.get_all(&org, &what) {
        Ok(items) => items,
        Err(Error::NotFound { .. }) => {
            let listing = if authenticated_login(api).is_some_and(|me| me.eq_ignore_ascii_case(owner)) {
                api.url(&format!("/user/repos?{}", listings.own_query))
            } else {
                api.url(&format!("/users/{owner}/repos?{}", listings.user_query))
            };
            let items = api.get_all(&listing, &what).map_err(|e| match e {
                Error::NotFound { forge, message, .. } => {
                    Error::NotFound { forge, what: format!("the organisation or user {owner}"), message }
                }
                other => other,
            })?;
            // Gitea's `/user/repos` also lists repositories the user collaborates on elsewhere.
            items.into_iter().filter(|v| owner_login(v).is_none_or(|login| login.eq_ignore_ascii_case(owner))).collect()
        }
        Err(e) => return Err(e),
    };
    items.iter().map(|v| parse_repo(api.forge, v, &format!("a repository of {owner}"))).collect()
}

fn owner_login(v: &Value) -> Option<&str> {
    v.get("owner").and_then(|o| o.get("login").or_else(|| o.get("username"))).and_then(Value::as_str)
}

/// The login the token belongs to; `None` without a token or when the token is not a user's
/// (an app installation token cannot read `/user`).
fn authenticated_login(api: &Api) -> Option<String> {
    if api.credentials().is_none() {
        return None;
    }
    let me = api.get(&api.url("/user"), "the authenticated user").ok()?;
    me.body.get("login").or_else(|| me.body.get("username")).and_then(Value::as_str).map(str::to_string)
}

/// A repository object of GitHub or Gitea (same field names).
fn parse_repo(forge: ForgeKind, v: &Value, what: &str) -> Result<RemoteRepo> {
    let missing = |field: &str| Error::Parse {
        forge,
        what: what.to_string(),
        detail: format!("no {field} in the repository object"),
    };
    let str_field = |field: &str| v.get(field).and_then(Value::as_str);
    let bool_field = |field: &str| v.get(field).and_then(Value::as_bool).unwrap_or(false);
    let path = str_field("full_name").ok_or_else(|| missing("full_name"))?.to_string();
    let clone_url = str_field("clone_url").ok_or_else(|| missing("clone_url"))?.to_string();
    // Both serve a repository's wiki next to it, as `<repo>.wiki.git`.
    let wiki_url = bool_field("has_wiki").then(|| wiki_url(&clone_url));
    Ok(RemoteRepo {
        forge,
        path,
        wiki_url,
        fork: bool_field("fork"),
        archived: bool_field("archived"),
        // GitHub: `visibility` private or internal; Gitea: `internal`.
        private: bool_field("private")
            || bool_field("internal")
            || str_field("visibility").is_some_and(|v| v != "public"),
        topics: v
            .get("topics")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        default_branch: str_field("default_branch").map(str::to_string),
        description: str_field("description").filter(|d| !d.is_empty()).map(str::to_string),
        ssh_url: str_field("ssh_url").map(str::to_string),
        clone_url,
    })
}

pub(crate) fn wiki_url(clone_url: &str) -> String {
    let base = clone_url.strip_suffix(".git").unwrap_or(clone_url);
    format!("{base}.wiki.git")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_object_becomes_a_remote_repo() {
        let v = serde_json::json!({
            "id": 1, "name": "api", "full_name": "acme/api", "private": true, "fork": false,
            "archived": true, "has_wiki": true, "topics": ["go", "backend"], "default_branch": "main",
            "clone_url": "http://127.0.0.1:9/github/acme/api.git", "visibility": "private",
            "description": null
        });
        let r = parse_repo(ForgeKind::Github, &v, "test").expect("parses");
        assert_eq!(r.vault_name(), "github:acme/api");
        assert_eq!(r.wiki_url.as_deref(), Some("http://127.0.0.1:9/github/acme/api.wiki.git"));
        assert_eq!(r.ssh_url, None);
        assert!(r.private && r.archived && !r.fork);
        assert_eq!(r.topics, ["go", "backend"]);
        assert_eq!(r.description, None);
        assert!(parse_repo(ForgeKind::Github, &serde_json::json!({"name": "x"}), "test").is_err());
    }

    #[test]
    fn a_gitea_repository_object_becomes_a_remote_repo() {
        let v = serde_json::json!({
            "id": 3, "name": "api", "full_name": "acme/api", "private": false, "internal": true,
            "fork": true, "archived": false, "has_wiki": true, "topics": ["infra"],
            "default_branch": "main", "description": "",
            "clone_url": "http://127.0.0.1:9/gitea/acme/api.git", "owner": {"login": "acme"}
        });
        let r = parse_repo(ForgeKind::Gitea, &v, "test").expect("parses");
        assert_eq!(r.vault_name(), "gitea:acme/api");
        assert_eq!(r.wiki_url.as_deref(), Some("http://127.0.0.1:9/gitea/acme/api.wiki.git"));
        assert!(r.private && r.fork && !r.archived);
        assert_eq!(r.description, None);
    }
}
