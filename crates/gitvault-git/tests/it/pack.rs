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

    // Packed once, its only pack is offered and checked with SHA-256 trailers.
    sb.run(&src, &["repack", "-adq"]);
    let sole = git.sole_pack(&src, &tips(&state)).expect("check").expect("one pack");
    assert_eq!(sole.files.checksum.len(), 64);
    for mut reader in [sole.pack_reader().expect("pack"), sole.index_reader().expect("index")] {
        std::io::copy(&mut reader, &mut std::io::sink()).expect("read");
        let path = reader.path().display().to_string();
        assert!(reader.verified(), "{path}");
    }
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

/// The one `.pack` of a repository's `objects/pack/`.
fn only_pack_file(repo: &Path) -> std::path::PathBuf {
    let dir = repo.join(".git/objects/pack");
    let packs: Vec<_> = fs::read_dir(&dir)
        .expect("pack dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    assert_eq!(packs.len(), 1, "{packs:?}");
    packs[0].clone()
}

fn read_all(mut r: impl std::io::Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).expect("read");
    v
}

#[test]
fn sole_pack_is_offered_only_when_it_holds_exactly_the_wanted_objects() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let all = tips(&git.read_refs(&rich.path).expect("refs"));

    // Loose objects: git has to pack.
    assert!(git.sole_pack(&rich.path, &all).expect("check").is_none());

    sb.run(&rich.path, &["repack", "-adq"]);
    let file = only_pack_file(&rich.path);
    let sole = git.sole_pack(&rich.path, &all).expect("check").expect("one pack with exactly these objects");
    assert_eq!(sole.files.pack, file);
    assert_eq!(file.file_name().expect("name").to_string_lossy(), format!("pack-{}.pack", sole.files.checksum));
    let objects = sb.run(&rich.path, &["rev-list", "--objects", "--all", "--count"]);
    assert_eq!(sole.files.objects.to_string(), objects);
    // Read whole, checked against both trailers.
    let mut reader = sole.pack_reader().expect("reader");
    assert_eq!(read_all(&mut reader), fs::read(&file).expect("pack"));
    assert!(reader.verified());
    let mut reader = sole.index_reader().expect("reader");
    assert_eq!(read_all(&mut reader), fs::read(&sole.files.index).expect("idx"));
    assert!(reader.verified());
    // Stopping early is not whole.
    let mut reader = sole.pack_reader().expect("reader");
    let mut head = [0u8; 100];
    std::io::Read::read_exact(&mut reader, &mut head).expect("head");
    assert!(!reader.verified());
    drop(sole);

    // Fewer tips than the pack serves: the pack holds objects the backup does not want.
    let fewer: Vec<ObjectId> = all.iter().filter(|o| **o != rich.orphan).cloned().collect();
    assert!(git.sole_pack(&rich.path, &fewer).expect("check").is_none());
    assert!(git.sole_pack(&rich.path, &[]).expect("check").is_none());

    // Another repository borrowing these objects through alternates.
    let borrower = sb.path("borrower.git");
    sb.run(
        sb.root(),
        &["clone", "-q", "--bare", "--shared", rich.path.to_str().expect("utf-8"), borrower.to_str().expect("utf-8")],
    );
    let borrowed = tips(&git.read_refs(&borrower).expect("refs"));
    assert!(git.sole_pack(&borrower, &borrowed).expect("check").is_none());

    // A loose object beside the pack.
    let blob = sb.run(&rich.path, &["hash-object", "-w", "--stdin"]);
    assert!(!blob.is_empty());
    assert!(git.sole_pack(&rich.path, &all).expect("check").is_none());
    sb.run(&rich.path, &["prune-packed"]);
    sb.run(&rich.path, &["prune", "--expire=now"]);
    assert!(git.sole_pack(&rich.path, &all).expect("check").is_some());

    // A second pack.
    let newer = sb.commit(&rich.path, "new.txt", "new\n", "new");
    sb.run(&rich.path, &["repack", "-dq"]);
    let with_new = tips(&git.read_refs(&rich.path).expect("refs"));
    assert!(with_new.contains(&newer));
    assert!(git.sole_pack(&rich.path, &with_new).expect("check").is_none());

    // A damaged pack is offered (its name, header and index agree: only reading all of it
    // tells) but fails its checksum. The damage is in a blob, which counting never reads.
    let big: String = (0..20_000u32).map(|i| format!("{:x}", i.wrapping_mul(2_654_435_761))).collect();
    let big_commit = sb.commit(&rich.path, "big.txt", &big, "big");
    let blob = sb.run(&rich.path, &["rev-parse", &format!("{big_commit}:big.txt")]);
    sb.run(&rich.path, &["repack", "-adq"]);
    let tips_now = tips(&git.read_refs(&rich.path).expect("refs"));
    let file = only_pack_file(&rich.path);
    let listing = sb.run(&rich.path, &["verify-pack", "-v", file.with_extension("idx").to_str().expect("utf-8")]);
    // "<oid> blob <size> <size-in-pack> <offset>"
    let fields: Vec<&str> =
        listing.lines().find(|l| l.starts_with(&blob)).expect("blob listed").split_whitespace().collect();
    let (in_pack, offset): (usize, usize) = (fields[3].parse().expect("size"), fields[4].parse().expect("offset"));
    let mut bytes = fs::read(&file).expect("pack");
    bytes[offset + in_pack / 2] ^= 0x40;
    let mut perms = fs::metadata(&file).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&file, perms).expect("writable");
    fs::write(&file, &bytes).expect("damage");
    let sole = git.sole_pack(&rich.path, &tips_now).expect("check").expect("offered");
    let mut reader = sole.pack_reader().expect("reader");
    read_all(&mut reader);
    assert!(!reader.verified(), "a flipped bit must fail the pack's checksum");
}

