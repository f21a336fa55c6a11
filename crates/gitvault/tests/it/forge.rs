//! Forge sources end to end: the real binary lists accounts on the fake forge (GitHub's REST
//! API shapes, pagination, rate limits, error bodies) and fetches real repositories from it
//! over smart HTTP with the token, then restores them exactly.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use gitvault_forge::testing::{FakeForge, FakeForgeKind, FakeForgeKind::Github};
use serde_json::{Value, json};

use crate::common::{World, commit, git, new_repo, refs};

const TOKEN: &str = "ghp_Secr3tTokenNeverPrinted0123456789";

/// A fake forge, a vault, and the repositories the tests put on the forge.
struct Setup {
    forge: FakeForge,
    w: World,
}

impl Setup {
    fn new() -> Self {
        let w = World::new();
        w.init();
        Self { forge: FakeForge::start(), w }
    }

    fn api(&self) -> String {
        self.forge.api_url(Github)
    }

    /// A bare repository `owner/name` on the forge with `commits` commits on main and a tag.
    fn repo(&self, owner: &str, name: &str, commits: usize) -> PathBuf {
        self.repo_on(Github, owner, name, commits)
    }

    fn repo_on(&self, kind: FakeForgeKind, owner: &str, name: &str, commits: usize) -> PathBuf {
        let work = new_repo(&self.w.path(&format!("work/{}/{owner}/{name}", kind.name())));
        for i in 0..commits {
            commit(&work, &format!("f{i}.txt"), format!("{name} {i}\n").as_bytes(), &format!("{name} {i}"));
        }
        if commits > 0 {
            git(&work, &["tag", "v1"]);
        }
        let bare = self.forge.git_dir(kind, owner, name);
        git(
            self.w.dir.path(),
            &["clone", "-q", "--bare", work.to_str().expect("utf-8"), bare.to_str().expect("utf-8")],
        );
        bare
    }

    /// `gitvault` with the world's vault and this forge's token.
    fn run(&self, args: &[&str]) -> Output {
        self.w.cmd(args).env("GITHUB_TOKEN", TOKEN).output().expect("run gitvault")
    }

    fn backup(&self, extra: &[&str]) -> Value {
        let api = self.api();
        let mut args = vec!["backup", "--no-metadata", "--json", "--api-url", &api];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert_eq!(out.status.code(), Some(0), "backup {extra:?}: {}", show(&out));
        serde_json::from_slice(&out.stdout).expect("backup --json")
    }

    fn api_requests(&self) -> Vec<Value> {
        self.forge.requests().into_iter().filter(|r| r["kind"] == "api").collect()
    }

    fn git_requests(&self) -> Vec<Value> {
        self.forge.requests().into_iter().filter(|r| r["kind"] == "git").collect()
    }

    fn restore(&self, snapshot: &str, repo: &str, label: &str) -> PathBuf {
        let target = self.w.path(&format!("restored/{label}.git"));
        self.w.ok(&["restore", snapshot, "--repo", repo, "--target", target.to_str().expect("utf-8")]);
        target
    }
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().expect("a list").iter().map(|r| r["name"].as_str().expect("name").to_string()).collect()
}

fn repo_entry(name: &str, extra: Value) -> Value {
    let mut r = json!({"owner": "acme", "name": name, "has_wiki": false});
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        r.extend(extra.clone());
    }
    r
}

fn world(repos: Vec<Value>) -> Value {
    json!({
        "tokens": {TOKEN: {"login": "alice"}},
        "github": {"accounts": {"acme": {"type": "Organization"}, "alice": {"type": "User"}}, "repos": repos},
    })
}

/// No file under `dir` contains `needle`, nor the Basic credentials git sends for it (base64 of
/// `USER:needle` with each forge's token user, at any alignment of the encoding).
fn assert_nowhere(dir: &Path, needle: &str) {
    let mut needles = vec![needle.as_bytes().to_vec()];
    for user in ["x-access-token", "oauth2", "x-token-auth", "gitvault", "alice"] {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{needle}"));
        // The token's own characters sit in the middle of the encoding whatever comes before.
        needles.push(encoded.as_bytes()[8..encoded.len() - 8].to_vec());
    }
    for rel in crate::common::files_under(dir) {
        let bytes = std::fs::read(dir.join(&rel)).unwrap_or_default();
        for n in &needles {
            assert!(!bytes.windows(n.len()).any(|w| w == n.as_slice()), "the token is in {rel}");
        }
    }
}

