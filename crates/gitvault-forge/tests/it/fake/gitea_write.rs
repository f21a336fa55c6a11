//! The write side of the fake Gitea: a restore's repository, git push, labels, milestones,
//! issues, comments, pull requests, reviews, releases and attachments read back through the
//! endpoints a backup uses; refusals in Gitea's shapes (409, 422 `APIValidationError`, 403).

use gitvault_forge::testing::{FakeForge, FakeForgeKind::Gitea};
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
        "gitea": {"orgs": [{"name": "acme", "members": ["alice", "bob"]}], "users": ["alice", "bob"], "repos": []},
    })
}

fn api(forge: &FakeForge, path: &str) -> String {
    format!("{}{path}", forge.api_url(Gitea))
}

fn write(forge: &FakeForge, method: &str, path: &str, body: Value, status: u16) -> Value {
    let answer = send(method, &api(forge, path), "good", Some(&body));
    assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
    if answer.body.is_empty() { Value::Null } else { answer.json() }
}

fn read(forge: &FakeForge, path: &str) -> Value {
    let answer = get(&api(forge, path), &[("Authorization", "token good")]);
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
    answer.json()
}

fn multipart(name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "fakeforge-boundary-7d1";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn gitea_restored_repository_reads_back_through_the_backup_endpoints() {
    let forge = FakeForge::start();
    forge.write_world(&world());
    let source = SourceRepo::build(&forge.root().join("source.git"));

    let created = write(
        &forge,
        "POST",
        "/orgs/acme/repos",
        json!({"name": "api", "description": "The API", "private": true}),
        201,
    );
    assert_eq!((created["full_name"].as_str(), created["empty"].as_bool()), (Some("acme/api"), Some(true)));
    let url = with_credentials(created["clone_url"].as_str().expect("clone_url"), "alice", "good");
    let pushed = push(&source.dir, &["push", "--mirror", &url]);
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    assert!(stderr.contains("refs/pull/1/head (deny updating a hidden ref)"), "{stderr}");
    let refs = git_ok(&["ls-remote", &url], None);
    assert!(refs.contains(&format!("{}\trefs/heads/fix", source.fix)) && refs.contains("refs/tags/v1.0"), "{refs}");
    assert!(!refs.contains("refs/pull/"), "{refs}");

    write(&forge, "PATCH", "/repos/acme/api", json!({"website": "https://example.com", "default_branch": "main"}), 200);
    write(&forge, "PUT", "/repos/acme/api/topics", json!({"topics": ["backup"]}), 204);
    let label = write(
        &forge,
        "POST",
        "/repos/acme/api/labels",
        json!({"name": "bug", "color": "#d73a4a", "description": "Broken"}),
        201,
    );
    let milestone = write(&forge, "POST", "/repos/acme/api/milestones", json!({"title": "v1"}), 201);
    let issue = write(
        &forge,
        "POST",
        "/repos/acme/api/issues",
        json!({"title": "Crash", "body": "It crashes.", "labels": [label["id"]], "milestone": milestone["id"]}),
        201,
    );
    assert_eq!(issue["number"], 1);
    write(&forge, "POST", "/repos/acme/api/issues/1/comments", json!({"body": "Confirmed."}), 201);
    // Gitea answers an issue edit with 201.
    let closed = write(&forge, "PATCH", "/repos/acme/api/issues/1", json!({"state": "closed"}), 201);
    assert_eq!(closed["state"], "closed");
    let pull =
        write(&forge, "POST", "/repos/acme/api/pulls", json!({"title": "Fix it", "head": "fix", "base": "main"}), 201);
    assert_eq!((pull["number"].as_u64(), pull["head"]["sha"].as_str()), (Some(2), Some(source.fix.as_str())));
    let review = send(
        "POST",
        &api(&forge, "/repos/acme/api/pulls/2/reviews"),
        "reviewer",
        Some(&json!({"event": "APPROVED", "body": "Ship it."})),
    );
    assert_eq!(review.status, 200, "{}", review.body);
    write(&forge, "PATCH", "/repos/acme/api/pulls/2", json!({"state": "closed"}), 201);
    let release = write(
        &forge,
        "POST",
        "/repos/acme/api/releases",
        json!({"tag_name": "v1.0", "name": "One", "body": "Notes."}),
        201,
    );
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let (content_type, body) = multipart("tool.bin", &bytes);
    let attachment =
        Sent::new("POST", &api(&forge, &format!("/repos/acme/api/releases/{}/assets", release["id"])), "good")
            .header("Content-Type", &content_type)
            .bytes(body)
            .send();
    assert_eq!(attachment.status, 201, "{}", attachment.body);
    assert_eq!(attachment.json()["size"], 5000);

    let repo = read(&forge, "/repos/acme/api");
    assert_eq!((repo["website"].as_str(), repo["empty"].as_bool()), (Some("https://example.com"), Some(false)));
    assert_eq!(repo["topics"], json!(["backup"]));
    let labels = read(&forge, "/repos/acme/api/labels");
    assert_eq!((labels[0]["name"].as_str(), labels[0]["color"].as_str()), (Some("bug"), Some("d73a4a")));
    let issues = read(&forge, "/repos/acme/api/issues?state=all&type=issues");
    assert_eq!(issues[0]["title"], "Crash");
    assert_eq!(issues[0]["milestone"]["title"], "v1");
    assert_eq!(issues[0]["labels"][0]["name"], "bug");
    let comments = read(&forge, "/repos/acme/api/issues/comments");
    assert_eq!(comments[0]["body"], "Confirmed.");
    let pulls = read(&forge, "/repos/acme/api/pulls?state=all");
    assert_eq!((pulls[0]["title"].as_str(), pulls[0]["state"].as_str()), (Some("Fix it"), Some("closed")));
    let reviews = read(&forge, "/repos/acme/api/pulls/2/reviews");
    assert_eq!((reviews[0]["state"].as_str(), reviews[0]["user"]["login"].as_str()), (Some("APPROVED"), Some("bob")));
    let releases = read(&forge, "/repos/acme/api/releases");
    assert_eq!(releases[0]["assets"][0]["name"], "tool.bin");
    let download = releases[0]["assets"][0]["browser_download_url"].as_str().expect("url").to_string();
    let served =
        reqwest::blocking::Client::new().get(&download).header("Authorization", "token good").send().expect("download");
    assert_eq!(served.bytes().expect("bytes").to_vec(), bytes);

    assert_eq!(writes(&forge, "api").len(), 13);
    assert_eq!(writes(&forge, "git").len(), 1);
}

#[test]
fn gitea_write_errors_come_in_giteas_shapes() {
    let forge = FakeForge::start();
    forge.write_world(&world());
    let source = SourceRepo::build(&forge.root().join("source.git"));
    write(&forge, "POST", "/user/repos", json!({"name": "api"}), 201);
    let url = with_credentials(&forge.clone_url(Gitea, "alice", "api"), "alice", "good");
    assert!(push(&source.dir, &["push", &url, "main", "fix"]).status.success());

    let taken = write(&forge, "POST", "/user/repos", json!({"name": "API"}), 409);
    assert_eq!(taken["message"], "The repository with the same name already exists.");
    let colour = write(&forge, "POST", "/repos/alice/api/labels", json!({"name": "bug", "color": "red"}), 422);
    assert_eq!(colour["message"], "bad color code: red");
    assert!(colour["url"].as_str().expect("url").ends_with("/gitea/api/swagger"));
    assert_eq!(
        send(
            "POST",
            &api(&forge, "/repos/alice/api/pulls"),
            "good",
            Some(&json!({"title": "t", "head": "gone", "base": "main"}))
        )
        .status,
        404
    );
    write(&forge, "POST", "/repos/alice/api/pulls", json!({"title": "t", "head": "fix", "base": "main"}), 201);
    write(&forge, "POST", "/repos/alice/api/pulls", json!({"title": "again", "head": "fix", "base": "main"}), 409);
    let own = write(&forge, "POST", "/repos/alice/api/pulls/1/reviews", json!({"event": "APPROVED"}), 422);
    assert_eq!(own["message"], "approve your own pull is not allowed");
    write(&forge, "POST", "/repos/alice/api/releases", json!({"tag_name": "v1.0"}), 201);
    write(&forge, "POST", "/repos/alice/api/releases", json!({"tag_name": "v1.0"}), 409);
    assert_eq!(send("POST", &api(&forge, "/orgs/nobody/repos"), "good", Some(&json!({"name": "x"}))).status, 404);

    let denied = send("POST", &api(&forge, "/repos/alice/api/issues"), "readonly", Some(&json!({"title": "x"})));
    assert_eq!(denied.status, 403);
    assert!(denied.json()["message"].as_str().expect("message").contains("write:repository"));
    let readonly = with_credentials(&forge.clone_url(Gitea, "alice", "api"), "alice", "readonly");
    let refused = push(&source.dir, &["push", &readonly, "v1.0"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("403"));
    assert_eq!(read(&forge, "/repos/alice/api/issues?state=all").as_array().map(Vec::len), Some(1));
}
