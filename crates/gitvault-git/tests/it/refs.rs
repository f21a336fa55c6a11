use std::fs;

use gitvault_git::{Error, Head, ObjectFormat, Ref, RefState};

use crate::fixture::{Sandbox, oid, rich_repo};

const RICH_REFS: &[&str] = &[
    "refs/custom/x",
    "refs/heads/feature",
    "refs/heads/main",
    "refs/heads/other",
    "refs/notes/commits",
    "refs/tags/blobtag",
    "refs/tags/light",
    "refs/tags/nested",
    "refs/tags/treetag",
    "refs/tags/v1",
];

#[test]
fn read_refs_lists_every_ref_with_its_unpeeled_object() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let state = sb.git().read_refs(&rich.path).expect("read refs");

    let expected: Vec<Ref> =
        RICH_REFS.iter().map(|name| Ref { name: (*name).to_owned(), oid: sb.rev(&rich.path, name) }).collect();
    assert_eq!(state.refs, expected);
    assert_eq!(state.head, Some(Head::Symbolic("refs/heads/main".into())));
    assert_eq!(state.object_format, ObjectFormat::Sha1);
    // Tags are recorded as the tag object, not what it points to.
    assert_ne!(sb.rev(&rich.path, "refs/tags/v1"), rich.merge);
}

#[test]
fn read_refs_of_work_tree_and_its_git_dir_agree() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    assert_eq!(
        git.read_refs(&rich.path).expect("work tree"),
        git.read_refs(&rich.path.join(".git")).expect(".git dir")
    );
}

#[test]
fn read_refs_of_empty_repository_has_unborn_symbolic_head() {
    let sb = Sandbox::new();
    let empty = sb.init("empty");
    let state = sb.git().read_refs(&empty).expect("read refs");
    assert_eq!(
        state,
        RefState {
            object_format: ObjectFormat::Sha1,
            head: Some(Head::Symbolic("refs/heads/main".into())),
            refs: vec![],
        }
    );
}

#[test]
fn read_refs_reports_detached_head() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    sb.run(&rich.path, &["checkout", "-q", "--detach", rich.second.as_str()]);
    let state = sb.git().read_refs(&rich.path).expect("read refs");
    assert_eq!(state.head, Some(Head::Detached(rich.second)));
}

#[test]
fn read_refs_refuses_what_is_not_a_repository() {
    let sb = Sandbox::new();
    let git = sb.git();
    let plain = sb.path("plain");
    fs::create_dir(&plain).expect("mkdir");
    assert!(matches!(
        git.read_refs(&plain),
        Err(Error::NotARepository { path }) if path == plain
    ));

    // A folder inside a work tree must not silently resolve to the enclosing repository.
    let rich = rich_repo(&sb, "src");
    let inner = rich.path.join("sub");
    fs::create_dir(&inner).expect("mkdir");
    assert!(matches!(git.read_refs(&inner), Err(Error::NotARepository { .. })));

    let missing = sb.path("missing");
    assert!(matches!(
        git.read_refs(&missing),
        Err(Error::NotFound { path }) if path == missing
    ));
}

#[test]
fn ls_remote_of_file_url_equals_read_refs() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let remote = git.ls_remote(&sb.file_url(&rich.path)).expect("ls-remote");
    assert_eq!(remote, git.read_refs(&rich.path).expect("read refs"));

    sb.run(&rich.path, &["checkout", "-q", "--detach", rich.first.as_str()]);
    let remote = git.ls_remote(&sb.file_url(&rich.path)).expect("ls-remote");
    assert_eq!(remote.head, Some(Head::Detached(rich.first)));
    assert_eq!(remote, git.read_refs(&rich.path).expect("read refs"));
}

#[test]
fn ls_remote_of_empty_repository_advertises_nothing() {
    let sb = Sandbox::new();
    let empty = sb.init("empty");
    let remote = sb.git().ls_remote(&sb.file_url(&empty)).expect("ls-remote");
    assert_eq!(remote, RefState { object_format: ObjectFormat::Sha1, head: None, refs: vec![] });
}

