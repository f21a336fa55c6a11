//! Gitea and Forgejo: organisations, users and single repositories (`/api/v1`).
//!
//! Like GitHub: `GET /orgs/{org}/repos` first (its 404 says the account is a user), then
//! `GET /user/repos` when the token is that user's own (their private repositories), else
//! `GET /users/{user}/repos`. Pages of `limit=50` (the servers' default maximum), `Link` headers.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::github::wiki_url;
use crate::http::Api;
use crate::{ForgeKind, ForgeSource, RemoteRepo};

/// Gitea's default `MAX_RESPONSE_ITEMS`: asking for more returns this many anyway.
const PAGE: u32 = 50;

pub(crate) fn discover(api: &Api, source: &ForgeSource) -> Result<Vec<RemoteRepo>> {
    let owner = source.owner();
    if let Some(repo) = source.repo() {
        let what = format!("the repository {owner}/{repo}");
        let page = api.get(&api.url(&format!("/repos/{owner}/{repo}")), &what)?;
        return Ok(vec![parse_repo(&page.body, &what)?]);
    }
    let what = format!("the repositories of {owner}");
    let org = api.url(&format!("/orgs/{owner}/repos?limit={PAGE}"));
    let items = match api.get_all(&org, &what) {
        Ok(items) => items,
        Err(Error::NotFound { .. }) => {
            let own = authenticated_login(api).is_some_and(|me| me.eq_ignore_ascii_case(owner));
            let listing = if own {
                api.url(&format!("/user/repos?limit={PAGE}"))
            } else {
                api.url(&format!("/users/{owner}/repos?limit={PAGE}"))
            };
            let items = api.get_all(&listing, &what).map_err(|e| match e {
                Error::NotFound { forge, message, .. } => {
                    Error::NotFound { forge, what: format!("the organisation or user {owner}"), message }
                }
                other => other,
            })?;
            // `/user/repos` also lists repositories the user collaborates on elsewhere.
            items
                .into_iter()
                .filter(|v| {
                    v.get("owner")
                        .and_then(|o| o.get("login").or_else(|| o.get("username")))
                        .and_then(Value::as_str)
                        .is_none_or(|login| login.eq_ignore_ascii_case(owner))
                })
                .collect()
        }
        Err(e) => return Err(e),
    };
    items.iter().map(|v| parse_repo(v, &format!("a repository of {owner}"))).collect()
}

fn authenticated_login(api: &Api) -> Option<String> {
    if api.credentials().is_none() {
        return None;
    }
    let me = api.get(&api.url("/user"), "the authenticated user").ok()?;
    me.body.get("login").or_else(|| me.body.get("username")).and_then(Value::as_str).map(str::to_string)
}

fn parse_repo(v: &Value, what: &str) -> Result<RemoteRepo> {
    let missing = |field: &str| Error::Parse {
        forge: ForgeKind::Gitea,
        what: what.to_string(),
        detail: format!("no {field} in the repository object"),
    };
    let str_field = |field: &str| v.get(field).and_then(Value::as_str);
    let bool_field = |field: &str| v.get(field).and_then(Value::as_bool).unwrap_or(false);
    let path = str_field("full_name").ok_or_else(|| missing("full_name"))?.to_string();
    let clone_url = str_field("clone_url").ok_or_else(|| missing("clone_url"))?.to_string();
    Ok(RemoteRepo {
        forge: ForgeKind::Gitea,
        path,
        wiki_url: bool_field("has_wiki").then(|| wiki_url(&clone_url)),
        fork: bool_field("fork"),
        archived: bool_field("archived"),
        private: bool_field("private") || bool_field("internal"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gitea_repository_object_becomes_a_remote_repo() {
        let v = serde_json::json!({
            "id": 3, "name": "api", "full_name": "acme/api", "private": false, "internal": true,
            "fork": true, "archived": false, "has_wiki": true, "topics": ["infra"],
            "default_branch": "main", "description": "",
            "clone_url": "http://127.0.0.1:9/gitea/acme/api.git", "owner": {"login": "acme"}
        });
        let r = parse_repo(&v, "test").expect("parses");
        assert_eq!(r.vault_name(), "gitea:acme/api");
        assert_eq!(r.wiki_url.as_deref(), Some("http://127.0.0.1:9/gitea/acme/api.wiki.git"));
        assert!(r.private && r.fork && !r.archived);
        assert_eq!(r.description, None);
    }
}
