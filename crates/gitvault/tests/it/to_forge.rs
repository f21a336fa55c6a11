//! `gitvault restore --to-forge`: a busy repository backed up from the fake GitHub is restored
//! into an empty organisation and compared item by item; a second run creates nothing; a run
//! stopped half way is completed by the next; the plan of `--dry-run` writes nothing; refusals
//! (read-only token, a taken name, one bad item) say what and keep the rest.

use serde_json::{Value, json};

use crate::common::{commit, git};
use crate::metadata::MetaWorld;
use gitvault_forge::testing::FakeForgeKind::Github;

pub(crate) const TOKEN: &str = "ghp_RestoreTokenNeverPrinted77";

pub(crate) fn world(extra_tokens: Value, faults: Value) -> Value {
    let mut tokens = json!({TOKEN: {"login": "alice"}, "readonly": {"login": "alice", "write": false}});
    if let (Some(t), Some(extra)) = (tokens.as_object_mut(), extra_tokens.as_object()) {
        t.extend(extra.clone());
    }
    let mut repo = json!({"owner": "acme", "name": "api", "private": true, "has_wiki": false,
                          "description": "The API", "homepage": "https://api.example.com", "topics": ["rust", "api"]});
    if let (Some(r), Some(m)) = (repo.as_object_mut(), metadata().as_object()) {
        r.extend(m.clone());
    }
    json!({
        "tokens": tokens,
        "github": {
            "accounts": {"acme": {"type": "Organization"}, "neworg": {"type": "Organization", "members": ["alice"]}},
            "repos": [repo],
        },
        "faults": {"github": faults},
    })
}

fn metadata() -> Value {
    json!({
        "labels": [{"name": "bug", "color": "d73a4a", "description": "Something is broken"},
                   {"name": "area/ui", "color": "0e8a16"}],
        "milestones": [{"number": 1, "title": "v1.0", "state": "open", "description": "first"},
                       {"number": 2, "title": "v0.9", "state": "closed"}],
        "issues": [
            {"number": 1, "title": "Crash on start", "body": "It crashes. See #3.", "state": "open", "user": "bob",
             "labels": ["bug"], "milestone": 1, "created_at": "2024-01-01T10:00:00Z", "updated_at": "2024-01-02T10:00:00Z",
             "comments": [{"id": 1001, "user": "alice", "body": "Confirmed.", "created_at": "2024-01-02T10:00:00Z",
                           "updated_at": "2024-01-02T10:00:00Z"},
                          {"id": 1002, "user": "carol", "body": "Same here, fixed by #4?", "created_at": "2024-01-02T11:00:00Z",
                           "updated_at": "2024-01-02T11:00:00Z"}]},
            {"number": 2, "title": "Typo", "body": "<b>teh</b> & co", "state": "closed", "state_reason": "not_planned",
             "user": "carol", "labels": ["area/ui"], "milestone": 2,
             "created_at": "2024-01-03T10:00:00Z", "updated_at": "2024-01-03T10:00:00Z", "closed_at": "2024-01-03T12:00:00Z"},
            {"number": 5, "title": "Gone", "body": "deleted later", "state": "open", "user": "bob",
             "created_at": "2024-01-07T10:00:00Z", "updated_at": "2024-01-07T10:00:00Z"},
            {"number": 6, "title": "After the gap", "body": "Duplicate of #5, see #1", "state": "open", "user": "bob",
             "created_at": "2024-01-08T10:00:00Z", "updated_at": "2024-01-08T10:00:00Z"},
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
            {"number": 4, "title": "Add a feature", "body": "Part of #1", "state": "open", "user": "carol",
             "head": "feature", "base": "main", "labels": ["bug"], "milestone": 1,
             "created_at": "2024-01-06T10:00:00Z", "updated_at": "2024-01-06T12:00:00Z",
             "reviews": [{"id": 3002, "user": "bob", "state": "CHANGES_REQUESTED", "body": "Needs tests",
                          "submitted_at": "2024-01-06T11:00:00Z"}],
             "review_comments": [{"id": 4002, "user": "bob", "body": "why?", "path": "README", "line": 1,
                                  "side": "RIGHT", "diff_hunk": "@@ -1 +1 @@", "pull_request_review_id": 3002,
                                  "created_at": "2024-01-06T11:00:00Z", "updated_at": "2024-01-06T11:00:00Z"},
                                 {"id": 4003, "user": "carol", "body": "because", "path": "README", "line": 1,
                                  "side": "RIGHT", "in_reply_to_id": 4002,
                                  "created_at": "2024-01-06T12:00:00Z", "updated_at": "2024-01-06T12:00:00Z"}]},
        ],
        "releases": [{"id": 501, "tag_name": "v1.0", "name": "One", "body": "Notes for v1.0, fixes #3",
                      "created_at": "2024-01-06T10:00:00Z", "published_at": "2024-01-06T10:00:00Z",
                      "assets": [{"id": 601, "name": "tool.bin", "content_type": "application/x-tool",
                                  "label": "The tool", "file": "assets/tool.bin"}]}],
    })
}

