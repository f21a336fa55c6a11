use std::fs;
use std::path::Path;

use gitvault_git::{Git, Head, ObjectFormat, ObjectId, PackFiles, RefState};

use crate::fixture::{Sandbox, oid, rich_repo};

/// The tips a backup packs: every ref and a detached HEAD.
fn tips(state: &RefState) -> Vec<ObjectId> {
    let mut tips: Vec<ObjectId> = state.refs.iter().map(|r| r.oid.clone()).collect();
    if let Some(Head::Detached(oid)) = &state.head {
        tips.push(oid.clone());
    }
    tips.sort();
    tips.dedup();
    tips
}

/// Restores packs and refs into a fresh bare repository, the way the engine will.
fn restore(git: &Git, target: &Path, packs: &[&PackFiles], state: &RefState) {
    git.init_bare(target, state.object_format).expect("init restored");
    let pack_dir = target.join("objects/pack");
    for pack in packs {
        let name = format!("pack-{}", pack.checksum);
        fs::copy(&pack.pack, pack_dir.join(format!("{name}.pack"))).expect("copy pack");
        fs::copy(&pack.index, pack_dir.join(format!("{name}.idx"))).expect("copy idx");
    }
    git.write_refs(target, state).expect("write refs");
}

#[test]
fn full_then_incremental_packs_restore_the_exact_repository() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let out = sb.path("out");

    let state1 = git.read_refs(&rich.path).expect("read refs");
    let full = git.pack_objects(&rich.path, &tips(&state1), &[], &out).expect("full pack").expect("objects to pack");
    assert!(full.pack.exists() && full.index.exists());
    assert_eq!(full.pack.file_name().and_then(|n| n.to_str()), Some(format!("pack-{}.pack", full.checksum).as_str()));

    // New history of every kind: commits, a branch, tags of a commit, a tree and a blob.
    let next = sb.commit(&rich.path, "a.txt", "three\n", "fourth");
    sb.run(&rich.path, &["checkout", "-q", "-b", "topic", rich.second.as_str()]);
    sb.commit(&rich.path, "t.txt", "topic\n", "topic work");
    sb.run(&rich.path, &["checkout", "-q", "main"]);
    sb.run(&rich.path, &["tag", "-a", "v2", "-m", "release 2", next.as_str()]);
    let new_tree = sb.run(&rich.path, &["mktree"]); // the empty tree, new to this repo
    sb.run(&rich.path, &["tag", "-a", "emptytree", "-m", "empty tree", &new_tree]);
    let new_blob = sb.run(&rich.path, &["hash-object", "-w", "--stdin"]);
    sb.run(&rich.path, &["tag", "-a", "emptyblob", "-m", "empty blob", &new_blob]);
    sb.run(&rich.path, &["branch", "-q", "-D", "feature"]);

    let state2 = git.read_refs(&rich.path).expect("read refs");
    let incremental = git
        .pack_objects(&rich.path, &tips(&state2), &tips(&state1), &out)
        .expect("incremental pack")
        .expect("new objects to pack");
    assert!(incremental.objects < full.objects, "incremental {} vs full {}", incremental.objects, full.objects);

    let restored1 = sb.path("restored1.git");
    restore(&git, &restored1, &[&full], &state1);
    git.fsck(&restored1).expect("full restore is consistent");
    assert_eq!(git.read_refs(&restored1).expect("read restored"), state1);

    let restored2 = sb.path("restored2.git");
    restore(&git, &restored2, &[&full, &incremental], &state2);
    git.fsck(&restored2).expect("incremental restore is consistent");
    assert_eq!(git.read_refs(&restored2).expect("read restored"), state2);
}

#[test]
fn pack_object_count_matches_git() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let state = git.read_refs(&rich.path).expect("read refs");
    let pack = git.pack_objects(&rich.path, &tips(&state), &[], &sb.path("out")).expect("pack").expect("objects");
    let listed = sb.run(&rich.path, &["verify-pack", "-v", pack.index.to_str().expect("utf-8")]);
    let objects = listed.lines().filter(|line| line.split(' ').next().is_some_and(|w| w.len() == 40)).count();
    assert_eq!(pack.objects, objects as u64);
}

#[test]
fn pack_objects_returns_none_when_nothing_is_new() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let out = sb.path("out");
    let state = git.read_refs(&rich.path).expect("read refs");
    let tips = tips(&state);

    assert_eq!(git.pack_objects(&rich.path, &[], &[], &out).expect("empty include"), None);
    assert_eq!(git.pack_objects(&rich.path, &tips, &tips, &out).expect("nothing new"), None);
    let leftovers: Vec<_> = fs::read_dir(&out).expect("out exists").collect();
    assert!(leftovers.is_empty(), "empty pack files are deleted: {leftovers:?}");
}

