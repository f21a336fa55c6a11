//! The fake forge through its launcher, with real git and plain HTTP: what forge clients will be
//! tested against must itself behave like the forges.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gitvault_forge::testing::{FakeForge, FakeForgeKind};
use serde_json::{Value, json};

use FakeForgeKind::{Bitbucket, Gitea, Github, Gitlab};

mod gitea_write;
mod github_write;
mod gitlab_metadata;
mod gitlab_write;
mod metadata;
mod write_support;

/// One answer, its headers lower-cased.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let mut request = client.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = response.text().expect("body");
    Answer { status, headers, body }
}

/// The `rel` targets of a Link header, in order.
/// Accepts `, ` (GitHub, GitLab) and a bare `,` (Gitea) between links.
fn links(link: &str) -> Vec<(String, String)> {
    link.split(',')
        .map(str::trim)
        .map(|part| {
            let (url, rel) = part.split_once("; rel=").expect("link part");
            (rel.trim_matches('"').to_string(), url.trim_matches(['<', '>']).to_string())
        })
        .collect()
}

fn git(args: &[&str], cwd: Option<&Path>) -> Output {
    let mut command = Command::new("git");
    command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com");
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command.output().expect("run git")
}

fn git_ok(args: &[&str], cwd: Option<&Path>) -> String {
    let out = git(args, cwd);
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository at `dir` with one commit on `main` holding `content`; returns the commit.
fn make_repo(dir: &Path, content: &str) -> String {
    let dir = dir.to_str().expect("utf-8 path");
    git_ok(&["init", "-q", "--bare", "-b", "main", dir], None);
    let blob = git_stdin(dir, &["hash-object", "-w", "--stdin"], content);
    let tree = git_stdin(dir, &["mktree"], &format!("100644 blob {blob}\tREADME\n"));
    let commit = git_ok(&["--git-dir", dir, "commit-tree", &tree, "-m", "first"], None);
    git_ok(&["--git-dir", dir, "update-ref", "refs/heads/main", &commit], None);
    commit
}

/// Run git in the repository `git_dir` with `input` on its standard input; its output, trimmed.
fn git_stdin(git_dir: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run git");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write to git");
    let out = child.wait_with_output().expect("git output");
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `url` with `user:password@` after the scheme.
fn with_credentials(url: &str, user: &str, password: &str) -> String {
    url.replacen("http://", &format!("http://{user}:{password}@"), 1)
}

fn ls_remote(url: &str) -> Output {
    git(&["ls-remote", url], None)
}

fn listing_requests(forge: &FakeForge, path: &str) -> usize {
    forge.requests().iter().filter(|r| r["kind"] == "api" && r["path"] == path).count()
}

fn github_world(repos: Vec<Value>) -> Value {
    json!({
        "tokens": {
            "good": {"login": "alice", "deny": ["github:acme/secret"]},
            "old": {"login": "alice", "expired": true},
        },
        "github": {"accounts": {"acme": {"type": "Organization", "members": ["alice"]}}, "repos": repos},
    })
}

#[test]
fn github_lists_an_org_of_250_repos_over_3_pages_following_link() {
    let forge = FakeForge::start();
    let repos = (0..250).map(|i| json!({"owner": "acme", "name": format!("r{i:03}"), "private": i % 2 == 0})).collect();
    forge.write_world(&github_world(repos));
    let mut url = format!("{}/orgs/acme/repos?type=all&per_page=100", forge.api_url(Github));
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let answer = get(&url, &[("Authorization", "Bearer good")]);
        assert_eq!(answer.status, 200, "{}", answer.body);
        pages += 1;
        for repo in answer.json().as_array().expect("array") {
            names.push(repo["full_name"].as_str().expect("full_name").to_string());
            assert!(repo["clone_url"].as_str().expect("clone_url").starts_with(&forge.base_url()));
        }
        let link = answer.header("link").expect("Link header on every page of three").to_string();
        let rels = links(&link);
        let rel_names: Vec<_> = rels.iter().map(|(rel, _)| rel.as_str()).collect();
        match pages {
            1 => assert_eq!(rel_names, ["next", "last"]),
            2 => assert_eq!(rel_names, ["prev", "next", "last", "first"]),
            _ => assert_eq!(rel_names, ["prev", "first"]),
        }
        for (_, target) in &rels {
            assert!(target.contains("type=all") && target.contains("per_page=100"), "{target}");
        }
        match rels.into_iter().find(|(rel, _)| rel == "next") {
            Some((_, next)) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 250);
    assert_eq!(listing_requests(&forge, "/github/api/v3/orgs/acme/repos"), 3);

    // Anonymous: only the 125 public ones, 30 a page by default.
    let answer = get(&format!("{}/orgs/acme/repos", forge.api_url(Github)), &[]);
    assert_eq!(answer.json().as_array().expect("array").len(), 30);
    let last = links(answer.header("link").expect("link")).into_iter().find(|(rel, _)| rel == "last").expect("last");
    assert!(last.1.ends_with("page=5"), "{}", last.1);
}

#[test]
fn github_private_repo_clones_with_a_token_and_challenges_anonymous_git() {
    let forge = FakeForge::start();
    forge.write_world(&github_world(vec![json!({"owner": "acme", "name": "api", "private": true})]));
    let commit = make_repo(&forge.git_dir(Github, "acme", "api"), "hello");
    let url = forge.clone_url(Github, "acme", "api");

    let anonymous = ls_remote(&url);
    assert!(!anonymous.status.success());
    let refs = get(&format!("{url}/info/refs?service=git-upload-pack"), &[]);
    assert_eq!(refs.status, 401);
    assert_eq!(refs.header("www-authenticate"), Some("Basic realm=\"GitHub\""));
    let bad = ls_remote(&with_credentials(&url, "x-access-token", "old"));
    assert!(!bad.status.success());

    let listed = git_ok(&["ls-remote", &with_credentials(&url, "x-access-token", "good")], None);
    assert!(listed.contains(&format!("{commit}\trefs/heads/main")), "{listed}");
    let bearer = git_ok(&["-c", "http.extraHeader=Authorization: Bearer good", "ls-remote", &url], None);
    assert!(bearer.contains(&commit));

    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("clone");
    git_ok(&["clone", "-q", &with_credentials(&url, "x-access-token", "good"), dest.to_str().expect("utf-8")], None);
    assert_eq!(std::fs::read_to_string(dest.join("README")).expect("README"), "hello");
    let git_requests: Vec<_> = forge.requests().into_iter().filter(|r| r["kind"] == "git").collect();
    assert!(git_requests.iter().any(|r| r["status"] == 401 && r["token"] == false));
    assert!(git_requests.iter().any(|r| r["method"] == "POST" && r["status"] == 200 && r["token"] == true));
    let log = std::fs::read_to_string(forge.root().join("requests.jsonl")).expect("log");
    assert!(!log.contains("good"), "the request log must not hold tokens");
}

#[test]
fn github_denied_repo_is_not_found_for_api_and_git() {
    let forge = FakeForge::start();
    forge.write_world(&github_world(vec![
        json!({"owner": "acme", "name": "api", "private": true}),
        json!({"owner": "acme", "name": "secret", "private": true}),
    ]));
    make_repo(&forge.git_dir(Github, "acme", "secret"), "s");
    let api = forge.api_url(Github);
    let answer = get(&format!("{api}/repos/acme/secret"), &[("Authorization", "token good")]);
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["message"], "Not Found");
    let listed = get(&format!("{api}/orgs/acme/repos"), &[("Authorization", "token good")]).json();
    let names: Vec<_> = listed.as_array().expect("array").iter().map(|r| r["name"].clone()).collect();
    assert_eq!(names, [json!("api")]);
    let url = with_credentials(&forge.clone_url(Github, "acme", "secret"), "x-access-token", "good");
    let out = ls_remote(&url);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{}", String::from_utf8_lossy(&out.stderr));

    let expired = get(&format!("{api}/orgs/acme/repos"), &[("Authorization", "Bearer old")]);
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json()["message"], "Bad credentials");
    assert_eq!(expired.json()["status"], "401");
}

