//! The fake forge for tests (feature `testing`): one Python process (`fakeforge/fakeforge.py`,
//! standard library only) on a free port of 127.0.0.1 that answers the REST APIs of GitHub,
//! GitLab, Bitbucket Cloud and Gitea/Forgejo in their real shapes — pagination `Link` headers,
//! rate-limit headers, ETags and 304s, error bodies — and serves real git repositories over smart
//! HTTP (`git http-backend`), with Git LFS (batch API, basic transfers) under each repository's
//! git URL. Killed when dropped. `fakeforge/README.md` is the full reference;
//! what a test needs most often is here.
//!
//! # URL layout
//!
//! | forge     | API base                | git                                              |
//! |-----------|-------------------------|--------------------------------------------------|
//! | GitHub    | `/github/api/v3`        | `/github/OWNER/REPO.git`, `/github/OWNER/REPO.wiki.git` |
//! | GitLab    | `/gitlab/api/v4`        | `/gitlab/GROUP/SUB/PROJECT.git`, `....wiki.git`   |
//! | Bitbucket | `/bitbucket/2.0`        | `/bitbucket/git/WORKSPACE/REPO.git`              |
//! | Gitea     | `/gitea/api/v1`         | `/gitea/OWNER/REPO.git`, `/gitea/OWNER/REPO.wiki.git` |
//!
//! all under [`FakeForge::base_url`]. Clone URLs in API answers are absolute and carry no
//! credentials.
//!
//! # The world
//!
//! The scenario is `world.json` in [`FakeForge::root`], written with [`FakeForge::write_world`]
//! and re-read by the server whenever its content changes (a test may rewrite it between runs).
//! Every field but the names is optional:
//!
//! ```json
//! {
//!   "tokens": {"TOKEN": {"login": "alice", "deny": ["github:acme/secret", "gitlab:acme/*"],
//!                        "expired": false, "forges": ["github", "gitlab"]}},
//!   "github": {"accounts": {"acme": {"type": "Organization", "members": ["alice"]},
//!                           "alice": {"type": "User"}},
//!              "repos": [{"owner": "acme", "name": "api", "private": false, "fork": false,
//!                         "parent": "other/api", "archived": false, "topics": ["x"],
//!                         "has_wiki": true, "description": "", "default_branch": "main",
//!                         "collaborators": ["bob"]}]},
//!   "gitlab": {"groups": ["acme", "acme/sub"], "users": ["bob"],
//!              "projects": [{"namespace": "acme/sub", "name": "p", "visibility": "private",
//!                            "archived": false, "forked_from": "acme/q", "topics": [],
//!                            "wiki_enabled": true, "default_branch": "main"}]},
//!   "bitbucket": {"workspaces": ["team"], "repos": [{"workspace": "team", "slug": "r",
//!                 "is_private": true, "has_wiki": false, "parent": "team/q", "mainbranch": "main",
//!                 "project": "PROJ"}]},
//!   "bitbucket_users": {"user": "api-token"},
//!   "gitea": {"orgs": ["acme"], "users": ["alice"], "repos": [{"owner": "acme", "name": "api",
//!             "private": false, "fork": false, "parent": "alice/api", "archived": false,
//!             "topics": [], "has_wiki": true, "default_branch": "main"}]},
//!   "faults": {"github": {"rate_limit": {"after": 3, "reset_seconds": 2},
//!                         "secondary": {"after": 5, "retry_after": 1, "status": 403},
//!                         "errors": [{"path": "regex", "status": 502, "times": 2,
//!                                     "method": "GET", "kind": "api"}]}}
//! }
//! ```
//!
//! Any repository may also give `id`, `created_at`, `pushed_at`, `updated_at` (RFC 3339); ids are
//! otherwise derived from names (stable across rewrites), `pushed_at` from the modification time
//! of the refs on disk.
//!
//! Visibility: a public repository is visible to everybody; a private (GitLab: private or
//! internal) one to any valid token; a token's `deny` patterns (`forge:owner/name`, glob) hide
//! repositories from it (absent from listings, 404). An unknown or `expired` token — or one whose
//! `forges` does not name the forge — gets 401 with the forge's real error body.
//!
//! # GitHub repository metadata
//!
//! A GitHub repository entry may also hold its issues, pull requests (with reviews and review
//! comments), labels, milestones, releases (with asset bytes), collaborators, teams and branch
//! protection, served under `/github/api/v3/repos/{owner}/{repo}/…` as GitHub serves them
//! (lists with `since`, `state`, `sort`, `direction`, `per_page`, `page` and `Link`; content
//! ETags and `Last-Modified`, with 304s that do not count against the rate limit):
//!
//! ```json
//! {"owner": "acme", "name": "api",
//!  "issues": [{"number": 1, "title": "Crash", "body": "…", "state": "open", "user": "bob",
//!              "labels": ["bug"], "assignees": [], "milestone": 1,
//!              "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
//!              "closed_at": null, "locked": false,
//!              "comments": [{"id": 11, "user": "alice", "body": "…", "created_at": "…",
//!                            "updated_at": "…"}]}],
//!  "pulls": [{"number": 2, "title": "Fix", "head": "fix", "base": "main", "merged_at": null,
//!             "draft": false,
//!             "reviews": [{"id": 21, "user": "alice", "state": "APPROVED", "body": "",
//!                          "submitted_at": "…", "commit_id": "…"}],
//!             "review_comments": [{"id": 31, "user": "alice", "body": "…", "path": "src/a.rs",
//!                                  "position": 4, "line": 12, "side": "RIGHT",
//!                                  "diff_hunk": "@@ …", "commit_id": "…", "in_reply_to_id": null,
//!                                  "pull_request_review_id": 21, "created_at": "…",
//!                                  "updated_at": "…"}]}],
//!  "labels": [{"name": "bug", "color": "d73a4a", "description": null}],
//!  "milestones": [{"number": 1, "title": "v1", "state": "open", "due_on": null}],
//!  "releases": [{"id": 7, "tag_name": "v1.0", "name": "One", "draft": false, "prerelease": false,
//!                "author": "alice", "created_at": "…", "published_at": "…",
//!                "assets": [{"id": 70, "name": "tool.tar.gz", "content_type": "application/gzip",
//!                            "file": "assets/tool.tar.gz"},
//!                           {"id": 71, "name": "a.txt", "text": "hi"}]}],
//!  "collaborators": ["bob", {"login": "carol", "permission": "admin"}],
//!  "teams": [{"slug": "core", "permission": "push"}],
//!  "protection": {"main": {"enforce_admins": true,
//!                          "required_status_checks": {"strict": true, "contexts": ["ci"]}}},
//!  "generate": {"issues": 5000, "pulls": 500, "comments": 20000, "seed": 1,
//!               "updated_base": "2024-01-01T00:00:00Z", "touch": [17],
//!               "touched_at": "2025-01-01T00:00:00Z"}}
//! ```
//!
//! Issues and pull requests share one sequence of numbers; `/issues` lists pull requests too,
//! with a `pull_request` object. Every field has a default (authors: the owner; times: spread
//! from the repository's `created_at`; ids: derived from names and numbers, stable across
//! rewrites). A new comment bumps its issue's `updated_at`; an edit changes only the comment's.
//! `since` keeps items updated at or after it. An asset's `file` is relative to
//! [`FakeForge::root`] (write it with [`FakeForge::write_file`]); `GET /releases/assets/{id}`
//! with `Accept: application/octet-stream` is a 302 to its `browser_download_url` with a
//! signature that works without the token. Branch protection: 404 `Branch not protected` when
//! there is none, 403 for a collaborator below admin. `generate` makes many deterministic
//! items without a big world.json; `touch` marks some as changed (updated at `touched_at`, a
//! comment edited). `fakeforge/README.md` has every default, parameter and order.
//!
//! # GitLab project metadata
//!
//! A GitLab project entry may hold `issues` (with `notes`), `merge_requests` (with `notes`,
//! `diff_notes` — `reply_to` threads them — and `approved_by`), `labels`, `milestones`,
//! `releases` (with `links`: `file` or `text` bytes served at an upload URL of the fake, or a
//! `url` elsewhere), `members` and `protected_branches`, served under
//! `/gitlab/api/v4/projects/{id}/…` in GitLab's shapes, with ETags and 304s. Items are keyed by
//! `iid`; saving a note moves its item's `updated_at`. `fakeforge/README.md` has the details.
//!
//! # Git repositories
//!
//! They live at [`FakeForge::git_dir`] (`ROOT/git/<forge>/<owner path>/<name>.git`, wikis with
//! the name `<name>.wiki`), made by the test with real git. The world decides what exists: a
//! directory the world does not list is not served; a listed repository without a directory is
//! an empty repository (no refs; the first push creates it).
//!
//! # Request log
//!
//! Every request appends a line to `ROOT/requests.jsonl` — `time`, `forge`, `kind` (`api`, `git`,
//! `lfs` or `download`), `method`, `path`, `query`, `status`, `token` (whether credentials were
//! sent; never the credentials) — before its answer is complete; [`FakeForge::requests`] reads it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server script, beside this crate's sources.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fakeforge/fakeforge.py");

