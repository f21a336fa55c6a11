//! What the write-side tests of every forge share: requests with a body, a source repository to
//! push, and the writes of the request log.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use gitvault_forge::testing::FakeForge;
use serde_json::Value;

use super::{Answer, git, git_ok, git_stdin};

/// A request being built: method, URL, a token (empty: anonymous), headers and a body.
pub struct Sent {
    method: reqwest::Method,
    url: String,
    token: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Sent {
    pub fn new(method: &str, url: &str, token: &str) -> Self {
        Self {
            method: method.parse().expect("an HTTP method"),
            url: url.to_string(),
            token: token.to_string(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn json(self, body: &Value) -> Self {
        self.header("Content-Type", "application/json").bytes(serde_json::to_vec(body).expect("JSON"))
    }

    pub fn bytes(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    pub fn send(self) -> Answer {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        let mut request = client.request(self.method.clone(), &self.url);
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(body) = self.body {
            request = request.body(body);
        }
        let response = request.send().unwrap_or_else(|e| panic!("{} {}: {e}", self.method, self.url));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        Answer { status, headers, body: response.text().expect("body") }
    }
}

/// `method url` with a bearer token and a JSON body.
pub fn send(method: &str, url: &str, token: &str, body: Option<&Value>) -> Answer {
    let sent = Sent::new(method, url, token);
    match body {
        Some(body) => sent.json(body).send(),
        None => sent.send(),
    }
}

/// The request log's writes of `kind` ("api", "git"), oldest first.
pub fn writes(forge: &FakeForge, kind: &str) -> Vec<Value> {
    forge.requests().into_iter().filter(|r| r["write"] == true && r["kind"] == kind).collect()
}

/// Run git in the bare repository `dir` (pushes), returning its output whatever the outcome.
pub fn push(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--git-dir", dir.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    git(&all, None)
}

/// A bare repository to restore: `main`, `fix` one commit ahead, the tag `v1.0` on main, and
/// `refs/pull/1/head` — a ref a backup of GitHub holds and a push to it must skip.
pub struct SourceRepo {
    pub dir: PathBuf,
    pub main: String,
    pub fix: String,
}

impl SourceRepo {
    pub fn build(dir: &Path) -> Self {
        let main = super::make_repo(dir, "hello\n");
        let git_dir = dir.to_str().expect("utf-8 path");
        let blob = git_stdin(git_dir, &["hash-object", "-w", "--stdin"], "hello, fixed\n");
        let tree = git_stdin(git_dir, &["mktree"], &format!("100644 blob {blob}\tREADME\n"));
        let fix = git_ok(&["--git-dir", git_dir, "commit-tree", &tree, "-p", &main, "-m", "fix"], None);
        git_ok(&["--git-dir", git_dir, "update-ref", "refs/heads/fix", &fix], None);
        git_ok(&["--git-dir", git_dir, "tag", "-m", "one", "v1.0", &main], None);
        git_ok(&["--git-dir", git_dir, "update-ref", "refs/pull/1/head", &fix], None);
        Self { dir: dir.to_path_buf(), main, fix }
    }

    /// A wiki: one page on `main`.
    pub fn wiki(dir: &Path) -> PathBuf {
        super::make_repo(dir, "# Home\n");
        dir.to_path_buf()
    }
}
