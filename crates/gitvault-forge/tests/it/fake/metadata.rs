//! GitHub repository metadata on the fake forge: issues, pull requests, reviews, comments,
//! releases, branch protection, and the generator for large repositories.

use std::time::Duration;

use gitvault_forge::testing::{FakeForge, FakeForgeKind::Github};
use serde_json::{Value, json};

use super::{Answer, get, links};

const TOKEN: (&str, &str) = ("Authorization", "Bearer good");

fn world(repo: Value) -> Value {
    json!({
        "tokens": {"good": {"login": "alice"}, "writer": {"login": "bob"}},
        "github": {"accounts": {"acme": {"type": "Organization", "members": ["alice"]}}, "repos": [repo]},
    })
}

/// A repository with two issues, one pull request between them and comments on each.
fn tracker() -> Value {
    json!({
        "owner": "acme", "name": "api", "private": true,
        "collaborators": [{"login": "bob", "permission": "push"}],
        "labels": [{"name": "bug", "color": "d73a4a", "description": "Something isn't working"}],
        "milestones": [{"number": 1, "title": "v1", "due_on": "2024-06-01T00:00:00Z"}],
        "issues": [
            {"number": 1, "title": "Crash on start", "body": "It crashes.", "user": "bob", "labels": ["bug"],
             "milestone": 1, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
             "comments": [{"id": 101, "user": "alice", "body": "Confirmed.", "created_at": "2024-01-02T00:00:00Z"}]},
            {"number": 3, "title": "Old", "state": "closed", "state_reason": "not_planned",
             "created_at": "2023-06-01T00:00:00Z", "updated_at": "2023-06-02T00:00:00Z"},
        ],
        "pulls": [{
            "number": 2, "title": "Fix the crash", "user": "bob", "head": "fix", "base": "main",
            "created_at": "2024-01-03T00:00:00Z", "updated_at": "2024-01-03T00:00:00Z",
            "comments": [{"id": 102, "user": "alice", "body": "Thanks!", "created_at": "2024-01-04T00:00:00Z"}],
            "reviews": [{"id": 201, "user": "alice", "state": "CHANGES_REQUESTED", "body": "One nit.",
                         "submitted_at": "2024-01-04T01:00:00Z", "commit_id": "a".repeat(40)}],
            "review_comments": [
                {"id": 301, "user": "alice", "body": "Rename this.", "path": "src/main.rs", "position": 4, "line": 12,
                 "side": "RIGHT", "diff_hunk": "@@ -10,3 +10,4 @@\n fn main() {\n+    let x = 1;",
                 "commit_id": "a".repeat(40), "pull_request_review_id": 201,
                 "created_at": "2024-01-04T01:00:00Z"},
                {"id": 302, "user": "bob", "body": "Done.", "path": "src/main.rs", "position": 4, "line": 12,
                 "in_reply_to_id": 301, "created_at": "2024-01-05T00:00:00Z"},
            ],
        }],
    })
}

/// Every item of a listing, following `next` links; the answers too.
fn all_pages(first: &str) -> (Vec<Value>, Vec<Answer>) {
    let mut url = first.to_string();
    let (mut items, mut answers) = (Vec::new(), Vec::new());
    loop {
        let answer = get(&url, &[TOKEN]);
        assert_eq!(answer.status, 200, "{url}: {}", answer.body);
        items.extend(answer.json().as_array().expect("a JSON array").iter().cloned());
        let next = answer.header("link").and_then(|l| links(l).into_iter().find(|(rel, _)| rel == "next"));
        answers.push(answer);
        match next {
            Some((_, next)) => url = next,
            None => return (items, answers),
        }
    }
}

fn numbers(items: &[Value]) -> Vec<u64> {
    items.iter().map(|i| i["number"].as_u64().expect("number")).collect()
}

