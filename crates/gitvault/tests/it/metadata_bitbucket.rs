//! Bitbucket Cloud metadata end to end: pull requests with general and inline comments and
//! their activity, issues with comments, the repository's settings, fetched from the fake forge
//! through the real binary, backed up, restored and compared item by item with what the forge
//! serves; a second run that changes nothing costs 304s only; an edited comment, a new comment
//! and a deleted pull request are caught; a repository without an issue tracker is not asked for
//! issues.

use std::path::Path;

use gitvault_forge::testing::FakeForgeKind::Bitbucket;
use serde_json::{Value, json};

use crate::metadata::MetaWorld;

const TOKEN: &str = "bb_MetadataTokenNeverPrinted42";

fn world(repo: Value) -> Value {
    let mut entry = json!({"workspace": "team", "slug": "api", "is_private": true});
    if let (Some(e), Some(extra)) = (entry.as_object_mut(), repo.as_object()) {
        e.extend(extra.clone());
    }
    json!({"tokens": {TOKEN: {"login": "alice"}}, "bitbucket": {"workspaces": ["team"], "repos": [entry]}})
}

fn metadata() -> Value {
    json!({
        "has_issues": true,
        "pulls": [
            {"id": 1, "title": "Fix the crash", "description": "Fixes #1", "state": "MERGED", "author": "bob",
             "source": "fix", "destination": "main", "reviewers": ["carol"],
             "created_on": "2024-01-04T10:00:00Z", "updated_on": "2024-01-05T10:00:00Z",
             "comments": [
                 {"id": 501, "user": "carol", "content": "Thanks!", "created_on": "2024-01-04T11:00:00Z"},
                 {"id": 502, "user": "carol", "content": "nit: rename", "created_on": "2024-01-04T12:00:00Z",
                  "inline": {"path": "src/lib.rs", "from": null, "to": 12}},
             ],
             "activity": [
                 {"type": "update", "user": "bob", "state": "OPEN", "date": "2024-01-04T10:00:00Z"},
                 {"type": "approval", "user": "carol", "date": "2024-01-05T09:00:00Z"},
             ]},
            {"id": 2, "title": "Add docs", "state": "OPEN", "author": "alice", "source": "docs",
             "created_on": "2024-01-06T10:00:00Z", "updated_on": "2024-01-06T10:00:00Z",
             "activity": [{"type": "changes_requested", "user": "bob", "date": "2024-01-06T11:00:00Z"}]},
            {"id": 3, "title": "Abandoned", "state": "DECLINED", "author": "dave",
             "created_on": "2024-01-07T10:00:00Z", "updated_on": "2024-01-07T10:00:00Z"},
        ],
        "issues": [
            {"id": 1, "title": "Crash on start", "content": "It crashes.", "state": "open", "reporter": "bob",
             "created_on": "2024-01-01T10:00:00Z", "updated_on": "2024-01-01T10:00:00Z",
             "comments": [{"id": 701, "user": "alice", "content": "Confirmed.", "created_on": "2024-01-02T10:00:00Z"}]},
            {"id": 2, "title": "Typo", "content": "teh", "state": "new", "kind": "task", "reporter": "carol",
             "created_on": "2024-01-03T10:00:00Z", "updated_on": "2024-01-03T10:00:00Z"},
        ],
    })
}

struct Setup(MetaWorld);

impl std::ops::Deref for Setup {
    type Target = MetaWorld;
    fn deref(&self) -> &MetaWorld {
        &self.0
    }
}

impl Setup {
    fn new() -> Self {
        Self(MetaWorld::new(Bitbucket, "team", "bitbucket:team", ("BITBUCKET_TOKEN", TOKEN)))
    }

    /// `GET /repositories/team/api<path>` as the backup's token sees it.
    fn api_get(&self, path: &str) -> Value {
        self.api_get_with(&format!("/repositories/team/api{path}"), ("Authorization", format!("Bearer {TOKEN}")))
    }

    /// The fake forge's log of the metadata API requests (those under the repository's URL):
    /// path below it, query, status.
    fn metadata_requests(&self) -> Vec<(String, String, u64)> {
        self.forge
            .requests()
            .iter()
            .filter(|r| r["kind"] == "api" && r["path"].as_str().is_some_and(|p| p.contains("/repositories/team/api")))
            .map(|r| {
                let query = r["query"].as_str().unwrap_or_default().to_string();
                let path =
                    r["path"].as_str().unwrap_or_default().trim_start_matches("/bitbucket/2.0/repositories/team/api");
                (path.to_string(), query, r["status"].as_u64().unwrap_or_default())
            })
            .collect()
    }
}