#[test]
fn github_etag_answers_304_without_counting_against_the_limit() {
    let forge = FakeForge::start();
    forge.write_world(&github_world(vec![json!({"owner": "acme", "name": "api"})]));
    let url = format!("{}/repos/acme/api", forge.api_url(Github));
    let first = get(&url, &[("Authorization", "Bearer good")]);
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("ETag").to_string();
    let used = first.header("x-ratelimit-used").expect("used").to_string();
    assert_eq!(first.header("x-github-media-type"), Some("github.v3; format=json"));
    assert!(first.header("cache-control").expect("Cache-Control").starts_with("private"));
    let again = get(&url, &[("Authorization", "Bearer good"), ("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("x-ratelimit-used"), Some(used.as_str()));
    assert_eq!(again.header("etag"), Some(etag.as_str()));

    // A changed world changes the answer and its ETag, even when rewritten at once.
    forge.write_world(&github_world(vec![json!({"owner": "acme", "name": "api", "description": "new"})]));
    let changed = get(&url, &[("Authorization", "Bearer good"), ("If-None-Match", &etag)]);
    assert_eq!(changed.status, 200);
    assert_eq!(changed.json()["description"], "new");
}

#[test]
fn github_rate_limit_fault_answers_403_until_the_reset() {
    let forge = FakeForge::start();
    let mut world = github_world(vec![json!({"owner": "acme", "name": "api"})]);
    world["faults"] = json!({"github": {"rate_limit": {"after": 2, "reset_seconds": 1}}});
    forge.write_world(&world);
    let url = format!("{}/orgs/acme/repos", forge.api_url(Github));
    for remaining in ["1", "0"] {
        let answer = get(&url, &[("Authorization", "Bearer good")]);
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-ratelimit-remaining"), Some(remaining));
    }
    let limited = get(&url, &[("Authorization", "Bearer good")]);
    assert_eq!(limited.status, 403);
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(limited.json()["message"], "API rate limit exceeded for user ID 1.");
    let reset: u64 = limited.header("x-ratelimit-reset").expect("reset").parse().expect("epoch seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    assert!(reset >= now && reset <= now + 2, "reset {reset}, now {now}");
    std::thread::sleep(Duration::from_millis(1100));
    while get(&url, &[("Authorization", "Bearer good")]).status == 403 {
        std::thread::sleep(Duration::from_millis(100));
    }

    // Secondary limit: once, with Retry-After; injected errors: as many times as asked.
    world["faults"] = json!({"github": {
        "secondary": {"after": 1, "retry_after": 3},
        "errors": [{"path": "/repos/acme/api$", "status": 502, "times": 2}],
    }});
    forge.write_world(&world);
    assert_eq!(get(&url, &[]).status, 200);
    let secondary = get(&url, &[]);
    assert_eq!(secondary.status, 403);
    assert_eq!(secondary.header("retry-after"), Some("3"));
    assert_eq!(get(&url, &[]).status, 200);
    let repo = format!("{}/repos/acme/api", forge.api_url(Github));
    let statuses: Vec<_> = (0..3).map(|_| get(&repo, &[]).status).collect();
    assert_eq!(statuses, [502, 502, 200]);
}

#[test]
fn github_user_endpoints_follow_the_token() {
    let forge = FakeForge::start();
    forge.write_world(&github_world(vec![
        json!({"owner": "alice", "name": "dots", "private": true}),
        json!({"owner": "acme", "name": "api", "private": true}),
        json!({"owner": "bob", "name": "shared", "private": true, "collaborators": ["alice"]}),
        json!({"owner": "bob", "name": "other", "private": true}),
    ]));
    let api = forge.api_url(Github);
    let auth = [("Authorization", "Bearer good")];
    let me = get(&format!("{api}/user"), &auth).json();
    assert_eq!(me["login"], "alice");
    assert_eq!(me["type"], "User");
    assert_eq!(get(&format!("{api}/user"), &[]).status, 401);
    let names = |query: &str| -> Vec<String> {
        let list = get(&format!("{api}/user/repos{query}"), &auth).json();
        list.as_array().expect("array").iter().map(|r| r["full_name"].as_str().expect("name").to_string()).collect()
    };
    assert_eq!(names(""), ["acme/api", "alice/dots", "bob/shared"]);
    assert_eq!(names("?affiliation=owner"), ["alice/dots"]);
    assert_eq!(get(&format!("{api}/users/acme"), &[]).json()["type"], "Organization");
    assert_eq!(get(&format!("{api}/orgs/alice"), &[]).status, 404);
    // Public listing of a user: public repositories only.
    assert_eq!(get(&format!("{api}/users/alice/repos"), &auth).json(), json!([]));
}

/// Follow `rel="next"` from `url`; the names (by `name_field`) of every item and the pages.
fn follow_link_pages(url: &str, headers: &[(&str, &str)], name_field: &str) -> (Vec<String>, Vec<Answer>) {
    let mut url = url.to_string();
    let mut names = Vec::new();
    let mut pages = Vec::new();
    loop {
        let answer = get(&url, headers);
        assert_eq!(answer.status, 200, "{url}: {}", answer.body);
        for item in answer.json().as_array().expect("array") {
            names.push(item[name_field].as_str().expect("name").to_string());
        }
        let next = answer.header("link").and_then(|l| links(l).into_iter().find(|(rel, _)| rel == "next"));
        pages.push(answer);
        match next {
            Some((_, next)) => url = next,
            None => return (names, pages),
        }
    }
}

#[test]
fn gitlab_lists_a_group_with_subgroups_and_clones_with_oauth2_token() {
    let forge = FakeForge::start();
    let mut projects: Vec<Value> = (0..30)
        .map(|i| json!({"namespace": "acme/sub", "name": format!("p{i:02}"), "visibility": "private"}))
        .collect();
    projects.push(json!({"namespace": "acme", "name": "top", "visibility": "public", "forked_from": "acme/sub/p00"}));
    projects.push(json!({"namespace": "acme/sub/deep", "name": "hidden", "visibility": "internal"}));
    projects.push(json!({"namespace": "other", "name": "x"}));
    projects.push(json!({"namespace": "bob", "name": "mine", "visibility": "private"}));
    forge.write_world(&json!({
        "tokens": {"glpat": {"login": "bob", "deny": ["gitlab:acme/sub/deep/*"]}},
        "gitlab": {"groups": ["acme", "acme/sub"], "users": ["bob"], "projects": projects},
    }));
    let api = forge.api_url(Gitlab);
    let auth = [("PRIVATE-TOKEN", "glpat")];
    let url = format!("{api}/groups/acme/projects?include_subgroups=true&per_page=20");
    let (mut names, pages) = follow_link_pages(&url, &auth, "path_with_namespace");
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].header("x-total"), Some("31"));
    assert_eq!(pages[0].header("x-total-pages"), Some("2"));
    assert_eq!(pages[0].header("x-next-page"), Some("2"));
    assert_eq!(pages[1].header("x-next-page"), Some(""));
    assert!(pages[0].header("ratelimit-remaining").is_some());
    names.sort();
    assert_eq!(names.len(), 31);
    assert!(names.contains(&"acme/top".to_string()) && !names.iter().any(|n| n.contains("hidden")));
    // Without include_subgroups: the group's own projects only; anonymous: public ones only.
    let direct = get(&format!("{api}/groups/acme/projects"), &auth).json();
    assert_eq!(direct.as_array().expect("array").len(), 1);
    assert_eq!(direct[0]["forked_from_project"]["path_with_namespace"], "acme/sub/p00");
    assert_eq!(direct[0]["namespace"]["kind"], "group");
    let anonymous = get(&format!("{api}/groups/acme%2Fsub/projects"), &[]);
    assert_eq!(anonymous.json(), json!([]));
    assert_eq!(get(&format!("{api}/groups/acme%2Fsub"), &[]).json()["full_path"], "acme/sub");

    let project = get(&format!("{api}/projects/acme%2Fsub%2Fp03"), &[("Authorization", "Bearer glpat")]).json();
    assert_eq!(project["path_with_namespace"], "acme/sub/p03");
    assert_eq!(project["empty_repo"], true);
    let by_id = get(&format!("{api}/projects/{}", project["id"]), &auth).json();
    assert_eq!(by_id["id"], project["id"]);
    assert_eq!(
        get(&format!("{api}/projects/acme%2Fsub%2Fp03"), &[]).json(),
        json!({"message": "404 Project Not Found"})
    );
    let unauthorized = get(&format!("{api}/projects/acme%2Ftop"), &[("PRIVATE-TOKEN", "nope")]);
    assert_eq!((unauthorized.status, unauthorized.json()), (401, json!({"message": "401 Unauthorized"})));
    let users = get(&format!("{api}/users?username=bob"), &[]).json();
    let mine = get(&format!("{api}/users/{}/projects", users[0]["id"]), &auth).json();
    assert_eq!(mine[0]["path_with_namespace"], "bob/mine");
    assert_eq!(mine[0]["namespace"]["kind"], "user");

    let commit = make_repo(&forge.git_dir(Gitlab, "acme/sub", "p03"), "gitlab");
    make_repo(&forge.git_dir(Gitlab, "acme/sub", "p03.wiki"), "wiki");
    let clone = project["http_url_to_repo"].as_str().expect("http_url_to_repo");
    assert_eq!(clone, forge.clone_url(Gitlab, "acme/sub", "p03"));
    assert!(!ls_remote(clone).status.success());
    let listed = git_ok(&["ls-remote", &with_credentials(clone, "oauth2", "glpat")], None);
    assert!(listed.contains(&commit));
    let wiki = clone.replace(".git", ".wiki.git");
    assert!(git_ok(&["ls-remote", &with_credentials(&wiki, "oauth2", "glpat")], None).contains("refs/heads/main"));
    let refused = get(&format!("{clone}/info/refs?service=git-upload-pack"), &[]);
    assert_eq!(refused.header("www-authenticate"), Some("Basic realm=\"GitLab\""));
}

#[test]
fn gitea_lists_with_limit_and_total_count_and_clones_with_token() {
    let forge = FakeForge::start();
    let repos: Vec<Value> =
        (0..60).map(|i| json!({"owner": "acme", "name": format!("r{i:02}"), "private": i < 10})).collect();
    forge.write_world(&json!({
        "tokens": {"tea": {"login": "alice"}},
        "gitea": {"orgs": [{"name": "acme", "members": ["alice"]}], "users": ["alice"], "repos": repos},
    }));
    let api = forge.api_url(Gitea);
    let auth = [("Authorization", "token tea")];
    // limit is capped at 50, as on Gitea.
    let (names, pages) = follow_link_pages(&format!("{api}/orgs/acme/repos?limit=100"), &auth, "full_name");
    assert_eq!(names.len(), 60);
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].header("x-total-count"), Some("60"));
    let anonymous = get(&format!("{api}/orgs/acme/repos?limit=50&page=1"), &[]);
    assert_eq!(anonymous.header("x-total-count"), Some("50"));
    assert_eq!(get(&format!("{api}/user/repos?limit=50&page=2"), &auth).json().as_array().expect("array").len(), 10);
    assert_eq!(get(&format!("{api}/users/acme"), &[]).json()["login"], "acme");
    assert_eq!(get(&format!("{api}/orgs/acme"), &[]).json()["username"], "acme");
    let missing = get(&format!("{api}/repos/acme/r00"), &[]);
    assert_eq!(missing.status, 404);
    assert!(missing.json()["message"].is_string() && missing.json()["url"].is_string());
    let bad = get(&format!("{api}/repos/acme/r00"), &[("Authorization", "token nope")]);
    assert_eq!(bad.status, 401);

    let repo = get(&format!("{api}/repos/acme/r00"), &auth).json();
    assert_eq!(repo["private"], true);
    let clone = repo["clone_url"].as_str().expect("clone_url");
    let commit = make_repo(&forge.git_dir(Gitea, "acme", "r00"), "gitea");
    assert!(!ls_remote(clone).status.success());
    assert!(git_ok(&["ls-remote", &with_credentials(clone, "alice", "tea")], None).contains(&commit));
    assert_eq!(get(&format!("{api}/repos/acme/r00"), &auth).json()["empty"], false);
}

