//! The write side of the fake GitLab: what a restore creates — a project, its git data pushed with
//! real git, labels, milestones, issues and notes, a merge request with notes and a diff
//! discussion, a release whose link points at an uploaded file — reads back through the endpoints
//! a backup uses, and the refusals come in GitLab's shapes.

use gitvault_forge::testing::{FakeForge, FakeForgeKind::Gitlab};
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
        "gitlab": {"groups": ["acme"], "users": ["alice", "bob"], "projects": []},
    })
}

fn api(forge: &FakeForge, path: &str) -> String {
    format!("{}{path}", forge.api_url(Gitlab))
}

/// A write with alice's token, asserting the status.
fn write(forge: &FakeForge, method: &str, path: &str, body: Value, status: u16) -> Value {
    let answer = send(method, &api(forge, path), "good", Some(&body));
    assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
    answer.json()
}

fn read(forge: &FakeForge, path: &str) -> Value {
    let answer = get(&api(forge, path), &[("PRIVATE-TOKEN", "good")]);
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
    answer.json()
}

fn field<'a>(items: &'a Value, key: &str) -> Vec<&'a str> {
    items.as_array().expect("array").iter().map(|i| i[key].as_str().expect("string field")).collect()
}

/// `POST /projects/:id/uploads` with `bytes` as the multipart part `file`.
fn upload(forge: &FakeForge, project: &str, name: &str, bytes: &[u8]) -> Value {
    let boundary = "fakeforge-boundary-3c9";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let answer = Sent::new("POST", &api(forge, &format!("/projects/{project}/uploads")), "good")
        .header("Content-Type", &format!("multipart/form-data; boundary={boundary}"))
        .bytes(body)
        .send();
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.json()
}

fn download(url: &str) -> Vec<u8> {
    let served = reqwest::blocking::Client::new().get(url).header("PRIVATE-TOKEN", "good").send().expect("download");
    assert_eq!(served.status().as_u16(), 200, "{url}");
    served.bytes().expect("bytes").to_vec()
}