#[test]
fn the_sole_pack_check_covers_every_byte_and_reads_64_bit_offsets() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    sb.run(&rich.path, &["repack", "-adq"]);
    let all = tips(&git.read_refs(&rich.path).expect("refs"));
    let file = only_pack_file(&rich.path);
    let idx = file.with_extension("idx");
    let pristine = fs::read(&file).expect("pack");
    let make_writable = |path: &Path| {
        let mut perms = fs::metadata(path).expect("meta").permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(path, perms).expect("writable");
    };
    make_writable(&file);
    make_writable(&idx);
    // Offered as git wrote it; then (when given) damaged in place — the same file, which the
    // check has open — and read: whether it reads whole.
    let check = |what: &str, damage: Option<&[u8]>| {
        fs::write(&file, &pristine).expect("pristine");
        let sole = git.sole_pack(&rich.path, &all).expect("check").expect("offered");
        if let Some(bytes) = damage {
            fs::write(&file, bytes).expect("damage");
        }
        let mut reader = sole.pack_reader().expect("reader");
        assert_eq!(read_all(&mut reader), fs::read(&file).expect("pack"), "{what}");
        // The whole-pack hash (for packs too large to check object by object) agrees.
        let mut hashed = sole.hashed_pack_reader().expect("reader");
        read_all(&mut hashed);
        let verified = reader.verified();
        assert_eq!(hashed.verified(), verified, "{what}: the two checks disagree");
        verified
    };
    assert!(check("as git wrote it", None));

    // An index whose objects past the first 64 bytes sit in the 64-bit offset table (git's
    // test knob for packs over 2 GiB): the same pack verifies.
    let objects = git.sole_pack(&rich.path, &all).expect("check").expect("offered").files.objects;
    fs::remove_file(&idx).expect("old index");
    sb.run(
        &rich.path,
        &["index-pack", "--index-version=2,64", "-o", idx.to_str().expect("utf-8"), file.to_str().expect("utf-8")],
    );
    assert!(fs::metadata(&idx).expect("index").len() > 1072 + 28 * objects + 40, "64-bit offsets were written");
    assert!(check("64-bit offsets", None));

    // One flipped bit anywhere (the header, each object's first and last byte, the trailer)
    // fails the check.
    let listing = sb.run(&rich.path, &["verify-pack", "-v", idx.to_str().expect("utf-8")]);
    let mut places = vec![0, 7, 11, pristine.len() - 1, pristine.len() - 20];
    for line in listing.lines() {
        // "<oid> <type> <size> <size-in-pack> <offset> ..."
        let f: Vec<&str> = line.split_whitespace().collect();
        if let (Some(Ok(in_pack)), Some(Ok(offset))) =
            (f.get(3).map(|x| x.parse::<usize>()), f.get(4).map(|x| x.parse::<usize>()))
        {
            places.extend([offset, offset + in_pack - 1]);
        }
    }
    assert!(places.len() > 10, "{listing}");
    for at in places {
        let mut bytes = pristine.clone();
        bytes[at] ^= 0x10;
        assert!(
            !check(&format!("byte {at} flipped"), Some(&bytes)),
            "a flipped bit at {at} of {} went unnoticed",
            bytes.len()
        );
    }
    assert!(check("repaired", None));
}