#[test]
fn github_issues_include_pull_requests_and_page_with_since() {
    let forge = FakeForge::start();
    forge.write_world(&world(tracker()));
    let api = format!("{}/repos/acme/api", forge.api_url(Github));

    // Anonymous callers do not learn that a private repository has issues.
    assert_eq!(get(&format!("{api}/issues"), &[]).status, 404);

    // Open by default, newest first; the pull request is an issue with `pull_request`.
    let (open, _) = all_pages(&format!("{api}/issues"));
    assert_eq!(numbers(&open), [2, 1]);
    assert_eq!(open[0]["pull_request"]["url"], format!("{api}/pulls/2"));
    assert_eq!(open[0]["html_url"], format!("{}/github/acme/api/pull/2", forge.base_url()));
    assert!(open[1].get("pull_request").is_none());
    assert_eq!(open[1]["labels"][0]["name"], "bug");
    assert_eq!(open[1]["milestone"]["open_issues"], 1);
    assert_eq!(open[1]["user"]["login"], "bob");
    assert_eq!(open[1]["author_association"], "COLLABORATOR");
    assert_eq!(open[1]["comments"], 1);
    // A comment is activity: it bumps the issue's updated_at.
    assert_eq!(open[1]["updated_at"], "2024-01-02T00:00:00Z");

    // One item a page, oldest update first, only what changed at or after `since`.
    let since = format!("{api}/issues?state=all&since=2024-01-02T00:00:00Z&sort=updated&direction=asc&per_page=1");
    let (recent, answers) = all_pages(&since);
    assert_eq!(numbers(&recent), [1, 2]);
    assert_eq!(answers.len(), 2);
    let rels: Vec<_> = links(answers[0].header("link").expect("Link")).into_iter().map(|(rel, _)| rel).collect();
    assert_eq!(rels, ["next", "last"]);

    let (all, _) = all_pages(&format!("{api}/issues?state=all"));
    assert_eq!(numbers(&all), [2, 1, 3]);
    assert_eq!(all[2]["state_reason"], "not_planned");
    assert_eq!(get(&format!("{api}/issues?since=yesterday"), &[TOKEN]).status, 422);

    // Pull requests alone, and one in full.
    let (pulls, _) = all_pages(&format!("{api}/pulls"));
    assert_eq!(numbers(&pulls), [2]);
    assert_eq!(pulls[0]["head"]["ref"], "fix");
    assert_eq!(pulls[0]["base"]["repo"]["full_name"], "acme/api");
    let pull = get(&format!("{api}/pulls/2"), &[TOKEN]).json();
    assert_eq!((pull["merged"].clone(), pull["review_comments"].clone()), (json!(false), json!(2)));
    assert_eq!(get(&format!("{api}/pulls/1"), &[TOKEN]).status, 404);

    // Comments of the repository, of one issue, and one comment.
    let (comments, _) = all_pages(&format!("{api}/issues/comments"));
    let ids: Vec<_> = comments.iter().map(|c| c["id"].as_u64().expect("id")).collect();
    assert_eq!(ids, [101, 102]);
    assert_eq!(comments[1]["issue_url"], format!("{api}/issues/2"));
    let (of_one, _) = all_pages(&format!("{api}/issues/1/comments"));
    assert_eq!(of_one.len(), 1);
    assert_eq!(get(&format!("{api}/issues/comments/102"), &[TOKEN]).json()["body"], "Thanks!");
}

