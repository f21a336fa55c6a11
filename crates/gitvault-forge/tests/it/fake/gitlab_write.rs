//! The write side of the fake GitLab: so far its git side — what a restore's pushes meet.

use gitvault_forge::testing::{FakeForge, FakeForgeKind::Gitlab};
use serde_json::json;

use super::write_support::{SourceRepo, push};
use super::{git_ok, with_credentials};

/// GitLab's API stays read-only in the fake for now; its git side already refuses what GitLab
/// refuses, so a restore's pushes can be tested against it.
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
