//! The write side of the fake GitHub: what a restore creates — a repository, its git data pushed
//! with real git, labels, milestones, issues, comments, pull requests, reviews, releases and
//! asset bytes — reads back through the endpoints a backup uses, and the refusals (422, 403,
//! secondary rate limits) come in GitHub's shapes.

use std::path::Path;
use std::time::Duration;

use gitvault_forge::testing::{FakeForge, FakeForgeKind::Github};
use serde_json::{Value, json};

use super::write_support::{Sent, SourceRepo, push, send, writes};
use super::{get, git_ok, with_credentials};

fn world() -> Value {
    json!({
        "tokens": {
            "good": {"login": "alice"},
            "reviewer": {"login": "bob"},
            "readonly": {"login": "alice", "write": false},
        },
        "github": {"accounts": {"acme": {"type": "Organization", "members": ["alice", "bob"]}}, "repos": []},
    })
}

fn api(forge: &FakeForge, path: &str) -> String {
    format!("{}{path}", forge.api_url(Github))
}

/// POST/PATCH/PUT with alice's token, asserting the status.
fn write(forge: &FakeForge, method: &str, path: &str, body: Value, status: u16) -> Value {
    let answer = send(method, &api(forge, path), "good", Some(&body));
    assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
    answer.json()
}

fn read(forge: &FakeForge, path: &str) -> Value {
    let answer = get(&api(forge, path), &[("Authorization", "Bearer good")]);
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
    answer.json()
}

fn field<'a>(items: &'a Value, key: &str) -> Vec<&'a str> {
    items.as_array().expect("array").iter().map(|i| i[key].as_str().expect("string field")).collect()
}

