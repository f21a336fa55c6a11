use std::fs;
use std::path::PathBuf;

use gitvault_git::{Error, SourceKind, source_name};

use crate::fixture::Sandbox;

fn local(path: PathBuf) -> SourceKind {
    SourceKind::Local(fs::canonicalize(path).expect("canonical path"))
}

#[test]
fn classify_source_resolves_local_repositories_to_their_git_dir() {
    let sb = Sandbox::new();
    let git = sb.git();
    let work = sb.init("proj");
    let bare = sb.path("api.git");
    fs::create_dir(&bare).expect("mkdir");
    sb.run(&bare, &["init", "-q", "--bare"]);

    let classify = |s: &str| git.classify_source(s).expect("classify");
    let work_str = work.display().to_string();
    assert_eq!(classify(&work_str), local(work.join(".git")));
    assert_eq!(classify(&format!("{work_str}/.git")), local(work.join(".git")));
    assert_eq!(classify(&bare.display().to_string()), local(bare.clone()));
    assert_eq!(classify(&sb.file_url(&bare)), local(bare.clone()));

    assert_eq!(source_name(&work_str), "proj");
    assert_eq!(source_name(&format!("{work_str}/.git")), "proj");
    assert_eq!(source_name(&bare.display().to_string()), "api");
}

#[test]
fn classify_source_keeps_remote_urls_verbatim() {
    let git = Sandbox::new().git();
    for url in [
        "https://tok@github.com/acme/api.git",
        "http://host/x",
        "ssh://git@host:2222/acme/api.git",
        "git://host/acme/api.git",
        "git@github.com:acme/api.git",
    ] {
        assert_eq!(git.classify_source(url).expect("classify"), SourceKind::Remote(url.to_owned()));
    }
}

#[test]
fn classify_source_rejects_non_repositories_and_missing_paths() {
    let sb = Sandbox::new();
    let git = sb.git();
    let plain = sb.path("plain");
    fs::create_dir(&plain).expect("mkdir");
    assert!(matches!(git.classify_source(&plain.display().to_string()), Err(Error::NotARepository { .. })));
    let work = sb.init("proj");
    let inner = work.join("src");
    fs::create_dir(&inner).expect("mkdir");
    assert!(matches!(git.classify_source(&inner.display().to_string()), Err(Error::NotARepository { .. })));
    let missing = sb.path("missing");
    assert!(matches!(git.classify_source(&missing.display().to_string()), Err(Error::NotFound { .. })));
    assert!(matches!(git.classify_source(&sb.file_url(&missing)), Err(Error::NotFound { .. })));
}
