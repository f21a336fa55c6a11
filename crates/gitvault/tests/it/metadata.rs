//! Forge metadata end to end: issues, pull requests, reviews, comments, labels, milestones,
//! releases with their assets and access records, fetched from the fake forge into a metadata
//! repository, backed up, restored and compared item by item; a second run that changes nothing
//! costs 304s; edits, new comments, closed and deleted items are caught.

use std::path::{Path, PathBuf};

use gitvault_forge::testing::{FakeForge, FakeForgeKind, FakeForgeKind::Github};
use serde_json::{Value, json};

use crate::common::{World, commit, git, new_repo};

const TOKEN: &str = "ghp_MetadataTokenNeverPrinted42";

fn world(repo_extra: Value) -> Value {
    let mut repo = json!({"owner": "acme", "name": "api", "private": true, "has_wiki": false});
    if let (Some(r), Some(extra)) = (repo.as_object_mut(), repo_extra.as_object()) {
        r.extend(extra.clone());
    }
    json!({
        "tokens": {TOKEN: {"login": "alice"}},
        "github": {"accounts": {"acme": {"type": "Organization"}}, "repos": [repo]},
    })
}

fn metadata() -> Value {
    json!({
        "labels": [{"name": "bug", "color": "d73a4a", "description": "Something is broken"},
                   {"name": "area/ui", "color": "0e8a16"}],
        "milestones": [{"number": 1, "title": "v1.0", "state": "open", "description": "first"}],
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
                          "submitted_at": "2024-01-04T12:00:00Z"}],
             "review_comments": [{"id": 4001, "user": "bob", "body": "nit: rename", "path": "src/main.rs",
                                  "position": 3, "line": 12, "side": "RIGHT", "diff_hunk": "@@ -10,3 +10,4 @@",
                                  "pull_request_review_id": 3001, "created_at": "2024-01-04T12:00:00Z",
                                  "updated_at": "2024-01-04T12:00:00Z"}]},
        ],
        "releases": [{"id": 501, "tag_name": "v1.0", "name": "One", "body": "Notes for v1.0",
                      "created_at": "2024-01-06T10:00:00Z", "published_at": "2024-01-06T10:00:00Z",
                      "assets": [{"id": 601, "name": "tool.bin", "content_type": "application/octet-stream",
                                  "file": "assets/tool.bin"}]}],
        "collaborators": [{"login": "bob", "permission": "push"}],
    })
}

/// A vault, the fake forge, and one code repository `OWNER/api` on it: what every forge's
/// metadata tests start from.
pub(crate) struct MetaWorld {
    pub forge: FakeForge,
    pub w: World,
    kind: FakeForgeKind,
    /// The forge source backed up (`github:acme`).
    source: String,
    /// The repository's name in the vault (`github:acme/api`).
    repo: String,
    token: (&'static str, &'static str),
}

impl MetaWorld {
    /// `owner` is the owner, GitLab group path or workspace; `token` the variable and its value.
    pub fn new(kind: FakeForgeKind, owner: &str, source: &str, token: (&'static str, &'static str)) -> Self {
        let w = World::new();
        w.init();
        let forge = FakeForge::start();
        let work = new_repo(&w.path("work/api"));
        commit(&work, "README", b"api\n", "first");
        let bare = forge.git_dir(kind, owner, "api");
        git(w.dir.path(), &["clone", "-q", "--bare", work.to_str().expect("utf-8"), bare.to_str().expect("utf-8")]);
        let repo = format!("{}:{owner}/api", kind.name());
        Self { forge, w, kind, source: source.to_string(), repo, token }
    }

    /// `gitvault backup --json` of the source; it must succeed and never print the token.
    pub fn backup(&self) -> Value {
        let api = self.forge.api_url(self.kind);
        let out = self
            .w
            .cmd(&["backup", "--json", "--api-url", &api, &self.source])
            .env(self.token.0, self.token.1)
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains(self.token.1));
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// The metadata repository of `snapshot`, restored (`<label>.git`) and checked out.
    pub fn metadata_at(&self, snapshot: &str, label: &str) -> PathBuf {
        let bare = self.w.path(&format!("meta-{label}.git"));
        let name = format!("{}#metadata", self.repo);
        self.w.ok(&["restore", snapshot, "--repo", &name, "--target", bare.to_str().expect("utf-8")]);
        let tree = self.w.path(&format!("meta-{label}"));
        git(self.w.dir.path(), &["clone", "-q", bare.to_str().expect("utf-8"), tree.to_str().expect("utf-8")]);
        tree
    }

