//! Bitbucket Cloud (`/2.0`): workspaces and single repositories.
//!
//! `GET /repositories/{workspace}?pagelen=100` pages with a `next` URL in the body. A
//! repository's HTTPS clone link may carry the user's name (`https://alice@bitbucket.org/...`):
//! it is dropped, since git gets its credentials from a header. Bitbucket has neither archived
//! repositories nor topics; a wiki, when enabled, is the repository `<clone URL>/wiki`.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::Api;
use crate::{ForgeKind, ForgeSource, RemoteRepo};

pub(crate) fn discover(api: &Api, source: &ForgeSource) -> Result<Vec<RemoteRepo>> {
    let workspace = source.owner();
    if let Some(slug) = source.repo() {
        let what = format!("the repository {workspace}/{slug}");
        let page = api.get(&api.url(&format!("/repositories/{workspace}/{slug}")), &what)?;
        return Ok(vec![parse_repo(&page.body, &what)?]);
    }
    let what = format!("the repositories of the workspace {workspace}");
    let items = api.get_all(&api.url(&format!("/repositories/{workspace}?pagelen=100")), &what)?;
    items.iter().map(|v| parse_repo(v, &format!("a repository of {workspace}"))).collect()
}

fn parse_repo(v: &Value, what: &str) -> Result<RemoteRepo> {
    let missing = |field: &str| Error::Parse {
        forge: ForgeKind::Bitbucket,
        what: what.to_string(),
        detail: format!("no {field} in the repository object"),
    };
    let path = v.get("full_name").and_then(Value::as_str).ok_or_else(|| missing("full_name"))?.to_string();
    let clone_url = v
        .get("links")
        .and_then(|l| l.get("clone"))
        .and_then(Value::as_array)
        .and_then(|links| {
            links.iter().find(|l| l.get("name").and_then(Value::as_str) == Some("https")).and_then(|l| l.get("href"))
        })
        .and_then(Value::as_str)
        .map(without_userinfo)
        .ok_or_else(|| missing("links.clone https href"))?;
    let ssh_url = v
        .get("links")
        .and_then(|l| l.get("clone"))
        .and_then(Value::as_array)
        .and_then(|links| {
            links.iter().find(|l| l.get("name").and_then(Value::as_str) == Some("ssh")).and_then(|l| l.get("href"))
        })
        .and_then(Value::as_str)
        .map(str::to_string);
    let has_wiki = v.get("has_wiki").and_then(Value::as_bool).unwrap_or(false);
    Ok(RemoteRepo {
        forge: ForgeKind::Bitbucket,
        path,
        wiki_url: has_wiki.then(|| format!("{}/wiki", clone_url.trim_end_matches('/'))),
        fork: v.get("parent").is_some_and(|p| !p.is_null()),
        archived: false,
        private: v.get("is_private").and_then(Value::as_bool).unwrap_or(false),
        topics: Vec::new(),
        default_branch: v.get("mainbranch").and_then(|b| b.get("name")).and_then(Value::as_str).map(str::to_string),
        description: v.get("description").and_then(Value::as_str).filter(|d| !d.is_empty()).map(str::to_string),
        ssh_url,
        clone_url,
    })
}

/// `https://alice@host/x.git` → `https://host/x.git`.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let host = rest[..end].rsplit_once('@').map_or(&rest[..end], |(_, h)| h);
            format!("{scheme}://{host}{}", &rest[end..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bitbucket_repository_becomes_a_remote_repo() {
        let v = serde_json::json!({
            "type": "repository", "full_name": "team/api", "slug": "api", "is_private": true,
            "has_wiki": true, "parent": {"full_name": "other/api"}, "mainbranch": {"name": "main"},
            "links": {"clone": [
                {"name": "https", "href": "https://alice@bitbucket.org/team/api.git"},
                {"name": "ssh", "href": "git@bitbucket.org:team/api.git"}
            ]}
        });
        let r = parse_repo(&v, "test").expect("parses");
        assert_eq!(r.vault_name(), "bitbucket:team/api");
        assert_eq!(r.clone_url, "https://bitbucket.org/team/api.git");
        assert_eq!(r.wiki_url.as_deref(), Some("https://bitbucket.org/team/api.git/wiki"));
        assert_eq!(r.ssh_wiki_url().as_deref(), Some("git@bitbucket.org:team/api.git/wiki"));
        assert!(r.private && r.fork);
        assert_eq!(r.default_branch.as_deref(), Some("main"));
    }
}