#[test]
fn bitbucket_lists_by_next_and_clones_with_token_or_api_token() {
    let forge = FakeForge::start();
    let repos: Vec<Value> =
        (0..25).map(|i| json!({"workspace": "team", "slug": format!("r{i:02}"), "is_private": true})).collect();
    forge.write_world(&json!({
        "tokens": {"bbtoken": {"login": "team-bot", "deny": ["bitbucket:team/r24"]}},
        "bitbucket_users": {"carol": "ATATT-carol"},
        "bitbucket": {"workspaces": ["team"], "repos": repos},
        "faults": {"bitbucket": {"rate_limit": {"after": 3, "reset_seconds": 1}}},
    }));
    let api = forge.api_url(Bitbucket);
    let auth = [("Authorization", "Bearer bbtoken")];
    let mut url = format!("{api}/repositories/team?pagelen=10");
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let page = get(&url, &auth).json();
        pages += 1;
        assert_eq!(page["size"], 24);
        assert_eq!(page["pagelen"], 10);
        for repo in page["values"].as_array().expect("values") {
            names.push(repo["full_name"].as_str().expect("full_name").to_string());
        }
        match page["next"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!((pages, names.len()), (3, 24));
    let limited = get(&format!("{api}/repositories/team/r00"), &auth);
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(limited.json()["type"], "error");
    std::thread::sleep(Duration::from_millis(1100));
    let mut repo = get(&format!("{api}/repositories/team/r00"), &auth);
    while repo.status == 429 {
        std::thread::sleep(Duration::from_millis(100));
        repo = get(&format!("{api}/repositories/team/r00"), &auth);
    }
    let repo = repo.json();
    assert_eq!(repo["mainbranch"]["name"], "main");
    let clone = repo["links"]["clone"]
        .as_array()
        .expect("clone links")
        .iter()
        .find(|l| l["name"] == "https")
        .expect("https clone link")["href"]
        .as_str()
        .expect("href")
        .to_string();
    assert_eq!(clone, forge.clone_url(Bitbucket, "team", "r00"));
    let commit = make_repo(&forge.git_dir(Bitbucket, "team", "r00"), "bitbucket");
    assert!(!ls_remote(&clone).status.success());
    assert!(git_ok(&["ls-remote", &with_credentials(&clone, "x-token-auth", "bbtoken")], None).contains(&commit));
    assert!(git_ok(&["ls-remote", &with_credentials(&clone, "carol", "ATATT-carol")], None).contains(&commit));
    assert!(!ls_remote(&with_credentials(&clone, "carol", "wrong")).status.success());
    let basic = get(&format!("{api}/repositories/team/r24"), &[("Authorization", "Basic Y2Fyb2w6QVRBVFQtY2Fyb2w=")]);
    assert_eq!(basic.status, 200, "carol's API token sees what bbtoken may not");
    let hidden = get(&format!("{api}/repositories/team/r24"), &auth);
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.json()["error"]["message"], "Repository team/r24 not found");
}

