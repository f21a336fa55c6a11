//! `gitvault restore --to-forge gitea:…`: a repository backed up from the fake Gitea is restored
//! into another Gitea organisation and compared item by item with its source, and a second run
//! writes nothing; the GitHub snapshot of the GitHub tests is restored into Gitea across forges.

use std::path::Path;

use gitvault_forge::testing::FakeForgeKind::{Gitea, Github};
use serde_json::{Value, json};

use crate::common::{commit, git};
use crate::metadata::MetaWorld;
use crate::to_forge::{self, by_title, titles};

const TOKEN: &str = "gitea_RestoreTokenNeverPrinted19";

/// Reading a Gitea through its API, as a user with `token`.
struct GiteaApi {
    base: String,
    token: String,
}

impl GiteaApi {
    fn new(m: &MetaWorld, token: &str) -> Self {
        Self { base: m.forge.api_url(Gitea), token: token.to_string() }
    }

    fn request(&self, url: &str) -> reqwest::blocking::Response {
        let resp = reqwest::blocking::Client::new()
            .get(url)
            .header("Authorization", format!("token {}", self.token))
            .send()
            .expect("get");
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp
    }

    fn get(&self, path: &str) -> Value {
        serde_json::from_slice(&self.request(&format!("{}{path}", self.base)).bytes().expect("body")).expect("json")
    }

    /// Every item of a listing, all pages.
    fn list(&self, path: &str) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut next = Some(format!("{}{path}{sep}limit=50", self.base));
        let mut items = Vec::new();
        while let Some(url) = next.take() {
            let resp = self.request(&url);
            next = resp.headers().get("link").and_then(|l| l.to_str().ok()).and_then(|l| {
                l.split(',')
                    .find(|p| p.contains("rel=\"next\""))
                    .map(|p| p.split(';').next().unwrap_or_default().trim().trim_matches(['<', '>']).to_string())
            });
            items.extend(serde_json::from_slice::<Vec<Value>>(&resp.bytes().expect("body")).expect("json list"));
        }
        items
    }

    fn download(&self, url: &str) -> Vec<u8> {
        self.request(url).bytes().expect("bytes").to_vec()
    }

    /// The items of `owner/name`, oldest first.
    fn items(&self, repo: &str) -> Vec<Value> {
        self.list(&format!("/repos/{repo}/issues?state=all&sort=oldest"))
    }

    /// The bodies of the conversation comments of item `n`.
    fn comments(&self, repo: &str, n: &Value) -> Vec<String> {
        let list = self.get(&format!("/repos/{repo}/issues/{n}/comments"));
        list.as_array().expect("list").iter().map(|c| c["body"].as_str().unwrap_or_default().to_string()).collect()
    }

    /// The reviews of pull request `n`, each with the bodies and paths of its comments.
    fn reviews(&self, repo: &str, n: &Value) -> Vec<(Value, Vec<(String, String)>)> {
        self.list(&format!("/repos/{repo}/pulls/{n}/reviews"))
            .into_iter()
            .map(|r| {
                let comments = self.get(&format!("/repos/{repo}/pulls/{n}/reviews/{}/comments", r["id"]));
                let comments = comments
                    .as_array()
                    .expect("list")
                    .iter()
                    .map(|c| {
                        (c["path"].as_str().unwrap_or_default().into(), c["body"].as_str().unwrap_or_default().into())
                    })
                    .collect();
                (r, comments)
            })
            .collect()
    }
}

