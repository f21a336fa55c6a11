//! GitLab (gitlab.com and self-managed, `/api/v4`): groups with their subgroups, users, and
//! single projects.
//!
//! `gitlab:A/B/C` may name a project or a (sub)group: the project is asked for first
//! (`GET /projects/A%2FB%2FC`), then the group (`GET /groups/{path}/projects` with
//! `include_subgroups=true`: every project under it, at any depth, and not the projects other
//! groups merely share with it), then a user's namespace.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::github::wiki_url;
use crate::http::Api;
use crate::{ForgeKind, ForgeSource, RemoteRepo};

pub(crate) fn discover(api: &Api, source: &ForgeSource) -> Result<Vec<RemoteRepo>> {
    let path = source.path.as_str();
    let id = encode(path);
    if path.contains('/') {
        let what = format!("the project {path}");
        match api.get(&api.url(&format!("/projects/{id}")), &what) {
            Ok(page) => return Ok(vec![parse_project(&page.body, &what)?]),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let what = format!("the projects of {path}");
    let group = api.url(&format!(
        "/groups/{id}/projects?include_subgroups=true&with_shared=false&per_page=100&order_by=id&sort=asc"
    ));
    let items = match api.get_all(&group, &what) {
        Ok(items) => items,
        Err(Error::NotFound { forge, message, .. }) if !path.contains('/') => {
            // Not a group: a user's namespace.
            let users = api.get(&api.url(&format!("/users?username={id}")), &format!("the user {path}"))?;
            let Some(user) = users.body.as_array().and_then(|u| u.first()).and_then(|u| u.get("id")) else {
                return Err(Error::NotFound { forge, what: format!("the group, user or project {path}"), message });
            };
            api.get_all(&api.url(&format!("/users/{user}/projects?per_page=100&order_by=id&sort=asc")), &what)?
        }
        Err(Error::NotFound { forge, message, .. }) => {
            return Err(Error::NotFound { forge, what: format!("the group or project {path}"), message });
        }
        Err(e) => return Err(e),
    };
    items.iter().map(|v| parse_project(v, &format!("a project of {path}"))).collect()
}

/// A path as one URL path segment (`acme/sub` → `acme%2Fsub`), as GitLab wants ids.
pub(crate) fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_project(v: &Value, what: &str) -> Result<RemoteRepo> {
    let missing = |field: &str| Error::Parse {
        forge: ForgeKind::Gitlab,
        what: what.to_string(),
        detail: format!("no {field} in the project object"),
    };
    let str_field = |field: &str| v.get(field).and_then(Value::as_str);
    let path = str_field("path_with_namespace").ok_or_else(|| missing("path_with_namespace"))?.to_string();
    let clone_url = str_field("http_url_to_repo").ok_or_else(|| missing("http_url_to_repo"))?.to_string();
    // `wiki_access_level` replaced `wiki_enabled`; either says whether the wiki is on.
    let wiki = match str_field("wiki_access_level") {
        Some(level) => level != "disabled",
        None => v.get("wiki_enabled").and_then(Value::as_bool).unwrap_or(false),
    };
    let topics = v.get("topics").or_else(|| v.get("tag_list")).and_then(Value::as_array);
    Ok(RemoteRepo {
        forge: ForgeKind::Gitlab,
        path,
        wiki_url: wiki.then(|| wiki_url(&clone_url)),
        fork: v.get("forked_from_project").is_some_and(|p| !p.is_null()),
        archived: v.get("archived").and_then(Value::as_bool).unwrap_or(false),
        private: str_field("visibility").is_some_and(|vis| vis != "public"),
        topics: topics.map(|t| t.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default(),
        default_branch: str_field("default_branch").map(str::to_string),
        description: str_field("description").filter(|d| !d.is_empty()).map(str::to_string),
        ssh_url: str_field("ssh_url_to_repo").map(str::to_string),
        clone_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_one_encoded_segment() {
        assert_eq!(encode("acme/platform/api"), "acme%2Fplatform%2Fapi");
        assert_eq!(encode("a.b-c_d"), "a.b-c_d");
    }

    #[test]
    fn a_gitlab_project_becomes_a_remote_repo() {
        let v = serde_json::json!({
            "id": 7, "path": "api", "path_with_namespace": "acme/platform/api",
            "http_url_to_repo": "http://127.0.0.1:9/gitlab/acme/platform/api.git",
            "visibility": "internal", "archived": true, "topics": ["go"],
            "forked_from_project": {"id": 1}, "wiki_access_level": "enabled", "default_branch": "main"
        });
        let r = parse_project(&v, "test").expect("parses");
        assert_eq!(r.vault_name(), "gitlab:acme/platform/api");
        assert_eq!(r.name(), "api");
        assert_eq!(r.wiki_url.as_deref(), Some("http://127.0.0.1:9/gitlab/acme/platform/api.wiki.git"));
        assert!(r.private && r.archived && r.fork);
        let plain = serde_json::json!({
            "path_with_namespace": "a/b", "http_url_to_repo": "https://x/a/b.git", "visibility": "public",
            "forked_from_project": null, "wiki_enabled": false
        });
        let r = parse_project(&plain, "test").expect("parses");
        assert!(!r.private && !r.fork && r.wiki_url.is_none());
    }
}