pub(crate) struct Setup {
    pub m: MetaWorld,
    pub api: String,
    pub asset: Vec<u8>,
    pub snapshot: String,
}

impl Setup {
    /// A repository with a `feature` branch and a tag, its metadata, backed up; issue 5 is
    /// deleted on the forge before the second backup, which is the one restored.
    pub fn new() -> Self {
        let m = MetaWorld::new(Github, "acme", "github:acme", ("GITHUB_TOKEN", TOKEN));
        let work = m.w.path("work/api");
        git(&work, &["checkout", "-q", "-b", "feature"]);
        commit(&work, "feature.txt", b"feature\n", "a feature");
        git(&work, &["checkout", "-q", "main"]);
        git(&work, &["tag", "v1.0"]);
        let bare = m.forge.git_dir(Github, "acme", "api");
        git(&work, &["push", "-q", bare.to_str().expect("utf-8"), "feature", "v1.0"]);
        let asset = crate::common::noise(21, 40_000);
        m.forge.write_file("assets/tool.bin", &asset);
        let mut w = world(json!({}), json!({}));
        m.forge.write_world(&w);
        m.backup();
        // Issue 5 goes away on the forge: the next backup marks it deleted.
        let issues = w["github"]["repos"][0]["issues"].as_array_mut().expect("issues");
        issues.retain(|i| i["number"] != 5);
        m.forge.write_world(&w);
        let snapshot = m.backup()["snapshot"].as_str().expect("snapshot").to_string();
        let api = m.forge.api_url(Github);
        Self { m, api, asset, snapshot }
    }

    fn restore(&self, token: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["restore", self.snapshot.as_str(), "--to-forge", "github:neworg", "--api-url", &self.api];
        args.extend_from_slice(extra);
        self.m.w.cmd(&args).env("GITHUB_TOKEN", token).output().expect("run")
    }

    fn restore_json(&self, extra: &[&str], code: i32) -> Value {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let out = self.restore(TOKEN, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "stdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!stderr.contains(TOKEN) && !String::from_utf8_lossy(&out.stdout).contains(TOKEN));
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// Every item of a listing on the target, all pages.
    fn list(&self, path: &str) -> Vec<Value> {
        let client = reqwest::blocking::Client::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut next = Some(format!("{}{path}{sep}per_page=100", self.api));
        let mut items = Vec::new();
        while let Some(url) = next.take() {
            let resp = client.get(&url).header("Authorization", format!("Bearer {TOKEN}")).send().expect("get");
            assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
            next = resp.headers().get("link").and_then(|l| l.to_str().ok()).and_then(|l| {
                l.split(',')
                    .find(|p| p.contains("rel=\"next\""))
                    .map(|p| p.split(';').next().unwrap_or_default().trim().trim_matches(['<', '>']).to_string())
            });
            items.extend(serde_json::from_slice::<Vec<Value>>(&resp.bytes().expect("body")).expect("json list"));
        }
        items
    }

    fn get(&self, path: &str) -> Value {
        self.m.api_get_with(path, ("Authorization", format!("Bearer {TOKEN}")))
    }

    pub fn api_writes(&self) -> usize {
        self.m.forge.requests().iter().filter(|r| r["write"] == true && r["kind"] == "api").count()
    }
}

pub(crate) fn titles(items: &[Value]) -> Vec<String> {
    items.iter().map(|i| i["title"].as_str().unwrap_or_default().to_string()).collect()
}

pub(crate) fn by_title<'a>(items: &'a [Value], title: &str) -> &'a Value {
    items.iter().find(|i| i["title"] == title).unwrap_or_else(|| panic!("no item {title:?} in {:?}", titles(items)))
}