pub const INSTALL_HINT: &str = "the fake forge needs python3 (3.11 or later) and git on PATH";

/// The forges the fake forge speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FakeForgeKind {
    Github,
    Gitlab,
    Bitbucket,
    Gitea,
}

impl FakeForgeKind {
    pub const ALL: [FakeForgeKind; 4] = [Self::Github, Self::Gitlab, Self::Bitbucket, Self::Gitea];

    /// The name used in URLs, on disk, in `deny` patterns and in `faults`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Bitbucket => "bitbucket",
            Self::Gitea => "gitea",
        }
    }

    /// The API base path under the server's base URL.
    pub fn api_path(self) -> &'static str {
        match self {
            Self::Github => "/github/api/v3",
            Self::Gitlab => "/gitlab/api/v4",
            Self::Bitbucket => "/bitbucket/2.0",
            Self::Gitea => "/gitea/api/v1",
        }
    }

    fn git_prefix(self) -> &'static str {
        match self {
            Self::Github => "/github",
            Self::Gitlab => "/gitlab",
            Self::Bitbucket => "/bitbucket/git",
            Self::Gitea => "/gitea",
        }
    }
}

/// A running fake forge; its root (world, repositories, logs) is a temporary directory removed
/// on drop, after the process is killed.
pub struct FakeForge {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl Drop for FakeForge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakeForge {
    /// Start a server with an empty world (every forge empty, no tokens) and wait until it
    /// listens. Panics, with the server's log, if it does not within 30 s.
    pub fn start() -> Self {
        let root = tempfile::Builder::new().prefix("fakeforge").tempdir().expect("tempdir");
        let log = std::fs::File::create(root.path().join("fakeforge.log")).expect("fake forge log");
        // -B: no __pycache__ written into the source tree.
        let mut child = Command::new("python3")
            .arg("-B")
            .arg(SCRIPT)
            .arg("--root")
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 {SCRIPT} ({e}); {INSTALL_HINT}"));
        let port_file = root.path().join("port");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(status) = child.try_wait().expect("wait for the fake forge") {
                let log = std::fs::read_to_string(root.path().join("fakeforge.log")).unwrap_or_default();
                panic!("the fake forge exited with {status} before listening; {INSTALL_HINT}\n{log}");
            }
            // The server writes the file atomically (temporary file, then rename).
            if let Some(port) = std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()) {
                break port;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let log = std::fs::read_to_string(root.path().join("fakeforge.log")).unwrap_or_default();
                panic!("the fake forge did not listen within 30 s\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Self { child, port, root }
    }

    /// The directory holding `world.json`, `git/`, `requests.jsonl` and the logs.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The API base of `forge`, e.g. `http://127.0.0.1:PORT/github/api/v3` (as on GitHub
    /// Enterprise Server).
    pub fn api_url(&self, forge: FakeForgeKind) -> String {
        format!("{}{}", self.base_url(), forge.api_path())
    }

    /// The HTTP clone URL of a repository (without credentials), as the forge's API gives it;
    /// `owner_path` is the owner, the GitLab namespace path (`acme/sub`) or the workspace.
    pub fn clone_url(&self, forge: FakeForgeKind, owner_path: &str, name: &str) -> String {
        format!("{}{}/{owner_path}/{name}.git", self.base_url(), forge.git_prefix())
    }

    /// Where the repository `owner_path/name` of `forge` lives on disk
    /// (`ROOT/git/<forge>/<owner_path>/<name>.git`), its parent directories made. For a wiki,
    /// pass `"<name>.wiki"`. Create the repository there with real git (`git init --bare`,
    /// `git clone --bare`).
    pub fn git_dir(&self, forge: FakeForgeKind, owner_path: &str, name: &str) -> PathBuf {
        let dir = self.root().join("git").join(forge.name()).join(owner_path);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        dir.join(format!("{name}.git"))
    }

    /// Replace `world.json` atomically; the next request sees the new world (the server
    /// compares the file's content, so rewrites within one timestamp tick are noticed).
    pub fn write_world(&self, world: &serde_json::Value) {
        let path = self.root().join("world.json");
        let tmp = self.root().join("world.json.tmp");
        let text = serde_json::to_vec_pretty(world).expect("serialize world");
        std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
    }

    /// Write `bytes` to `relative` under [`FakeForge::root`], parent directories made: files the
    /// world names, such as release assets (`"file": "assets/tool.tar.gz"`). Returns the path.
    pub fn write_file(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Every request logged since the start or the last [`FakeForge::clear_requests`], oldest
    /// first.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.root().join("requests.jsonl")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("a request log line is JSON")).collect()
    }

    pub fn clear_requests(&self) {
        let path = self.root().join("requests.jsonl");
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
    }

    /// The server's own output and git http-backend's, for failure messages.
    pub fn log(&self) -> String {
        let server = std::fs::read_to_string(self.root().join("fakeforge.log")).unwrap_or_default();
        let git = std::fs::read_to_string(self.root().join("git-backend.log")).unwrap_or_default();
        format!("{server}{git}")
    }
}