fn metadata() -> Value {
    json!({
        "topics": ["rust", "api"], "description": "The API", "website": "https://api.example.com",
        "labels": [{"name": "bug", "color": "d73a4a", "description": "Something is broken"},
                   {"name": "area/ui", "color": "0e8a16"}],
        "milestones": [{"id": 71, "number": 1, "title": "v1.0", "state": "open", "description": "first"},
                       {"id": 72, "number": 2, "title": "v0.9", "state": "closed"}],
        "issues": [
            {"number": 1, "title": "Crash on start", "body": "It crashes. See #3.", "state": "open", "user": "bob",
             "labels": ["bug"], "milestone": 1, "created_at": "2024-01-01T10:00:00Z", "updated_at": "2024-01-02T10:00:00Z",
             "comments": [{"id": 1001, "user": "alice", "body": "Confirmed.", "created_at": "2024-01-02T10:00:00Z",
                           "updated_at": "2024-01-02T10:00:00Z"},
                          {"id": 1002, "user": "carol", "body": "Same here", "created_at": "2024-01-02T11:00:00Z",
                           "updated_at": "2024-01-02T11:00:00Z"}]},
            {"number": 2, "title": "Typo", "body": "<b>teh</b> & co", "state": "closed", "user": "carol",
             "labels": ["area/ui"], "milestone": 2, "created_at": "2024-01-03T10:00:00Z",
             "updated_at": "2024-01-03T10:00:00Z", "closed_at": "2024-01-03T12:00:00Z"},
        ],
        "pulls": [
            {"number": 3, "title": "Fix the crash", "body": "Fixes #1", "state": "closed", "user": "alice",
             "head": "fix", "base": "main", "merged_at": "2024-01-05T10:00:00Z", "closed_at": "2024-01-05T10:00:00Z",
             "created_at": "2024-01-04T10:00:00Z", "updated_at": "2024-01-05T10:00:00Z",
             "comments": [{"id": 2001, "user": "bob", "body": "Thanks!", "created_at": "2024-01-05T09:00:00Z",
                           "updated_at": "2024-01-05T09:00:00Z"}],
             "reviews": [{"id": 3001, "user": "bob", "state": "APPROVED", "body": "LGTM",
                          "submitted_at": "2024-01-04T12:00:00Z"}]},
            {"number": 4, "title": "Add a feature", "body": "Part of #1", "state": "open", "user": "carol",
             "head": "feature", "base": "main", "labels": ["bug"], "milestone": 1,
             "created_at": "2024-01-06T10:00:00Z", "updated_at": "2024-01-06T12:00:00Z",
             "comments": [{"id": 2002, "user": "bob", "body": "Any news?", "created_at": "2024-01-06T13:00:00Z",
                           "updated_at": "2024-01-06T13:00:00Z"}],
             "reviews": [{"id": 3002, "user": "bob", "state": "CHANGES_REQUESTED", "body": "Needs tests",
                          "submitted_at": "2024-01-06T11:00:00Z"},
                         {"id": 3003, "user": "carol", "state": "COMMENTED", "body": "",
                          "submitted_at": "2024-01-06T12:00:00Z"}],
             "review_comments": [{"id": 4002, "user": "carol", "body": "why?", "path": "README", "position": 1,
                                  "line": 1, "diff_hunk": "@@ -1 +1 @@", "pull_request_review_id": 3003,
                                  "created_at": "2024-01-06T12:00:00Z", "updated_at": "2024-01-06T12:00:00Z"}]},
        ],
        "releases": [{"id": 501, "tag_name": "v1.0", "name": "One", "body": "Notes for v1.0, fixes #3",
                      "created_at": "2024-01-06T10:00:00Z", "published_at": "2024-01-06T10:00:00Z",
                      "assets": [{"id": 601, "name": "tool.bin", "file": "assets/tool.bin"},
                                 {"id": 602, "name": "notes v1.txt", "text": "inline notes"}]}],
    })
}

fn world() -> Value {
    let mut repo = json!({"owner": "acme", "name": "api", "private": true});
    if let (Some(r), Some(m)) = (repo.as_object_mut(), metadata().as_object()) {
        r.extend(m.clone());
    }
    json!({
        "tokens": {TOKEN: {"login": "alice"}},
        "gitea": {"orgs": ["acme", {"name": "neworg", "members": ["alice"]}], "repos": [repo]},
    })
}

/// A `feature` branch and a `v1.0` tag beside `main` in the source repository `bare`.
fn branch_and_tag(m: &MetaWorld, bare: &Path) {
    let work = m.w.path("work/api");
    git(&work, &["checkout", "-q", "-b", "feature"]);
    commit(&work, "feature.txt", b"feature\n", "a feature");
    git(&work, &["checkout", "-q", "main"]);
    git(&work, &["tag", "v1.0"]);
    git(&work, &["push", "-q", bare.to_str().expect("utf-8"), "feature", "v1.0"]);
}

