//! The S3 backend against a real S3-compatible server: moto's standalone server, started on a
//! free port of 127.0.0.1 for each test and killed when the test ends.
//!
//! moto is a test dependency from PyPI (`pip install 'moto[server]'`). Without it the S3 cases
//! fail, so that a machine missing it cannot pass the suite by accident; set
//! `GITVAULT_TEST_NO_S3=1` to skip S3 deliberately.

use std::io::Write;
use std::time::{Duration, Instant};

use gitvault_storage::testing::{Moto, free_port};
use gitvault_storage::{ErrorKind, S3Config, S3Store, Store};

const BUCKET: &str = "gitvault-test";
const SECRET: &str = "test-secret-key-never-printed";

/// Settings for a bucket of `moto` under `prefix`, with throw-away credentials.
fn config(moto: &Moto, prefix: &str) -> S3Config {
    S3Config {
        bucket: BUCKET.into(),
        prefix: prefix.into(),
        endpoint: Some(moto.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some(SECRET.into()),
        virtual_host_style: false,
    }
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