#[test]
fn a_repository_is_restored_into_an_empty_organisation_item_by_item_and_again_without_duplicates() {
    let s = Setup::new();
    let map = s.m.w.path("map.json");
    let map_arg = map.to_str().expect("utf-8");

    // The plan writes nothing.
    let before = s.api_writes();
    let plan = s.restore_json(&["--dry-run"], 0);
    assert_eq!(s.api_writes(), before, "a dry run writes nothing");
    let planned = &plan["repositories"][0];
    assert_eq!(planned["created_repository"], true, "{planned}");
    assert_eq!(planned["counts"]["issues"]["created"], 3, "{planned}");
    assert_eq!(planned["counts"]["pulls"]["created"], 2, "{planned}");
    assert!(s.get("/repos/neworg/api").get("message").is_some(), "not created by the dry run");

    let before = s.api_writes();
    let report = s.restore_json(&["--map", map_arg], 0);
    let r = &report["repositories"][0];
    assert_eq!(r["created_repository"], true, "{r}");
    assert_eq!(r["failures"], json!([]), "{r}");
    assert_eq!(r["deleted_in_backup"], 1, "issue 5 was deleted before the backup: {r}");

    // The repository and its git data.
    let repo = s.get("/repos/neworg/api");
    assert_eq!(repo["description"], "The API");
    assert_eq!(repo["homepage"], "https://api.example.com");
    assert_eq!(repo["private"], true);
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(s.get("/repos/neworg/api/topics")["names"], json!(["rust", "api"]));
    let source_refs =
        git(s.m.w.dir.path(), &["ls-remote", s.m.forge.git_dir(Github, "acme", "api").to_str().expect("utf-8")]);
    let target_refs =
        git(s.m.w.dir.path(), &["ls-remote", s.m.forge.git_dir(Github, "neworg", "api").to_str().expect("utf-8")]);
    let heads_and_tags = |refs: &str| {
        refs.lines()
            .filter(|l| l.contains("refs/heads/") || l.contains("refs/tags/"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(heads_and_tags(&source_refs), heads_and_tags(&target_refs));
    assert!(!target_refs.contains("refs/pull/1"), "no pull refs pushed by us: {target_refs}");

    // Labels and milestones.
    let mut labels: Vec<(String, String)> = s
        .list("/repos/neworg/api/labels")
        .iter()
        .map(|l| (l["name"].as_str().unwrap_or_default().into(), l["color"].as_str().unwrap_or_default().into()))
        .collect();
    labels.sort();
    assert_eq!(labels, [("area/ui".into(), "0e8a16".into()), ("bug".into(), "d73a4a".into())]);
    let milestones = s.list("/repos/neworg/api/milestones?state=all");
    assert_eq!(by_title(&milestones, "v0.9")["state"], "closed");
    assert_eq!(by_title(&milestones, "v1.0")["description"], "first");

    // Issues and pull requests, in their original order; deleted #5 is not back, so #6 is #5
    // now and links to it are rewritten.
    let items = s.list("/repos/neworg/api/issues?state=all&direction=asc");
    assert_eq!(
        titles(&items),
        ["Crash on start", "Typo", "Fix the crash", "Add a feature", "After the gap"],
        "{items:?}"
    );
    let num = |t: &str| by_title(&items, t)["number"].as_u64().expect("number");
    assert_eq!((num("Crash on start"), num("After the gap")), (1, 5));
    let crash = by_title(&items, "Crash on start");
    let body = crash["body"].as_str().expect("body");
    assert!(body.contains("by **bob**") && body.contains("2024-01-01T10:00:00Z"), "{body}");
    assert!(body.contains("https://") || body.contains("http://"), "the original URL: {body}");
    assert!(body.ends_with("It crashes. See #3."), "{body}");
    assert_eq!(crash["state"], "open");
    assert_eq!(crash["labels"][0]["name"], "bug");
    assert_eq!(crash["milestone"]["title"], "v1.0");
    let typo = by_title(&items, "Typo");
    assert_eq!((typo["state"].as_str(), typo["state_reason"].as_str()), (Some("closed"), Some("not_planned")));
    assert!(typo["body"].as_str().expect("body").ends_with("<b>teh</b> & co"));
    assert!(by_title(&items, "After the gap")["body"].as_str().expect("body").ends_with("Duplicate of #5, see #1"));

    // The merged pull request's branch is gone: an issue carrying its discussion.
    let fix = by_title(&items, "Fix the crash");
    assert!(fix.get("pull_request").is_none(), "{fix}");
    assert_eq!(fix["state"], "closed");
    assert!(fix["body"].as_str().expect("body").contains("recreated as an issue"));
    let thread: Vec<String> = s
        .list(&format!("/repos/neworg/api/issues/{}/comments", num("Fix the crash")))
        .iter()
        .map(|c| c["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(thread.len(), 3, "{thread:?}");
    assert!(thread[0].contains("approved") && thread[0].ends_with("LGTM"), "{thread:?}");
    assert!(
        thread[1].contains("src/main.rs")
            && thread[1].contains("nit: rename")
            && thread[1].contains("@@ -10,3 +10,4 @@")
    );
    assert!(thread[2].contains("**bob**") && thread[2].ends_with("Thanks!"));

    // The open one is a pull request again, with its review, line comments and reply.
    let feature = by_title(&items, "Add a feature");
    assert!(feature.get("pull_request").is_some(), "{feature}");
    let n = num("Add a feature");
    let pull = s.get(&format!("/repos/neworg/api/pulls/{n}"));
    assert_eq!((pull["head"]["ref"].as_str(), pull["base"]["ref"].as_str()), (Some("feature"), Some("main")));
    assert_eq!(feature["labels"][0]["name"], "bug");
    assert_eq!(feature["milestone"]["title"], "v1.0");
    assert!(feature["body"].as_str().expect("body").ends_with("Part of #1"));
    let reviews = s.list(&format!("/repos/neworg/api/pulls/{n}/reviews"));
    assert!(
        reviews.iter().any(|r| r["state"] == "COMMENTED"
            && r["body"].as_str().is_some_and(|b| b.contains("changes requested") && b.ends_with("Needs tests"))),
        "{reviews:?}"
    );
    let line_comments = s.list(&format!("/repos/neworg/api/pulls/{n}/comments"));
    assert_eq!(line_comments.len(), 2, "{line_comments:?}");
    assert_eq!(line_comments[0]["path"], "README");
    assert!(line_comments[0]["body"].as_str().expect("body").ends_with("why?"));
    assert_eq!(line_comments[1]["in_reply_to_id"], line_comments[0]["id"], "the reply stays in its thread");

    // The release, its notes (links rewritten) and the asset's bytes.
    let releases = s.list("/repos/neworg/api/releases");
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0]["tag_name"], "v1.0");
    assert_eq!(releases[0]["name"], "One");
    assert!(releases[0]["body"].as_str().expect("body").ends_with("Notes for v1.0, fixes #3"));
    let asset = &releases[0]["assets"][0];
    assert_eq!((asset["name"].as_str(), asset["label"].as_str()), (Some("tool.bin"), Some("The tool")));
    assert_eq!(asset["content_type"], "application/x-tool");
    let bytes = reqwest::blocking::Client::new()
        .get(asset["browser_download_url"].as_str().expect("url"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .expect("download")
        .bytes()
        .expect("bytes");
    assert_eq!(bytes.as_ref(), s.asset.as_slice(), "the asset's original bytes");

    // The mapping: the file and the vault's ledger.
    let mapped: Value = serde_json::from_str(&std::fs::read_to_string(&map).expect("map")).expect("json");
    let items_map = mapped["repositories"][0]["items"].as_array().expect("items");
    let six = items_map.iter().find(|i| i["old_number"] == 6).expect("#6 mapped");
    assert_eq!(six["new_number"], 5);
    assert!(six["new_url"].as_str().expect("url").ends_with("/neworg/api/issues/5"), "{six}");
    let three = items_map.iter().find(|i| i["old_number"] == 3).expect("#3 mapped");
    assert_eq!((three["kind"].as_str(), three["restored_as"].as_str()), (Some("pull"), Some("issue")));
    let audit = s.m.w.ok(&["audit", "--json"]);
    assert!(audit.contains("restore_to_forge"), "{audit}");

    // Writes: one per thing created (the repository, its topics, each item, each state the API
    // sets apart), no more.
    let writes = r["writes"].as_u64().expect("writes");
    let created: u64 =
        r["counts"].as_object().expect("counts").values().map(|c| c["created"].as_u64().unwrap_or(0)).sum();
    assert_eq!(writes, created, "{r}");
    assert_eq!(writes as usize, s.api_writes() - before, "the forge saw as many writes: {r}");

    // Again: everything is recognised, nothing is written.
    let before = s.api_writes();
    let again = s.restore_json(&[], 0);
    assert_eq!(s.api_writes(), before, "a second run writes nothing: {again}");
    let r2 = &again["repositories"][0];
    assert_eq!(r2["counts"]["issues"]["existing"], 3, "{r2}");
    assert_eq!(r2["counts"]["comments"]["existing"], 3, "{r2}");
    assert_eq!(titles(&s.list("/repos/neworg/api/issues?state=all")).len(), 5);
}
