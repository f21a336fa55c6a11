//! `gitvault restore --to-forge gitlab:…`: the GitHub repository of `to_forge.rs` restored into
//! a GitLab group (pull requests become merge requests where their branches are there, reviews
//! notes, a release asset an upload and a release link), and a GitLab project restored into
//! another GitLab group, where issue 1 and merge request 1 both exist and `#1` and `!1` must each
//! keep pointing at the right one, and into GitHub, where one counter numbers them all. A second
//! run writes nothing.

use serde_json::{Value, json};

use crate::common::{commit, git};
use crate::metadata::MetaWorld;
use crate::to_forge::Setup;
use gitvault_forge::testing::FakeForge;
use gitvault_forge::testing::FakeForgeKind::{Github, Gitlab};

const GL_TOKEN: &str = "glpat-RestoreTokenNeverPrinted55";

/// The GitLab API of `forge` as `GL_TOKEN` sees it.
struct GitlabApi<'a> {
    forge: &'a FakeForge,
    project: String,
}

impl GitlabApi<'_> {
    fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.forge.api_url(Gitlab));
        let resp = reqwest::blocking::Client::new().get(&url).header("PRIVATE-TOKEN", GL_TOKEN).send().expect("get");
        let status = resp.status();
        let body = resp.text().expect("body");
        assert!(status.is_success(), "GET {url}: {status} {body}");
        serde_json::from_str(&body).expect("json")
    }

    /// `GET /projects/<project>/<path>`, a list of at most 100.
    fn list(&self, path: &str) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let v = self.get(&format!("/projects/{}/{path}{sep}per_page=100", self.project));
        v.as_array().expect("a list").clone()
    }

    fn download(&self, url: &str) -> Vec<u8> {
        let resp = reqwest::blocking::Client::new().get(url).header("PRIVATE-TOKEN", GL_TOKEN).send().expect("get");
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.bytes().expect("bytes").to_vec()
    }

    /// Write requests the fake GitLab saw.
    fn writes(&self) -> usize {
        self.forge
            .requests()
            .iter()
            .filter(|r| r["write"] == true && r["kind"] == "api" && r["forge"] == "gitlab")
            .count()
    }
}

fn by_title<'a>(items: &'a [Value], title: &str) -> &'a Value {
    items.iter().find(|i| i["title"] == title).unwrap_or_else(|| panic!("no {title:?} in {items:?}"))
}

fn body(v: &Value) -> &str {
    v["description"].as_str().or_else(|| v["body"].as_str()).unwrap_or_default()
}

/// `gitvault restore … --json` into GitLab; it must end with `code`.
fn restore(m: &MetaWorld, snapshot: &str, target: &str, code: i32) -> Value {
    let api = m.forge.api_url(Gitlab);
    let out =
        m.w.cmd(&["restore", snapshot, "--to-forge", target, "--api-url", &api, "--json"])
            .env("GITLAB_TOKEN", GL_TOKEN)
            .output()
            .expect("run");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains(GL_TOKEN) && !stderr.contains(GL_TOKEN));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// The sum of `created` over a report's counts.
fn created(r: &Value) -> u64 {
    r["counts"].as_object().expect("counts").values().map(|c| c["created"].as_u64().unwrap_or(0)).sum()
}

