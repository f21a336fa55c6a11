//! `gitvault restore --to-forge`: a busy repository backed up from the fake GitHub is restored
//! into an empty organisation and compared item by item; a second run creates nothing; a run
//! stopped half way is completed by the next; the plan of `--dry-run` writes nothing; refusals
//! (read-only token, a taken name, one bad item) say what and keep the rest.

use serde_json::{Value, json};

use crate::common::{commit, git};
use crate::metadata::MetaWorld;
use gitvault_forge::testing::FakeForgeKind::{Gitea, Github};

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
    assert_eq!(planned["counts"]["pulls"]["created"], 1, "{planned}");
    assert_eq!(planned["counts"]["pulls_as_issues"]["created"], 1, "{planned}");
    let text = String::from_utf8_lossy(&s.restore(TOKEN, &["--dry-run"]).stdout).to_string();
    assert!(text.contains("would restore github:acme/api -> github:neworg/api (new repository)"), "{text}");
    assert!(text.contains("would be renumbered: #3 -> #3 (as issue), #6 -> #5"), "{text}");
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

#[test]
fn a_restore_stopped_half_way_is_completed_by_the_next_run_without_duplicates() {
    let s = Setup::new();
    // Writes paced 150 ms apart, killed after a dozen: issues exist, others do not yet.
    let mut child = s
        .m
        .w
        .cmd(&["restore", &s.snapshot, "--to-forge", "github:neworg", "--api-url", &s.api, "--write-interval", "150ms"])
        .env("GITHUB_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while s.api_writes() < 12 {
        assert!(std::time::Instant::now() < deadline, "the restore never got to 12 writes");
        assert!(child.try_wait().expect("wait").is_none(), "the restore finished before it could be stopped");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let first = s.api_writes();
    let partial = s.list("/repos/neworg/api/issues?state=all");
    assert!(!partial.is_empty() && partial.len() < 5, "stopped half way: {:?}", titles(&partial));

    // The same command again: recognised as this restore's own target, completed.
    let again = s.restore_json(&[], 0);
    let r = &again["repositories"][0];
    assert_eq!(r["failures"], json!([]), "{r}");
    assert!(
        r["counts"]["issues"]["existing"].as_u64().unwrap_or(0)
            + r["counts"]["pulls"]["existing"].as_u64().unwrap_or(0)
            >= 1
    );
    let items = s.list("/repos/neworg/api/issues?state=all&direction=asc");
    assert_eq!(titles(&items), ["Crash on start", "Typo", "Fix the crash", "Add a feature", "After the gap"]);
    let comments: usize =
        items.iter().map(|i| s.list(&format!("/repos/neworg/api/issues/{}/comments", i["number"])).len()).sum();
    assert_eq!(comments, 5, "2 on #1, 3 carried by #3: none twice, none missing");
    assert_eq!(
        s.list(&format!("/repos/neworg/api/pulls/{}/comments", by_title(&items, "Add a feature")["number"])).len(),
        2
    );
    assert_eq!(s.list("/repos/neworg/api/labels").len(), 2);
    assert_eq!(s.list("/repos/neworg/api/releases")[0]["assets"].as_array().map(Vec::len), Some(1));
    // Both runs together wrote what one uninterrupted run writes, give or take the request in
    // flight when the first was stopped.
    let total = first + r["writes"].as_u64().expect("writes") as usize;
    assert!((24..=25).contains(&total), "writes over both runs: {total}");
}

#[test]
fn the_forge_s_content_limits_are_waited_out_and_reported() {
    let s = Setup::new();
    // After 6 writes GitHub's secondary limit refuses writes for 1 s (403 + Retry-After).
    s.m.forge.write_world(&world(json!({}), json!({"writes": {"after": 6, "retry_after": 1, "times": 1}})));
    let report = s.restore_json(&[], 0);
    let r = &report["repositories"][0];
    assert_eq!(r["failures"], json!([]), "{r}");
    assert!(r["forge_pauses_seconds"].as_f64().expect("pauses") >= 1.0, "{r}");
    let refused = s.m.forge.requests().iter().filter(|q| q["write"] == true && q["status"] == 403).count();
    assert_eq!(refused, 1, "one refused write, retried after the wait");
    assert_eq!(titles(&s.list("/repos/neworg/api/issues?state=all")).len(), 5);
}

#[test]
fn bad_targets_and_tokens_are_refused_clearly_and_one_bad_item_does_not_stop_the_rest() {
    let s = Setup::new();
    let check = |out: std::process::Output, code: i32, words: &[&str]| {
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        for w in words {
            assert!(stderr.contains(w), "{w:?} not in: {stderr}");
        }
        assert!(!stderr.contains(TOKEN));
    };
    // A token without write access: nothing is created.
    check(s.restore("readonly", &[]), 1, &["neworg/api", "403", "Resource not accessible", "write access"]);
    assert!(s.get("/repos/neworg/api").get("message").is_some());
    // No such organisation.
    let out =
        s.m.w
            .cmd(&["restore", &s.snapshot, "--to-forge", "github:nobody", "--api-url", &s.api])
            .env("GITHUB_TOKEN", TOKEN)
            .output()
            .expect("run");
    check(out, 1, &["nobody", "not found"]);
    // No token at all.
    let out =
        s.m.w
            .cmd(&["restore", &s.snapshot, "--to-forge", "github:neworg", "--api-url", &s.api])
            .env_remove("GITHUB_TOKEN")
            .output()
            .expect("run");
    check(out, 2, &["GITHUB_TOKEN"]);
    // --to-forge with --target, an unknown forge.
    check(s.restore(TOKEN, &["--target", "x"]), 2, &["--target"]);
    let out = s.m.w.cmd(&["restore", &s.snapshot, "--to-forge", "bitbucket:team"]).output().expect("run");
    check(out, 2, &["bitbucket"]);

    // A name taken by a repository with content of its own: refused unless --into-existing.
    let taken = s.m.forge.git_dir(Github, "neworg", "api");
    git(
        s.m.w.dir.path(),
        &["clone", "-q", "--bare", s.m.w.path("work/api").to_str().expect("utf-8"), taken.to_str().expect("utf-8")],
    );
    let mut w = world(json!({}), json!({}));
    w["github"]["repos"].as_array_mut().expect("repos").push(json!({"owner": "neworg", "name": "api"}));
    // One label the forge refuses (GitHub wants six hex digits).
    w["github"]["repos"][0]["labels"]
        .as_array_mut()
        .expect("labels")
        .push(json!({"name": "weird", "color": "not-hex"}));
    s.m.forge.write_world(&w);
    let snapshot = s.m.backup()["snapshot"].as_str().expect("snapshot").to_string();
    let out =
        s.m.w
            .cmd(&["restore", &snapshot, "--to-forge", "github:neworg", "--api-url", &s.api])
            .env("GITHUB_TOKEN", TOKEN)
            .output()
            .expect("run");
    check(out, 1, &["exists and is not empty", "--into-existing"]);
    let out = s
        .m
        .w
        .cmd(&["restore", &snapshot, "--to-forge", "github:neworg", "--api-url", &s.api, "--into-existing", "--json"])
        .env("GITHUB_TOKEN", TOKEN)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "partial: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let r = &report["repositories"][0];
    let failures = r["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1, "{r}");
    assert!(failures[0]["item"].as_str().expect("item").contains("weird"), "{r}");
    assert!(failures[0]["error"].as_str().expect("error").contains("color"), "{r}");
    // (This world has issue 5 back.)
    assert_eq!(titles(&s.list("/repos/neworg/api/issues?state=all")).len(), 6, "the rest is restored");
}

#[test]
fn the_wiki_and_the_git_lfs_objects_reach_the_target_too() {
    let m = MetaWorld::new(Github, "acme", "github:acme", ("GITHUB_TOKEN", TOKEN));
    let mut w = world(json!({}), json!({}));
    w["github"]["repos"][0]["has_wiki"] = json!(true);
    m.forge.write_file("assets/tool.bin", b"tool");
    m.forge.write_world(&w);
    // A file in Git LFS, pushed with its object (git-lfs's pre-push hook uploads it).
    let work = m.w.path("work/api");
    let big = crate::common::noise(5, 120_000);
    git(&work, &["lfs", "install", "--local"]);
    git(&work, &["lfs", "track", "*.bin"]);
    std::fs::write(work.join("big.bin"), &big).expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "a large file"]);
    let auth = format!("http.extraHeader=Authorization: Bearer {TOKEN}");
    git(&work, &["-c", &auth, "push", "-q", &m.forge.clone_url(Github, "acme", "api"), "HEAD:refs/heads/main"]);
    // The wiki.
    let wiki_work = crate::common::new_repo(&m.w.path("work/wiki"));
    commit(&wiki_work, "Home.md", b"# Home\n", "wiki home");
    let wiki = m.forge.git_dir(Github, "acme", "api.wiki");
    git(m.w.dir.path(), &["clone", "-q", "--bare", wiki_work.to_str().expect("utf-8"), wiki.to_str().expect("utf-8")]);
    let snapshot = m.backup()["snapshot"].as_str().expect("snapshot").to_string();

    let api = m.forge.api_url(Github);
    let out =
        m.w.cmd(&[
            "restore",
            &snapshot,
            "--repo",
            "acme/api",
            "--to-forge",
            "github:neworg/restored",
            "--api-url",
            &api,
            "--json",
        ])
        .env("GITHUB_TOKEN", TOKEN)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let r = &report["repositories"][0];
    assert_eq!((r["wiki"].as_str(), r["lfs"].as_str()), (Some("pushed"), Some("pushed")), "{r}");
    assert_eq!(r["target"], "github:neworg/restored");

    let ls = |dir: &std::path::Path| git(m.w.dir.path(), &["ls-remote", dir.to_str().expect("utf-8")]);
    assert_eq!(ls(&m.forge.git_dir(Github, "neworg", "restored.wiki")), ls(&wiki));
    let heads =
        |refs: String| refs.lines().filter(|l| l.contains("refs/heads/")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        heads(ls(&m.forge.git_dir(Github, "neworg", "restored"))),
        heads(ls(&m.forge.git_dir(Github, "acme", "api")))
    );
    use sha2::Digest as _;
    let oid: String = sha2::Sha256::digest(&big).iter().map(|b| format!("{b:02x}")).collect();
    let stored = m.forge.root().join("lfs/github/neworg/restored").join(&oid[..2]).join(&oid[2..4]).join(&oid);
    assert_eq!(std::fs::read(&stored).expect("the LFS object on the target"), big);
}