#[test]
fn gitlab_restored_project_reads_back_through_the_backup_endpoints() {
    let forge = FakeForge::start();
    forge.write_world(&world());
    let source = SourceRepo::build(&forge.root().join("source.git"));

    // The project in the group the read side names, then its git data.
    let namespace = read(&forge, "/namespaces/acme");
    assert_eq!(namespace["kind"], "group");
    let created = write(
        &forge,
        "POST",
        "/projects",
        json!({"name": "The API", "path": "api", "namespace_id": namespace["id"], "description": "The API",
               "visibility": "private", "topics": ["backup"], "wiki_enabled": false}),
        201,
    );
    assert_eq!(created["path_with_namespace"], "acme/api");
    assert_eq!((created["empty_repo"].as_bool(), created["visibility"].as_str()), (Some(true), Some("private")));
    let url = with_credentials(created["http_url_to_repo"].as_str().expect("http_url_to_repo"), "oauth2", "good");
    let pushed = push(&source.dir, &["push", "--mirror", &url]);
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));

    // The default branch moves the bare repository's HEAD; it must exist.
    let moved = write(&forge, "PUT", "/projects/acme%2Fapi", json!({"default_branch": "fix"}), 200);
    assert_eq!(moved["default_branch"], "fix");
    let git_dir = forge.git_dir(Gitlab, "acme", "api");
    let head = git_ok(&["--git-dir", git_dir.to_str().expect("utf-8"), "symbolic-ref", "HEAD"], None);
    assert_eq!(head, "refs/heads/fix");
    write(&forge, "PUT", "/projects/acme%2Fapi", json!({"default_branch": "main"}), 200);

    let p = "/projects/acme%2Fapi";
    write(
        &forge,
        "POST",
        &format!("{p}/labels"),
        json!({"name": "bug", "color": "#d9534f", "description": "Broken"}),
        201,
    );
    let milestone =
        write(&forge, "POST", &format!("{p}/milestones"), json!({"title": "v1.0", "due_date": "2030-01-01"}), 201);
    let bob = read(&forge, "/users?username=bob")[0]["id"].clone();
    let issue = write(
        &forge,
        "POST",
        &format!("{p}/issues"),
        json!({"title": "Crash", "description": "It crashes.", "labels": "bug,triage",
               "milestone_id": milestone["id"], "assignee_ids": [bob]}),
        201,
    );
    assert_eq!((issue["iid"].as_u64(), issue["references"]["short"].as_str()), (Some(1), Some("#1")));
    write(&forge, "POST", &format!("{p}/issues/1/notes"), json!({"body": "Confirmed."}), 201);
    let closed = write(&forge, "PUT", &format!("{p}/issues/1"), json!({"state_event": "close"}), 200);
    assert_eq!((closed["state"].as_str(), closed["closed_by"]["username"].as_str()), (Some("closed"), Some("alice")));

    // Merge requests are numbered apart from issues.
    let mr = write(
        &forge,
        "POST",
        &format!("{p}/merge_requests"),
        json!({"source_branch": "fix", "target_branch": "main", "title": "Fix it", "description": "Fixes #1.",
               "labels": ["bug"]}),
        201,
    );
    assert_eq!((mr["iid"].as_u64(), mr["sha"].as_str()), (Some(1), Some(source.fix.as_str())));
    assert_eq!(mr["diff_refs"]["base_sha"], source.main.as_str());
    let note =
        send("POST", &api(&forge, &format!("{p}/merge_requests/1/notes")), "reviewer", Some(&json!({"body": "Nice."})));
    assert_eq!(note.status, 201, "{}", note.body);
    let position = json!({"base_sha": source.main, "start_sha": source.main, "head_sha": source.fix,
                          "position_type": "text", "old_path": "README", "new_path": "README", "new_line": 1});
    let discussion = write(
        &forge,
        "POST",
        &format!("{p}/merge_requests/1/discussions"),
        json!({"body": "Why this line?", "position": position}),
        201,
    );
    assert_eq!(
        (discussion["individual_note"].as_bool(), discussion["notes"][0]["type"].as_str()),
        (Some(false), Some("DiffNote"))
    );
    let thread = discussion["id"].as_str().expect("discussion id");
    write(
        &forge,
        "POST",
        &format!("{p}/merge_requests/1/discussions/{thread}/notes"),
        json!({"body": "Because."}),
        201,
    );
    write(&forge, "PUT", &format!("{p}/merge_requests/1"), json!({"state_event": "close"}), 200);
    write(&forge, "PUT", &format!("{p}/milestones/{}", milestone["id"]), json!({"state_event": "close"}), 200);

    // A release whose link points at a file uploaded to the project, and one pointing elsewhere.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let uploaded = upload(&forge, "acme%2Fapi", "tool.bin", &bytes);
    let upload_url = uploaded["url"].as_str().expect("url");
    assert!(upload_url.starts_with("/uploads/") && upload_url.ends_with("/tool.bin"), "{uploaded}");
    assert_eq!(uploaded["markdown"], format!("[tool.bin]({upload_url})"));
    let link_url = format!("{}{upload_url}", created["web_url"].as_str().expect("web_url"));
    let release = write(
        &forge,
        "POST",
        &format!("{p}/releases"),
        json!({"tag_name": "v1.0", "name": "One", "description": "Notes.", "milestones": ["v1.0"],
               "assets": {"links": [{"name": "tool.bin", "url": link_url, "link_type": "package",
                                     "direct_asset_path": "/bin/tool.bin"}]}}),
        201,
    );
    assert_eq!(release["commit"]["id"], source.main.as_str());
    write(
        &forge,
        "POST",
        &format!("{p}/releases/v1.0/assets/links"),
        json!({"name": "mirror", "url": "https://elsewhere.example/tool.bin"}),
        201,
    );

    // Everything reads back through what a backup reads.
    let project = read(&forge, p);
    assert_eq!((project["description"].as_str(), project["wiki_enabled"].as_bool()), (Some("The API"), Some(false)));
    assert_eq!((project["empty_repo"].as_bool(), project["default_branch"].as_str()), (Some(false), Some("main")));
    assert_eq!(project["topics"], json!(["backup"]));
    let labels = read(&forge, &format!("{p}/labels"));
    assert_eq!(field(&labels, "name"), ["bug", "triage"]);
    assert_eq!((labels[0]["color"].as_str(), labels[1]["color"].as_str()), (Some("#d9534f"), Some("#6699cc")));
    let milestones = read(&forge, &format!("{p}/milestones?state=closed"));
    assert_eq!(
        (milestones[0]["title"].as_str(), milestones[0]["due_date"].as_str()),
        (Some("v1.0"), Some("2030-01-01"))
    );
    let issues = read(&forge, &format!("{p}/issues"));
    assert_eq!((issues[0]["title"].as_str(), issues[0]["state"].as_str()), (Some("Crash"), Some("closed")));
    assert_eq!(issues[0]["labels"], json!(["bug", "triage"]));
    assert_eq!(issues[0]["milestone"]["title"], "v1.0");
    assert_eq!(
        (issues[0]["assignees"][0]["username"].as_str(), issues[0]["user_notes_count"].as_u64()),
        (Some("bob"), Some(1))
    );
    assert_eq!(field(&read(&forge, &format!("{p}/issues/1/notes")), "body"), ["Confirmed."]);
    let mrs = read(&forge, &format!("{p}/merge_requests"));
    assert_eq!((mrs[0]["title"].as_str(), mrs[0]["state"].as_str()), (Some("Fix it"), Some("closed")));
    assert_eq!((mrs[0]["source_branch"].as_str(), mrs[0]["target_branch"].as_str()), (Some("fix"), Some("main")));
    let notes = read(&forge, &format!("{p}/merge_requests/1/notes?sort=asc"));
    assert_eq!(field(&notes, "body"), ["Nice.", "Why this line?", "Because."]);
    let discussions = read(&forge, &format!("{p}/merge_requests/1/discussions"));
    assert_eq!(discussions.as_array().map(Vec::len), Some(2));
    let diff = &discussions[1];
    assert_eq!((diff["id"].as_str(), diff["individual_note"].as_bool()), (Some(thread), Some(false)));
    assert_eq!(field(&diff["notes"], "body"), ["Why this line?", "Because."]);
    assert_eq!(
        (diff["notes"][0]["position"]["new_line"].as_u64(), diff["notes"][0]["position"]["head_sha"].as_str()),
        (Some(1), Some(source.fix.as_str()))
    );
    assert_eq!(diff["notes"][0]["author"]["username"], "alice");
    let releases = read(&forge, &format!("{p}/releases"));
    assert_eq!(
        (releases[0]["tag_name"].as_str(), releases[0]["milestones"][0]["title"].as_str()),
        (Some("v1.0"), Some("v1.0"))
    );
    let links = &releases[0]["assets"]["links"];
    assert_eq!(field(links, "name"), ["tool.bin", "mirror"]);
    assert_eq!((links[0]["url"].as_str(), links[0]["link_type"].as_str()), (Some(link_url.as_str()), Some("package")));
    assert!(
        links[0]["direct_asset_url"].as_str().expect("direct").ends_with("/-/releases/v1.0/downloads/bin/tool.bin")
    );
    assert_eq!(download(&link_url), bytes);
    assert_eq!(download(links[0]["direct_asset_url"].as_str().expect("direct")), bytes);
    assert_eq!(download(&format!("{}{}", forge.base_url(), uploaded["full_path"].as_str().expect("full_path"))), bytes);

    assert_eq!(writes(&forge, "api").len(), 17);
    assert_eq!(writes(&forge, "git").len(), 1);
}