fn read(dir: &Path, rel: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn bitbucket_metadata_is_backed_up_item_by_item_and_a_second_run_costs_only_304s() {
    let s = Setup::new();
    let mut world = world(metadata());
    s.forge.write_world(&world);

    let first = s.backup();
    let names: Vec<&str> =
        first["repositories"].as_array().expect("list").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["bitbucket:team/api", "bitbucket:team/api#metadata"], "{first}");
    let run = &first["metadata"][0];
    assert_eq!(
        (run["issues"].as_u64(), run["pulls"].as_u64(), run["comments"].as_u64()),
        (Some(2), Some(3), Some(3)),
        "{run}"
    );

    // Item by item, what was stored is what the forge serves.
    let snapshot = first["snapshot"].as_str().expect("id");
    let meta = s.metadata_at(snapshot, "first");
    assert_eq!(read(&meta, "repository.json"), s.api_get(""));
    for n in [1, 2, 3] {
        let pull = read(&meta, &format!("pulls/{n}/pull.json"));
        assert_eq!(pull, s.api_get(&format!("/pullrequests/{n}")), "pull {n}");
        assert!(pull["participants"].is_array(), "the whole object, not the listing's: {pull}");
        let activity = s.api_get(&format!("/pullrequests/{n}/activity?pagelen=50"));
        assert_eq!(read(&meta, &format!("pulls/{n}/activity.json")), activity["values"], "activity of {n}");
    }
    assert_eq!(read(&meta, "pulls/1/activity.json")[1]["approval"]["user"]["nickname"], "carol");
    assert_eq!(read(&meta, "pulls/2/activity.json")[0]["changes_requested"]["user"]["nickname"], "bob");
    assert_eq!(read(&meta, "pulls/1/comments/501.json"), s.api_get("/pullrequests/1/comments/501"));
    let inline = read(&meta, "pulls/1/review_comments/502.json");
    assert_eq!(inline, s.api_get("/pullrequests/1/comments/502"));
    assert_eq!(inline["inline"], json!({"path": "src/lib.rs", "from": null, "to": 12}));
    assert!(!meta.join("pulls/1/comments/502.json").exists(), "an inline comment is a review comment only");
    for n in [1, 2] {
        assert_eq!(read(&meta, &format!("issues/{n}/issue.json")), s.api_get(&format!("/issues/{n}")), "issue {n}");
    }
    assert_eq!(read(&meta, "issues/1/comments/701.json"), s.api_get("/issues/1/comments/701"));

    // Export: the JSON as stored, and HTML threads in Bitbucket's field names.
    let out = s.w.path("export");
    let target = out.to_str().expect("utf-8");
    let exported: Value = serde_json::from_str(&s.w.ok(&[
        "export",
        snapshot,
        "--repo",
        "bitbucket:team/api",
        "--target",
        target,
        "--json",
    ]))
    .expect("json");
    assert_eq!((exported["issues"].as_u64(), exported["pulls"].as_u64()), (Some(2), Some(3)), "{exported}");
    assert_eq!(read(&out, "json/pulls/1/pull.json"), s.api_get("/pullrequests/1"));
    let html = |rel: &str| std::fs::read_to_string(out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let pull = html("pulls/1.html");
    for text in
        ["Fixes #1", "Thanks!", "nit: rename", "<code>src/lib.rs</code> line 12", "<b>bob</b>", "<code>fix</code>"]
    {
        assert!(pull.contains(text), "{text}: {pull}");
    }
    let issue = html("issues/1.html");
    assert!(issue.contains("It crashes.") && issue.contains("Confirmed.") && issue.contains("#1 · open"), "{issue}");

    // Nothing changed: the settings and one page per listing, every one answered 304.
    let data_before = crate::common::files_under(&s.w.vault.join("data"));
    s.forge.clear_requests();
    let second = s.backup();
    let run = &second["metadata"][0];
    assert_eq!(run["changed"], false, "{run}");
    let requests = s.metadata_requests();
    let paths: Vec<&str> = requests.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(paths, ["", "/pullrequests", "/issues"], "{requests:?}");
    assert!(requests.iter().all(|(_, _, status)| *status == 304), "{requests:?}");
    assert_eq!((run["requests"].as_u64(), run["not_modified"].as_u64()), (Some(3), Some(3)), "{run}");
    assert_eq!(crate::common::files_under(&s.w.vault.join("data")), data_before, "no new data");

    // Between runs: an edited comment, a new comment on another pull request, one deleted.
    let repo = &mut world["bitbucket"]["repos"][0];
    let pulls = repo["pulls"].as_array_mut().expect("pulls");
    pulls[0]["comments"][0]["content"] = json!("Thanks, merged.");
    pulls[0]["comments"][0]["updated_on"] = json!("2024-02-01T10:00:00Z");
    pulls[1]["comments"] =
        json!([{"id": 503, "user": "bob", "content": "LGTM now", "created_on": "2024-02-02T10:00:00Z"}]);
    pulls.remove(2);
    s.forge.write_world(&world);
    s.forge.clear_requests();
    let third = s.backup();
    let run = &third["metadata"][0];
    assert_eq!(run["changed"], true, "{run}");
    assert_eq!(run["deleted"], json!(["pulls/3/pull.json"]), "{run}");
    // Only the two pull requests that moved are asked for again; the issues are not.
    let fresh: Vec<String> =
        s.metadata_requests().into_iter().filter(|(_, _, status)| *status != 304).map(|(path, _, _)| path).collect();
    assert_eq!(
        fresh,
        [
            "/pullrequests",
            "/pullrequests/1",
            "/pullrequests/1/comments",
            "/pullrequests/1/activity",
            "/pullrequests/2",
            "/pullrequests/2/comments",
            "/pullrequests/2/activity"
        ],
        "{run}"
    );
    let meta = s.metadata_at(third["snapshot"].as_str().expect("id"), "third");
    assert_eq!(read(&meta, "pulls/1/comments/501.json")["content"]["raw"], "Thanks, merged.");
    assert_eq!(read(&meta, "pulls/1/pull.json"), s.api_get("/pullrequests/1"));
    assert_eq!(read(&meta, "pulls/2/comments/503.json"), s.api_get("/pullrequests/2/comments/503"));
    let gone = read(&meta, "pulls/3/pull.json");
    assert_eq!(gone["title"], "Abandoned", "a deleted pull request stays");
    assert!(gone["gitvault_deleted_at"].is_string(), "and says when it was found gone: {gone}");
    // diff names what changed upstream between the two snapshots.
    let d: Value =
        serde_json::from_str(&s.w.ok(&["diff", snapshot, third["snapshot"].as_str().expect("id"), "--json"]))
            .expect("json");
    let m = &d["repositories"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["name"] == "bitbucket:team/api#metadata")
        .expect("metadata")["metadata"];
    assert_eq!(m["pulls"]["deleted"], json!(["3"]), "{m}");
    assert_eq!(m["pulls"]["changed"], json!(["1", "2"]), "{m}");
    assert_eq!(m["comments"]["created"], json!(["pulls/2/comments/503"]), "{m}");
    assert_eq!(m["comments"]["changed"], json!(["pulls/1/comments/501"]), "{m}");
    assert_eq!(m["other"], json!([]), "the activity did not change: {m}");

    // The deleted pull request comes back: it is no longer marked.
    world["bitbucket"]["repos"][0]["pulls"].as_array_mut().expect("pulls").push(metadata()["pulls"][2].clone());
    s.forge.write_world(&world);
    let fourth = s.backup();
    let meta = s.metadata_at(fourth["snapshot"].as_str().expect("id"), "fourth");
    assert_eq!(read(&meta, "pulls/3/pull.json"), s.api_get("/pullrequests/3"));
}

#[test]
fn a_repository_without_an_issue_tracker_is_not_asked_for_issues() {
    let s = Setup::new();
    let mut repo = metadata();
    repo["has_issues"] = json!(false);
    s.forge.write_world(&world(repo));
    assert_eq!(s.api_get("/issues")["error"]["message"], "Repository has no issue tracker.");
    s.forge.clear_requests();
    let first = s.backup();
    let run = &first["metadata"][0];
    assert_eq!((run["issues"].as_u64(), run["pulls"].as_u64()), (Some(0), Some(3)), "{run}");
    let requests = s.metadata_requests();
    assert!(requests.iter().all(|(path, _, _)| !path.starts_with("/issues")), "{requests:?}");
}

#[test]
fn bitbucket_pull_requests_are_walked_page_by_page_until_a_page_without_next() {
    let s = Setup::new();
    let states = ["OPEN", "MERGED", "DECLINED", "SUPERSEDED"];
    let pulls: Vec<Value> = (1..=100usize)
        .map(|i| {
            json!({"id": i, "title": format!("change {i}"), "state": states[i % 4],
                        "created_on": "2024-01-01T10:00:00Z", "updated_on": "2024-01-01T10:00:00Z"})
        })
        .collect();
    s.forge.write_world(&world(json!({"pulls": pulls})));
    let first = s.backup();
    assert_eq!(first["metadata"][0]["pulls"], 100, "{first}");
    s.forge.clear_requests();
    let second = s.backup();
    assert_eq!(second["metadata"][0]["changed"], false);
    let requests = s.metadata_requests();
    let pages: Vec<&str> =
        requests.iter().filter(|(p, _, _)| p == "/pullrequests").map(|(_, q, _)| q.as_str()).collect();
    // 50 and 50: the second page is full but has no `next`, so nothing past it is asked for.
    assert_eq!(pages.len(), 2, "{requests:?}");
    assert!(pages.iter().all(|q| q.contains("state=SUPERSEDED") && q.contains("pagelen=50")), "{pages:?}");
    assert!(requests.iter().all(|(_, _, status)| *status == 304), "{requests:?}");
}

#[test]
fn an_issue_tracker_the_token_may_not_read_is_said_and_the_rest_kept() {
    let s = Setup::new();
    let mut w = world(metadata());
    w["faults"] = json!({"bitbucket": {"errors": [
        {"path": "/repositories/team/api/issues", "status": 403, "times": -1}
    ]}});
    s.forge.write_world(&w);
    let report = s.backup();
    let run = &report["metadata"][0];
    let unavailable = run["unavailable"].as_array().expect("list");
    assert_eq!(unavailable.len(), 1, "{run}");
    assert!(unavailable[0].as_str().is_some_and(|u| u.starts_with("issues:")), "{run}");
    assert_eq!((run["issues"].as_u64(), run["pulls"].as_u64()), (Some(0), Some(3)), "{run}");
}