fn heads_and_tags(m: &MetaWorld, dir: &std::path::Path) -> Vec<String> {
    git(m.w.dir.path(), &["ls-remote", dir.to_str().expect("utf-8")])
        .lines()
        .filter(|l| l.contains("refs/heads/") || l.contains("refs/tags/"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_github_repository_is_restored_into_a_gitlab_group_with_merge_requests_where_branches_exist() {
    let s = Setup::new();
    // The same fake now also has a GitLab with an empty group the token may create projects in.
    let mut w = crate::to_forge::world(json!({GL_TOKEN: {"login": "alice"}}), json!({}));
    w["github"]["repos"][0]["issues"].as_array_mut().expect("issues").retain(|i| i["number"] != 5);
    w["gitlab"] = json!({"groups": [{"path": "newgroup", "members": [{"username": "alice", "access_level": 40}]}]});
    s.m.forge.write_world(&w);
    let gl = GitlabApi { forge: &s.m.forge, project: "newgroup%2Fapi".into() };

    let before = gl.writes();
    let report = restore(&s.m, &s.snapshot, "gitlab:newgroup", 0);
    let r = &report["repositories"][0];
    assert_eq!(r["failures"], json!([]), "{r}");
    assert_eq!(r["target"], "gitlab:newgroup/api", "{r}");
    assert_eq!(r["created_repository"], true, "{r}");

    // The project and its git data.
    let project = gl.get("/projects/newgroup%2Fapi");
    assert_eq!(
        (project["description"].as_str(), project["visibility"].as_str(), project["default_branch"].as_str()),
        (Some("The API"), Some("private"), Some("main"))
    );
    assert_eq!(project["topics"], json!(["rust", "api"]));
    let source = heads_and_tags(&s.m, &s.m.forge.git_dir(Github, "acme", "api"));
    assert_eq!(heads_and_tags(&s.m, &s.m.forge.git_dir(Gitlab, "newgroup", "api")), source);

    // Labels (GitLab's colours have their `#`) and milestones.
    let mut labels: Vec<(String, String)> = gl
        .list("labels")
        .iter()
        .map(|l| (l["name"].as_str().unwrap_or_default().into(), l["color"].as_str().unwrap_or_default().into()))
        .collect();
    labels.sort();
    assert_eq!(labels, [("area/ui".into(), "#0e8a16".into()), ("bug".into(), "#d73a4a".into())]);
    let milestones = gl.list("milestones");
    assert_eq!(by_title(&milestones, "v0.9")["state"], "closed");
    assert_eq!(by_title(&milestones, "v1.0")["description"], "first");

    // Issues: #1, #2, the merged pull request whose branch is gone (#3), and #6 (#5 was deleted
    // before the backup) as #4. The open pull request is merge request !1.
    let issues = gl.list("issues?order_by=created_at&sort=asc");
    let titles: Vec<&str> = issues.iter().filter_map(|i| i["title"].as_str()).collect();
    assert_eq!(titles, ["Crash on start", "Typo", "Fix the crash", "After the gap"], "{issues:?}");
    let iid = |t: &str| by_title(&issues, t)["iid"].as_u64().expect("iid");
    assert_eq!((iid("Fix the crash"), iid("After the gap")), (3, 4));
    let crash = by_title(&issues, "Crash on start");
    assert!(body(crash).contains("by **bob**") && body(crash).ends_with("It crashes. See #3."), "{crash}");
    assert_eq!((crash["labels"].clone(), crash["milestone"]["title"].clone()), (json!(["bug"]), json!("v1.0")));
    let notes = gl.list("issues/1/notes?sort=asc");
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(body(&notes[1]).ends_with("Same here, fixed by !1?"), "#4 is merge request !1 now: {notes:?}");
    let typo = by_title(&issues, "Typo");
    assert_eq!((typo["state"].as_str(), typo["milestone"]["title"].as_str()), (Some("closed"), Some("v0.9")));
    assert!(body(by_title(&issues, "After the gap")).ends_with("Duplicate of #5, see #1"));
    let fix = by_title(&issues, "Fix the crash");
    assert_eq!(fix["state"], "closed");
    assert!(body(fix).contains("recreated as an issue"), "{fix}");
    let fix_notes = gl.list("issues/3/notes?sort=asc");
    let fix_notes: Vec<&str> = fix_notes.iter().map(body).collect();
    assert_eq!(fix_notes.len(), 3, "{fix_notes:?}");
    assert!(fix_notes[0].contains("approved") && fix_notes[0].ends_with("LGTM"), "{fix_notes:?}");
    assert!(fix_notes[1].contains("src/main.rs") && fix_notes[1].contains("@@ -10,3 +10,4 @@"), "{fix_notes:?}");

    let mrs = gl.list("merge_requests");
    assert_eq!(mrs.len(), 1, "{mrs:?}");
    let mr = &mrs[0];
    assert_eq!((mr["iid"].as_u64(), mr["title"].as_str()), (Some(1), Some("Add a feature")));
    assert_eq!((mr["source_branch"].as_str(), mr["target_branch"].as_str()), (Some("feature"), Some("main")));
    assert_eq!((mr["state"].as_str(), mr["labels"].clone()), (Some("opened"), json!(["bug"])));
    assert_eq!(mr["milestone"]["title"], "v1.0");
    assert!(body(mr).ends_with("Part of #1"), "{mr}");
    let discussions = gl.list("merge_requests/1/discussions");
    let review = discussions
        .iter()
        .flat_map(|d| d["notes"].as_array().expect("notes"))
        .find(|n| body(n).contains("changes requested") && body(n).ends_with("Needs tests"));
    assert!(review.is_some(), "the review is a note: {discussions:?}");
    let thread = discussions.iter().find(|d| d["individual_note"] == false).expect("a diff thread")["notes"]
        .as_array()
        .expect("notes")
        .clone();
    assert_eq!(thread.len(), 2, "the reply stays in its thread: {thread:?}");
    assert_eq!(thread[0]["type"], "DiffNote");
    assert_eq!(
        (thread[0]["position"]["new_path"].as_str(), thread[0]["position"]["new_line"].as_u64()),
        (Some("README"), Some(1))
    );
    assert!(body(&thread[0]).ends_with("why?") && body(&thread[1]).ends_with("because"), "{thread:?}");

    // The release: its notes, and the asset's bytes behind its link.
    let releases = gl.list("releases");
    assert_eq!(releases.len(), 1);
    assert_eq!((releases[0]["tag_name"].as_str(), releases[0]["name"].as_str()), (Some("v1.0"), Some("One")));
    assert!(body(&releases[0]).ends_with("Notes for v1.0, fixes #3"), "{}", releases[0]);
    let links = releases[0]["assets"]["links"].as_array().expect("links");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["name"], "tool.bin");
    assert_eq!(gl.download(links[0]["url"].as_str().expect("url")), s.asset, "the asset's original bytes");

    // What GitLab cannot hold is said; every write is accounted for: one per thing created,
    // plus the close of a closed milestone and the upload behind each release link.
    let notes = r["notes"].to_string();
    for words in ["approve for someone else", "closed, not merged", "two writes", "homepage", "labels are lost"] {
        assert!(notes.contains(words), "{words:?} not in {notes}");
    }
    let writes = r["writes"].as_u64().expect("writes");
    assert_eq!(writes, created(r) + 1 + 1, "{r}");
    assert_eq!(writes as usize, gl.writes() - before, "the forge saw as many: {r}");
    let mapped = r["mapping"]["items"].as_array().expect("items");
    let four = mapped.iter().find(|i| i["old_number"] == 4).expect("#4 mapped");
    assert_eq!((four["restored_as"].as_str(), four["new_number"].as_u64()), (Some("pull"), Some(1)));
    assert!(four["new_url"].as_str().expect("url").ends_with("/newgroup/api/-/merge_requests/1"), "{four}");

    // Again: everything is recognised, nothing is written.
    let before = gl.writes();
    let again = restore(&s.m, &s.snapshot, "gitlab:newgroup", 0);
    assert_eq!(gl.writes(), before, "a second run writes nothing: {again}");
    let r2 = &again["repositories"][0];
    assert_eq!(
        (r2["counts"]["issues"]["existing"].as_u64(), r2["counts"]["pulls"]["existing"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(r2["counts"]["review_comments"]["existing"], 3, "{r2}");
    assert_eq!(r2["counts"]["assets"]["existing"], 1, "{r2}");
}

/// A GitLab project whose issue 1 and merge request 1 refer to each other.
fn gitlab_world() -> Value {
    json!({
        "tokens": {GL_TOKEN: {"login": "alice"}},
        "gitlab": {
            "groups": ["acme", "acme/sub", {"path": "newgroup", "members": [{"username": "alice", "access_level": 40}]}],
            "users": ["alice", "bob", "carol"],
            "projects": [{
                "namespace": "acme/sub", "name": "api", "visibility": "private", "wiki_enabled": false,
                "description": "The API", "topics": ["rust"],
                "labels": [{"name": "bug", "color": "#d9534f", "description": "Something is broken"}],
                "milestones": [{"iid": 1, "title": "v1.0", "description": "first", "due_date": "2030-01-01"}],
                "issues": [
                    {"iid": 1, "title": "Crash on start", "description": "It crashes. Fixed by !1, see also !2 and #2.",
                     "author": "bob", "labels": ["bug"], "milestone": 1, "created_at": "2024-01-01T10:00:00Z",
                     "notes": [{"id": 1001, "author": "alice", "body": "Confirmed, !1 fixes it", "created_at": "2024-01-02T10:00:00Z"},
                               {"id": 1002, "author": "alice", "body": "added ~bug label", "system": true,
                                "created_at": "2024-01-02T10:01:00Z"}]},
                    {"iid": 2, "title": "Typo", "description": "<b>teh</b> & co", "author": "carol", "state": "closed",
                     "created_at": "2024-01-03T10:00:00Z", "closed_at": "2024-01-03T12:00:00Z"},
                ],
                "merge_requests": [
                    {"iid": 1, "title": "Fix the crash", "description": "Closes #1", "author": "alice",
                     "source_branch": "feature", "target_branch": "main", "created_at": "2024-01-04T10:00:00Z",
                     "approved_by": ["bob"],
                     "notes": [{"id": 2001, "author": "bob", "body": "Thanks! See #2", "created_at": "2024-01-05T09:00:00Z"}],
                     "diff_notes": [
                         {"id": 3001, "author": "bob", "body": "nit: rename", "new_path": "README", "new_line": 1,
                          "created_at": "2024-01-04T12:00:00Z"},
                         {"id": 3002, "author": "alice", "body": "Done.", "reply_to": 3001, "new_path": "README",
                          "new_line": 1, "created_at": "2024-01-04T13:00:00Z"}]},
                    {"iid": 2, "title": "Old work", "description": "Follow-up to !1", "author": "carol",
                     "source_branch": "gone", "target_branch": "main", "state": "merged",
                     "merged_at": "2024-01-06T10:00:00Z", "created_at": "2024-01-05T10:00:00Z"},
                ],
                "releases": [{"tag_name": "v1.0", "name": "One", "description": "Notes for v1.0, see !1", "author": "alice",
                              "created_at": "2024-01-06T10:00:00Z", "released_at": "2024-01-06T10:00:00Z",
                              "links": [{"id": 601, "name": "tool.bin", "file": "assets/tool.bin", "link_type": "package"},
                                        {"id": 602, "name": "mirror", "url": "https://downloads.example.com/tool.bin"}]}],
            }],
        },
    })
}

#[test]
fn a_gitlab_project_is_restored_into_another_group_and_issue_and_merge_request_numbers_stay_apart() {
    let m = MetaWorld::new(Gitlab, "acme/sub", "gitlab:acme/sub/api", ("GITLAB_TOKEN", GL_TOKEN));
    let work = m.w.path("work/api");
    git(&work, &["checkout", "-q", "-b", "feature"]);
    commit(&work, "feature.txt", b"feature\n", "a feature");
    git(&work, &["checkout", "-q", "main"]);
    git(&work, &["tag", "v1.0"]);
    let bare = m.forge.git_dir(Gitlab, "acme/sub", "api");
    git(&work, &["push", "-q", bare.to_str().expect("utf-8"), "feature", "v1.0"]);
    let tool = crate::common::noise(12, 30_000);
    m.forge.write_file("assets/tool.bin", &tool);
    m.forge.write_world(&gitlab_world());
    let snapshot = m.backup()["snapshot"].as_str().expect("snapshot").to_string();
    let gl = GitlabApi { forge: &m.forge, project: "newgroup%2Frestored".into() };

    // `newgroup/restored` is no group: `restored` is the new project's name in `newgroup`.
    let before = gl.writes();
    let report = restore(&m, &snapshot, "gitlab:newgroup/restored", 0);
    let r = &report["repositories"][0];
    assert_eq!(r["failures"], json!([]), "{r}");
    assert_eq!(r["target"], "gitlab:newgroup/restored", "{r}");
    let notes = r["notes"].to_string();
    assert!(notes.contains("1 GitLab system notes") && notes.contains("downloads.example.com"), "{notes}");

    let source = heads_and_tags(&m, &bare);
    assert_eq!(heads_and_tags(&m, &m.forge.git_dir(Gitlab, "newgroup", "restored")), source);

    // Issues #1, #2 and the merge request whose branch is gone as #3; merge request !1.
    let issues = gl.list("issues?order_by=created_at&sort=asc");
    let titles: Vec<&str> = issues.iter().filter_map(|i| i["title"].as_str()).collect();
    assert_eq!(titles, ["Crash on start", "Typo", "Old work"], "{issues:?}");
    let crash = by_title(&issues, "Crash on start");
    assert!(body(crash).contains("Originally issue [#1]"), "{crash}");
    assert!(body(crash).ends_with("It crashes. Fixed by !1, see also #3 and #2."), "{crash}");
    assert_eq!((crash["labels"].clone(), crash["milestone"]["title"].clone()), (json!(["bug"]), json!("v1.0")));
    let crash_notes = gl.list("issues/1/notes");
    assert_eq!(crash_notes.len(), 1, "the system note is not recreated: {crash_notes:?}");
    assert!(body(&crash_notes[0]).ends_with("Confirmed, !1 fixes it"));
    assert_eq!(by_title(&issues, "Typo")["state"], "closed");
    let old = by_title(&issues, "Old work");
    assert_eq!((old["iid"].as_u64(), old["state"].as_str()), (Some(3), Some("closed")));
    assert!(body(old).contains("Originally merge request [!2]") && body(old).ends_with("Follow-up to !1"), "{old}");

    let mrs = gl.list("merge_requests");
    assert_eq!(mrs.len(), 1, "{mrs:?}");
    assert_eq!((mrs[0]["iid"].as_u64(), mrs[0]["title"].as_str()), (Some(1), Some("Fix the crash")));
    assert!(body(&mrs[0]).ends_with("Closes #1"), "{}", mrs[0]);
    let discussions = gl.list("merge_requests/1/discussions");
    let all: Vec<String> =
        discussions.iter().flat_map(|d| d["notes"].as_array().expect("notes")).map(|n| body(n).to_string()).collect();
    assert!(all.iter().any(|b| b.contains("**bob** reviewed (approved)")), "the approval is a note: {all:?}");
    assert!(all.iter().any(|b| b.ends_with("Thanks! See #2")), "{all:?}");
    let thread = discussions.iter().find(|d| d["individual_note"] == false).expect("a diff thread")["notes"]
        .as_array()
        .expect("notes")
        .clone();
    assert_eq!(thread.len(), 2, "{thread:?}");
    assert!(body(&thread[0]).ends_with("nit: rename") && body(&thread[1]).ends_with("Done."), "{thread:?}");

    // The release and its uploaded asset; the other host's link is not recreated.
    let releases = gl.list("releases");
    assert!(body(&releases[0]).ends_with("Notes for v1.0, see !1"), "{}", releases[0]);
    let links = releases[0]["assets"]["links"].as_array().expect("links");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!((links[0]["name"].as_str(), links[0]["link_type"].as_str()), (Some("tool.bin"), Some("package")));
    assert_eq!(gl.download(links[0]["url"].as_str().expect("url")), tool);

    // The mapping tells issue 1 and merge request 1 apart.
    let mapped = r["mapping"]["items"].as_array().expect("items");
    let find = |kind: &str, n: u64| {
        mapped.iter().find(|i| i["kind"] == kind && i["old_number"] == n).unwrap_or_else(|| panic!("{kind} {n}"))
    };
    assert_eq!(find("issue", 1)["new_number"], 1);
    assert_eq!(
        (find("pull", 1)["restored_as"].as_str(), find("pull", 1)["new_number"].as_u64()),
        (Some("pull"), Some(1))
    );
    assert_eq!(
        (find("pull", 2)["restored_as"].as_str(), find("pull", 2)["new_number"].as_u64()),
        (Some("issue"), Some(3))
    );
    assert_eq!(r["writes"].as_u64().expect("writes") as usize, gl.writes() - before);

    // Again: nothing is written, issue 1 and merge request 1 are both recognised.
    let before = gl.writes();
    let again = restore(&m, &snapshot, "gitlab:newgroup/restored", 0);
    assert_eq!(gl.writes(), before, "a second run writes nothing: {again}");
    let r2 = &again["repositories"][0];
    assert_eq!(
        (r2["counts"]["issues"]["existing"].as_u64(), r2["counts"]["pulls"]["existing"].as_u64()),
        (Some(2), Some(2))
    );
}

#[test]
fn a_gitlab_project_restored_into_github_gets_one_numbering_with_merge_request_links_rewritten() {
    let m = MetaWorld::new(Gitlab, "acme/sub", "gitlab:acme/sub/api", ("GITLAB_TOKEN", GL_TOKEN));
    let work = m.w.path("work/api");
    git(&work, &["checkout", "-q", "-b", "feature"]);
    commit(&work, "feature.txt", b"feature\n", "a feature");
    git(&work, &["checkout", "-q", "main"]);
    let bare = m.forge.git_dir(Gitlab, "acme/sub", "api");
    git(&work, &["push", "-q", bare.to_str().expect("utf-8"), "feature"]);
    let tool = crate::common::noise(13, 20_000);
    m.forge.write_file("assets/tool.bin", &tool);
    let mut world = gitlab_world();
    world["github"] = json!({"accounts": {"neworg": {"type": "Organization", "members": ["alice"]}}, "repos": []});
    m.forge.write_world(&world);
    let snapshot = m.backup()["snapshot"].as_str().expect("snapshot").to_string();

    let api = m.forge.api_url(Github);
    let out =
        m.w.cmd(&["restore", &snapshot, "--to-forge", "github:neworg", "--api-url", &api, "--json"])
            .env("GITHUB_TOKEN", GL_TOKEN)
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["repositories"][0]["failures"], json!([]), "{report}");

    let get = |path: &str| -> Value {
        let v = reqwest::blocking::Client::new()
            .get(format!("{api}{path}"))
            .header("Authorization", format!("Bearer {GL_TOKEN}"))
            .send()
            .expect("get")
            .text()
            .expect("body");
        serde_json::from_str(&v).expect("json")
    };
    // One counter: issue 1, merge request 1 as pull request #2, issue 2 as #3, merge request 2
    // (its branch gone) as issue #4.
    let items = get("/repos/neworg/api/issues?state=all&direction=asc&per_page=100");
    let items = items.as_array().expect("list");
    let titles: Vec<&str> = items.iter().filter_map(|i| i["title"].as_str()).collect();
    assert_eq!(titles, ["Crash on start", "Fix the crash", "Typo", "Old work"], "{items:?}");
    assert!(by_title(items, "Fix the crash").get("pull_request").is_some());
    assert!(by_title(items, "Old work").get("pull_request").is_none());
    assert!(body(by_title(items, "Crash on start")).ends_with("It crashes. Fixed by #2, see also #4 and #3."));
    assert!(body(by_title(items, "Fix the crash")).ends_with("Closes #1"));
    assert!(body(by_title(items, "Old work")).ends_with("Follow-up to #2"));
    let comments = get("/repos/neworg/api/issues/1/comments");
    assert!(body(&comments[0]).ends_with("Confirmed, #2 fixes it"), "{comments}");
    let line_comments = get("/repos/neworg/api/pulls/2/comments");
    let line_comments = line_comments.as_array().expect("list");
    assert_eq!(line_comments.len(), 2, "{line_comments:?}");
    assert_eq!(line_comments[1]["in_reply_to_id"], line_comments[0]["id"], "the thread is kept");
}

#[test]
fn gitlab_refusals_and_the_plan_write_nothing() {
    let s = Setup::new();
    let mut w = crate::to_forge::world(
        json!({GL_TOKEN: {"login": "alice"}, "glpat-readonly": {"login": "alice", "write": false}}),
        json!({}),
    );
    w["gitlab"] = json!({"groups": [{"path": "newgroup", "members": [{"username": "alice", "access_level": 40}]}]});
    s.m.forge.write_world(&w);
    let gl = GitlabApi { forge: &s.m.forge, project: "newgroup%2Fapi".into() };
    let api = s.m.forge.api_url(Gitlab);
    let run = |target: &str, token: &str, extra: &[&str]| {
        let mut args = vec!["restore", s.snapshot.as_str(), "--to-forge", target, "--api-url", api.as_str()];
        args.extend_from_slice(extra);
        let out = s.m.w.cmd(&args).env("GITLAB_TOKEN", token).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains(token) && !String::from_utf8_lossy(&out.stdout).contains(token));
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string(), stderr)
    };
    let before = gl.writes();

    // The plan: everything to create, nothing written.
    let (code, stdout, stderr) = run("gitlab:newgroup", GL_TOKEN, &["--dry-run", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("json");
    let r = &plan["repositories"][0];
    assert_eq!(
        (r["created_repository"].as_bool(), r["counts"]["issues"]["created"].as_u64()),
        (Some(true), Some(3)),
        "{r}"
    );
    assert_eq!(gl.writes(), before, "a dry run writes nothing");

    // A read-only token: refused, naming the target, nothing created.
    let (code, _, stderr) = run("gitlab:newgroup/other", "glpat-readonly", &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("403") && stderr.contains("newgroup/other"), "{stderr}");
    // No such group.
    let (code, _, stderr) = run("gitlab:nogroup", GL_TOKEN, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("nogroup"), "{stderr}");
    // The one write tried (creating the project) was refused; nothing else was tried.
    assert_eq!(gl.writes(), before + 1, "refusals stop at the first refused write");
    let accepted = |m: &MetaWorld| {
        m.forge
            .requests()
            .iter()
            .filter(|r| r["write"] == true && r["status"].as_u64().is_some_and(|c| c < 300))
            .count()
    };
    assert_eq!(accepted(&s.m), 0, "nothing was created");

    // Restored; the plan now finds everything there.
    restore(&s.m, &s.snapshot, "gitlab:newgroup", 0);
    let written = gl.writes();
    let (code, stdout, stderr) = run("gitlab:newgroup", GL_TOKEN, &["--dry-run", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("json");
    let r = &plan["repositories"][0];
    assert_eq!(r["counts"]["issues"]["existing"], 3, "{r}");
    assert_eq!(r["counts"]["issues"]["created"].as_u64().unwrap_or(0), 0, "{r}");
    assert_eq!(gl.writes(), written);
}