#[test]
fn github_restored_repository_reads_back_through_the_backup_endpoints() {
    let forge = FakeForge::start();
    forge.write_world(&world());
    let source = SourceRepo::build(&forge.root().join("source.git"));

    // The repository, then its git data with a mirror push; refs/pull/* is GitHub's own.
    let created = write(
        &forge,
        "POST",
        "/orgs/acme/repos",
        json!({"name": "api", "description": "The API", "homepage": "https://example.com", "private": true,
               "has_wiki": true}),
        201,
    );
    assert_eq!(created["full_name"], "acme/api");
    assert_eq!(created["private"], true);
    assert_eq!(created["visibility"], "private");
    assert_eq!(created["size"], 0);
    let url = with_credentials(created["clone_url"].as_str().expect("clone_url"), "x-access-token", "good");
    let pushed = push(&source.dir, &["push", "--mirror", &url]);
    assert!(!pushed.status.success(), "a refused ref fails the push as a whole");
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    assert!(stderr.contains("refs/pull/1/head (deny updating a hidden ref)"), "{stderr}");
    let refs = git_ok(&["ls-remote", &url], None);
    assert!(refs.contains(&format!("{}\trefs/heads/main", source.main)), "{refs}");
    assert!(refs.contains(&format!("{}\trefs/heads/fix", source.fix)), "{refs}");
    assert!(refs.contains("refs/tags/v1.0"), "{refs}");
    assert!(!refs.contains("refs/pull/"), "{refs}");
    let wiki = SourceRepo::wiki(&forge.root().join("source.wiki.git"));
    let wiki_url = url.replace("/api.git", "/api.wiki.git");
    let pushed = push(&wiki, &["push", "--mirror", &wiki_url]);
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));

    write(&forge, "PATCH", "/repos/acme/api", json!({"default_branch": "main", "has_issues": true}), 200);
    let topics = write(&forge, "PUT", "/repos/acme/api/topics", json!({"names": ["backup", "Rust"]}), 200);
    assert_eq!(topics, json!({"names": ["backup", "rust"]}));

    // Metadata, in the order a restore creates it.
    write(
        &forge,
        "POST",
        "/repos/acme/api/labels",
        json!({"name": "bug", "color": "d73a4a", "description": "Broken"}),
        201,
    );
    let milestone =
        write(&forge, "POST", "/repos/acme/api/milestones", json!({"title": "v1", "description": "First"}), 201);
    assert_eq!(milestone["number"], 1);
    let issue = write(
        &forge,
        "POST",
        "/repos/acme/api/issues",
        json!({"title": "Crash", "body": "It crashes.", "labels": ["bug"], "milestone": 1}),
        201,
    );
    assert_eq!((issue["number"].as_u64(), issue["state"].as_str()), (Some(1), Some("open")));
    write(&forge, "POST", "/repos/acme/api/issues/1/comments", json!({"body": "Confirmed."}), 201);
    let closed = write(
        &forge,
        "PATCH",
        "/repos/acme/api/issues/1",
        json!({"state": "closed", "state_reason": "not_planned"}),
        200,
    );
    assert_eq!((closed["state"].as_str(), closed["state_reason"].as_str()), (Some("closed"), Some("not_planned")));
    // Issues and pull requests share one sequence of numbers, as on GitHub.
    let pull = write(
        &forge,
        "POST",
        "/repos/acme/api/pulls",
        json!({"title": "Fix it", "body": "Fixes #1", "head": "fix", "base": "main"}),
        201,
    );
    assert_eq!(pull["number"], 2);
    assert_eq!(pull["head"]["sha"], source.fix.as_str());
    write(&forge, "POST", "/repos/acme/api/issues/2/comments", json!({"body": "Looks right."}), 201);
    let review = send(
        "POST",
        &api(&forge, "/repos/acme/api/pulls/2/reviews"),
        "reviewer",
        Some(&json!({"event": "APPROVE", "body": "Ship it."})),
    );
    assert_eq!(review.status, 200, "{}", review.body);
    assert_eq!(review.json()["state"], "APPROVED");
    let comment = write(
        &forge,
        "POST",
        "/repos/acme/api/pulls/2/comments",
        json!({"body": "Rename this.", "path": "README", "line": 1, "side": "RIGHT", "commit_id": source.fix}),
        201,
    );
    let reply = write(
        &forge,
        "POST",
        "/repos/acme/api/pulls/2/comments",
        json!({"body": "Done.", "in_reply_to": comment["id"]}),
        201,
    );
    assert_eq!(reply["in_reply_to_id"], comment["id"]);
    write(&forge, "PATCH", "/repos/acme/api/pulls/2", json!({"state": "closed"}), 200);
    let release = write(
        &forge,
        "POST",
        "/repos/acme/api/releases",
        json!({"tag_name": "v1.0", "name": "One", "body": "Notes.", "prerelease": true}),
        201,
    );
    let upload = release["upload_url"].as_str().expect("upload_url").split('{').next().expect("template").to_string();
    assert!(upload.starts_with(&forge.base_url()), "{upload}");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let asset = Sent::new("POST", &format!("{upload}?name=tool.bin&label=Tool"), "good")
        .header("Content-Type", "application/x-tool")
        .bytes(bytes.clone())
        .send();
    assert_eq!(asset.status, 201, "{}", asset.body);
    let asset = asset.json();
    assert_eq!((asset["size"].as_u64(), asset["content_type"].as_str()), (Some(70_000), Some("application/x-tool")));

    // Everything reads back through the endpoints a backup uses.
    let repo = read(&forge, "/repos/acme/api");
    assert_eq!(
        (repo["description"].as_str(), repo["homepage"].as_str(), repo["default_branch"].as_str()),
        (Some("The API"), Some("https://example.com"), Some("main"))
    );
    assert_eq!(repo["topics"], json!(["backup", "rust"]));
    assert!(repo["size"].as_u64().expect("size") > 0);
    let listed = read(&forge, "/orgs/acme/repos");
    assert_eq!(field(&listed, "full_name"), ["acme/api"]);
    let labels = read(&forge, "/repos/acme/api/labels");
    assert_eq!(labels[0]["name"], "bug");
    assert_eq!((labels[0]["color"].as_str(), labels[0]["description"].as_str()), (Some("d73a4a"), Some("Broken")));
    let milestones = read(&forge, "/repos/acme/api/milestones?state=all");
    assert_eq!(milestones[0]["title"], "v1");
    assert_eq!((milestones[0]["open_issues"].as_u64(), milestones[0]["closed_issues"].as_u64()), (Some(0), Some(1)));
    let issues = read(&forge, "/repos/acme/api/issues?state=all&direction=asc");
    assert_eq!(field(&issues, "title"), ["Crash", "Fix it"]);
    assert_eq!(issues[0]["labels"][0]["name"], "bug");
    assert_eq!(issues[0]["user"]["login"], "alice");
    assert_eq!(issues[0]["comments"], 1);
    assert!(issues[1]["pull_request"].is_object());
    let comments = read(&forge, "/repos/acme/api/issues/comments");
    assert_eq!(field(&comments, "body"), ["Confirmed.", "Looks right."]);
    let pulls = read(&forge, "/repos/acme/api/pulls?state=all");
    assert_eq!((pulls[0]["state"].as_str(), pulls[0]["head"]["ref"].as_str()), (Some("closed"), Some("fix")));
    // A lone review comment brings a COMMENTED review of its own, as on GitHub.
    let reviews = read(&forge, "/repos/acme/api/pulls/2/reviews");
    assert_eq!(field(&reviews, "state"), ["APPROVED", "COMMENTED", "COMMENTED"]);
    assert_eq!(reviews[0]["user"]["login"], "bob");
    let review_comments = read(&forge, "/repos/acme/api/pulls/2/comments");
    assert_eq!(field(&review_comments, "body"), ["Rename this.", "Done."]);
    assert_eq!(review_comments[1]["path"], "README");
    let releases = read(&forge, "/repos/acme/api/releases");
    assert_eq!((releases[0]["tag_name"].as_str(), releases[0]["body"].as_str()), (Some("v1.0"), Some("Notes.")));
    assert_eq!(releases[0]["prerelease"], true);
    assert_eq!(releases[0]["assets"][0]["name"], "tool.bin");
    assert_eq!(releases[0]["assets"][0]["label"], "Tool");
    let download = releases[0]["assets"][0]["browser_download_url"].as_str().expect("download url").to_string();
    let client = reqwest::blocking::Client::new();
    let served = client.get(&download).bearer_auth("good").send().expect("download");
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(served.bytes().expect("bytes").to_vec(), bytes);

    // The request log counts every write: 16 API writes (one refused ref does not make the push
    // two) and the two pushes' receive-pack POSTs.
    let api_writes = writes(&forge, "api");
    assert_eq!(api_writes.len(), 16, "{api_writes:#?}");
    assert!(api_writes.iter().all(|w| w["status"] == 200 || w["status"] == 201), "{api_writes:#?}");
    assert_eq!(writes(&forge, "git").len(), 2);
    assert_eq!(api_writes[0]["path"], "/github/api/v3/orgs/acme/repos");
    assert_eq!(
        api_writes.last().expect("a write")["path"],
        format!("/github/api/uploads/repos/acme/api/releases/{}/assets", release["id"])
    );
}