#[test]
fn ls_remote_failure_is_unreachable_without_credentials() {
    let sb = Sandbox::new();
    // Port 1 on localhost refuses connections at once.
    let url = "https://user:hunter2@127.0.0.1:1/acme/api.git";
    let err = sb.git().ls_remote(url).expect_err("nothing listens there");
    let Error::Unreachable { url: shown, .. } = &err else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert_eq!(shown, "https://127.0.0.1:1/acme/api.git");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");

    let missing = format!("file://{}", sb.path("missing").display());
    assert!(matches!(sb.git().ls_remote(&missing), Err(Error::Unreachable { .. })));
}

#[test]
fn write_refs_sets_exactly_the_given_refs() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let bare = sb.path("bare.git");
    sb.run(sb.root(), &["clone", "-q", "--bare", rich.path.to_str().expect("utf-8"), "bare.git"]);
    // Loose refs must go too: leave one that is not in the new state.
    sb.run(&bare, &["update-ref", "refs/loose/leftover", rich.first.as_str()]);
    let original = git.read_refs(&rich.path).expect("read source");

    let tree = sb.rev(&rich.path, &format!("{}^{{tree}}", rich.second));
    let other = RefState {
        object_format: ObjectFormat::Sha1,
        head: Some(Head::Detached(rich.orphan.clone())),
        refs: vec![
            // Not sorted on purpose, and a tree under refs/heads, which update-ref refuses.
            Ref { name: "refs/tags/v1".into(), oid: sb.rev(&rich.path, "refs/tags/v1") },
            Ref { name: "refs/heads/tree".into(), oid: tree },
            Ref { name: "refs/heads/a/b/c".into(), oid: rich.second.clone() },
        ],
    };
    git.write_refs(&bare, &other).expect("write other refs");
    let mut sorted = other.clone();
    sorted.refs.sort();
    assert_eq!(git.read_refs(&bare).expect("read back"), sorted);

    git.write_refs(&bare, &original).expect("write original refs");
    assert_eq!(git.read_refs(&bare).expect("read back"), original);
    git.fsck(&bare).expect("repository stays consistent");
}

#[test]
fn write_refs_rejects_bad_state_before_touching_the_repository() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let before = git.read_refs(&rich.path).expect("read refs");

    let mut bad_name = before.clone();
    bad_name.refs.push(Ref { name: "refs/heads/bad name".into(), oid: rich.first.clone() });
    assert!(matches!(git.write_refs(&rich.path, &bad_name), Err(Error::InvalidRefName { .. })));

    let mut wrong_format = before.clone();
    wrong_format.object_format = ObjectFormat::Sha256;
    wrong_format.refs = vec![Ref { name: "refs/heads/x".into(), oid: oid(&"a".repeat(64)) }];
    wrong_format.head = None;
    assert!(matches!(git.write_refs(&rich.path, &wrong_format), Err(Error::WrongObjectFormat { .. })));

    assert_eq!(git.read_refs(&rich.path).expect("read refs"), before);
}

#[test]
fn write_refs_handles_ten_thousand_refs_quickly() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let blob = sb.rev(&rich.path, &format!("{}:a.txt", rich.first));
    let mut refs: Vec<Ref> = (0..10_000)
        .map(|i| Ref {
            name: format!("refs/heads/branch-{i:05}"),
            oid: if i % 2 == 0 { rich.merge.clone() } else { blob.clone() },
        })
        .collect();
    refs.sort();
    let state = RefState {
        object_format: ObjectFormat::Sha1,
        head: Some(Head::Symbolic("refs/heads/branch-00000".into())),
        refs,
    };
    let started = std::time::Instant::now();
    git.write_refs(&rich.path, &state).expect("write refs");
    let read = git.read_refs(&rich.path).expect("read refs");
    let elapsed = started.elapsed();
    assert_eq!(read, state);
    assert!(elapsed.as_secs() < 10, "took {elapsed:?}");
}