    /// GET `url` (under the forge's API) with `header` as the token's authorization.
    pub fn api_get_with(&self, path: &str, header: (&str, String)) -> Value {
        let url = format!("{}{path}", self.forge.api_url(self.kind));
        let body = reqwest::blocking::Client::new()
            .get(url)
            .header(header.0, header.1)
            .send()
            .expect("get")
            .text()
            .expect("body");
        serde_json::from_str(&body).expect("json")
    }
}

/// The GitHub tests' world: `github:acme` with the repository `acme/api`.
struct Setup(MetaWorld);

impl std::ops::Deref for Setup {
    type Target = MetaWorld;
    fn deref(&self) -> &MetaWorld {
        &self.0
    }
}

impl Setup {
    fn new() -> Self {
        Self(MetaWorld::new(Github, "acme", "github:acme", ("GITHUB_TOKEN", TOKEN)))
    }

    fn api_get(&self, path: &str) -> Value {
        self.api_get_with(&format!("/repos/acme/api/{path}"), ("Authorization", format!("Bearer {TOKEN}")))
    }
}

pub(crate) fn read(dir: &Path, rel: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `item` without the fields the backup drops on purpose.
fn comparable(mut item: Value) -> Value {
    if let Some(o) = item.as_object_mut() {
        o.remove("reactions");
    }
    item
}

#[test]
fn metadata_is_backed_up_item_by_item_and_a_second_run_costs_only_304s() {
    let s = Setup::new();
    let asset = crate::common::noise(9, 50_000);
    s.forge.write_file("assets/tool.bin", &asset);
    let mut world = world(metadata());
    s.forge.write_world(&world);

    let first = s.backup();
    let names: Vec<&str> =
        first["repositories"].as_array().expect("list").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["github:acme/api", "github:acme/api#metadata"], "{first}");
    let run = &first["metadata"][0];
    assert_eq!(
        (run["issues"].as_u64(), run["pulls"].as_u64(), run["releases"].as_u64()),
        (Some(2), Some(1), Some(1)),
        "{run}"
    );
    assert_eq!(run["assets_downloaded"], 1);
    assert_eq!(first["repositories"][1]["lfs_objects"], 1, "the asset's bytes are an LFS object of the metadata");

    // Item by item, what was stored is what the forge served.
    let snapshot = first["snapshot"].as_str().expect("id");
    let meta = s.metadata_at(snapshot, "first");
    for n in [1, 2] {
        assert_eq!(
            read(&meta, &format!("issues/{n}/issue.json")),
            comparable(s.api_get(&format!("issues/{n}"))),
            "issue {n}"
        );
    }
    assert_eq!(read(&meta, "issues/1/comments/1001.json"), comparable(s.api_get("issues/comments/1001")));
    assert_eq!(read(&meta, "pulls/3/comments/2001.json"), comparable(s.api_get("issues/comments/2001")));
    assert_eq!(read(&meta, "pulls/3/reviews/3001.json"), s.api_get("pulls/3/reviews/3001"));
    assert_eq!(read(&meta, "pulls/3/review_comments/4001.json"), comparable(s.api_get("pulls/comments/4001")));
    assert_eq!(read(&meta, "pulls/3/pull.json")["title"], "Fix the crash");
    assert_eq!(read(&meta, "labels/area%2Fui.json"), s.api_get("labels/area%2Fui"));
    assert_eq!(read(&meta, "milestones/1.json")["title"], "v1.0");
    assert_eq!(read(&meta, "releases/501/release.json")["body"], "Notes for v1.0");
    assert_eq!(read(&meta, "access/collaborators/bob.json")["login"], "bob");
    assert_eq!(read(&meta, "repository.json")["full_name"], "acme/api");
    // The asset: its record names the bytes' SHA-256, and the restored repository holds them.
    let record = read(&meta, "releases/501/assets/601.json");
    let oid = record["sha256"].as_str().expect("sha256").to_string();
    let bare = s.w.path("meta-first.git");
    let stored =
        std::fs::read(bare.join("lfs/objects").join(&oid[..2]).join(&oid[2..4]).join(&oid)).expect("asset bytes");
    assert_eq!(stored, asset, "the asset's original bytes");
    assert!(std::fs::read_to_string(meta.join("releases/501/assets/601.bin")).expect("pointer").contains(&oid));

    // Export: the JSON as stored, a static HTML rendering, the assets' original bytes.
    let out = s.w.path("export");
    let exported: Value = serde_json::from_str(&s.w.ok(&[
        "export",
        snapshot,
        "--repo",
        "acme/api",
        "--target",
        out.to_str().expect("utf-8"),
        "--json",
    ]))
    .expect("json");
    assert_eq!(
        (exported["issues"].as_u64(), exported["pulls"].as_u64(), exported["assets"].as_u64()),
        (Some(2), Some(1), Some(1)),
        "{exported}"
    );
    assert_eq!(read(&out, "json/issues/1/issue.json"), comparable(s.api_get("issues/1")));
    assert_eq!(std::fs::read(out.join("assets/501/tool.bin")).expect("asset"), asset);
    let html = |rel: &str| std::fs::read_to_string(out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert!(html("index.html").contains("Crash on start") && html("index.html").contains("Fix the crash"));
    assert!(html("issues/1.html").contains("Confirmed."));
    assert!(html("issues/2.html").contains("&lt;b&gt;teh&lt;/b&gt; &amp; co"), "bodies are escaped");
    let pull = html("pulls/3.html");
    assert!(
        pull.contains("LGTM")
            && pull.contains("nit: rename")
            && pull.contains("src/main.rs")
            && pull.contains("Thanks!")
    );
    assert!(html("releases.html").contains("Notes for v1.0") && html("releases.html").contains("assets/501/tool.bin"));
    // Not into a directory that holds something.
    let again = s.w.run(&["export", snapshot, "--repo", "acme/api", "--target", out.to_str().expect("utf-8")]);
    assert_eq!(again.status.code(), Some(1));

    // Nothing changed: every listing answers 304, nothing new is stored.
    let data_before = crate::common::files_under(&s.w.vault.join("data"));
    let second = s.backup();
    let run = &second["metadata"][0];
    assert_eq!(run["changed"], false, "{run}");
    // Per forge: the listing page (not conditional) and the metadata requests.
    let github = &second["requests"]["github"];
    assert_eq!(github["requests"].as_u64(), run["requests"].as_u64().map(|n| n + 1), "{second}");
    assert_eq!(github["not_modified"], run["not_modified"]);
    let (requests, free) = (run["requests"].as_u64().expect("n"), run["not_modified"].as_u64().expect("n"));
    // Every listing answers 304; the one request charged is the default branch's protection,
    // whose "not protected" answer is a 404 with nothing to compare against.
    assert_eq!(requests - free, 1, "a no-change run is 304s but for one: {run}");
    assert_eq!(crate::common::files_under(&s.w.vault.join("data")), data_before, "no new data");
    let first_requests = first["metadata"][0]["requests"].as_u64().expect("n");
    assert!(requests <= first_requests, "{requests} vs {first_requests}");

    // Between runs: an edited comment, a new comment on an old issue, an issue closed, one
    // deleted, a label removed.
    let issues = world["github"]["repos"][0]["issues"].as_array_mut().expect("issues");
    issues[0]["comments"][0]["body"] = json!("Confirmed on 1.2 too.");
    issues[0]["comments"][0]["updated_at"] = json!("2024-02-01T10:00:00Z");
    issues[0]["comments"].as_array_mut().expect("comments").push(json!({"id": 1002, "user": "dave", "body": "Me too",
        "created_at": "2024-02-02T10:00:00Z", "updated_at": "2024-02-02T10:00:00Z"}));
    issues[0]["state"] = json!("closed");
    issues[0]["state_reason"] = json!("completed");
    issues[0]["closed_at"] = json!("2024-02-03T10:00:00Z");
    issues[0]["updated_at"] = json!("2024-02-03T10:00:00Z");
    issues.remove(1);
    world["github"]["repos"][0]["labels"].as_array_mut().expect("labels").remove(1);
    s.forge.write_world(&world);
    let third = s.backup();
    let run = &third["metadata"][0];
    assert_eq!(run["changed"], true, "{run}");
    let deleted: Vec<&str> = run["deleted"].as_array().expect("deleted").iter().filter_map(Value::as_str).collect();
    assert_eq!(deleted, ["labels/area%2Fui.json", "issues/2/issue.json"], "{run}");
    let meta = s.metadata_at(third["snapshot"].as_str().expect("id"), "third");
    assert_eq!(read(&meta, "issues/1/comments/1001.json")["body"], "Confirmed on 1.2 too.");
    assert_eq!(read(&meta, "issues/1/comments/1002.json")["body"], "Me too");
    assert_eq!(read(&meta, "issues/1/issue.json")["state"], "closed");
    let gone = read(&meta, "issues/2/issue.json");
    assert_eq!(gone["title"], "Typo", "a deleted issue stays");
    assert!(gone["gitvault_deleted_at"].is_string(), "and says when it was found gone: {gone}");
    // diff names what changed upstream between the two snapshots.
    let d: Value =
        serde_json::from_str(&s.w.ok(&["diff", snapshot, third["snapshot"].as_str().expect("id"), "--json"]))
            .expect("json");
    let m = &d["repositories"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["name"] == "github:acme/api#metadata")
        .expect("metadata")["metadata"];
    assert_eq!(m["issues"]["deleted"], json!(["2"]), "{m}");
    assert_eq!(m["issues"]["changed"], json!(["1"]), "{m}");
    assert_eq!(m["comments"]["created"], json!(["issues/1/comments/1002"]), "{m}");
    assert_eq!(m["comments"]["changed"], json!(["issues/1/comments/1001"]), "{m}");
    assert!(m["other"].as_array().expect("other").contains(&json!("labels/area%2Fui.json")), "{m}");
    assert!(m["incident"].is_null());
    // The first snapshot still has the issue as it was.
    assert!(read(&s.metadata_at(snapshot, "first-again"), "issues/2/issue.json").get("gitvault_deleted_at").is_none());
}

#[test]
fn a_lost_cache_restores_the_metadata_repository_from_the_vault() {
    let s = Setup::new();
    s.forge.write_file("assets/tool.bin", b"tool bytes");
    let mut world = world(metadata());
    s.forge.write_world(&world);
    s.backup();
    std::fs::remove_dir_all(&s.w.cache).expect("lose the cache");
    // Deleted while the cache was gone: still found, because the history came back.
    world["github"]["repos"][0]["issues"].as_array_mut().expect("issues").remove(1);
    s.forge.write_world(&world);
    let second = s.backup();
    let run = &second["metadata"][0];
    assert_eq!(run["recovered"], true, "{run}");
    assert_eq!(run["deleted"], json!(["issues/2/issue.json"]), "{run}");
    assert_eq!(run["assets_downloaded"], 0, "the asset came back with the repository: {run}");
}

#[test]
fn no_metadata_skips_it() {
    let s = Setup::new();
    s.forge.write_world(&world(json!({})));
    let api = s.forge.api_url(Github);
    let out =
        s.w.cmd(&["backup", "--json", "--no-metadata", "--api-url", &api, "github:acme"])
            .env("GITHUB_TOKEN", TOKEN)
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(report.get("metadata").is_none(), "{report}");
    assert_eq!(report["repositories"].as_array().expect("list").len(), 1);
}

#[test]
fn a_mass_deletion_of_issues_is_flagged_by_diff() {
    let s = Setup::new();
    let issues: Vec<Value> = (1..=12)
        .map(|n| {
            json!({"number": n, "title": format!("issue {n}"), "body": "b", "state": "open",
                        "created_at": "2024-01-01T10:00:00Z", "updated_at": "2024-01-01T10:00:00Z"})
        })
        .collect();
    s.forge.write_world(&world(json!({"issues": issues})));
    let first = s.backup();
    s.forge.write_world(&world(json!({"issues": []})));
    let second = s.backup();
    let (a, b) = (first["snapshot"].as_str().expect("id"), second["snapshot"].as_str().expect("id"));
    let text = s.w.ok(&["diff", a, b]);
    assert!(text.contains("issues: 12 deleted upstream"), "{text}");
    assert!(text.contains("possible incident"), "{text}");
    // The run itself logged it (and `serve`/`backup --config` raise a suspicious-change alert);
    // the metadata repository's row counts its API requests.
    let log: Value = serde_json::from_str(&s.w.ok(&["logs", "--json"])).expect("json");
    let flagged = log.as_array().expect("lines").iter().any(|l| {
        l["level"] == "warn"
            && l["message"].as_str().is_some_and(|m| m.contains("12 issues and pull requests deleted upstream"))
    });
    assert!(flagged, "{log}");
    let status: Value = serde_json::from_str(&s.w.ok(&["status", "--json"])).expect("json");
    let meta = status["repositories"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["repo"].as_str().is_some_and(|n| n.ends_with("#metadata")))
        .expect("the metadata repository");
    assert!(meta["last_good"]["requests"].as_u64().is_some_and(|n| n > 0), "{meta}");
}
