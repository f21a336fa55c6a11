//! Real servers for tests (feature `testing`): moto's standalone S3 server on a free port of
//! 127.0.0.1, killed when dropped. Shared by this crate's conformance suite and the CLI's
//! end-to-end tests, so that there is one way to start it.
//!
//! moto comes from PyPI (`pip install 'moto[server]'`). Without it [`Moto::start_unless_skipped`]
//! panics with that hint, so that a machine missing it cannot pass a suite by accident;
//! `GITVAULT_TEST_NO_S3=1` skips S3 deliberately.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str = "the S3 tests need moto's standalone server: pip install 'moto[server]' \
                                (or set GITVAULT_TEST_NO_S3=1 to skip them)";

/// Whether the S3 tests were asked to be skipped (`GITVAULT_TEST_NO_S3=1`).
pub fn s3_skipped() -> bool {
    std::env::var_os("GITVAULT_TEST_NO_S3").is_some_and(|v| v == "1")
}

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
    /// A server, or `None` when S3 tests are skipped deliberately.
    pub fn start_unless_skipped() -> Option<Self> {
        (!s3_skipped()).then(Self::start)
    }

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

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Buckets are made with a plain request: gitvault never creates one.
    pub fn create_bucket(&self, bucket: &str) {
        let status = http("PUT", self.port, &format!("/{bucket}")).expect("create bucket");
        assert_eq!(status, 200, "create bucket {bucket}");
    }

    /// A bodiless request to the server; returns the status and the body. moto accepts
    /// unsigned requests.
    pub fn request(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        http_with_body(method, self.port, path)
    }
}

fn spawn_moto(port: u16, log: &Path) -> Child {
    let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
    let log_file = || std::fs::File::create(log).expect("moto log file");
    let spawn = |program: &str, pre: &[&str]| {
        Command::new(program).args(pre).args(args).stdin(Stdio::null()).stdout(log_file()).stderr(log_file()).spawn()
    };
    // moto's own entry point, but serving one request at a time: its threaded server checks
    // `If-None-Match: *` and stores in two steps, so two racing conditional writes can both
    // succeed there (AWS S3 and MinIO decide atomically). Serialized, moto decides atomically
    // too, and the create-only tests test gitvault rather than moto's threading.
    spawn("python3", &["-c", SERIAL_MOTO])
        .unwrap_or_else(|e| panic!("cannot start python3 for moto's server ({e}); {INSTALL_HINT}"))
}

const SERIAL_MOTO: &str = "import sys, moto.server as m, werkzeug.serving as w\n\
run = w.run_simple\n\
m.run_simple = lambda *a, **k: run(*a, **dict(k, threaded=False))\n\
m.main(sys.argv[1:])\n";

/// A port of 127.0.0.1 that nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

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