#[test]
fn an_organisation_is_listed_filtered_backed_up_and_restored_exactly() {
    let s = Setup::new();
    let api = s.repo("acme", "api", 3);
    let wiki = s.repo("acme", "api.wiki", 2);
    let web = s.repo("acme", "web", 2);
    s.repo("acme", "old", 1);
    s.repo("acme", "fork-of-lib", 1);
    let mut repos = vec![
        repo_entry("api", json!({"has_wiki": true, "topics": ["backend"]})),
        // Private, and its wiki is enabled but was never created.
        repo_entry("web", json!({"private": true, "has_wiki": true})),
        repo_entry("old", json!({"archived": true})),
        repo_entry("fork-of-lib", json!({"fork": true, "parent": "other/lib"})),
    ];
    // Enough repositories for three pages of 100: listed, then left out by a filter.
    repos.extend((0..250).map(|i| repo_entry(&format!("svc-{i:03}"), json!({}))));
    s.forge.write_world(&world(repos));

    let report = s.backup(&["--exclude", "svc-*", "--no-archived", "--no-forks", "github:acme"]);
    let account = &report["accounts"][0];
    assert_eq!(account["source"], "github:acme");
    assert_eq!(account["repositories"], json!(["github:acme/api", "github:acme/web"]), "{account}");
    assert_eq!(account["left_out"].as_array().expect("left_out").len(), 252, "{account}");
    let reasons: Vec<&str> =
        account["left_out"].as_array().expect("list").iter().filter_map(|l| l["reason"].as_str()).collect();
    assert!(reasons.contains(&"archived") && reasons.contains(&"a fork"), "{reasons:?}");
    assert_eq!(names(&report["repositories"]), ["github:acme/api", "github:acme/api.wiki", "github:acme/web"]);
    assert_eq!(names(&report["skipped"]), ["github:acme/web.wiki"], "an enabled wiki never created is skipped");
    assert_eq!(report["failures"], json!([]));

    // Listing: three pages of the organisation's repositories, nothing else.
    let listing: Vec<Value> = s.api_requests();
    assert_eq!(listing.len(), 3, "one request per page: {listing:?}");
    assert!(listing.iter().all(|r| r["path"] == "/github/api/v3/orgs/acme/repos" && r["token"] == true), "{listing:?}");
    assert_eq!(account["requests"], 3);

    let snapshot = report["snapshot"].as_str().expect("a snapshot");
    for (name, source, label) in
        [("github:acme/api", &api, "api"), ("github:acme/api.wiki", &wiki, "wiki"), ("github:acme/web", &web, "web")]
    {
        let restored = s.restore(snapshot, name, label);
        let (got, want) = (refs(&restored), refs(source));
        assert_eq!(got.refs, want.refs, "{name}: refs");
        assert_eq!(got.head, want.head, "{name}: HEAD");
    }

    // The token reached the forge (private repository fetched) but nothing on disk.
    assert_nowhere(s.w.dir.path(), TOKEN);

    // Without a token only public repositories are seen.
    let out =
        s.w.cmd(&["backup", "--no-metadata", "--json", "--api-url", &s.api(), "--exclude", "svc-*", "github:acme"])
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let anonymous: Value = serde_json::from_slice(&out.stdout).expect("json");
    let seen = anonymous["accounts"][0]["repositories"].as_array().expect("list").clone();
    assert!(!seen.contains(&json!("github:acme/web")), "a private repository is invisible without a token: {seen:?}");
    assert!(seen.contains(&json!("github:acme/api")), "{seen:?}");
}

#[test]
fn a_no_change_rerun_costs_the_listing_and_one_ref_advertisement_per_repository() {
    let s = Setup::new();
    for name in ["a", "b", "c"] {
        s.repo("acme", name, 2);
    }
    s.repo("acme", "a.wiki", 1);
    s.forge.write_world(&world(vec![
        repo_entry("a", json!({"has_wiki": true})),
        repo_entry("b", json!({})),
        repo_entry("c", json!({})),
    ]));
    let first = s.backup(&["github:acme"]);
    assert_eq!(first["repositories"].as_array().expect("list").len(), 4, "{first}");
    let data_before = crate::common::files_under(&s.w.vault.join("data"));
    let fetches = s.git_requests().iter().filter(|r| r["command"] == "fetch").count();
    assert_eq!(fetches, 4, "the first run fetches each repository and the wiki once");

    s.forge.clear_requests();
    let second = s.backup(&["--jobs", "2", "github:acme"]);
    for r in second["repositories"].as_array().expect("list") {
        assert_eq!(r["objects_added"], 0, "{r}");
        assert_eq!(r["bytes_added"], 0, "{r}");
        assert_eq!(r["type"], "incr", "{r}");
    }
    assert_eq!(s.api_requests().len(), 1, "one listing page: {:?}", s.api_requests());
    // A ref advertisement is a GET of info/refs and, in protocol v2, an `ls-refs` POST.
    let git_requests = s.git_requests();
    assert!(git_requests.iter().all(|r| r["command"] != "fetch"), "no fetch: {git_requests:?}");
    let adverts = git_requests.iter().filter(|r| r["method"] == "GET").count();
    assert_eq!(adverts, 4, "one ref advertisement per repository and wiki: {git_requests:?}");
    assert!(git_requests.iter().all(|r| r["method"] == "GET" || r["command"] == "ls-refs"), "{git_requests:?}");
    assert_eq!(crate::common::files_under(&s.w.vault.join("data")), data_before, "no new data");
    assert_eq!(s.w.snapshots().len(), 2);
}

