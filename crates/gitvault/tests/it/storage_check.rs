//! `gitvault storage check`: a local directory and an S3 bucket with Object Lock are fit; the
//! output has one line per check, `--json` an array; a destination given twice is a usage error.

use gitvault_storage::testing::Moto;

use crate::common::World;

#[test]
fn a_local_directory_passes_and_says_it_cannot_lock() {
    let w = World::new();
    w.init();
    let out = w.cmd_without_vault(&["storage", "check", w.vault.to_str().expect("utf-8")]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for name in ["create-only", "atomic-create", "read-after-write", "streamed-write", "listing", "stat", "delete"] {
        assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains(name)), "{name}: {stdout}");
    }
    assert!(stdout.lines().any(|l| l.starts_with("MISSING") && l.contains("lock (optional)")), "{stdout}");
    // It was a vault in use, and still is one: nothing is left behind but empty directories.
    assert!(w.ok(&["verify"]).contains("no problems found"));
    let leftovers = crate::common::files_under(&w.vault.join("tmp"));
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let out = w.cmd(&["storage", "check", "/elsewhere"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "VAULT and --vault both given");
    let out =
        w.cmd_without_vault(&["storage", "check", w.path("missing").to_str().expect("utf-8")]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
}

#[test]
fn an_s3_bucket_with_object_lock_passes_every_check_in_json() {
    let Some(moto) = Moto::start_unless_skipped() else { return };
    moto.create_lock_bucket("checked");
    let w = World::new();
    let out = w
        .cmd_without_vault(&["storage", "check", "--json"])
        .env("GITVAULT_VAULT", "s3://checked/new")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "s3-secret")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let checks: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("a JSON array");
    assert!(checks.len() >= 9);
    for c in &checks {
        assert_eq!(c["status"], "ok", "{c}");
    }
    let lock = checks.iter().find(|c| c["name"] == "lock").expect("lock check");
    assert_eq!(lock["required"], false);
}
