//! Gitea/Forgejo metadata end to end: issues, a pull request with a review and its comment,
//! conversation comments, labels, a milestone, a release with an attachment, collaborators and
//! branch protection, fetched from the fake forge through the real binary, backed up, restored
//! and compared item by item with what the forge serves; a second run that changes nothing
//! costs 304s only; edits, new comments and reviews, deleted items are caught; export works.

use std::path::Path;

use gitvault_forge::testing::FakeForgeKind::Gitea;
use serde_json::{Value, json};

use crate::metadata::MetaWorld;

const TOKEN: &str = "gitea_MetadataTokenNeverPrinted42";

fn world(repo: Value) -> Value {
    let mut entry = json!({"owner": "acme", "name": "api", "private": true});
    if let (Some(e), Some(extra)) = (entry.as_object_mut(), repo.as_object()) {
        e.extend(extra.clone());
    }
    json!({"tokens": {TOKEN: {"login": "alice"}}, "gitea": {"orgs": ["acme"], "repos": [entry]}})
}

fn metadata() -> Value {
    json!({
        "labels": [{"name": "bug", "color": "d73a4a", "description": "Something is broken"},
                   {"name": "area/ui", "color": "0e8a16"}],
        "milestones": [{"id": 71, "number": 1, "title": "v1.0", "state": "open", "description": "first"}],
        "issues": [
            {"number": 1, "title": "Crash on start", "body": "It crashes.", "state": "open", "user": "bob",
             "labels": ["bug"], "milestone": 1, "created_at": "2024-01-01T10:00:00Z", "updated_at": "2024-01-02T10:00:00Z",
             "comments": [{"id": 1001, "user": "alice", "body": "Confirmed.", "created_at": "2024-01-02T10:00:00Z",
                           "updated_at": "2024-01-02T10:00:00Z"}]},
            {"number": 2, "title": "Typo", "body": "<b>teh</b> & co", "state": "open", "user": "carol",
             "created_at": "2024-01-03T10:00:00Z", "updated_at": "2024-01-03T10:00:00Z"},
        ],
        "pulls": [
            {"number": 3, "title": "Fix the crash", "body": "Fixes #1", "state": "closed", "user": "alice",
             "head": "fix", "base": "main", "merged_at": "2024-01-05T10:00:00Z", "closed_at": "2024-01-05T10:00:00Z",
             "created_at": "2024-01-04T10:00:00Z", "updated_at": "2024-01-05T10:00:00Z",
             "comments": [{"id": 2001, "user": "bob", "body": "Thanks!", "created_at": "2024-01-05T09:00:00Z",
                           "updated_at": "2024-01-05T09:00:00Z"}],
             "reviews": [{"id": 3001, "user": "bob", "state": "APPROVED", "body": "LGTM",
                          "submitted_at": "2024-01-04T12:00:00Z"},
                         {"id": 3002, "user": "carol", "state": "COMMENTED", "body": "Looked too",
                          "submitted_at": "2024-01-04T13:00:00Z"}],
             "review_comments": [{"id": 4001, "user": "bob", "body": "nit: rename", "path": "src/main.rs",
                                  "position": 3, "diff_hunk": "@@ -10,3 +10,4 @@",
                                  "pull_request_review_id": 3001, "created_at": "2024-01-04T12:00:00Z",
                                  "updated_at": "2024-01-04T12:00:00Z"}]},
        ],
        "releases": [{"id": 501, "tag_name": "v1.0", "name": "One", "body": "Notes for v1.0",
                      "created_at": "2024-01-06T10:00:00Z", "published_at": "2024-01-06T10:00:00Z",
                      "assets": [{"id": 601, "name": "tool.bin", "file": "assets/tool.bin"},
                                 {"id": 602, "name": "notes v1.txt", "text": "inline notes"}]}],
        "collaborators": ["bob"],
        "branch_protections": [{"rule_name": "main", "required_approvals": 1, "enable_push": true}],
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
        Self(MetaWorld::new(Gitea, "acme", "gitea:acme", ("GITEA_TOKEN", TOKEN)))
    }

    /// `GET /repos/acme/api<path>` as the backup's token sees it.
    fn api_get(&self, path: &str) -> Value {
        self.api_get_with(&format!("/repos/acme/api{path}"), ("Authorization", format!("token {TOKEN}")))
    }

    /// The fake forge's log of the metadata API requests (those under the repository's URL).
    fn metadata_requests(&self) -> Vec<(String, u64)> {
        self.forge
            .requests()
            .iter()
            .filter(|r| r["kind"] == "api" && r["path"].as_str().is_some_and(|p| p.contains("/repos/acme/api")))
            .map(|r| {
                let query = r["query"].as_str().unwrap_or_default();
                let path = r["path"].as_str().unwrap_or_default().trim_start_matches("/gitea/api/v1/repos/acme/api");
                (format!("{path}?{query}"), r["status"].as_u64().unwrap_or_default())
            })
            .collect()
    }
}

fn read(dir: &Path, rel: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `item` without `fields`, which the backup leaves out on purpose (download counters).
fn without(mut item: Value, fields: &[&str]) -> Value {
    if let Some(o) = item.as_object_mut() {
        for f in fields {
            o.remove(*f);
        }
    }
    item
}

#[test]
fn gitea_metadata_is_backed_up_item_by_item_and_a_second_run_costs_only_304s() {
    let s = Setup::new();
    let asset = crate::common::noise(11, 40_000);
    s.forge.write_file("assets/tool.bin", &asset);
    let mut world = world(metadata());
    s.forge.write_world(&world);

    let first = s.backup();
    let names: Vec<&str> =
        first["repositories"].as_array().expect("list").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["gitea:acme/api", "gitea:acme/api#metadata"], "{first}");
    let run = &first["metadata"][0];
    assert_eq!(
        (run["issues"].as_u64(), run["pulls"].as_u64(), run["releases"].as_u64(), run["comments"].as_u64()),
        (Some(2), Some(1), Some(1), Some(2)),
        "{run}"
    );
    assert_eq!(run["assets_downloaded"], 2, "{run}");
    assert_eq!(run["unavailable"], json!([]), "{run}");
    assert_eq!(first["repositories"][1]["lfs_objects"], 2, "the attachments' bytes are LFS objects of the metadata");

    // Item by item, what was stored is what the forge serves.
    let snapshot = first["snapshot"].as_str().expect("id");
    let meta = s.metadata_at(snapshot, "first");
    assert_eq!(read(&meta, "repository.json"), s.api_get(""));
    for n in [1, 2] {
        assert_eq!(read(&meta, &format!("issues/{n}/issue.json")), s.api_get(&format!("/issues/{n}")), "issue {n}");
    }
    assert_eq!(read(&meta, "issues/1/comments/1001.json"), s.api_get("/issues/comments/1001"));
    assert_eq!(read(&meta, "pulls/3/comments/2001.json"), s.api_get("/issues/comments/2001"));
    assert_eq!(read(&meta, "pulls/3/pull.json"), s.api_get("/pulls/3"));
    assert_eq!(read(&meta, "pulls/3/reviews/3001.json"), s.api_get("/pulls/3/reviews/3001"));
    assert_eq!(read(&meta, "pulls/3/reviews/3002.json")["state"], "COMMENT");
    assert_eq!(read(&meta, "pulls/3/review_comments/4001.json"), s.api_get("/pulls/3/reviews/3001/comments")[0]);
    let label = read(&meta, "labels/area%2Fui.json");
    assert_eq!(label, s.api_get(&format!("/labels/{}", label["id"])));
    assert_eq!(read(&meta, "milestones/71.json"), s.api_get("/milestones/71"));
    assert_eq!(
        read(&meta, "releases/501/release.json"),
        without(s.api_get("/releases/501"), &["assets", "archive_download_count"])
    );
    assert_eq!(read(&meta, "access/collaborators/bob.json"), s.api_get("/collaborators")[0]);
    assert_eq!(read(&meta, "protection/main.json"), s.api_get("/branch_protections")[0]);
    // The attachments: records name the bytes' SHA-256, and the restored repository holds them.
    let bare = s.w.path("meta-first.git");
    for (id, bytes) in [(601, asset.as_slice()), (602, b"inline notes".as_slice())] {
        let record = read(&meta, &format!("releases/501/assets/{id}.json"));
        let served = s.api_get(&format!("/releases/501/assets/{id}"));
        let oid = record["sha256"].as_str().expect("sha256").to_string();
        assert_eq!(without(record, &["sha256"]), without(served, &["download_count"]));
        let stored =
            std::fs::read(bare.join("lfs/objects").join(&oid[..2]).join(&oid[2..4]).join(&oid)).expect("asset bytes");
        assert_eq!(stored, bytes, "attachment {id}: the original bytes");
        let pointer = std::fs::read_to_string(meta.join(format!("releases/501/assets/{id}.bin"))).expect("pointer");
        assert!(pointer.contains(&oid));
    }

    // Export: the JSON as stored, HTML threads with the review and its comment, the bytes.
    let out = s.w.path("export");
    let target = out.to_str().expect("utf-8");
    let exported: Value =
        serde_json::from_str(&s.w.ok(&["export", snapshot, "--repo", "gitea:acme/api", "--target", target, "--json"]))
            .expect("json");
    assert_eq!(
        (exported["issues"].as_u64(), exported["pulls"].as_u64(), exported["assets"].as_u64()),
        (Some(2), Some(1), Some(2)),
        "{exported}"
    );
    assert_eq!(read(&out, "json/issues/1/issue.json"), s.api_get("/issues/1"));
    assert_eq!(std::fs::read(out.join("assets/501/tool.bin")).expect("asset"), asset);
    let html = |rel: &str| std::fs::read_to_string(out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert!(html("index.html").contains("Crash on start") && html("index.html").contains("Fix the crash"));
    assert!(html("issues/1.html").contains("Confirmed."));
    assert!(html("issues/2.html").contains("&lt;b&gt;teh&lt;/b&gt; &amp; co"), "bodies are escaped");
    let pull = html("pulls/3.html");
    assert!(pull.contains("LGTM") && pull.contains("nit: rename") && pull.contains("Thanks!"), "{pull}");
    assert!(html("releases.html").contains("Notes for v1.0"));

    // Nothing changed: every metadata request is answered 304, nothing new is stored.
    let data_before = crate::common::files_under(&s.w.vault.join("data"));
    s.forge.clear_requests();
    let second = s.backup();
    let run = &second["metadata"][0];
    assert_eq!(run["changed"], false, "{run}");
    let requests = s.metadata_requests();
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.split('?').next().unwrap_or_default()).collect();
    assert_eq!(
        paths,
        [
            "",
            "/labels",
            "/milestones",
            "/issues",
            "/pulls",
            "/issues/comments",
            "/releases",
            "/collaborators",
            "/branch_protections"
        ],
        "one request per listing page and per single resource: {requests:?}"
    );
    assert!(requests.iter().all(|(_, status)| *status == 304), "{requests:?}");
    assert_eq!((run["requests"].as_u64(), run["not_modified"].as_u64()), (Some(9), Some(9)), "{run}");
    assert_eq!(crate::common::files_under(&s.w.vault.join("data")), data_before, "no new data");

    // Between runs: an edited comment, a new comment on an old issue, an issue closed, one
    // deleted, a label removed, a new review comment on the pull request.
    let repo = &mut world["gitea"]["repos"][0];
    let issues = repo["issues"].as_array_mut().expect("issues");
    issues[0]["comments"][0]["body"] = json!("Confirmed on 1.2 too.");
    issues[0]["comments"][0]["updated_at"] = json!("2024-02-01T10:00:00Z");
    issues[0]["comments"].as_array_mut().expect("comments").push(json!({"id": 1002, "user": "dave", "body": "Me too",
        "created_at": "2024-02-02T10:00:00Z", "updated_at": "2024-02-02T10:00:00Z"}));
    issues[0]["state"] = json!("closed");
    issues[0]["closed_at"] = json!("2024-02-03T10:00:00Z");
    issues[0]["updated_at"] = json!("2024-02-03T10:00:00Z");
    issues.remove(1);
    repo["labels"].as_array_mut().expect("labels").remove(1);
    repo["pulls"][0]["review_comments"].as_array_mut().expect("review comments").push(json!({"id": 4002,
        "user": "alice", "body": "renamed", "path": "src/main.rs", "position": 3, "pull_request_review_id": 3001,
        "created_at": "2024-02-04T10:00:00Z", "updated_at": "2024-02-04T10:00:00Z"}));
    s.forge.write_world(&world);
    let third = s.backup();
    let run = &third["metadata"][0];
    assert_eq!(run["changed"], true, "{run}");
    assert_eq!(run["deleted"], json!(["labels/area%2Fui.json", "issues/2/issue.json"]), "{run}");
    let meta = s.metadata_at(third["snapshot"].as_str().expect("id"), "third");
    assert_eq!(read(&meta, "issues/1/comments/1001.json")["body"], "Confirmed on 1.2 too.");
    assert_eq!(read(&meta, "issues/1/comments/1002.json")["body"], "Me too");
    assert_eq!(read(&meta, "issues/1/issue.json"), s.api_get("/issues/1"));
    assert_eq!(read(&meta, "pulls/3/review_comments/4002.json")["body"], "renamed", "the moved pull's reviews");
    let gone = read(&meta, "issues/2/issue.json");
    assert_eq!(gone["title"], "Typo", "a deleted issue stays");
    assert!(gone["gitvault_deleted_at"].is_string(), "and says when it was found gone: {gone}");
    assert!(read(&meta, "labels/area%2Fui.json")["gitvault_deleted_at"].is_string());
    // diff names what changed upstream between the two snapshots.
    let d: Value =
        serde_json::from_str(&s.w.ok(&["diff", snapshot, third["snapshot"].as_str().expect("id"), "--json"]))
            .expect("json");
    let m = &d["repositories"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["name"] == "gitea:acme/api#metadata")
        .expect("metadata")["metadata"];
    assert_eq!(m["issues"]["deleted"], json!(["2"]), "{m}");
    assert_eq!(m["issues"]["changed"], json!(["1"]), "{m}");
    assert_eq!(m["comments"]["created"], json!(["issues/1/comments/1002", "pulls/3/review_comments/4002"]), "{m}");
    // The review's `comments_count` went up.
    assert_eq!(m["comments"]["changed"], json!(["issues/1/comments/1001", "pulls/3/reviews/3001"]), "{m}");
    // A milestone counts its open and closed issues.
    assert_eq!(m["other"], json!(["labels/area%2Fui.json", "milestones/71.json"]), "{m}");
}

#[test]
fn gitea_listings_of_more_than_fifty_are_walked_page_by_page() {
    let s = Setup::new();
    s.forge.write_world(&world(json!({"generate": {"issues": 70, "pulls": 5, "comments": 120, "seed": 3}})));
    let first = s.backup();
    let run = &first["metadata"][0];
    assert_eq!(
        (run["issues"].as_u64(), run["pulls"].as_u64(), run["comments"].as_u64()),
        (Some(70), Some(5), Some(120))
    );
    s.forge.clear_requests();
    let second = s.backup();
    let run = &second["metadata"][0];
    assert_eq!(run["changed"], false, "{run}");
    let requests = s.metadata_requests();
    assert!(requests.iter().all(|(_, status)| *status == 304), "{requests:?}");
    let pages = |listing: &str| requests.iter().filter(|(p, _)| p.starts_with(&format!("{listing}?"))).count();
    // 70 issues are two pages, 120 comments three: every page is asked again, conditionally.
    assert_eq!((pages("/issues"), pages("/issues/comments"), pages("/pulls")), (2, 3, 1), "{requests:?}");
}

#[test]
fn a_server_that_pages_by_less_than_fifty_is_followed_by_its_links() {
    let s = Setup::new();
    let mut w = world(json!({"generate": {"issues": 45, "comments": 0, "seed": 5}}));
    w["gitea"]["max_response_items"] = json!(20);
    s.forge.write_world(&w);
    let first = s.backup();
    assert_eq!(first["metadata"][0]["issues"], 45, "{first}");
    s.forge.clear_requests();
    let second = s.backup();
    assert_eq!(second["metadata"][0]["changed"], false);
    let requests = s.metadata_requests();
    let issue_pages: Vec<&str> =
        requests.iter().filter(|(p, _)| p.starts_with("/issues?")).map(|(p, _)| p.as_str()).collect();
    assert_eq!(issue_pages.len(), 3, "pages of 20, 20 and 5, each asked again: {requests:?}");
    assert!(requests.iter().all(|(_, status)| *status == 304), "{requests:?}");
}

#[test]
fn a_token_that_may_not_read_branch_protections_says_so() {
    let s = Setup::new();
    s.forge.write_file("assets/tool.bin", b"tool");
    let mut w = world(metadata());
    w["gitea"]["repos"][0]["collaborators"] = json!(["bob", {"login": "alice", "permission": "write"}]);
    s.forge.write_world(&w);
    let report = s.backup();
    let run = &report["metadata"][0];
    let unavailable = run["unavailable"].as_array().expect("list");
    assert_eq!(unavailable.len(), 1, "{run}");
    assert!(unavailable[0].as_str().is_some_and(|u| u.starts_with("branch protections:")), "{run}");
    assert_eq!(run["issues"], 2, "the rest is backed up: {run}");
}