#[test]
fn world_rewrites_take_effect_and_pushes_create_listed_repositories() {
    let forge = FakeForge::start();
    let world =
        |repos: Value| json!({"tokens": {"t": {"login": "alice"}}, "gitea": {"orgs": ["acme"], "repos": repos}});
    forge.write_world(&world(json!([{"owner": "acme", "name": "a"}, {"owner": "acme", "name": "b"}])));
    let api = forge.api_url(Gitea);
    let source = tempfile::tempdir().expect("tempdir");
    let commit = make_repo(&source.path().join("src.git"), "pushed");
    // A listed repository without a directory is empty, and a push creates it (as a restore
    // into a new forge repository does). The push carries a 3 MB blob, which git sends chunked.
    let b_url = with_credentials(&forge.clone_url(Gitea, "acme", "b"), "alice", "t");
    assert_eq!(git_ok(&["ls-remote", &b_url], None), "");
    let big: String =
        (0..3_000_000u32).map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26)).collect();
    let src = source.path().join("src.git");
    let src = src.to_str().expect("utf-8");
    let blob = git_stdin(src, &["hash-object", "-w", "--stdin"], &big);
    let tree = git_stdin(src, &["mktree"], &format!("100644 blob {blob}\tbig\n"));
    let second = git_ok(&["--git-dir", src, "commit-tree", &tree, "-p", &commit, "-m", "big"], None);
    git_ok(&["--git-dir", src, "update-ref", "refs/heads/main", &second], None);
    git_ok(&["--git-dir", src, "push", "-q", &b_url, "main"], None);
    assert!(forge.git_dir(Gitea, "acme", "b").is_dir());
    assert!(git_ok(&["ls-remote", &b_url], None).contains(&second));
    let anonymous_push = git(&["--git-dir", src, "push", "-q", &forge.clone_url(Gitea, "acme", "a"), "main"], None);
    assert!(!anonymous_push.status.success(), "pushing needs a token");

    forge.clear_requests();
    forge.write_world(&world(json!([{"owner": "acme", "name": "a"}])));
    let listed = get(&format!("{api}/orgs/acme/repos"), &[]).json();
    assert_eq!(listed.as_array().expect("array").len(), 1);
    assert!(!ls_remote(&b_url).status.success(), "b left the world");
    let requests = forge.requests();
    assert_eq!(requests.iter().filter(|r| r["kind"] == "api").count(), 1);
    assert!(requests.iter().any(|r| r["kind"] == "git" && r["status"] == 404));
}