#[test]
fn github_metadata_etag_answers_304_until_the_world_changes() {
    let forge = FakeForge::start();
    let mut repo = tracker();
    forge.write_world(&world(repo.clone()));
    let comments = format!("{}/repos/acme/api/issues/comments", forge.api_url(Github));
    let first = get(&comments, &[TOKEN]);
    let etag = first.header("etag").expect("ETag").to_string();
    let modified = first.header("last-modified").expect("Last-Modified").to_string();
    assert_eq!(modified, "Thu, 04 Jan 2024 00:00:00 GMT");
    let used = first.header("x-ratelimit-used").expect("used").to_string();

    let again = get(&comments, &[TOKEN, ("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("x-ratelimit-used"), Some(used.as_str()), "a 304 is not counted");
    assert_eq!(get(&comments, &[TOKEN, ("If-Modified-Since", &modified)]).status, 304);
    // The same content gives the same ETag, even after an unrelated rewrite of the world.
    repo["description"] = json!("unrelated");
    forge.write_world(&world(repo.clone()));
    assert_eq!(get(&comments, &[TOKEN]).header("etag"), Some(etag.as_str()));

    // Editing a comment changes the list, its ETag and Last-Modified, and `since` finds it.
    repo["issues"][0]["comments"][0]["body"] = json!("Confirmed on 1.2 too.");
    repo["issues"][0]["comments"][0]["updated_at"] = json!("2024-02-01T00:00:00Z");
    forge.write_world(&world(repo.clone()));
    let edited = get(&comments, &[TOKEN, ("If-None-Match", &etag)]);
    assert_eq!(edited.status, 200);
    assert_ne!(edited.header("etag"), Some(etag.as_str()));
    assert_eq!(edited.header("last-modified"), Some("Thu, 01 Feb 2024 00:00:00 GMT"));
    assert_eq!(get(&comments, &[TOKEN, ("If-Modified-Since", &modified)]).status, 200);
    let changed = get(&format!("{comments}?since=2024-01-15T00:00:00Z"), &[TOKEN]).json();
    assert_eq!(changed.as_array().expect("array").len(), 1);
    assert_eq!(changed[0]["body"], "Confirmed on 1.2 too.");

    // A new comment on an old issue bumps the issue; closing, reopening and deleting show.
    let issues = format!("{}/repos/acme/api/issues", forge.api_url(Github));
    repo["issues"][1]["comments"] = json!([{"id": 103, "body": "Still seen.", "created_at": "2024-03-01T00:00:00Z"}]);
    repo["issues"][1]["state"] = json!("open");
    repo["issues"][0]["state"] = json!("closed");
    repo["issues"][0]["updated_at"] = json!("2024-03-02T00:00:00Z");
    forge.write_world(&world(repo.clone()));
    let open = get(&format!("{issues}?since=2024-02-15T00:00:00Z"), &[TOKEN]).json();
    assert_eq!(numbers(open.as_array().expect("array")), [3]);
    assert_eq!(open[0]["updated_at"], "2024-03-01T00:00:00Z");
    let closed = get(&format!("{issues}?state=closed"), &[TOKEN]).json();
    assert_eq!(numbers(closed.as_array().expect("array")), [1]);
    assert_eq!(closed[0]["closed_at"], "2024-03-02T00:00:00Z");
    repo["issues"].as_array_mut().expect("issues").remove(0);
    forge.write_world(&world(repo));
    assert_eq!(get(&format!("{issues}/1"), &[TOKEN]).status, 404);
}

#[test]
fn github_review_comments_of_a_pull_request_carry_their_position() {
    let forge = FakeForge::start();
    forge.write_world(&world(tracker()));
    let api = format!("{}/repos/acme/api", forge.api_url(Github));
    let (comments, _) = all_pages(&format!("{api}/pulls/2/comments"));
    assert_eq!(comments.len(), 2);
    let first = &comments[0];
    assert_eq!(first["id"], 301);
    assert_eq!(first["path"], "src/main.rs");
    assert_eq!((first["position"].clone(), first["original_position"].clone()), (json!(4), json!(4)));
    assert_eq!((first["line"].clone(), first["side"].clone()), (json!(12), json!("RIGHT")));
    assert_eq!(first["diff_hunk"], "@@ -10,3 +10,4 @@\n fn main() {\n+    let x = 1;");
    assert_eq!(first["commit_id"], "a".repeat(40));
    assert_eq!(first["pull_request_review_id"], 201);
    assert_eq!(first["pull_request_url"], format!("{api}/pulls/2"));
    assert!(first.get("in_reply_to_id").is_none(), "only replies carry in_reply_to_id");
    assert_eq!(comments[1]["in_reply_to_id"], 301);

    let (reviews, _) = all_pages(&format!("{api}/pulls/2/reviews"));
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["state"], "CHANGES_REQUESTED");
    assert_eq!(reviews[0]["submitted_at"], "2024-01-04T01:00:00Z");

    let since = get(&format!("{api}/pulls/comments?since=2024-01-04T12:00:00Z"), &[TOKEN]).json();
    assert_eq!(since.as_array().expect("array").len(), 1);
    assert_eq!(since[0]["id"], 302);
}

#[test]
fn github_release_asset_downloads_through_the_redirect_with_exact_bytes() {
    let forge = FakeForge::start();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    forge.write_file("assets/tool.tar.gz", &bytes);
    let mut repo = tracker();
    repo["releases"] = json!([{"id": 7, "tag_name": "v1.0", "name": "One", "author": "alice",
        "created_at": "2024-01-10T00:00:00Z",
        "assets": [{"id": 70, "name": "tool.tar.gz", "content_type": "application/gzip", "file": "assets/tool.tar.gz"},
                   {"id": 71, "name": "notes.txt", "text": "hello"}]}]);
    forge.write_world(&world(repo));
    let api = format!("{}/repos/acme/api", forge.api_url(Github));

    let (releases, _) = all_pages(&format!("{api}/releases"));
    assert_eq!(releases[0]["tag_name"], "v1.0");
    let asset = &releases[0]["assets"][0];
    assert_eq!(asset["size"], bytes.len());
    assert_eq!(asset["content_type"], "application/gzip");
    assert!(asset["digest"].as_str().expect("digest").starts_with("sha256:"));

    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let asset_url = format!("{api}/releases/assets/70");
    let anonymous = no_redirects.get(&asset_url).header("Accept", "application/octet-stream").send().expect("GET");
    assert_eq!(anonymous.status().as_u16(), 404, "a private repository's asset needs the token");
    let redirect = no_redirects
        .get(&asset_url)
        .header("Accept", "application/octet-stream")
        .header(TOKEN.0, TOKEN.1)
        .send()
        .expect("GET");
    assert_eq!(redirect.status().as_u16(), 302);
    let location = redirect.headers()["location"].to_str().expect("ASCII").to_string();
    let browser_url = asset["browser_download_url"].as_str().expect("browser_download_url");
    assert!(location.starts_with(browser_url), "{location}");

    // The signed location works without the token, like GitHub's storage URLs; the plain one
    // does not for a private repository.
    let download = no_redirects.get(&location).send().expect("GET");
    assert_eq!(download.status().as_u16(), 200);
    assert_eq!(download.bytes().expect("body").as_ref(), bytes.as_slice());
    assert_eq!(no_redirects.get(browser_url).send().expect("GET").status().as_u16(), 404);

    // A client that follows redirects gets the bytes in one call; JSON without the Accept.
    let followed = reqwest::blocking::Client::new()
        .get(format!("{api}/releases/assets/71"))
        .header("Accept", "application/octet-stream")
        .header(TOKEN.0, TOKEN.1)
        .send()
        .expect("GET");
    assert_eq!(followed.text().expect("text"), "hello");
    assert_eq!(get(&asset_url, &[TOKEN]).json()["name"], "tool.tar.gz");
    assert!(forge.requests().iter().any(|r| r["kind"] == "download" && r["status"] == 200));
}

#[test]
fn github_branch_protection_is_404_when_unprotected_and_403_without_admin() {
    let forge = FakeForge::start();
    let mut repo = tracker();
    repo["protection"] = json!({"main": {"enforce_admins": true,
        "required_status_checks": {"strict": true, "contexts": ["ci"]},
        "required_pull_request_reviews": {"required_approving_review_count": 2}}});
    forge.write_world(&world(repo));
    let api = format!("{}/repos/acme/api", forge.api_url(Github));

    let protected = get(&format!("{api}/branches/main/protection"), &[TOKEN]);
    assert_eq!(protected.status, 200, "{}", protected.body);
    let body = protected.json();
    assert_eq!(body["required_status_checks"]["contexts"], json!(["ci"]));
    assert_eq!(body["enforce_admins"]["enabled"], true);
    assert_eq!(body["required_pull_request_reviews"]["required_approving_review_count"], 2);
    assert_eq!(body["allow_force_pushes"]["enabled"], false);

    let fix = get(&format!("{api}/branches/fix/protection"), &[TOKEN]);
    assert_eq!(fix.status, 404);
    assert_eq!(fix.json()["message"], "Branch not protected");
    // bob is a collaborator with push: no admin rights.
    let writer = get(&format!("{api}/branches/main/protection"), &[("Authorization", "Bearer writer")]);
    assert_eq!(writer.status, 403);
    assert_eq!(writer.json()["message"], "Must have admin rights to Repository.");
    let collaborators = get(&format!("{api}/collaborators?affiliation=direct"), &[("Authorization", "Bearer writer")]);
    assert_eq!(collaborators.json()[0]["role_name"], "write");
}

#[test]
fn github_generator_lists_5000_issues_over_50_pages_and_touch_marks_changes() {
    let forge = FakeForge::start();
    let generate = json!({"issues": 5000, "comments": 20000, "seed": 1, "updated_base": "2024-01-01T00:00:00Z"});
    let mut repo = json!({"owner": "acme", "name": "big", "generate": generate});
    forge.write_world(&world(repo.clone()));
    let api = format!("{}/repos/acme/big", forge.api_url(Github));

    let started = std::time::Instant::now();
    let (issues, answers) = all_pages(&format!("{api}/issues?state=all&per_page=100"));
    let elapsed = started.elapsed();
    assert_eq!(answers.len(), 50);
    let mut seen = numbers(&issues);
    seen.sort_unstable();
    assert_eq!(seen, (1..=5000).collect::<Vec<_>>());
    assert!(elapsed < Duration::from_secs(20), "50 pages took {elapsed:?}");
    let comment_total: u64 = issues.iter().map(|i| i["comments"].as_u64().expect("comments")).sum();
    assert_eq!(comment_total, 20000);

    // Deterministic: the same world gives the same pages.
    let again = get(&format!("{api}/issues?state=all&per_page=100&page=7"), &[TOKEN]);
    assert_eq!(again.header("etag"), answers[6].header("etag"));

    // Touched items are the only ones updated since the generated range, with an edited comment.
    repo["generate"]["touch"] = json!([17, 4000]);
    repo["generate"]["touched_at"] = json!("2025-01-01T00:00:00Z");
    forge.write_world(&world(repo));
    let touched = get(&format!("{api}/issues?state=all&since=2024-12-01T00:00:00Z"), &[TOKEN]).json();
    let mut touched = numbers(touched.as_array().expect("array"));
    touched.sort_unstable();
    assert_eq!(touched, [17, 4000]);
    let edited = get(&format!("{api}/issues/comments?since=2024-12-01T00:00:00Z"), &[TOKEN]).json();
    let on: Vec<_> = edited.as_array().expect("array").iter().map(|c| c["issue_url"].as_str().unwrap_or("")).collect();
    assert!(on.iter().all(|url| url.ends_with("/issues/17") || url.ends_with("/issues/4000")), "{on:?}");
    assert!(!on.is_empty());
}