/// Text that compresses poorly, so a pack that stores it whole is large.
fn noise(lines: usize, seed: u64) -> String {
    let mut x = seed;
    let mut text = String::new();
    for _ in 0..lines {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        text.push_str(&format!("{x:016x} {:016x}\n", x.rotate_left(17)));
    }
    text
}

#[test]
fn a_thin_pack_stores_an_edit_as_a_delta_and_installs_where_its_bases_are() {
    let sb = Sandbox::new();
    let rich = rich_repo(&sb, "src");
    let git = sb.git();
    let big = noise(6000, 7);
    sb.commit(&rich.path, "big.txt", &big, "a large file");
    let state1 = git.read_refs(&rich.path).expect("read refs");
    let full = git.pack_objects(&rich.path, &tips(&state1), &[], &sb.path("full")).expect("full").expect("objects");

    // One line of the large file changes: a self-contained pack stores it whole again.
    sb.commit(&rich.path, "big.txt", &big.replacen("\n", "\nedited\n", 1), "an edit");
    let state2 = git.read_refs(&rich.path).expect("read refs");
    let whole = git
        .pack_objects(&rich.path, &tips(&state2), &tips(&state1), &sb.path("whole"))
        .expect("self-contained")
        .expect("objects");
    let mut bytes = Vec::new();
    let thin = git
        .pack_objects_thin(&rich.path, &tips(&state2), &tips(&state1), |r| r.read_to_end(&mut bytes))
        .expect("thin pack")
        .expect("new objects");
    assert_eq!(thin.objects, whole.objects, "the same objects, only stored differently");
    assert_eq!(thin.consumed, bytes.len());
    assert_eq!(hex::encode(&bytes[bytes.len() - 20..]), thin.checksum, "the checksum is the pack's trailer");
    let whole_size = fs::metadata(&whole.pack).expect("stat").len();
    assert!(
        (bytes.len() as u64) * 10 < whole_size,
        "thin {} bytes vs self-contained {whole_size}: the edit must be a delta",
        bytes.len()
    );

    // Installed where the full pack is, it is completed and indexed: the repository is whole.
    let restored = sb.path("restored.git");
    restore(&git, &restored, &[&full], &state2);
    let installed = git.index_pack_thin(&restored, &mut bytes.as_slice()).expect("index-pack --fix-thin");
    assert!(restored.join(format!("objects/pack/pack-{installed}.idx")).exists());
    git.fsck(&restored).expect("the completed pack and the full one hold every object");
    assert_eq!(git.read_refs(&restored).expect("refs"), state2);

    // Without its bases it cannot be installed, and git says why.
    let empty = sb.path("empty.git");
    git.init_bare(&empty, ObjectFormat::Sha1).expect("init");
    let err = git.index_pack_thin(&empty, &mut bytes.as_slice()).expect_err("bases missing");
    assert!(err.to_string().contains("index-pack"), "{err}");
    // A pack cut short is refused too.
    let err = git.index_pack_thin(&restored, &mut &bytes[..bytes.len() / 2]).expect_err("truncated");
    assert!(err.to_string().contains("index-pack"), "{err}");

    // Nothing new: no pack.
    let none = git.pack_objects_thin(&rich.path, &tips(&state2), &tips(&state2), |r| r.read_to_end(&mut Vec::new()));
    assert!(none.expect("nothing to pack").is_none());
}