/// git-lfs is needed for the LFS test; `GITVAULT_TEST_NO_LFS=1` skips it deliberately.
fn lfs_available() -> bool {
    if std::env::var_os("GITVAULT_TEST_NO_LFS").is_some_and(|v| v == "1") {
        return false;
    }
    let installed = Command::new("git").args(["lfs", "version"]).output().is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "the LFS test needs git-lfs: apt-get install git-lfs (or set GITVAULT_TEST_NO_LFS=1 to skip it)"
    );
    true
}

#[test]
fn lfs_objects_round_trip_through_the_batch_api_with_real_git_lfs() {
    if !lfs_available() {
        return;
    }
    let forge = FakeForge::start();
    forge.write_world(&json!({
        "tokens": {"t": {"login": "alice"}},
        "github": {"repos": [{"owner": "acme", "name": "assets", "private": true}]},
    }));
    let url = forge.clone_url(Github, "acme", "assets");
    let authed = with_credentials(&url, "x-access-token", "t");
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    git_ok(&["init", "-q", "-b", "main", src.to_str().expect("utf-8")], None);
    git_ok(&["lfs", "install", "--local"], Some(&src));
    git_ok(&["lfs", "track", "*.bin"], Some(&src));
    std::fs::write(src.join("blob.bin"), &content).expect("write blob.bin");
    git_ok(&["add", "."], Some(&src));
    git_ok(&["commit", "-q", "-m", "lfs"], Some(&src));
    git_ok(&["push", "-q", &authed, "main"], Some(&src));
    let stored: Vec<_> = walk(&forge.root().join("lfs/github/acme/assets"));
    assert_eq!(stored.len(), 1, "one object stored under ROOT/lfs");

    let dest = work.path().join("dest");
    git_ok(&["clone", "-q", &authed, dest.to_str().expect("utf-8")], None);
    git_ok(&["lfs", "install", "--local"], Some(&dest));
    git_ok(&["lfs", "pull"], Some(&dest));
    assert_eq!(std::fs::read(dest.join("blob.bin")).expect("blob.bin"), content);

    let client = reqwest::blocking::Client::new();
    let refused = client
        .post(format!("{url}/info/lfs/objects/batch"))
        .header("Content-Type", "application/vnd.git-lfs+json")
        .body(r#"{"operation":"download","objects":[]}"#)
        .send()
        .expect("batch request");
    assert_eq!(refused.status().as_u16(), 401);
    assert!(refused.headers().contains_key("lfs-authenticate"));
    let lfs: Vec<_> = forge.requests().into_iter().filter(|r| r["kind"] == "lfs").collect();
    assert!(lfs.iter().any(|r| r["method"] == "PUT" && r["status"] == 200));
    assert!(lfs.iter().any(|r| r["method"] == "GET" && r["status"] == 200));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}