#[test]
fn pack_objects_tolerates_excludes_missing_from_the_repository() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let state = git.read_refs(&rich.path).expect("read refs");
    let full = git.pack_objects(&rich.path, &tips(&state), &[], &sb.path("full")).expect("full").expect("objects");
    let unknown = oid("0123456789abcdef0123456789abcdef01234567");
    let with_unknown = git
        .pack_objects(&rich.path, &tips(&state), &[unknown], &sb.path("unknown"))
        .expect("unknown exclude is dropped")
        .expect("objects");
    assert_eq!(with_unknown.objects, full.objects);
}

#[test]
fn pack_objects_of_an_unrelated_history_alone() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let pack = git
        .pack_objects(
            &rich.path,
            std::slice::from_ref(&rich.orphan),
            std::slice::from_ref(&rich.merge),
            &sb.path("out"),
        )
        .expect("pack")
        .expect("objects");
    // The orphan commit, its tree and its one blob: nothing of main's history.
    assert_eq!(pack.objects, 3);
}

#[test]
fn existing_objects_reports_only_present_ones() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let tree = sb.rev(&rich.path, "HEAD^{tree}");
    let unknown = oid("0123456789abcdef0123456789abcdef01234567");
    let found = git
        .existing_objects(&rich.path, &[rich.first.clone(), unknown.clone(), tree.clone(), rich.first.clone()])
        .expect("cat-file");
    assert_eq!(found, [rich.first.clone(), tree].into_iter().collect());
    assert!(git.existing_objects(&rich.path, &[]).expect("empty").is_empty());
}

#[test]
fn existing_objects_handles_thousands_of_ids_in_one_go() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    // Enough to overflow the pipe buffers in both directions if input were not streamed.
    let many: Vec<ObjectId> = (0..20_000u32).map(|i| oid(&format!("{i:040x}"))).chain([rich.merge.clone()]).collect();
    let found = git.existing_objects(&rich.path, &many).expect("cat-file");
    assert_eq!(found, [rich.merge].into_iter().collect());
}

#[test]
fn sha256_repository_round_trips() {
    let sb = Sandbox::new();
    let git = sb.git();
    let src = sb.path("src256");
    fs::create_dir(&src).expect("mkdir");
    sb.run(&src, &["init", "-q", "--object-format=sha256"]);
    let commit = sb.commit(&src, "a.txt", "sha256\n", "first");
    sb.run(&src, &["tag", "-a", "v1", "-m", "tag"]);
    assert_eq!(commit.format(), ObjectFormat::Sha256);

    let state = git.read_refs(&src).expect("read refs");
    assert_eq!(state.object_format, ObjectFormat::Sha256);
    assert_eq!(git.ls_remote(&sb.file_url(&src)).expect("ls-remote"), state);
    let pack = git.pack_objects(&src, &tips(&state), &[], &sb.path("out")).expect("pack").expect("objects");
    assert_eq!(pack.checksum.len(), 64);
    let restored = sb.path("restored.git");
    restore(&git, &restored, &[&pack], &state);
    git.fsck(&restored).expect("consistent");
    assert_eq!(git.read_refs(&restored).expect("read restored"), state);
}

/// Every file under a repository's git directory, for "nothing was written here" checks.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read dir") {
            let entry = entry.expect("entry");
            if entry.file_type().expect("type").is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn streaming_pack_hands_over_exactly_the_pack_and_never_writes_into_the_source() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    // A few megabytes that do not compress, so that git is still writing when we read.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let noise: String = (0..4_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdef"[(x >> 60) as usize])
        })
        .collect();
    sb.commit(&rich.path, "noise.txt", &noise, "noise");
    let before = files_under(&rich.path.join(".git/objects"));
    let state = git.read_refs(&rich.path).expect("read refs");
    // git may finish a small pack before it can be opened; then nothing counts as streamed
    // and the caller uses the file. Whenever the stream is accepted it must be the pack exactly.
    let mut accepted = 0;
    for attempt in 0..5 {
        let streamed = git
            .pack_objects_streaming(&rich.path, &tips(&state), &[], &sb.path(&format!("out{attempt}")), |r| {
                let mut v = Vec::new();
                std::io::Read::read_to_end(r, &mut v).map(|_| v)
            })
            .expect("pack")
            .expect("objects");
        if streamed.streamed {
            assert_eq!(streamed.consumed, fs::read(&streamed.files.pack).expect("read pack"));
            accepted += 1;
        }
        assert!(!sb.path(&format!("out{attempt}/odb")).exists(), "git's temporary object directory is cleaned up");
    }
    assert!(accepted > 0, "no stream was ever recognised as the finished pack");
    assert_eq!(files_under(&rich.path.join(".git/objects")), before, "the source repository was written to");

    // A consumer that gives up stops git and reports its own error.
    let failed = git.pack_objects_streaming(&rich.path, &tips(&state), &[], &sb.path("out-failed"), |_| {
        Err::<(), _>(std::io::Error::other("destination full"))
    });
    assert!(failed.is_err());
}