/// `gitvault restore SNAPSHOT --to-forge gitea:neworg --json`; it must exit 0 and never print
/// the token.
fn restore(m: &MetaWorld, snapshot: &str, token: &str) -> Value {
    let api = m.forge.api_url(Gitea);
    let out =
        m.w.cmd(&["restore", snapshot, "--to-forge", "gitea:neworg", "--api-url", &api, "--json"])
            .env("GITEA_TOKEN", token)
            .output()
            .expect("run");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains(token) && !stderr.contains(token));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn api_writes(m: &MetaWorld) -> usize {
    m.forge.requests().iter().filter(|r| r["write"] == true && r["kind"] == "api").count()
}

/// Branches and tags of a bare repository, with their commits.
fn heads_and_tags(m: &MetaWorld, bare: &Path) -> Vec<String> {
    git(m.w.dir.path(), &["ls-remote", bare.to_str().expect("utf-8")])
        .lines()
        .filter(|l| l.contains("refs/heads/") || l.contains("refs/tags/"))
        .map(str::to_string)
        .collect()
}

/// Writes match what the report says was created, and what the forge saw.
fn assert_writes_counted(m: &MetaWorld, r: &Value, before: usize) {
    let writes = r["writes"].as_u64().expect("writes");
    let created: u64 =
        r["counts"].as_object().expect("counts").values().map(|c| c["created"].as_u64().unwrap_or(0)).sum();
    assert_eq!(writes, created, "one write per thing created: {r}");
    assert_eq!(writes as usize, api_writes(m) - before, "the forge saw as many writes: {r}");
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_gitea_repository_is_restored_into_another_gitea_organisation_item_by_item_and_again_without_writes() {
    let m = MetaWorld::new(Gitea, "acme", "gitea:acme", ("GITEA_TOKEN", TOKEN));
    let source_git = m.forge.git_dir(Gitea, "acme", "api");
    branch_and_tag(&m, &source_git);
    let asset = crate::common::noise(23, 40_000);
    m.forge.write_file("assets/tool.bin", &asset);
    m.forge.write_world(&world());
    let snapshot = m.backup()["snapshot"].as_str().expect("snapshot").to_string();
    let gitea = GiteaApi::new(&m, TOKEN);
    let (src, dst) = ("acme/api", "neworg/api");

    let before = api_writes(&m);
    let report = restore(&m, &snapshot, TOKEN);
    let r = &report["repositories"][0];
    assert_eq!(r["created_repository"], true, "{r}");
    assert_eq!(r["failures"], json!([]), "{r}");
    assert_writes_counted(&m, r, before);

    // The repository, its settings and its git data.
    let repo = gitea.get(&format!("/repos/{dst}"));
    assert_eq!(
        (repo["description"].as_str(), repo["website"].as_str(), repo["private"].as_bool()),
        (Some("The API"), Some("https://api.example.com"), Some(true)),
        "{repo}"
    );
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(repo["topics"], json!(["rust", "api"]));
    assert_eq!(heads_and_tags(&m, &source_git), heads_and_tags(&m, &m.forge.git_dir(Gitea, "neworg", "api")));

    // Labels and milestones, as they were.
    let labels = |repo: &str| -> Vec<(Value, Value, Value)> {
        gitea
            .list(&format!("/repos/{repo}/labels"))
            .iter()
            .map(|l| (l["name"].clone(), l["color"].clone(), l["description"].clone()))
            .collect()
    };
    assert_eq!(labels(dst), labels(src));
    let milestones = |repo: &str| -> Vec<(Value, Value, Value)> {
        let mut all: Vec<_> = gitea
            .list(&format!("/repos/{repo}/milestones?state=all"))
            .iter()
            .map(|m| (m["title"].clone(), m["state"].clone(), m["description"].clone()))
            .collect();
        all.sort_by_key(|m| m.0.to_string());
        all
    };
    assert_eq!(milestones(dst), milestones(src));

    // Items: the same titles in the same order, with the same numbers (none was deleted),
    // bodies ending with the original text, the same states, labels and milestones.
    let (old, new) = (gitea.items(src), gitea.items(dst));
    assert_eq!(titles(&new), titles(&old));
    for (o, n) in old.iter().zip(&new) {
        let title = &o["title"];
        assert_eq!(n["number"], o["number"], "{title}");
        let body = n["body"].as_str().expect("body");
        assert!(body.ends_with(o["body"].as_str().expect("body")), "{title}: {body}");
        assert!(body.contains(o["html_url"].as_str().expect("url")), "the original URL: {body}");
        assert_eq!(n["state"], o["state"], "{title}");
        assert_eq!(names(&n["labels"]), names(&o["labels"]), "{title}");
        assert_eq!(n["milestone"]["title"], o["milestone"]["title"], "{title}");
        // Every original comment, in order, at the end of a comment of the restored item.
        let restored = gitea.comments(dst, &n["number"]);
        let mut rest = restored.iter();
        for c in gitea.comments(src, &o["number"]) {
            assert!(rest.any(|r| r.ends_with(&c)), "{title}: {c:?} not in {restored:?}");
        }
    }

    // The merged pull request's branch is gone: an issue carrying its discussion; the open
    // one is a pull request again, with its review and its line comment.
    let fix = by_title(&new, "Fix the crash");
    assert!(fix["pull_request"].is_null(), "{fix}");
    let thread = gitea.comments(dst, &fix["number"]);
    assert!(thread.iter().any(|c| c.contains("approved") && c.ends_with("LGTM")), "{thread:?}");
    let feature = by_title(&new, "Add a feature");
    assert!(!feature["pull_request"].is_null(), "{feature}");
    let pull = gitea.get(&format!("/repos/{dst}/pulls/{}", feature["number"]));
    assert_eq!((pull["head"]["ref"].as_str(), pull["base"]["ref"].as_str()), (Some("feature"), Some("main")));
    let reviews = gitea.reviews(dst, &feature["number"]);
    assert!(
        reviews.iter().any(|(r, _)| r["state"] == "COMMENT"
            && r["body"].as_str().is_some_and(|b| b.contains("changes requested") && b.ends_with("Needs tests"))),
        "{reviews:?}"
    );
    let line_comments: Vec<&(String, String)> = reviews.iter().flat_map(|(_, c)| c).collect();
    assert_eq!(line_comments.len(), 1, "{reviews:?}");
    assert_eq!(line_comments[0].0, "README");
    assert!(line_comments[0].1.ends_with("why?"), "{line_comments:?}");
    assert!(
        !reviews.iter().any(|(r, c)| c.is_empty() && r["body"].as_str().is_some_and(|b| !b.contains("Needs tests"))),
        "the empty review that held the line comment is not recreated: {reviews:?}"
    );

    // The release and its attachments' bytes.
    let (old_releases, new_releases) =
        (gitea.list(&format!("/repos/{src}/releases")), gitea.list(&format!("/repos/{dst}/releases")));
    assert_eq!(new_releases.len(), 1);
    let (o, n) = (&old_releases[0], &new_releases[0]);
    assert_eq!((&n["tag_name"], &n["name"]), (&o["tag_name"], &o["name"]));
    assert!(n["body"].as_str().expect("body").ends_with(o["body"].as_str().expect("body")));
    assert_eq!(names(&n["assets"]), ["notes v1.txt", "tool.bin"]);
    for a in n["assets"].as_array().expect("assets") {
        let original = o["assets"].as_array().expect("assets").iter().find(|x| x["name"] == a["name"]).expect("asset");
        let bytes = gitea.download(a["browser_download_url"].as_str().expect("url"));
        assert_eq!(bytes, gitea.download(original["browser_download_url"].as_str().expect("url")), "{a}");
    }
    let tool = n["assets"].as_array().expect("assets").iter().find(|x| x["name"] == "tool.bin").expect("tool.bin");
    assert_eq!(gitea.download(tool["browser_download_url"].as_str().expect("url")), asset);

    // Again: everything is recognised, nothing is written.
    let before = api_writes(&m);
    let again = restore(&m, &snapshot, TOKEN);
    assert_eq!(api_writes(&m), before, "a second run writes nothing: {again}");
    let r2 = &again["repositories"][0];
    assert_eq!(r2["counts"]["issues"]["existing"], 2, "{r2}");
    assert_eq!(r2["counts"]["pulls"]["existing"], 2, "{r2}");
    assert_eq!(r2["counts"]["comments"]["existing"], 4, "{r2}");
    assert_eq!(r2["counts"]["review_comments"]["existing"], 1, "{r2}");
    assert_eq!(r2["counts"]["assets"]["existing"], 2, "{r2}");
    assert_eq!(gitea.items(dst).len(), 4);

    // Someone reopens "Typo" and takes its label away: the next run puts back its state (one
    // PATCH) and its label (one PUT: Gitea's issue edit takes no labels), nothing else.
    let typo = by_title(&gitea.items(dst), "Typo").clone();
    let client = reqwest::blocking::Client::new();
    let auth = format!("token {TOKEN}");
    let url = format!("{}/repos/{dst}/issues/{}", gitea.base, typo["number"]);
    let edit = client
        .patch(&url)
        .header("Authorization", &auth)
        .header("Content-Type", "application/json")
        .body(json!({"state": "open"}).to_string())
        .send();
    assert!(edit.expect("patch").status().is_success());
    let edit = client
        .put(format!("{url}/labels"))
        .header("Authorization", &auth)
        .header("Content-Type", "application/json")
        .body(json!({"labels": []}).to_string())
        .send();
    assert!(edit.expect("put").status().is_success());
    let before = api_writes(&m);
    let third = restore(&m, &snapshot, TOKEN);
    let r3 = &third["repositories"][0];
    assert_eq!((api_writes(&m) - before, r3["writes"].as_u64()), (2, Some(2)), "{r3}");
    assert_eq!(r3["counts"]["states"]["created"], 1, "{r3}");
    let typo = by_title(&gitea.items(dst), "Typo").clone();
    assert_eq!((typo["state"].as_str(), names(&typo["labels"])), (Some("closed"), vec!["area/ui".to_string()]));
}

#[test]
fn a_github_snapshot_is_restored_into_gitea_with_its_items_labels_milestones_and_releases() {
    let s = to_forge::Setup::new();
    // The same world, as the last backup saw it, with a Gitea organisation to restore into.
    let mut w = to_forge::world(json!({}), json!({}));
    w["github"]["repos"][0]["issues"].as_array_mut().expect("issues").retain(|i| i["number"] != 5);
    w["gitea"] = json!({"orgs": [{"name": "neworg", "members": ["alice"]}]});
    s.m.forge.write_world(&w);
    let gitea = GiteaApi::new(&s.m, to_forge::TOKEN);
    let dst = "neworg/api";

    let before = s.api_writes();
    let report = restore(&s.m, &s.snapshot, to_forge::TOKEN);
    let r = &report["repositories"][0];
    assert_eq!(r["target"], "gitea:neworg/api", "{r}");
    assert_eq!(r["failures"], json!([]), "{r}");
    // What Gitea has no place for is listed.
    let notes = r["notes"].to_string();
    assert!(notes.contains("closed as not planned") && notes.contains("lose their label"), "{notes}");
    assert_writes_counted(&s.m, r, before);

    let repo = gitea.get(&format!("/repos/{dst}"));
    assert_eq!((repo["website"].as_str(), repo["private"].as_bool()), (Some("https://api.example.com"), Some(true)));
    assert_eq!(repo["topics"], json!(["rust", "api"]));
    assert_eq!(
        heads_and_tags(&s.m, &s.m.forge.git_dir(Github, "acme", "api")),
        heads_and_tags(&s.m, &s.m.forge.git_dir(Gitea, "neworg", "api"))
    );
    let labels: Vec<(Value, Value)> =
        gitea.list(&format!("/repos/{dst}/labels")).iter().map(|l| (l["name"].clone(), l["color"].clone())).collect();
    assert_eq!(labels, [(json!("area/ui"), json!("0e8a16")), (json!("bug"), json!("d73a4a"))]);
    let milestones = gitea.list(&format!("/repos/{dst}/milestones?state=all"));
    assert_eq!(by_title(&milestones, "v0.9")["state"], "closed");
    assert_eq!(by_title(&milestones, "v1.0")["description"], "first");

    // Issues stay issues, the open pull request is one again, the merged one (its branch gone)
    // is an issue; deleted #5 is not back, so #6 is #5 and links to it follow.
    let items = gitea.items(dst);
    assert_eq!(titles(&items), ["Crash on start", "Typo", "Fix the crash", "Add a feature", "After the gap"]);
    let crash = by_title(&items, "Crash on start");
    assert!(crash["body"].as_str().expect("body").ends_with("It crashes. See #3."));
    assert_eq!((crash["state"].as_str(), crash["milestone"]["title"].as_str()), (Some("open"), Some("v1.0")));
    assert_eq!(names(&crash["labels"]), ["bug"]);
    let comments = gitea.comments(dst, &crash["number"]);
    assert_eq!(comments.len(), 2, "{comments:?}");
    assert!(comments[0].ends_with("Confirmed.") && comments[1].contains("**carol**"), "{comments:?}");
    let typo = by_title(&items, "Typo");
    assert_eq!((typo["state"].as_str(), typo["milestone"]["title"].as_str()), (Some("closed"), Some("v0.9")));
    assert_eq!(names(&typo["labels"]), ["area/ui"]);
    let gap = by_title(&items, "After the gap");
    assert_eq!(gap["number"], 5);
    assert!(gap["body"].as_str().expect("body").ends_with("Duplicate of #5, see #1"));
    let fix = by_title(&items, "Fix the crash");
    assert!(fix["pull_request"].is_null() && fix["state"] == "closed", "{fix}");
    assert_eq!(gitea.comments(dst, &fix["number"]).len(), 3, "review, review comment and comment");

    let feature = by_title(&items, "Add a feature");
    assert!(!feature["pull_request"].is_null(), "{feature}");
    assert_eq!(names(&feature["labels"]), ["bug"]);
    assert_eq!(feature["milestone"]["title"], "v1.0");
    let pull = gitea.get(&format!("/repos/{dst}/pulls/{}", feature["number"]));
    assert_eq!((pull["head"]["ref"].as_str(), pull["base"]["ref"].as_str()), (Some("feature"), Some("main")));
    let reviews = gitea.reviews(dst, &feature["number"]);
    assert!(reviews.iter().any(|(r, _)| r["body"].as_str().is_some_and(|b| b.ends_with("Needs tests"))), "{reviews:?}");
    // Gitea has no replies: the answer is a comment on the same line, which Gitea shows in
    // the same conversation.
    let line_comments: Vec<&(String, String)> = reviews.iter().flat_map(|(_, c)| c).collect();
    assert_eq!(line_comments.len(), 2, "{reviews:?}");
    assert!(line_comments.iter().all(|(path, _)| path == "README"), "{line_comments:?}");
    assert!(line_comments[0].1.ends_with("why?") && line_comments[1].1.ends_with("because"), "{line_comments:?}");

    // The release, its notes and the asset's bytes.
    let releases = gitea.list(&format!("/repos/{dst}/releases"));
    assert_eq!(releases.len(), 1);
    assert_eq!((releases[0]["tag_name"].as_str(), releases[0]["name"].as_str()), (Some("v1.0"), Some("One")));
    assert!(releases[0]["body"].as_str().expect("body").ends_with("Notes for v1.0, fixes #3"));
    let asset = &releases[0]["assets"][0];
    assert_eq!(asset["name"], "tool.bin");
    assert_eq!(gitea.download(asset["browser_download_url"].as_str().expect("url")), s.asset);

    // Again: nothing is written.
    let before = s.api_writes();
    let again = restore(&s.m, &s.snapshot, to_forge::TOKEN);
    assert_eq!(s.api_writes(), before, "a second run writes nothing: {again}");
    assert_eq!(again["repositories"][0]["counts"]["issues"]["existing"], 3, "{again}");
}
