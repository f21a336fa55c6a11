use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use gitvault_git::{Error, Head, ObjectFormat};

use crate::fixture::{Sandbox, rich_repo};

/// Every file under `objects/` with its size: equal listings mean nothing was fetched.
fn object_files(repo: &Path) -> BTreeMap<String, u64> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, u64>) {
        for entry in fs::read_dir(dir).expect("read dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                walk(&path, root, out);
            } else {
                let name = path.strip_prefix(root).expect("below root");
                let size = entry.metadata().expect("metadata").len();
                out.insert(name.display().to_string(), size);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&repo.join("objects"), repo, &mut out);
    out
}

#[test]
fn sync_mirror_reproduces_remote_and_second_sync_is_a_no_op() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let url = sb.file_url(&rich.path);
    let mirror = sb.path("mirror.git");

    let remote = git.ls_remote(&url).expect("ls-remote");
    let first = git.sync_mirror(&mirror, &url, remote.object_format, remote.head.as_ref(), &[]).expect("first sync");
    assert_eq!(first, remote);
    assert_eq!(first, git.read_refs(&rich.path).expect("source refs"));
    let files = object_files(&mirror);

    let second = git.sync_mirror(&mirror, &url, remote.object_format, remote.head.as_ref(), &[]).expect("second sync");
    assert_eq!(second, first);
    assert_eq!(object_files(&mirror), files, "nothing new was written");
    git.fsck(&mirror).expect("mirror is consistent");

    // The URL is never remembered by the mirror.
    let config = fs::read_to_string(mirror.join("config")).expect("read config");
    assert!(!config.contains("src"), "{config}");
    assert!(!mirror.join("FETCH_HEAD").exists());
}

#[test]
fn sync_mirror_follows_force_push_and_prunes_deleted_refs() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let url = sb.file_url(&rich.path);
    let mirror = sb.path("mirror.git");
    let remote = git.ls_remote(&url).expect("ls-remote");
    git.sync_mirror(&mirror, &url, remote.object_format, remote.head.as_ref(), &[]).expect("first sync");

    // Rewrite history in the source, as a force-push would, and delete refs.
    sb.run(&rich.path, &["reset", "-q", "--hard", rich.first.as_str()]);
    let rewritten = sb.commit(&rich.path, "z.txt", "rewritten\n", "rewritten");
    sb.run(&rich.path, &["branch", "-q", "-D", "feature"]);
    sb.run(&rich.path, &["tag", "-d", "light"]);
    // A new branch where a deleted one had a directory-like name is a classic D/F trap.
    sb.run(&rich.path, &["branch", "feature/next", rewritten.as_str()]);

    let remote = git.ls_remote(&url).expect("ls-remote");
    let synced = git.sync_mirror(&mirror, &url, remote.object_format, remote.head.as_ref(), &[]).expect("second sync");
    assert_eq!(synced, git.read_refs(&rich.path).expect("source refs"));
    let names: Vec<_> = synced.refs.iter().map(|r| r.name.as_str()).collect();
    assert!(!names.contains(&"refs/heads/feature"));
    assert!(!names.contains(&"refs/tags/light"));
    assert!(names.contains(&"refs/heads/feature/next"));
    git.fsck(&mirror).expect("mirror is consistent");
}

#[test]
fn sync_mirror_fetches_a_detached_head_no_ref_reaches() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let url = sb.file_url(&rich.path);
    sb.run(&rich.path, &["checkout", "-q", "--detach"]);
    let dangling = sb.commit(&rich.path, "d.txt", "only HEAD knows me\n", "detached work");

    let remote = git.ls_remote(&url).expect("ls-remote");
    assert_eq!(remote.head, Some(Head::Detached(dangling.clone())));
    let mirror = sb.path("mirror.git");
    let synced = git.sync_mirror(&mirror, &url, remote.object_format, remote.head.as_ref(), &[]).expect("sync");
    assert_eq!(synced, remote);
    assert!(git.existing_objects(&mirror, std::slice::from_ref(&dangling)).expect("cat-file").contains(&dangling));
    git.fsck(&mirror).expect("mirror is consistent");
}

#[test]
fn sync_mirror_of_empty_remote_is_empty() {
    let sb = Sandbox::new();
    let empty = sb.init("empty");
    let git = sb.git();
    let url = sb.file_url(&empty);
    let remote = git.ls_remote(&url).expect("ls-remote");
    let mirror = sb.path("mirror.git");
    fs::create_dir(&mirror).expect("an existing empty directory is fine");
    let synced = git.sync_mirror(&mirror, &url, remote.object_format, remote.head.as_ref(), &[]).expect("sync");
    assert!(synced.refs.is_empty());
}

#[test]
fn sync_mirror_refuses_a_mirror_of_another_object_format() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let mirror = sb.path("mirror.git");
    git.init_bare(&mirror, ObjectFormat::Sha256).expect("init");
    let err =
        git.sync_mirror(&mirror, &sb.file_url(&rich.path), ObjectFormat::Sha1, None, &[]).expect_err("formats differ");
    assert!(matches!(err, Error::WrongObjectFormat { .. }), "{err:?}");
}

#[test]
fn sync_mirror_failure_is_unreachable() {
    let sb = Sandbox::new();
    let git = sb.git();
    let mirror = sb.path("mirror.git");
    let url = format!("file://{}", sb.path("missing").display());
    let err = git.sync_mirror(&mirror, &url, ObjectFormat::Sha1, None, &[]).expect_err("no such remote");
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
}
