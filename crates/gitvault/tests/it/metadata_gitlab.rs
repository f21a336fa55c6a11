//! GitLab metadata end to end: a project in a subgroup with issues and their notes (system notes
//! too), a merge request with notes, a diff note thread and approvals, labels, a milestone, a
//! release with a link to the forge's own upload and one to another host, members and protected
//! branches — fetched from the fake forge, backed up, restored and compared item by item with
//! what the forge serves; a second run that changes nothing costs 304s; edits, new notes and a
//! deleted issue are caught; the export renders GitLab's shapes.

use gitvault_forge::testing::FakeForgeKind::Gitlab;
use serde_json::{Value, json};

use crate::metadata::MetaWorld;

const TOKEN: &str = "glpat-MetadataTokenNeverPrinted42";

fn world(project: Value) -> Value {
    json!({
        "tokens": {TOKEN: {"login": "alice"}},
        "gitlab": {
            "groups": ["acme", {"path": "acme/sub", "members": [{"username": "carol", "access_level": 40}]}],
            "users": ["alice", "bob", "carol", "dave"],
            "projects": [project],
        },
    })
}

fn project() -> Value {
    json!({
        "namespace": "acme/sub", "name": "api", "visibility": "private", "wiki_enabled": false,
        "members": [{"username": "bob", "access_level": 30}],
        "labels": [{"name": "bug", "color": "#d9534f", "description": "Something is broken"},
                   {"name": "area/ui", "color": "#0e8a16"}],
        "milestones": [{"iid": 1, "title": "v1.0", "description": "first", "due_date": "2030-01-01"}],
        "issues": [
            {"iid": 1, "title": "Crash on start", "description": "It crashes.", "author": "bob", "labels": ["bug"],
             "milestone": 1, "created_at": "2024-01-01T10:00:00Z", "updated_at": "2024-01-01T10:00:00Z",
             "notes": [{"id": 1001, "author": "alice", "body": "Confirmed.", "created_at": "2024-01-02T10:00:00Z"},
                       {"id": 1002, "author": "alice", "body": "added ~bug label", "system": true,
                        "created_at": "2024-01-02T10:01:00Z"}]},
            {"iid": 2, "title": "Typo", "description": "<b>teh</b> & co", "author": "carol",
             "created_at": "2024-01-03T10:00:00Z", "updated_at": "2024-01-03T10:00:00Z"},
        ],
        "merge_requests": [
            {"iid": 1, "title": "Fix the crash", "description": "Closes #1", "author": "alice",
             "source_branch": "fix", "target_branch": "main", "state": "merged", "merged_at": "2024-01-05T10:00:00Z",
             "created_at": "2024-01-04T10:00:00Z", "updated_at": "2024-01-05T10:00:00Z", "approved_by": ["bob"],
             "notes": [{"id": 2001, "author": "bob", "body": "Thanks!", "created_at": "2024-01-05T09:00:00Z"}],
             "diff_notes": [
                 {"id": 3001, "author": "bob", "body": "nit: rename", "old_path": "src/main.rs",
                  "new_path": "src/main.rs", "new_line": 12, "created_at": "2024-01-04T12:00:00Z"},
                 {"id": 3002, "author": "alice", "body": "Done.", "reply_to": 3001, "new_path": "src/main.rs",
                  "new_line": 12, "resolved": true, "resolved_by": "bob", "created_at": "2024-01-04T13:00:00Z"}]},
        ],
        "releases": [{"tag_name": "v1.0", "name": "One", "description": "Notes for v1.0", "author": "alice",
                      "created_at": "2024-01-06T10:00:00Z", "released_at": "2024-01-06T10:00:00Z", "milestones": [1],
                      "links": [{"id": 601, "name": "tool.bin", "file": "assets/tool.bin", "filepath": "/bin/tool",
                                 "link_type": "package"},
                                {"id": 602, "name": "mirror", "url": "https://downloads.example.com/tool.bin"}]}],
        "protected_branches": [{"name": "main", "push_access_level": 40, "merge_access_level": 30}],
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
        Self(MetaWorld::new(Gitlab, "acme/sub", "gitlab:acme/sub/api", ("GITLAB_TOKEN", TOKEN)))
    }

    /// `GET /projects/acme%2Fsub%2Fapi/<path>` as the backup's token sees it.
    fn api_get(&self, path: &str) -> Value {
        self.api_get_with(&format!("/projects/acme%2Fsub%2Fapi/{path}"), ("PRIVATE-TOKEN", TOKEN.to_string()))
    }

    /// The item of the listing `path` whose `field` is `value`.
    fn listed(&self, path: &str, field: &str, value: Value) -> Value {
        let list = self.api_get(path);
        list.as_array()
            .expect("a list")
            .iter()
            .find(|v| v[field] == value)
            .unwrap_or_else(|| panic!("{path}: no {field} {value} in {list}"))
            .clone()
    }
}

fn read(dir: &std::path::Path, rel: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `item` without the award counts the backup drops on purpose.
fn comparable(mut item: Value) -> Value {
    if let Some(o) = item.as_object_mut() {
        o.remove("upvotes");
        o.remove("downvotes");
    }
    item
}

#[test]
fn gitlab_metadata_is_backed_up_item_by_item_and_a_second_run_costs_only_304s() {
    let s = Setup::new();
    let tool = crate::common::noise(11, 40_000);
    s.forge.write_file("assets/tool.bin", &tool);
    let mut world = world(project());
    s.forge.write_world(&world);

    let first = s.backup();
    let names: Vec<&str> =
        first["repositories"].as_array().expect("list").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["gitlab:acme/sub/api", "gitlab:acme/sub/api#metadata"], "{first}");
    let run = &first["metadata"][0];
    assert_eq!(
        (run["issues"].as_u64(), run["pulls"].as_u64(), run["releases"].as_u64(), run["comments"].as_u64()),
        (Some(2), Some(1), Some(1), Some(3)),
        "{run}"
    );
    assert_eq!(run["assets_downloaded"], 1, "the upload, not the other host's file: {run}");
    let unavailable = run["unavailable"].to_string();
    assert!(unavailable.contains("downloads.example.com") && unavailable.contains("not downloaded"), "{run}");
    assert_eq!(first["repositories"][1]["lfs_objects"], 1, "{first}");

    // Item by item, what was stored is what the forge serves.
    let snapshot = first["snapshot"].as_str().expect("id");
    let meta = s.metadata_at(snapshot, "first");
    for n in [1, 2] {
        assert_eq!(read(&meta, &format!("issues/{n}/issue.json")), comparable(s.api_get(&format!("issues/{n}"))));
    }
    for id in [1001, 1002] {
        assert_eq!(
            read(&meta, &format!("issues/1/comments/{id}.json")),
            s.listed("issues/1/notes", "id", json!(id)),
            "note {id}"
        );
    }
    assert_eq!(read(&meta, "issues/1/comments/1002.json")["system"], true, "system notes are kept");
    assert_eq!(read(&meta, "pulls/1/pull.json"), comparable(s.api_get("merge_requests/1")));
    assert_eq!(read(&meta, "pulls/1/pull.json")["diff_refs"]["head_sha"].as_str().map(str::len), Some(40));
    assert_eq!(read(&meta, "pulls/1/comments/2001.json"), s.listed("merge_requests/1/notes", "id", json!(2001)));
    assert!(!meta.join("pulls/1/comments/3001.json").exists(), "diff notes are review comments only");
    let discussions = s.api_get("merge_requests/1/discussions");
    let thread =
        discussions.as_array().expect("list").iter().find(|d| d["individual_note"] == false).expect("the diff thread")
            ["notes"]
            .clone();
    for (i, id) in [3001, 3002].into_iter().enumerate() {
        let stored = read(&meta, &format!("pulls/1/review_comments/{id}.json"));
        assert_eq!(stored, thread[i], "diff note {id}");
        assert_eq!(stored["position"]["new_path"], "src/main.rs");
    }
    assert_eq!(read(&meta, "pulls/1/approvals.json"), s.api_get("merge_requests/1/approvals"));
    assert_eq!(read(&meta, "labels/area%2Fui.json"), s.listed("labels", "name", json!("area/ui")));
    assert_eq!(read(&meta, "milestones/1.json"), s.listed("milestones", "iid", json!(1)));
    let mut release = s.api_get("releases/v1.0");
    let links = release["assets"].as_object_mut().expect("assets").remove("links").expect("links");
    assert_eq!(read(&meta, "releases/v1.0/release.json"), release);
    let mut upload = links[0].clone();
    let record = read(&meta, "releases/v1.0/assets/601.json");
    let oid = record["sha256"].as_str().expect("sha256").to_string();
    upload["sha256"] = json!(oid);
    assert_eq!(record, upload);
    let bare = s.w.path("meta-first.git");
    let stored =
        std::fs::read(bare.join("lfs/objects").join(&oid[..2]).join(&oid[2..4]).join(&oid)).expect("link bytes");
    assert_eq!(stored, tool, "the link's target, byte for byte");
    assert!(std::fs::read_to_string(meta.join("releases/v1.0/assets/601.bin")).expect("pointer").contains(&oid));
    assert_eq!(read(&meta, "releases/v1.0/assets/602.json"), links[1], "another host's link: recorded as is");
    assert!(!meta.join("releases/v1.0/assets/602.bin").exists());
    assert_eq!(read(&meta, "access/members/carol.json"), s.listed("members/all", "username", json!("carol")));
    assert_eq!(read(&meta, "protection/main.json"), s.listed("protected_branches", "name", json!("main")));
    assert_eq!(read(&meta, "repository.json")["path_with_namespace"], "acme/sub/api");

    // Export renders GitLab's shapes: authors, descriptions, branches, diff positions, links.
    let out = s.w.path("export");
    let exported: Value = serde_json::from_str(&s.w.ok(&[
        "export",
        snapshot,
        "--repo",
        "gitlab:acme/sub/api",
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
    assert_eq!(exported["missing_assets"], json!(["release v1.0: mirror"]), "{exported}");
    assert_eq!(std::fs::read(out.join("assets/v1.0/tool.bin")).expect("asset"), tool);
    let html = |rel: &str| std::fs::read_to_string(out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let index = html("index.html");
    assert!(index.contains("Crash on start") && index.contains("Fix the crash") && index.contains("bob"), "{index}");
    let issue = html("issues/1.html");
    assert!(issue.contains("It crashes.") && issue.contains("Confirmed.") && issue.contains("<b>bob</b>"), "{issue}");
    assert!(html("issues/2.html").contains("&lt;b&gt;teh&lt;/b&gt; &amp; co"), "bodies are escaped");
    let pull = html("pulls/1.html");
    assert!(
        pull.contains("Thanks!")
            && pull.contains("nit: rename")
            && pull.contains("src/main.rs</code> line 12")
            && pull.contains("<code>fix</code> into <code>main</code>"),
        "{pull}"
    );
    let releases = html("releases.html");
    assert!(releases.contains("Notes for v1.0") && releases.contains("assets/v1.0/tool.bin"), "{releases}");
    assert!(releases.contains("not backed up: https://downloads.example.com/tool.bin"), "{releases}");

    // Nothing changed: every request is a conditional one answered 304.
    s.forge.clear_requests();
    let data_before = crate::common::files_under(&s.w.vault.join("data"));
    let second = s.backup();
    let run = &second["metadata"][0];
    assert_eq!(run["changed"], false, "{run}");
    let log: Vec<String> = s
        .forge
        .requests()
        .iter()
        .filter(|r| r["kind"] == "api")
        .map(|r| format!("{} {}?{}", r["status"], r["path"].as_str().unwrap_or(""), r["query"].as_str().unwrap_or("")))
        .collect();
    let (requests, free) = (run["requests"].as_u64().expect("n"), run["not_modified"].as_u64().expect("n"));
    // repository, labels, milestones, issues, merge requests, releases, members, protected branches.
    assert_eq!((requests, free), (8, 8), "a no-change run is 304s only: {run}\n{}", log.join("\n"));
    assert_eq!(crate::common::files_under(&s.w.vault.join("data")), data_before, "no new data");

    // Between runs: an edited note, a new note, a new diff note reply, an issue deleted, a label
    // removed.
    let p = &mut world["gitlab"]["projects"][0];
    p["issues"][0]["notes"][0]["body"] = json!("Confirmed on 1.2 too.");
    p["issues"][0]["notes"][0]["updated_at"] = json!("2024-02-01T10:00:00Z");
    p["issues"][0]["notes"].as_array_mut().expect("notes").push(json!({"id": 1003, "author": "dave",
        "body": "Me too", "created_at": "2024-02-02T10:00:00Z"}));
    p["merge_requests"][0]["diff_notes"].as_array_mut().expect("diff notes").push(json!({"id": 3003,
        "author": "bob", "body": "Thanks.", "reply_to": 3001, "new_path": "src/main.rs", "new_line": 12,
        "created_at": "2024-02-03T10:00:00Z"}));
    p["issues"].as_array_mut().expect("issues").remove(1);
    p["labels"].as_array_mut().expect("labels").remove(1);
    s.forge.write_world(&world);
    let third = s.backup();
    let run = &third["metadata"][0];
    assert_eq!(run["changed"], true, "{run}");
    let deleted: Vec<&str> = run["deleted"].as_array().expect("deleted").iter().filter_map(Value::as_str).collect();
    assert_eq!(deleted, ["labels/area%2Fui.json", "issues/2/issue.json"], "{run}");
    let meta = s.metadata_at(third["snapshot"].as_str().expect("id"), "third");
    assert_eq!(read(&meta, "issues/1/comments/1001.json")["body"], "Confirmed on 1.2 too.");
    assert_eq!(read(&meta, "issues/1/comments/1003.json")["body"], "Me too");
    assert_eq!(read(&meta, "issues/1/issue.json"), comparable(s.api_get("issues/1")));
    assert_eq!(read(&meta, "pulls/1/review_comments/3003.json")["body"], "Thanks.");
    assert_eq!(read(&meta, "pulls/1/pull.json"), comparable(s.api_get("merge_requests/1")));
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
        .find(|r| r["name"] == "gitlab:acme/sub/api#metadata")
        .expect("metadata")["metadata"];
    assert_eq!(m["issues"]["deleted"], json!(["2"]), "{m}");
    assert_eq!(m["issues"]["changed"], json!(["1"]), "{m}");
    assert_eq!(m["comments"]["created"], json!(["issues/1/comments/1003", "pulls/1/review_comments/3003"]), "{m}");
    assert_eq!(m["comments"]["changed"], json!(["issues/1/comments/1001"]), "{m}");
}
