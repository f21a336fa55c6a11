//! The S3 backend against a real S3-compatible server: moto's standalone server, started on a
//! free port of 127.0.0.1 for each test and killed when the test ends.
//!
//! moto is a test dependency from PyPI (`pip install 'moto[server]'`). Without it the S3 cases
//! fail, so that a machine missing it cannot pass the suite by accident; set
//! `GITVAULT_TEST_NO_S3=1` to skip S3 deliberately.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use gitvault_storage::testing::{Moto, free_port};
use gitvault_storage::{ErrorKind, LockMode, Retention, S3Config, S3Store, Store};

const BUCKET: &str = "gitvault-test";
const SECRET: &str = "test-secret-key-never-printed";

/// Settings for a bucket of `moto` under `prefix`, with throw-away credentials.
fn config(moto: &Moto, prefix: &str) -> S3Config {
    moto.s3_config(BUCKET, prefix, SECRET)
}

/// An S3 store in a fresh moto server, for the conformance suite; `None` when S3 is skipped.
pub fn backend() -> Option<(Moto, S3Store)> {
    let moto = Moto::start_unless_skipped()?;
    moto.create_bucket(BUCKET);
    let store = S3Store::new(&config(&moto, "vaults/team")).expect("S3 store");
    Some((moto, store))
}

#[test]
fn config_debug_hides_the_secret() {
    let config = S3Config { secret_access_key: Some(SECRET.into()), ..S3Config::default() };
    let shown = format!("{config:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("****"), "{shown}");
}

#[test]
fn describe_names_bucket_prefix_and_endpoint() {
    let config = S3Config {
        bucket: "backups".into(),
        prefix: "/git/".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        secret_access_key: Some(SECRET.into()),
        ..S3Config::default()
    };
    let store = S3Store::new(&config).expect("store");
    assert_eq!(store.describe(), "S3 bucket backups/git at http://127.0.0.1:9");
}

#[test]
fn streamed_create_refuses_to_overwrite() {
    // The conformance suite's overwrite case fits in one PutObject; this one is a multipart
    // upload, whose `If-None-Match` goes on CompleteMultipartUpload.
    let Some((_moto, s)) = backend() else { return };
    let big = vec![1u8; 20 << 20];
    let mut w = s.create("data/big").expect("create");
    w.write_all(&big).expect("write");
    w.commit().expect("commit");
    let mut w = s.create("data/big").expect("create");
    w.write_all(&vec![2u8; 20 << 20]).expect("write");
    assert_eq!(w.commit().expect_err("exists").kind, ErrorKind::AlreadyExists);
    assert_eq!(s.read("data/big").expect("read"), big);
}

#[test]
fn dropped_writer_aborts_its_multipart_upload() {
    let Some((moto, s)) = backend() else { return };
    let uploads = || {
        let (status, body) = moto.request("GET", &format!("/{BUCKET}?uploads")).expect("list uploads");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("ListMultipartUploadsResult"), "{body}");
        body.matches("<UploadId>").count()
    };
    let mut w = s.create("data/dead").expect("create");
    // Enough parts that the upload has surely begun on the server (OpenDAL holds back one part
    // and one part-sized buffer before it initiates).
    w.write_all(&vec![3u8; 40 << 20]).expect("write");
    assert_eq!(uploads(), 1, "the upload is under way");
    drop(w);
    assert_eq!(uploads(), 0, "an upload was left behind");
    assert_eq!(s.stat("data/dead").expect("stat"), None);
}

#[test]
fn missing_bucket_fails_fast_without_printing_the_secret() {
    let Some((moto, _)) = backend() else { return };
    let store = S3Store::new(&S3Config { bucket: "no-such-bucket".into(), ..config(&moto, "") }).expect("store");
    let started = Instant::now();
    let err = store.put_new("config", b"x").expect_err("no bucket");
    assert!(!err.is_transient(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "a permanent error is not retried");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("no-such-bucket"), "{shown}");
}

