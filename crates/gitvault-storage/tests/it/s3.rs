//! The S3 backend against a real S3-compatible server: moto's standalone server, started on a
//! free port of 127.0.0.1 for each test and killed when the test ends.
//!
//! moto is a test dependency from PyPI (`pip install 'moto[server]'`). Without it the S3 cases
//! fail, so that a machine missing it cannot pass the suite by accident; set
//! `GITVAULT_TEST_NO_S3=1` to skip S3 deliberately.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitvault_storage::{ErrorKind, S3Config, S3Store, Store};

const BUCKET: &str = "gitvault-test";
const SECRET: &str = "test-secret-key-never-printed";
const INSTALL_HINT: &str = "the S3 tests need moto's standalone server: pip install 'moto[server]' \
                            (or set GITVAULT_TEST_NO_S3=1 to skip them)";

/// A running moto server; killed on drop, with its log in a temporary directory.
pub struct Moto {
    child: Child,
    port: u16,
    _log_dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    pub fn start() -> Self {
        let log_dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut child = spawn_moto(port, &log_dir.path().join("moto.log"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait for moto") {
                let log = std::fs::read_to_string(log_dir.path().join("moto.log")).unwrap_or_default();
                panic!("moto_server exited with {status} before answering; {INSTALL_HINT}\n{log}");
            }
            if http("GET", port, "/").is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "moto_server did not answer on port {port} within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port, _log_dir: log_dir }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Buckets are made with a plain request: the store (like gitvault) never creates one.
    pub fn create_bucket(&self, bucket: &str) {
        let status = http("PUT", self.port, &format!("/{bucket}")).expect("create bucket");
        assert_eq!(status, 200, "create bucket {bucket}");
    }

    pub fn config(&self, prefix: &str) -> S3Config {
        S3Config {
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some(SECRET.into()),
            virtual_host_style: false,
        }
    }
}

fn spawn_moto(port: u16, log: &Path) -> Child {
    let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
    let log_file = || std::fs::File::create(log).expect("moto log file");
    let spawn = |program: &str, pre: &[&str]| {
        Command::new(program).args(pre).args(args).stdin(Stdio::null()).stdout(log_file()).stderr(log_file()).spawn()
    };
    spawn("moto_server", &[])
        .or_else(|_| spawn("python3", &["-m", "moto.server"]))
        .unwrap_or_else(|e| panic!("cannot start moto_server ({e}); {INSTALL_HINT}"))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A bodiless HTTP/1.0 request; returns the status code. moto accepts unsigned requests.
fn http(method: &str, port: u16, path: &str) -> std::io::Result<u16> {
    http_with_body(method, port, path).map(|(status, _)| status)
}

fn http_with_body(method: &str, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(conn, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// An S3 store in a fresh moto server, for the conformance suite; `None` when S3 is skipped.
pub fn backend() -> Option<(Moto, S3Store)> {
    if std::env::var_os("GITVAULT_TEST_NO_S3").is_some_and(|v| v == "1") {
        return None;
    }
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let store = S3Store::new(&moto.config("vaults/team")).expect("S3 store");
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
        let (status, body) = http_with_body("GET", moto.port, &format!("/{BUCKET}?uploads")).expect("list uploads");
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
    let store = S3Store::new(&S3Config { bucket: "no-such-bucket".into(), ..moto.config("") }).expect("store");
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
    if std::env::var_os("GITVAULT_TEST_NO_S3").is_some_and(|v| v == "1") {
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