/// GET a JSON document from the fake GitHub as `token`.
fn github_get(m: &MetaWorld, path: &str, token: &str) -> Value {
    let url = format!("{}{path}", m.forge.api_url(Github));
    let resp = reqwest::blocking::Client::new().get(url).bearer_auth(token).send().expect("get");
    serde_json::from_slice(&resp.bytes().expect("body")).expect("json")
}

#[test]
fn a_gitea_snapshot_is_restored_into_github_the_other_way_round() {
    let m = MetaWorld::new(Gitea, "acme", "gitea:acme", ("GITEA_TOKEN", "gitea-source-token"));
    let work = m.w.path("work/api");
    git(&work, &["checkout", "-q", "-b", "feature"]);
    commit(&work, "feature.txt", b"feature\n", "a feature");
    git(&work, &["checkout", "-q", "main"]);
    git(&work, &["push", "-q", m.forge.git_dir(Gitea, "acme", "api").to_str().expect("utf-8"), "feature"]);
    m.forge.write_file("assets/tool.bin", b"tool bytes");
    let gitea_repo = json!({
        "owner": "acme", "name": "api", "private": false, "description": "From Gitea",
        "labels": [{"name": "bug", "color": "d73a4a"}],
        "milestones": [{"id": 71, "number": 1, "title": "v1.0", "state": "open"}],
        "issues": [{"number": 1, "title": "Crash", "body": "It crashes; see #2", "state": "open", "user": "bob",
                    "labels": ["bug"], "milestone": 1, "created_at": "2024-01-01T10:00:00Z",
                    "comments": [{"id": 11, "user": "carol", "body": "me too", "created_at": "2024-01-02T10:00:00Z"}]}],
        "pulls": [{"number": 2, "title": "Feature", "body": "Fixes #1", "state": "open", "user": "carol",
                   "head": "feature", "base": "main", "created_at": "2024-01-03T10:00:00Z"}],
        "releases": [{"id": 9, "tag_name": "v1", "name": "v1", "body": "first",
                      "created_at": "2024-01-04T10:00:00Z",
                      "assets": [{"id": 90, "name": "tool.bin", "file": "assets/tool.bin"}]}],
    });
    m.forge.write_world(&json!({
        "tokens": {"gitea-source-token": {"login": "alice", "forges": ["gitea"]}, TOKEN: {"login": "alice", "forges": ["github"]}},
        "gitea": {"orgs": ["acme"], "repos": [gitea_repo]},
        "github": {"accounts": {"neworg": {"type": "Organization"}}, "repos": []},
    }));
    let snapshot = m.backup()["snapshot"].as_str().expect("snapshot").to_string();
    let api = m.forge.api_url(Github);
    let out =
        m.w.cmd(&["restore", &snapshot, "--to-forge", "github:neworg", "--api-url", &api, "--json"])
            .env("GITHUB_TOKEN", TOKEN)
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["repositories"][0]["failures"], json!([]), "{report}");

    let repo = github_get(&m, "/repos/neworg/api", TOKEN);
    assert_eq!(repo["description"], "From Gitea", "{repo}");
    let issue = github_get(&m, "/repos/neworg/api/issues/1", TOKEN);
    assert_eq!(issue["title"], "Crash");
    assert!(issue["body"].as_str().expect("body").ends_with("It crashes; see #2"));
    assert_eq!(
        (issue["labels"][0]["name"].as_str(), issue["milestone"]["title"].as_str()),
        (Some("bug"), Some("v1.0"))
    );
    let comments = github_get(&m, "/repos/neworg/api/issues/1/comments", TOKEN);
    assert!(comments[0]["body"].as_str().expect("body").ends_with("me too"), "{comments}");
    let pull = github_get(&m, "/repos/neworg/api/pulls/2", TOKEN);
    assert_eq!((pull["head"]["ref"].as_str(), pull["base"]["ref"].as_str()), (Some("feature"), Some("main")), "{pull}");
    let release = github_get(&m, "/repos/neworg/api/releases/tags/v1", TOKEN);
    assert_eq!(release["assets"][0]["name"], "tool.bin", "{release}");
    let bytes = reqwest::blocking::Client::new()
        .get(release["assets"][0]["browser_download_url"].as_str().expect("url"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .expect("download")
        .bytes()
        .expect("bytes");
    assert_eq!(bytes.as_ref(), b"tool bytes");
}

#[test]
fn a_run_that_created_only_the_repository_is_resumed_through_its_mapping_file() {
    let s = Setup::new();
    let map = s.m.w.path("map.json");
    let map_arg = map.to_str().expect("utf-8");
    // Every issue and pull request the forge is asked to create fails: the repository, its
    // git data, labels and milestones are there, no item carries a marker yet.
    let failing = json!({"errors": [{"path": "/repos/neworg/api/(issues|pulls)$", "method": "POST", "status": 500,
                                     "times": -1, "body": {"message": "Server Error"}}]});
    s.m.forge.write_world(&world(json!({}), failing));
    let out = s.restore(TOKEN, &["--map", map_arg]);
    assert_eq!(out.status.code(), Some(3), "partial: {}", String::from_utf8_lossy(&out.stderr));
    assert!(s.list("/repos/neworg/api/issues?state=all").is_empty());
    let mapped: Value = serde_json::from_str(&std::fs::read_to_string(&map).expect("map")).expect("json");
    assert_eq!(mapped["repositories"][0]["target"], "github:neworg/api");

    // The forge is well again. Without the mapping the target looks like someone else's...
    s.m.forge.write_world(&world(json!({}), json!({})));
    let out = s.restore(TOKEN, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--into-existing"));
    // ...with it, the run is resumed and completed.
    let again = s.restore_json(&["--map", map_arg], 0);
    let r = &again["repositories"][0];
    assert_eq!(r["counts"]["labels"]["existing"], 2, "{r}");
    assert_eq!(r["counts"]["issues"]["created"], 3, "{r}");
    assert_eq!(titles(&s.list("/repos/neworg/api/issues?state=all")).len(), 5);
}

#[test]
fn every_repository_of_a_snapshot_goes_under_the_owner_and_forge_owned_refs_are_skipped_and_listed() {
    let m = MetaWorld::new(Github, "acme", "github:acme", ("GITHUB_TOKEN", TOKEN));
    m.forge.write_world(&world(json!({}), json!({})));
    // Two plain git repositories (any git remote: no metadata), one with a pull request's and a
    // merge request's refs, as a mirror of a forge holds them.
    let work = m.w.path("work/api");
    let tool = m.w.path("src/tool.git");
    let site = m.w.path("src/site.git");
    for bare in [&tool, &site] {
        git(m.w.dir.path(), &["clone", "-q", "--bare", work.to_str().expect("utf-8"), bare.to_str().expect("utf-8")]);
    }
    let head = git(&tool, &["rev-parse", "HEAD"]);
    git(&tool, &["update-ref", "refs/pull/7/head", head.trim()]);
    git(&tool, &["update-ref", "refs/merge-requests/3/head", head.trim()]);
    git(&tool, &["update-ref", "refs/notes/commits", head.trim()]);
    let snapshot = m.w.backup(&[tool.to_str().expect("utf-8"), site.to_str().expect("utf-8")])["snapshot"]
        .as_str()
        .expect("snapshot")
        .to_string();
    let api = m.forge.api_url(Github);
    let restore = |target: &str| {
        m.w.cmd(&["restore", &snapshot, "--to-forge", target, "--api-url", &api, "--json"])
            .env("GITHUB_TOKEN", TOKEN)
            .output()
            .expect("run")
    };

    // One name for two repositories: refused, nothing written.
    let out = restore("github:neworg/both");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--repo"));

    let out = restore("github:neworg");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut targets: Vec<&str> =
        report["repositories"].as_array().expect("list").iter().filter_map(|r| r["target"].as_str()).collect();
    targets.sort();
    assert_eq!(targets, ["github:neworg/site", "github:neworg/tool"], "{report}");
    let r = report["repositories"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["target"] == "github:neworg/tool")
        .expect("tool");
    assert_eq!(r["git"]["skipped"], json!(["refs/merge-requests/3/head", "refs/pull/7/head"]), "{r}");
    let pushed =
        git(m.w.dir.path(), &["ls-remote", m.forge.git_dir(Github, "neworg", "tool").to_str().expect("utf-8")]);
    assert!(pushed.contains("refs/heads/main") && pushed.contains("refs/notes/commits"), "{pushed}");
    assert!(!pushed.contains("refs/pull/") && !pushed.contains("refs/merge-requests/"), "{pushed}");
    assert_eq!(github_get(&m, "/repos/neworg/site", TOKEN)["name"], "site");
}