#[test]
fn gitlab_write_refusals_come_in_gitlabs_shapes() {
    let forge = FakeForge::start();
    forge.write_world(&world());
    let source = SourceRepo::build(&forge.root().join("source.git"));
    // Without namespace_id the project lands in the caller's own namespace.
    let created = write(&forge, "POST", "/projects", json!({"name": "api"}), 201);
    assert_eq!(
        (created["path_with_namespace"].as_str(), created["namespace"]["kind"].as_str()),
        (Some("alice/api"), Some("user"))
    );
    let url = with_credentials(&forge.clone_url(Gitlab, "alice", "api"), "oauth2", "good");
    assert!(push(&source.dir, &["push", &url, "main", "fix", "v1.0"]).status.success());
    let p = "/projects/alice%2Fapi";

    let taken = write(&forge, "POST", "/projects", json!({"name": "API", "path": "api"}), 400);
    assert_eq!(taken, json!({"message": {"name": ["has already been taken"], "path": ["has already been taken"]}}));
    let nowhere = write(&forge, "POST", "/projects", json!({"name": "x", "namespace_id": 12345}), 400);
    assert_eq!(nowhere, json!({"message": {"namespace": ["is not valid"]}}));
    assert_eq!(
        write(&forge, "POST", "/projects", json!({}), 400)["error"],
        "name, path are missing, at least one parameter must be provided"
    );
    assert_eq!(
        write(&forge, "PUT", p, json!({"default_branch": "gone"}), 400)["message"],
        "Could not set the default branch"
    );

    write(&forge, "POST", &format!("{p}/labels"), json!({"name": "bug", "color": "red"}), 201);
    assert_eq!(
        write(&forge, "POST", &format!("{p}/labels"), json!({"name": "bug", "color": "#fff"}), 409),
        json!({"message": "Label already exists"})
    );
    assert_eq!(
        write(&forge, "POST", &format!("{p}/labels"), json!({"name": "x", "color": "reddish"}), 400),
        json!({"message": {"color": ["must be a valid color code"]}})
    );
    assert_eq!(read(&forge, &format!("{p}/labels"))[0]["color"], "#ff0000");
    write(&forge, "POST", &format!("{p}/milestones"), json!({"title": "v1"}), 201);
    let again = write(&forge, "POST", &format!("{p}/milestones"), json!({"title": "v1"}), 400);
    assert!(again["message"].as_str().expect("message").contains("already being used"), "{again}");
    assert_eq!(write(&forge, "POST", &format!("{p}/issues"), json!({}), 400), json!({"error": "title is missing"}));

    let missing = json!({"title": "t", "source_branch": "gone", "target_branch": "main"});
    assert_eq!(
        write(&forge, "POST", &format!("{p}/merge_requests"), missing, 400),
        json!({"message": {"source_branch": ["does not exist"]}})
    );
    let mr = json!({"title": "t", "source_branch": "fix", "target_branch": "main"});
    write(&forge, "POST", &format!("{p}/merge_requests"), mr.clone(), 201);
    assert_eq!(
        write(&forge, "POST", &format!("{p}/merge_requests"), mr, 409),
        json!({"message": ["Another open merge request already exists for this source branch: !1"]})
    );
    // A reply to a single note turns it into a thread, as on GitLab.
    write(&forge, "POST", &format!("{p}/merge_requests/1/notes"), json!({"body": "Single."}), 201);
    let single = read(&forge, &format!("{p}/merge_requests/1/discussions"))[0]["id"].as_str().expect("id").to_string();
    write(&forge, "POST", &format!("{p}/merge_requests/1/discussions/{single}/notes"), json!({"body": "Reply."}), 201);
    let threads = read(&forge, &format!("{p}/merge_requests/1/discussions"));
    assert_eq!((threads.as_array().map(Vec::len), threads[0]["individual_note"].as_bool()), (Some(1), Some(false)));
    assert_eq!(field(&threads[0]["notes"], "type"), ["DiscussionNote", "DiscussionNote"]);
    assert_eq!(
        write(&forge, "POST", &format!("{p}/merge_requests/1/notes"), json!({"body": " "}), 400),
        json!({"message": {"note": ["can't be blank"]}})
    );
    assert_eq!(
        write(&forge, "POST", &format!("{p}/merge_requests/9/notes"), json!({"body": "x"}), 404)["message"],
        "404 Merge Request Not Found"
    );

    write(&forge, "POST", &format!("{p}/releases"), json!({"tag_name": "v1.0"}), 201);
    assert_eq!(
        write(&forge, "POST", &format!("{p}/releases"), json!({"tag_name": "v1.0"}), 409),
        json!({"message": "Release already exists"})
    );
    assert_eq!(
        write(&forge, "POST", &format!("{p}/releases"), json!({"tag_name": "v2.0"}), 422)["message"],
        "Ref is not specified"
    );
    // With `ref`, the tag is created, as on GitLab.
    write(&forge, "POST", &format!("{p}/releases"), json!({"tag_name": "v2.0", "ref": "fix"}), 201);
    assert!(git_ok(&["ls-remote", &url], None).contains(&format!("{}\trefs/tags/v2.0", source.fix)));
    let link = json!({"name": "a", "url": "https://example.com/a"});
    write(&forge, "POST", &format!("{p}/releases/v1.0/assets/links"), link.clone(), 201);
    assert_eq!(
        write(&forge, "POST", &format!("{p}/releases/v1.0/assets/links"), link, 400),
        json!({"message": {"name": ["has already been taken"], "url": ["has already been taken"]}})
    );

    let denied = send("POST", &api(&forge, &format!("{p}/issues")), "readonly", Some(&json!({"title": "x"})));
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["error"], "insufficient_scope");
    assert_eq!(denied.json()["scope"], "api");
    let anonymous = send("POST", &api(&forge, &format!("{p}/issues")), "", Some(&json!({"title": "x"})));
    assert_eq!((anonymous.status, anonymous.json()), (401, json!({"message": "401 Unauthorized"})));
    assert_eq!(read(&forge, &format!("{p}/issues")).as_array().map(Vec::len), Some(0));
}

