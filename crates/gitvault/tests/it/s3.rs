//! A vault in S3: the whole path (init, backup, incremental, restore, verify) against moto's
//! standalone S3 server on 127.0.0.1, driven through `--vault s3://…` and the AWS variables.
//! Without moto this fails (install it with `pip install 'moto[server]'`) unless
//! GITVAULT_TEST_NO_S3=1 asks to skip S3 deliberately.

use std::process::Command;

use gitvault_storage::testing::Moto;

use crate::common::{PASSWORD, World, commit, new_repo, noise, refs};

const SECRET: &str = "s3-secret-that-must-never-be-printed";

#[test]
fn a_vault_in_s3_backs_up_and_restores_exactly() {
    let Some(moto) = Moto::start_unless_skipped() else { return };
    moto.create_bucket("backups");
    let w = World::new();
    let s3 = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gitvault"));
        c.args(args)
            .arg("--vault")
            .arg("s3://backups/team/vault")
            .env("GITVAULT_PASSWORD", PASSWORD)
            .env("GITVAULT_CACHE_DIR", &w.cache)
            .env("HOME", w.dir.path())
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env_remove("AWS_PROFILE");
        let out = c.output().expect("run");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the secret was printed");
        (out.status.code(), stdout.into_owned(), stderr.into_owned())
    };
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = s3(args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        stdout
    };
    ok(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    let (code, _, stderr) = s3(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    assert_eq!(code, Some(1), "a second init on the same prefix is refused");
    assert!(stderr.contains("not empty"), "{stderr}");

    // The vault really is in the bucket, under the prefix, and nowhere on disk.
    let (_, listing) = moto.request("GET", "/backups?list-type=2").expect("list bucket");
    assert!(listing.contains("team/vault/config"), "{listing}");
    assert!(!w.vault.exists());

    let r = new_repo(&w.path("src/app"));
    commit(&r, "big.bin", &noise(5, 12 << 20), "a pack larger than one multipart part");
    let src = r.to_str().expect("utf-8");
    ok(&["backup", src]);
    let first = refs(&r);
    commit(&r, "more.bin", &noise(6, 100_000), "more");
    ok(&["backup", src]);
    let second = refs(&r);
    let snaps: serde_json::Value = serde_json::from_str(&ok(&["snapshots", "--json"])).expect("json");
    let ids: Vec<&str> = snaps.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), 2);
    assert!(ok(&["verify", "--read-data"]).contains("no problems found"));
    for (id, expected, label) in [(ids[0], &first, "s3-full"), (ids[1], &second, "s3-incr")] {
        let target = w.path(&format!("{label}.git"));
        ok(&["restore", id, "--target", target.to_str().expect("utf-8")]);
        let got = refs(&target);
        assert_eq!(&got.refs, &expected.refs, "{label}");
        gitvault_git::Git::new().fsck(&target).expect("fsck");
    }

    // Retention in S3: forget with a ledger entry; prune reads the server's clock (an object's
    // LastModified) and leaves young data for a later run.
    let forgot: serde_json::Value = serde_json::from_str(&ok(&["forget", "--keep-last", "1", "--json"])).expect("json");
    assert_eq!(forgot["removed"], 1);
    let pruned: serde_json::Value = serde_json::from_str(&ok(&["prune", "--json"])).expect("json");
    assert!(pruned["marked"].is_null(), "{pruned}");
    assert_eq!(pruned["young_unreferenced"], 0, "the kept incremental still needs the full's pack: {pruned}");
    let (_, listing) = moto.request("GET", "/backups?list-type=2&prefix=team/vault/tmp").expect("list");
    assert!(!listing.contains("clock"), "the clock probe is removed: {listing}");
    assert!(ok(&["verify", "--read-data"]).contains("no problems found"));
}

/// `copy` goes through the same storage trait both ways: a local vault into S3, then that S3
/// vault into a new local one, which restores what the first held.
#[test]
fn copy_replicates_a_local_vault_into_s3_and_back() {
    let Some(moto) = Moto::start_unless_skipped() else { return };
    moto.create_bucket("replica");
    let w = World::new();
    w.init();
    let r = new_repo(&w.path("src/app"));
    commit(&r, "big.bin", &noise(7, 9 << 20), "a pack larger than one multipart part");
    w.backup(&[r.to_str().expect("utf-8")]);
    let expected = refs(&r);
    let s3_vault = "s3://replica/copies";
    let back = w.path("back").display().to_string();
    let run = |args: &[&str]| {
        let out = w.s3_cmd(&moto.endpoint(), SECRET, args).output().expect("run");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the secret was printed");
        stdout.into_owned()
    };
    for vault in [s3_vault, back.as_str()] {
        run(&["init", "--vault", vault, "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    }
    let local = w.vault.display().to_string();
    let up: serde_json::Value =
        serde_json::from_str(&run(&["copy", "--json", "--from", &local, "--to", s3_vault])).expect("json");
    assert_eq!(up["data_transferred"], 2, "{up}");
    let down: serde_json::Value =
        serde_json::from_str(&run(&["copy", "--json", "--from", s3_vault, "--to", &back])).expect("json");
    assert_eq!(down["data_transferred"], 2, "{down}");
    assert!(run(&["verify", "--vault", s3_vault, "--read-data"]).contains("no problems found"));
    let target = w.path("restored.git");
    run(&["restore", "--vault", &back, "latest", "--target", target.to_str().expect("utf-8")]);
    assert_eq!(refs(&target).refs, expected.refs);
    gitvault_git::Git::new().fsck(&target).expect("fsck");
}

/// One backup run into a local vault and an S3 vault at once; each restores on its own.
#[test]
fn one_backup_writes_to_a_local_and_an_s3_vault() {
    let Some(moto) = Moto::start_unless_skipped() else { return };
    moto.create_bucket("second");
    let w = World::new();
    w.init();
    let r = new_repo(&w.path("src/app"));
    commit(&r, "a.bin", &noise(8, 300_000), "first");
    let s3_vault = "s3://second/site-b";
    let local = w.vault.display().to_string();
    let run = |args: &[&str]| {
        let out = w.s3_cmd(&moto.endpoint(), SECRET, args).output().expect("run");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["init", "--vault", s3_vault, "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    let out = run(&["backup", "--json", "--vault", &local, "--vault", s3_vault, r.to_str().expect("utf-8")]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["destinations"][0]["status"], "ok", "{v}");
    assert_eq!(v["destinations"][1]["status"], "ok", "{v}");
    for (vault, label) in [(local.as_str(), "local"), (s3_vault, "s3")] {
        let target = w.path(&format!("pair-{label}.git"));
        run(&["restore", "--vault", vault, "latest", "--target", target.to_str().expect("utf-8")]);
        assert_eq!(refs(&target).refs, refs(&r).refs, "{label}");
    }
}