#[test]
fn unreachable_server_is_transient() {
    if gitvault_storage::testing::s3_skipped() {
        return;
    }
    let config = S3Config {
        bucket: BUCKET.into(),
        endpoint: Some(format!("http://127.0.0.1:{}", free_port())),
        access_key_id: Some("test".into()),
        secret_access_key: Some(SECRET.into()),
        ..S3Config::default()
    };
    let err = S3Store::new(&config).expect("store").stat("config").expect_err("nobody listens");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(!format!("{err} {err:?}").contains(SECRET));
}

/// An S3 store in a fresh moto server whose bucket has Object Lock enabled.
pub fn lock_backend() -> Option<(Moto, S3Store)> {
    let moto = Moto::start_unless_skipped()?;
    moto.create_lock_bucket(BUCKET);
    let store = S3Store::new(&config(&moto, "vaults/locked")).expect("S3 store");
    Some((moto, store))
}

#[test]
fn object_lock_is_supported_only_where_the_bucket_has_it() {
    let Some((moto, plain)) = backend() else { return };
    let err = plain.lock_support().expect_err("a bucket without Object Lock");
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("Object Lock"), "{err}");
    plain.put_new("config", b"x").expect("put");
    let until = SystemTime::now() + Duration::from_secs(3600);
    let err = plain.set_retention("config", Retention { mode: LockMode::Governance, until }).expect_err("no lock");
    assert_ne!(err.kind, ErrorKind::Transient, "{err}");
    assert_eq!(plain.retention("config").expect("read"), None);
    drop(moto);
    let Some((_moto, locked)) = lock_backend() else { return };
    locked.lock_support().expect("Object Lock enabled");
}

#[test]
fn retention_is_set_read_back_and_extended() {
    let Some((_moto, s)) = lock_backend() else { return };
    s.put_new("data/ab/abcd", b"pack").expect("put");
    assert_eq!(s.retention("data/ab/abcd").expect("read"), None, "no lock until one is set");
    let day = SystemTime::now() + Duration::from_secs(86400);
    s.set_retention("data/ab/abcd", Retention { mode: LockMode::Governance, until: day }).expect("lock");
    let got = s.retention("data/ab/abcd").expect("read").expect("locked");
    assert_eq!(got.mode, LockMode::Governance);
    // Whole seconds, rounded up.
    assert!(got.until >= day && got.until < day + Duration::from_secs(1), "{got:?}");
    let week = day + Duration::from_secs(6 * 86400);
    s.set_retention("data/ab/abcd", Retention { mode: LockMode::Governance, until: week }).expect("extend");
    assert!(s.retention("data/ab/abcd").expect("read").expect("locked").until >= week);
    assert_eq!(s.retention("data/ab/missing").expect("read"), None);
}

#[test]
fn a_locked_object_cannot_be_destroyed_and_a_plain_delete_only_hides_it() {
    let Some((moto, s)) = lock_backend() else { return };
    s.put_new("snapshots/aa", b"snapshot").expect("put");
    let until = SystemTime::now() + Duration::from_secs(3600);
    s.set_retention("snapshots/aa", Retention { mode: LockMode::Governance, until }).expect("lock");
    // Deleting the object's version is what the lock refuses.
    let err = s.purge("snapshots/aa").expect_err("locked");
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert_eq!(s.read("snapshots/aa").expect("still there"), b"snapshot");
    // A plain DELETE in a versioned bucket adds a delete marker and succeeds: the object
    // vanishes from listings while its locked version stays. This is why prune and forget ask
    // for the retention before deleting, and leave locked files alone.
    s.delete("snapshots/aa").expect("delete marker");
    assert_eq!(s.stat("snapshots/aa").expect("stat"), None);
    let (_, versions) = moto.request("GET", &format!("/{BUCKET}?versions")).expect("versions");
    assert!(versions.contains("<Version>") && versions.contains("snapshots/aa"), "{versions}");
    // An unlocked object is destroyed for good.
    s.put_new("tmp/free", b"x").expect("put");
    s.purge("tmp/free").expect("purge");
    assert_eq!(s.stat("tmp/free").expect("stat"), None);
}