#[test]
fn gitlab_content_limit_refuses_writes_with_429_and_retry_after() {
    let forge = FakeForge::start();
    let mut world = world();
    world["faults"] = json!({"gitlab": {"writes": {"after": 1, "retry_after": 30}}});
    forge.write_world(&world);
    write(&forge, "POST", "/projects", json!({"name": "api"}), 201);
    let refused = send(
        "POST",
        &api(&forge, "/projects/alice%2Fapi/labels"),
        "good",
        Some(&json!({"name": "a", "color": "#fff"})),
    );
    assert_eq!((refused.status, refused.header("retry-after")), (429, Some("30")));
    assert!(refused.header("ratelimit-limit").is_some() && refused.header("ratelimit-reset").is_some());
    // A refused write changes nothing; reads go on.
    assert_eq!(read(&forge, "/projects/alice%2Fapi/labels").as_array().map(Vec::len), Some(0));
    let logged = writes(&forge, "api");
    assert_eq!(logged.iter().map(|r| r["status"].as_u64().unwrap_or_default()).collect::<Vec<_>>(), [201, 429]);
}

/// GitLab's git side refuses what GitLab refuses, so a restore's pushes can be tested against it.
#[test]
fn gitlab_push_refuses_merge_request_refs_and_read_only_tokens() {
    let forge = FakeForge::start();
    forge.write_world(&json!({
        "tokens": {"good": {"login": "alice"}, "readonly": {"login": "alice", "write": false}},
        "gitlab": {"groups": ["acme"], "projects": [{"namespace": "acme", "name": "api"}]},
    }));
    let source = SourceRepo::build(&forge.root().join("source.git"));
    let git_dir = source.dir.to_str().expect("utf-8 path");
    git_ok(&["--git-dir", git_dir, "update-ref", "refs/merge-requests/1/head", &source.fix], None);
    let clone = forge.clone_url(Gitlab, "acme", "api");
    let pushed = push(&source.dir, &["push", "--mirror", &with_credentials(&clone, "oauth2", "good")]);
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    assert!(stderr.contains("refs/merge-requests/1/head (deny updating a hidden ref)"), "{stderr}");
    let refs = git_ok(&["ls-remote", &with_credentials(&clone, "oauth2", "good")], None);
    assert!(refs.contains("refs/heads/fix") && refs.contains("refs/pull/1/head"), "GitLab has no refs/pull: {refs}");
    assert!(!refs.contains("refs/merge-requests/"), "{refs}");
    let refused = push(&source.dir, &["push", &with_credentials(&clone, "oauth2", "readonly"), "v1.0"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("You are not allowed to push code to this project."),
        "{stderr}"
    );
}