#[test]
fn pull_request_refs_are_left_out_unless_asked_for() {
    let s = Setup::new();
    let bare = s.repo("acme", "api", 2);
    let main = git(&bare, &["rev-parse", "refs/heads/main"]);
    git(&bare, &["update-ref", "refs/pull/1/head", &main]);
    s.forge.write_world(&world(vec![repo_entry("api", json!({}))]));

    let plain = s.backup(&["github:acme/api"]);
    let restored = s.restore(plain["snapshot"].as_str().expect("id"), "github:acme/api", "plain");
    let got = refs(&restored);
    assert!(got.refs.iter().all(|r| !r.name.starts_with("refs/pull/")), "{:?}", got.refs);
    assert!(got.refs.iter().any(|r| r.name == "refs/tags/v1"));

    let with = s.backup(&["--pull-refs", "github:acme/api"]);
    let restored = s.restore(with["snapshot"].as_str().expect("id"), "github:acme/api", "with");
    assert_eq!(refs(&restored).refs, refs(&bare).refs);
}

#[test]
fn a_repository_gone_upstream_is_a_warning_and_its_backups_stay() {
    let s = Setup::new();
    s.repo("acme", "keep", 1);
    let doomed = s.repo("acme", "doomed", 2);
    s.forge.write_world(&world(vec![repo_entry("keep", json!({})), repo_entry("doomed", json!({}))]));
    let first = s.backup(&["github:acme"]);
    let first_id = first["snapshot"].as_str().expect("id").to_string();

    s.forge.write_world(&world(vec![repo_entry("keep", json!({}))]));
    let api = s.api();
    let out = s.run(&["backup", "--no-metadata", "--json", "--api-url", &api, "github:acme"]);
    assert_eq!(out.status.code(), Some(0), "a repository deleted upstream is not a failure: {}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["gone_upstream"][0]["name"], "github:acme/doomed", "{report}");
    assert_eq!(report["gone_upstream"][0]["last_snapshot"], first_id.as_str());
    assert_eq!(names(&report["repositories"]), ["github:acme/keep"]);

    // Said once, in the run that found it gone.
    s.forge.write_world(&world(vec![repo_entry("keep", json!({})), repo_entry("doomed", json!({}))]));
    s.backup(&["github:acme"]);
    s.forge.write_world(&world(vec![repo_entry("keep", json!({}))]));
    let text = String::from_utf8_lossy(&s.run(&["backup", "--no-metadata", "--api-url", &api, "github:acme"]).stdout)
        .into_owned();
    assert!(text.contains("warning: github:acme/doomed is no longer in github:acme"), "{text}");
    let text = String::from_utf8_lossy(&s.run(&["backup", "--no-metadata", "--api-url", &api, "github:acme"]).stdout)
        .into_owned();
    assert!(!text.contains("no longer in"), "{text}");

    let restored = s.restore(&first_id, "github:acme/doomed", "doomed");
    assert_eq!(refs(&restored).refs, refs(&doomed).refs, "the old backup still restores");
}

#[test]
fn a_repository_that_fails_is_reported_and_the_others_are_backed_up() {
    let s = Setup::new();
    s.repo("acme", "good", 1);
    s.repo("acme", "broken", 1);
    let mut w = world(vec![repo_entry("good", json!({})), repo_entry("broken", json!({}))]);
    w["faults"] = json!({"github": {"errors": [{"path": "acme/broken", "status": 500, "times": 1000, "kind": "git"}]}});
    s.forge.write_world(&w);
    let api = s.api();
    let out = s.run(&["backup", "--no-metadata", "--json", "--api-url", &api, "github:acme"]);
    assert_eq!(out.status.code(), Some(3), "partial: {}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(names(&report["repositories"]), ["github:acme/good"]);
    assert_eq!(names(&report["failures"]), ["github:acme/broken"]);
    assert!(report["snapshot"].is_string());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(TOKEN));
}

#[test]
fn rate_limits_and_server_errors_during_listing_are_waited_out() {
    let s = Setup::new();
    s.repo("acme", "api", 1);
    let mut repos = vec![repo_entry("api", json!({}))];
    repos.extend((0..150).map(|i| repo_entry(&format!("svc-{i:03}"), json!({}))));
    let mut w = world(repos);
    // The listing fails twice with a 502 before its first page is answered, then the primary
    // limit runs out for 2 s before the second page.
    w["faults"] = json!({"github": {
        "rate_limit": {"after": 1, "reset_seconds": 2},
        "errors": [{"path": "orgs/acme/repos", "status": 502, "times": 2, "kind": "api"}],
    }});
    s.forge.write_world(&w);
    let api = s.api();
    let out = s.run(&["backup", "--no-metadata", "--json", "--api-url", &api, "--include", "api", "github:acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rate limited; waiting"), "the wait is said: {stderr}");
    let statuses: Vec<i64> = s.api_requests().iter().filter_map(|r| r["status"].as_i64()).collect();
    assert!(statuses.contains(&403) && statuses.contains(&502), "{statuses:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["accounts"][0]["left_out"].as_array().expect("list").len(), 150);
    assert_eq!(names(&report["repositories"]), ["github:acme/api"]);
}

#[test]
fn a_rejected_token_is_a_clear_error_that_never_shows_it() {
    let s = Setup::new();
    s.repo("acme", "api", 1);
    let mut w = world(vec![repo_entry("api", json!({}))]);
    w["tokens"] = json!({TOKEN: {"login": "alice", "expired": true}});
    s.forge.write_world(&w);
    let api = s.api();
    let out = s.run(&["backup", "--no-metadata", "--api-url", &api, "github:acme"]);
    assert_eq!(out.status.code(), Some(1), "nothing could be backed up: {}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rejected the credentials") && stderr.contains("GITHUB_TOKEN"), "{stderr}");
    assert!(!stderr.contains(TOKEN) && !String::from_utf8_lossy(&out.stdout).contains(TOKEN));
    assert!(s.w.snapshots().is_empty());
}

#[test]
fn a_users_own_token_sees_their_private_repositories() {
    let s = Setup::new();
    s.repo("alice", "notes", 1);
    s.repo("alice", "site", 1);
    s.forge.write_world(&json!({
        "tokens": {TOKEN: {"login": "alice"}},
        "github": {"accounts": {"alice": {"type": "User"}}, "repos": [
            {"owner": "alice", "name": "notes", "private": true, "has_wiki": false},
            {"owner": "alice", "name": "site", "has_wiki": false},
        ]},
    }));
    let report = s.backup(&["github:alice"]);
    assert_eq!(names(&report["repositories"]), ["github:alice/notes", "github:alice/site"]);
}

#[test]
fn a_config_file_declares_the_account_and_config_check_lists_it() {
    let s = Setup::new();
    s.repo("acme", "api", 1);
    s.repo("acme", "web", 1);
    s.forge.write_world(&world(vec![repo_entry("api", json!({})), repo_entry("web", json!({}))]));
    let token_file = s.w.path("github-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
    let config = s.w.path("gitvault.toml");
    std::fs::write(
        &config,
        format!(
            "jobs = 2\n[[vault]]\nname = \"main\"\nurl = {:?}\n\n[[source]]\nurl = \"github:acme\"\napi_url = {:?}\ntoken_file = \"github-token\"\nexclude = [\"web\"]\nmetadata = false\n",
            s.w.vault.to_str().expect("utf-8"),
            s.api()
        ),
    )
    .expect("write config");
    let cfg = config.to_str().expect("utf-8");
    // No GITHUB_TOKEN: the file gives it.
    let check = s.w.cmd_without_vault(&["config", "check", "--json", "--config", cfg]).output().expect("run");
    assert_eq!(check.status.code(), Some(0), "{}", show(&check));
    let check: Value = serde_json::from_slice(&check.stdout).expect("json");
    let source = &check["policies"][0]["sources"][0];
    assert_eq!(source["repositories"], json!(["github:acme/api"]), "{check}");
    assert_eq!(source["left_out"][0]["name"], "github:acme/web");

    let out = s.w.cmd_without_vault(&["backup", "--json", "--config", cfg]).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let snaps = s.w.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["names"], json!(["github:acme/api"]));

    // A forge key on a plain source, and a bad visibility, name their line.
    let bad = std::fs::read_to_string(&config).expect("read").replace("exclude = [\"web\"]", "visibility = \"secret\"");
    std::fs::write(&config, bad).expect("write");
    let out = s.w.cmd_without_vault(&["config", "check", "--config", cfg]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 10"), "{}", show(&out));
}

/// Back up `source` from another forge with `env` as its credentials; every repository restores
/// exactly, and the secret is nowhere on disk.
fn other_forge(
    s: &Setup,
    kind: FakeForgeKind,
    source: &str,
    env: &[(&str, &str)],
    expected: &[(&str, &Path)],
) -> Value {
    let api = s.forge.api_url(kind);
    let mut cmd = s.w.cmd(&["backup", "--no-metadata", "--json", "--api-url", &api, source]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{source}: {}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let want: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(names(&report["repositories"]), want, "{report}");
    let snapshot = report["snapshot"].as_str().expect("id");
    for (i, (name, source)) in expected.iter().enumerate() {
        let restored = s.restore(snapshot, name, &format!("{}-{}-{i}", kind.name(), &snapshot[..12]));
        assert_eq!(refs(&restored).refs, refs(source).refs, "{name}");
    }
    for (_, secret) in env {
        assert_nowhere(s.w.dir.path(), secret);
        assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
    }
    report
}

#[test]
fn a_gitlab_group_is_backed_up_with_its_subgroups_and_wikis() {
    use FakeForgeKind::Gitlab;
    let s = Setup::new();
    let api = s.repo_on(Gitlab, "acme", "api", 2);
    let deep = s.repo_on(Gitlab, "acme/platform/infra", "deploy", 2);
    let wiki = s.repo_on(Gitlab, "acme", "api.wiki", 1);
    s.repo_on(Gitlab, "other", "elsewhere", 1);
    s.forge.write_world(&json!({
        "tokens": {TOKEN: {"login": "alice"}},
        "gitlab": {
            "groups": ["acme", "acme/platform", "acme/platform/infra", "other"],
            "projects": [
                {"namespace": "acme", "name": "api", "visibility": "private", "wiki_enabled": true},
                {"namespace": "acme/platform/infra", "name": "deploy", "visibility": "internal", "wiki_enabled": false},
                {"namespace": "other", "name": "elsewhere", "wiki_enabled": false},
            ],
        },
    }));
    let report = other_forge(
        &s,
        Gitlab,
        "gitlab:acme",
        &[("GITLAB_TOKEN", TOKEN)],
        &[("gitlab:acme/api", &api), ("gitlab:acme/api.wiki", &wiki), ("gitlab:acme/platform/infra/deploy", &deep)],
    );
    assert_eq!(report["accounts"][0]["repositories"], json!(["gitlab:acme/api", "gitlab:acme/platform/infra/deploy"]));
    // A project by its full path; a subgroup by its path.
    let one = other_forge(
        &s,
        Gitlab,
        "gitlab:acme/platform/infra/deploy",
        &[("GITLAB_TOKEN", TOKEN)],
        &[("gitlab:acme/platform/infra/deploy", &deep)],
    );
    assert_eq!(one["accounts"][0]["requests"], 1, "one GET of the project");
    other_forge(
        &s,
        Gitlab,
        "gitlab:acme/platform",
        &[("GITLAB_TOKEN", TOKEN)],
        &[("gitlab:acme/platform/infra/deploy", &deep)],
    );
}

#[test]
fn a_gitea_organisation_is_backed_up_over_pages_of_fifty() {
    use FakeForgeKind::Gitea;
    let s = Setup::new();
    let api = s.repo_on(Gitea, "acme", "api", 2);
    let wiki = s.repo_on(Gitea, "acme", "api.wiki", 1);
    let mut repos = vec![json!({"owner": "acme", "name": "api", "private": true, "has_wiki": true})];
    repos.extend((0..60).map(|i| json!({"owner": "acme", "name": format!("svc-{i:02}"), "has_wiki": false})));
    s.forge.write_world(&json!({"tokens": {TOKEN: {"login": "alice"}}, "gitea": {"orgs": ["acme"], "repos": repos}}));
    let gitea_api = s.forge.api_url(Gitea);
    let out =
        s.w.cmd(&["backup", "--no-metadata", "--json", "--api-url", &gitea_api, "--exclude", "svc-*", "gitea:acme"])
            .env("GITEA_TOKEN", TOKEN)
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(names(&report["repositories"]), ["gitea:acme/api", "gitea:acme/api.wiki"]);
    assert_eq!(report["accounts"][0]["left_out"].as_array().expect("list").len(), 60);
    assert_eq!(report["accounts"][0]["requests"], 2, "61 repositories in pages of 50");
    let snapshot = report["snapshot"].as_str().expect("id");
    assert_eq!(refs(&s.restore(snapshot, "gitea:acme/api", "gitea-api")).refs, refs(&api).refs);
    assert_eq!(refs(&s.restore(snapshot, "gitea:acme/api.wiki", "gitea-wiki")).refs, refs(&wiki).refs);
    assert_nowhere(s.w.dir.path(), TOKEN);
}

#[test]
fn a_bitbucket_workspace_is_backed_up_with_a_token_or_a_user_and_api_token() {
    use FakeForgeKind::Bitbucket;
    let s = Setup::new();
    let api = s.repo_on(Bitbucket, "team", "api", 2);
    let mut repos = vec![json!({"workspace": "team", "slug": "api", "is_private": true})];
    repos.extend((0..120).map(|i| json!({"workspace": "team", "slug": format!("svc-{i:03}")})));
    s.forge.write_world(&json!({
        "tokens": {TOKEN: {"login": "alice"}},
        "bitbucket_users": {"alice": "ATATT-api-token-secret"},
        "bitbucket": {"workspaces": ["team"], "repos": repos},
    }));
    let bb_api = s.forge.api_url(Bitbucket);
    for env in [
        vec![("BITBUCKET_TOKEN", TOKEN)],
        vec![("BITBUCKET_USERNAME", "alice"), ("BITBUCKET_API_TOKEN", "ATATT-api-token-secret")],
    ] {
        let mut cmd =
            s.w.cmd(&["backup", "--no-metadata", "--json", "--api-url", &bb_api, "--include", "api", "bitbucket:team"]);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{env:?}: {}", show(&out));
        let report: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(names(&report["repositories"]), ["bitbucket:team/api"], "{env:?}");
        assert_eq!(report["accounts"][0]["requests"], 2, "121 repositories in pages of 100 (next links)");
        let restored = s.restore(report["snapshot"].as_str().expect("id"), "bitbucket:team/api", "bb");
        assert_eq!(refs(&restored).refs, refs(&api).refs);
        std::fs::remove_dir_all(&restored).expect("clean");
    }
    assert_nowhere(s.w.dir.path(), TOKEN);
    assert_nowhere(s.w.dir.path(), "ATATT-api-token-secret");
    // One repository by its slug.
    other_forge(&s, Bitbucket, "bitbucket:team/api", &[("BITBUCKET_TOKEN", TOKEN)], &[("bitbucket:team/api", &api)]);
}

/// Push `work` to the fake forge with the token, LFS objects included (git-lfs's pre-push hook).
fn push_with_lfs(s: &Setup, work: &Path, owner: &str, name: &str) {
    let url = s.forge.clone_url(Github, owner, name);
    let auth = format!("http.extraHeader=Authorization: Bearer {TOKEN}");
    git(work, &["-c", &auth, "push", "-q", &url, "HEAD:refs/heads/main"]);
}

/// A work repository tracking `*.bin` with git-lfs, with `files` committed.
fn lfs_work(s: &Setup, name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let work = new_repo(&s.w.path(&format!("lfs-work/{name}")));
    git(&work, &["lfs", "install", "--local"]);
    git(&work, &["lfs", "track", "*.bin"]);
    for (file, content) in files {
        std::fs::write(work.join(file), content).expect("write");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "binaries"]);
    work
}

fn lfs_requests(s: &Setup) -> usize {
    s.forge.requests().iter().filter(|r| r["kind"] == "lfs").count()
}

#[test]
fn lfs_objects_are_stored_once_per_vault_and_restored_so_that_a_clone_checks_them_out() {
    let s = Setup::new();
    let shared = crate::common::noise(1, 300_000);
    let (a, b, c) =
        (crate::common::noise(2, 200_000), crate::common::noise(3, 100_000), crate::common::noise(4, 50_000));
    s.forge.write_world(&world(vec![repo_entry("media", json!({"private": true})), repo_entry("media2", json!({}))]));
    let media = lfs_work(&s, "media", &[("shared.bin", shared.clone()), ("a.bin", a.clone())]);
    push_with_lfs(&s, &media, "acme", "media");
    let media2 = lfs_work(&s, "media2", &[("shared.bin", shared.clone()), ("b.bin", b)]);
    push_with_lfs(&s, &media2, "acme", "media2");

    let first = s.backup(&["github:acme"]);
    let repos = first["repositories"].as_array().expect("list");
    assert!(repos.iter().all(|r| r["lfs_objects"] == 2 && r["lfs_missing"] == 0), "{first}");
    let added: u64 = repos.iter().map(|r| r["lfs_added"].as_u64().expect("n")).sum();
    assert_eq!(added, 3, "the object both repositories share is stored once: {first}");
    let data = crate::common::files_under(&s.w.vault.join("data"));
    assert_eq!(data.len(), 2 * 2 + 3, "a pack and an index per repository, and three LFS objects: {data:?}");

    // The restored bare repository holds the objects where git-lfs looks: a clone of it
    // (with git-lfs installed, as for the user) checks the files out.
    let snapshot = first["snapshot"].as_str().expect("id");
    let restored = s.restore(snapshot, "github:acme/media", "media");
    let home = s.w.path("lfs-home");
    std::fs::create_dir_all(&home).expect("home");
    let run = |dir: &Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_CONFIG_GLOBAL")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&home, &["lfs", "install"]);
    let clone = s.w.path("lfs-clone");
    run(s.w.dir.path(), &["clone", "-q", restored.to_str().expect("utf-8"), clone.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read(clone.join("shared.bin")).expect("read"), shared, "checked out, not a pointer");
    assert_eq!(std::fs::read(clone.join("a.bin")).expect("read"), a);

    // Nothing new: no LFS request, nothing stored.
    s.forge.clear_requests();
    let second = s.backup(&["github:acme"]);
    assert!(second["repositories"].as_array().expect("list").iter().all(|r| r["lfs_added"] == 0), "{second}");
    assert_eq!(lfs_requests(&s), 0, "no LFS traffic when nothing changed");
    assert_eq!(crate::common::files_under(&s.w.vault.join("data")), data);

    // One new object: fetched and stored, the others carried over.
    std::fs::write(media.join("c.bin"), &c).expect("write");
    git(&media, &["add", "-A"]);
    git(&media, &["commit", "-q", "-m", "more"]);
    push_with_lfs(&s, &media, "acme", "media");
    let third = s.backup(&["github:acme"]);
    let m = &third["repositories"][0];
    assert_eq!(
        (m["name"].as_str(), m["lfs_objects"].as_u64(), m["lfs_added"].as_u64()),
        (Some("github:acme/media"), Some(3), Some(1)),
        "{third}"
    );
    let verify: Value = serde_json::from_str(&s.w.ok(&["verify", "--read-data", "--json"])).expect("json");
    assert_eq!(verify["ok"], true, "{verify}");
    assert_nowhere(s.w.dir.path(), TOKEN);
}

#[test]
fn an_lfs_object_missing_upstream_is_reported_and_the_rest_is_backed_up() {
    let s = Setup::new();
    s.forge.write_world(&world(vec![repo_entry("media", json!({}))]));
    let media = lfs_work(
        &s,
        "media",
        &[("a.bin", crate::common::noise(5, 10_000)), ("b.bin", crate::common::noise(6, 20_000))],
    );
    push_with_lfs(&s, &media, "acme", "media");
    // The server loses one object.
    let lost = crate::common::files_under(&s.forge.root().join("lfs")).into_iter().next().expect("an object");
    std::fs::remove_file(s.forge.root().join("lfs").join(&lost)).expect("remove");
    let api = s.api();
    let out = s.run(&["backup", "--no-metadata", "--json", "--api-url", &api, "github:acme"]);
    assert_eq!(out.status.code(), Some(3), "partial: {}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let r = &report["repositories"][0];
    assert_eq!((r["lfs_objects"].as_u64(), r["lfs_missing"].as_u64()), (Some(1), Some(1)), "{report}");
    assert!(report["snapshot"].is_string());
    // git-lfs writes error logs into the mirror: the token must not be in them either.
    assert_nowhere(s.w.dir.path(), TOKEN);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(TOKEN));
}

#[test]
fn with_ssh_git_data_comes_over_ssh_and_the_token_only_lists() {
    let Some(sshd) = gitvault_storage::testing::Sshd::start_unless_skipped() else { return };
    let s = Setup::new();
    let api_repo = s.repo("acme", "api", 2);
    let wiki = s.repo("acme", "api.wiki", 1);
    let mut w = world(vec![repo_entry("api", json!({"private": true, "has_wiki": true}))]);
    let base =
        format!("ssh://{}@127.0.0.1:{}{}", sshd.user(), sshd.port(), s.forge.root().join("git/github").display());
    w["ssh"] = json!({"github": base});
    s.forge.write_world(&w);
    let api = s.api();
    s.forge.clear_requests();
    let out =
        s.w.cmd(&["backup", "--no-metadata", "--json", "--ssh", "--api-url", &api, "github:acme"])
            .env("GITHUB_TOKEN", TOKEN)
            .env("GIT_SSH_COMMAND", format!("ssh -F {}", sshd.ssh_config().display()))
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}\nsshd: {}", show(&out), sshd.log());
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(names(&report["repositories"]), ["github:acme/api", "github:acme/api.wiki"]);
    assert!(report["repositories"][0]["source"].as_str().expect("source").starts_with("ssh://"), "{report}");
    assert!(s.git_requests().is_empty(), "no git over HTTP: {:?}", s.git_requests());
    let snapshot = report["snapshot"].as_str().expect("id");
    assert_eq!(refs(&s.restore(snapshot, "github:acme/api", "ssh-api")).refs, refs(&api_repo).refs);
    assert_eq!(refs(&s.restore(snapshot, "github:acme/api.wiki", "ssh-wiki")).refs, refs(&wiki).refs);
}

#[test]
fn a_429_from_bitbucket_is_waited_out() {
    use FakeForgeKind::Bitbucket;
    let s = Setup::new();
    let api = s.repo_on(Bitbucket, "team", "api", 1);
    s.forge.write_world(&json!({
        "tokens": {TOKEN: {"login": "alice"}},
        "bitbucket": {"workspaces": ["team"], "repos": [{"workspace": "team", "slug": "api"}]},
        "faults": {"bitbucket": {"secondary": {"after": 0, "retry_after": 1, "status": 429}}},
    }));
    let report =
        other_forge(&s, Bitbucket, "bitbucket:team", &[("BITBUCKET_TOKEN", TOKEN)], &[("bitbucket:team/api", &api)]);
    let statuses: Vec<i64> = s.api_requests().iter().filter_map(|r| r["status"].as_i64()).collect();
    assert_eq!(statuses, [429, 200], "{report}");
}

#[test]
fn an_empty_repository_is_backed_up_as_empty_not_failed() {
    let s = Setup::new();
    s.repo("acme", "api", 1);
    // Listed, but nothing was ever pushed.
    s.forge.write_world(&world(vec![repo_entry("api", json!({})), repo_entry("fresh", json!({"has_wiki": true}))]));
    let report = s.backup(&["github:acme"]);
    assert_eq!(names(&report["repositories"]), ["github:acme/api", "github:acme/fresh"], "{report}");
    assert_eq!(report["repositories"][1]["refs"], 0);
    assert_eq!(names(&report["skipped"]), ["github:acme/fresh.wiki"]);
    assert_eq!(report["failures"], json!([]));
}

#[test]
fn a_repository_the_token_cannot_see_is_not_listed_and_one_it_loses_is_reported_gone() {
    let s = Setup::new();
    s.repo("acme", "api", 1);
    s.repo("acme", "secret", 1);
    s.repo("acme", "payroll", 1);
    let mut w = world(vec![
        repo_entry("api", json!({"private": true})),
        repo_entry("secret", json!({"private": true})),
        repo_entry("payroll", json!({"private": true})),
    ]);
    w["tokens"] = json!({TOKEN: {"login": "alice", "deny": ["github:acme/secret"]}});
    s.forge.write_world(&w);
    let first = s.backup(&["github:acme"]);
    assert_eq!(names(&first["repositories"]), ["github:acme/api", "github:acme/payroll"]);
    // The token loses access to payroll: it is gone from the listing, a warning, not a failure.
    w["tokens"] = json!({TOKEN: {"login": "alice", "deny": ["github:acme/secret", "github:acme/payroll"]}});
    s.forge.write_world(&w);
    let second = s.backup(&["github:acme"]);
    assert_eq!(names(&second["repositories"]), ["github:acme/api"]);
    assert_eq!(second["gone_upstream"][0]["name"], "github:acme/payroll", "{second}");
    // Asked for by name, a repository the token cannot see is a clear failure.
    let api = s.api();
    let out = s.run(&["backup", "--no-metadata", "--api-url", &api, "github:acme/secret"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("acme/secret") && stderr.contains("not found, or the token cannot see it"), "{stderr}");
}
