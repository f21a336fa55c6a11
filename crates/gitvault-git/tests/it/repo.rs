use std::fs;

use gitvault_git::{Error, ObjectFormat};

use crate::fixture::{Sandbox, oid, rich_repo};

#[test]
fn version_is_a_version_number() {
    let version = Sandbox::new().git().version().expect("git version");
    assert!(version.starts_with(|c: char| c.is_ascii_digit()), "{version}");
}

#[test]
fn is_ancestor_answers_true_false_and_false_for_missing() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let ask = |a, b| git.is_ancestor(&rich.path, a, b).expect("merge-base");

    assert!(ask(&rich.first, &rich.merge));
    assert!(ask(&rich.merge, &rich.merge));
    assert!(!ask(&rich.merge, &rich.first));
    assert!(!ask(&rich.orphan, &rich.merge), "unrelated histories");
    let unknown = oid("0123456789abcdef0123456789abcdef01234567");
    assert!(!ask(&unknown, &rich.merge));
    assert!(!ask(&rich.first, &unknown));
    let tree = sb.rev(&rich.path, "HEAD^{tree}");
    assert!(!ask(&tree, &rich.merge), "a tree is nobody's ancestor");
    // An annotated tag stands for its commit.
    let tag = sb.rev(&rich.path, "refs/tags/v1");
    assert!(ask(&rich.first, &tag));

    let plain = sb.path("plain");
    fs::create_dir(&plain).expect("mkdir");
    assert!(matches!(git.is_ancestor(&plain, &rich.first, &rich.merge), Err(Error::NotARepository { .. })));
}

#[test]
fn init_bare_creates_the_requested_object_format() {
    let sb = Sandbox::new();
    let git = sb.git();
    for format in [ObjectFormat::Sha1, ObjectFormat::Sha256] {
        let path = sb.path(&format!("{format}.git"));
        fs::create_dir(&path).expect("an existing empty directory is fine");
        git.init_bare(&path, format).expect("init");
        let state = git.read_refs(&path).expect("read refs");
        assert_eq!(state.object_format, format);
        assert!(state.refs.is_empty());
        assert!(!path.join("hooks").exists(), "no templates are copied");
    }
}

#[test]
fn fsck_passes_on_a_sound_repository_and_names_a_missing_object() {
    let sb = Sandbox::new();
    let git = sb.git();
    let repo = sb.init("repo");
    sb.commit(&repo, "a.txt", "content\n", "first");
    git.fsck(&repo).expect("sound repository");

    let blob = sb.run(&repo, &["rev-parse", "HEAD:a.txt"]);
    let loose = repo.join(".git/objects").join(&blob[..2]).join(&blob[2..]);
    fs::remove_file(&loose).expect("delete the blob");
    let err = git.fsck(&repo).expect_err("blob is missing");
    let Error::Fsck { output, .. } = &err else {
        panic!("expected Fsck, got {err:?}");
    };
    assert!(output.contains(&blob), "{output}");
}

#[test]
fn failing_command_names_command_repository_and_stderr() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let unknown = oid("0123456789abcdef0123456789abcdef01234567");
    let err = git.pack_objects(&rich.path, &[unknown], &[], &sb.path("out")).expect_err("include must exist");
    let message = err.to_string();
    assert!(message.contains("git "), "{message}");
    assert!(message.contains("pack-objects"), "{message}");
    assert!(message.contains(&rich.path.display().to_string()), "{message}");
    assert!(matches!(err, Error::Command { ref stderr, .. } if !stderr.is_empty()));
}