#[test]
fn github_write_errors_come_in_githubs_shapes() {
    let forge = FakeForge::start();
    forge.write_world(&world());
    let source = SourceRepo::build(&forge.root().join("source.git"));
    write(&forge, "POST", "/orgs/acme/repos", json!({"name": "api"}), 201);
    let url = with_credentials(&forge.clone_url(Github, "acme", "api"), "x-access-token", "good");
    assert!(push(&source.dir, &["push", &url, "main", "fix"]).status.success());

    let taken = write(&forge, "POST", "/orgs/acme/repos", json!({"name": "API"}), 422);
    assert_eq!(
        taken["errors"],
        json!([{"resource": "Repository", "code": "custom", "field": "name", "message": "name already exists on this account"}])
    );
    assert_eq!(taken["message"], "Repository creation failed.");
    assert_eq!(send("POST", &api(&forge, "/orgs/nobody/repos"), "good", Some(&json!({"name": "x"}))).status, 404);
    let colour = write(&forge, "POST", "/repos/acme/api/labels", json!({"name": "bug", "color": "#d73a4a"}), 422);
    assert_eq!(colour["message"], "Validation Failed");
    assert_eq!(colour["errors"], json!([{"resource": "Label", "code": "invalid", "field": "color"}]));
    write(&forge, "POST", "/repos/acme/api/labels", json!({"name": "bug", "color": "d73a4a"}), 201);
    let twice = write(&forge, "POST", "/repos/acme/api/labels", json!({"name": "Bug", "color": "d73a4a"}), 422);
    assert_eq!(twice["errors"][0]["code"], "already_exists");
    let head =
        write(&forge, "POST", "/repos/acme/api/pulls", json!({"title": "t", "head": "gone", "base": "main"}), 422);
    assert_eq!(head["errors"], json!([{"resource": "PullRequest", "code": "invalid", "field": "head"}]));
    let base =
        write(&forge, "POST", "/repos/acme/api/pulls", json!({"title": "t", "head": "fix", "base": "gone"}), 422);
    assert_eq!(base["errors"][0]["field"], "base");
    write(&forge, "POST", "/repos/acme/api/pulls", json!({"title": "t", "head": "fix", "base": "main"}), 201);
    let own = write(&forge, "POST", "/repos/acme/api/pulls/1/reviews", json!({"event": "APPROVE"}), 422);
    assert_eq!(own["errors"], json!(["Can not approve your own pull request"]));
    let untitled = write(&forge, "POST", "/repos/acme/api/issues", json!({"body": "no title"}), 422);
    assert_eq!(untitled["errors"][0]["code"], "missing_field");
    write(&forge, "POST", "/repos/acme/api/releases", json!({"tag_name": "v1.0"}), 201);
    let tag = write(&forge, "POST", "/repos/acme/api/releases", json!({"tag_name": "v1.0"}), 422);
    assert_eq!(tag["errors"], json!([{"resource": "Release", "code": "already_exists", "field": "tag_name"}]));
    assert_eq!(
        send("POST", &api(&forge, "/repos/acme/api/issues/99/comments"), "good", Some(&json!({"body": "x"}))).status,
        404
    );

    // A read-only token reads, but neither writes through the API nor pushes.
    let denied = send("POST", &api(&forge, "/repos/acme/api/issues"), "readonly", Some(&json!({"title": "x"})));
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["message"], "Resource not accessible by personal access token");
    assert_eq!(send("POST", &api(&forge, "/user/repos"), "readonly", Some(&json!({"name": "mine"}))).status, 403);
    assert_eq!(get(&api(&forge, "/repos/acme/api/issues"), &[("Authorization", "Bearer readonly")]).status, 200);
    let readonly = with_credentials(&forge.clone_url(Github, "acme", "api"), "x-access-token", "readonly");
    let refused = push(&source.dir, &["push", &readonly, "v1.0"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Permission to acme/api.git denied to alice.") && stderr.contains("403"), "{stderr}");
    assert!(git_ok(&["ls-remote", &readonly], None).contains("refs/heads/main"), "fetching still works");
    // Anonymous writes need authentication.
    let anonymous = Sent::new("POST", &api(&forge, "/repos/acme/api/issues"), "").json(&json!({"title": "x"})).send();
    assert_eq!(anonymous.status, 401);

    // Nothing refused was created.
    assert_eq!(read(&forge, "/repos/acme/api/issues?state=all").as_array().map(Vec::len), Some(1));
    assert_eq!(read(&forge, "/repos/acme/api/labels").as_array().map(Vec::len), Some(1));
    assert_eq!(read(&forge, "/user/repos").as_array().map(Vec::len), Some(1));
}

#[test]
fn github_secondary_rate_limit_refuses_writes_with_retry_after_until_it_passes() {
    let forge = FakeForge::start();
    let mut scenario = world();
    scenario["faults"] = json!({"github": {"writes": {"after": 3, "retry_after": 1}}});
    forge.write_world(&scenario);
    write(&forge, "POST", "/orgs/acme/repos", json!({"name": "api"}), 201);
    write(&forge, "POST", "/repos/acme/api/issues", json!({"title": "one"}), 201);
    // Reads are not content creation: they neither count nor get refused.
    read(&forge, "/repos/acme/api/issues");
    write(&forge, "POST", "/repos/acme/api/issues", json!({"title": "two"}), 201);

    let refused = send("POST", &api(&forge, "/repos/acme/api/issues"), "good", Some(&json!({"title": "three"})));
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused.json()["message"].as_str().expect("message").starts_with("You have exceeded a secondary rate limit")
    );
    assert!(refused.header("x-ratelimit-remaining").is_some(), "writes carry the rate-limit headers");
    // Until Retry-After has passed every write is refused; reads go on.
    assert_eq!(
        send("POST", &api(&forge, "/repos/acme/api/issues"), "good", Some(&json!({"title": "three"}))).status,
        403
    );
    assert_eq!(read(&forge, "/repos/acme/api/issues").as_array().map(Vec::len), Some(2));
    std::thread::sleep(Duration::from_millis(1100));
    let third = write(&forge, "POST", "/repos/acme/api/issues", json!({"title": "three"}), 201);
    assert_eq!(third["number"], 3, "refused writes took no number");

    let statuses: Vec<u64> = writes(&forge, "api").iter().map(|w| w["status"].as_u64().expect("status")).collect();
    assert_eq!(statuses, [201, 201, 201, 403, 403, 201]);
}

#[test]
fn github_created_items_survive_a_rewrite_of_the_world() {
    let forge = FakeForge::start();
    forge.write_world(&world());
    write(&forge, "POST", "/user/repos", json!({"name": "notes"}), 201);
    write(&forge, "POST", "/repos/alice/notes/issues", json!({"title": "kept"}), 201);
    // A test adds a fault half way through a restore: what was created stays.
    let mut scenario = world();
    scenario["faults"] = json!({"github": {"writes": {"after": 0, "retry_after": 1}}});
    forge.write_world(&scenario);
    let issues = read(&forge, "/repos/alice/notes/issues");
    assert_eq!(field(&issues, "title"), ["kept"]);
    assert_eq!(
        send("POST", &api(&forge, "/repos/alice/notes/issues"), "good", Some(&json!({"title": "x"}))).status,
        403
    );
    let state = std::fs::read_to_string(forge.root().join("state.jsonl")).expect("state.jsonl");
    let edits: Vec<Value> = state.lines().map(|l| serde_json::from_str(l).expect("one edit a line")).collect();
    assert_eq!(edits.len(), 2);
    assert!(Path::new(&forge.root().join("world.json")).exists());
}
