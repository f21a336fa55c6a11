//! Real servers for tests (feature `testing`), each on a free port of 127.0.0.1 and killed when
//! dropped: moto's standalone S3 server ([`Moto`]) and OpenSSH's sshd ([`Sshd`]). Shared by this
//! crate's conformance suite and the CLI's end-to-end tests, so that there is one way to start
//! them.
//!
//! moto comes from PyPI (`pip install 'moto[server]'`), sshd from Debian's `openssh-server`.
//! Without them [`Moto::start_unless_skipped`] and [`Sshd::start_unless_skipped`] panic with an
//! install hint, so that a machine missing one cannot pass a suite by accident;
//! `GITVAULT_TEST_NO_S3=1` and `GITVAULT_TEST_NO_SFTP=1` skip them deliberately.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
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

    /// Settings for `bucket` of this server under `prefix`, with throw-away credentials whose
    /// secret key is `secret` (tests check it never reaches a message).
    pub fn s3_config(&self, bucket: &str, prefix: &str, secret: &str) -> crate::S3Config {
        crate::S3Config {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some(secret.into()),
            virtual_host_style: false,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Buckets are made with a plain request: gitvault never creates one.
    pub fn create_bucket(&self, bucket: &str) {
        let status = http("PUT", self.port, &format!("/{bucket}")).expect("create bucket");
        assert_eq!(status, 200, "create bucket {bucket}");
    }

    /// A bucket with S3 Object Lock enabled (which makes it versioned), as
    /// `CreateBucket` with `x-amz-bucket-object-lock-enabled: true` makes it.
    pub fn create_lock_bucket(&self, bucket: &str) {
        let (status, body) =
            http_request("PUT", self.port, &format!("/{bucket}"), &[("x-amz-bucket-object-lock-enabled", "true")])
                .expect("create bucket");
        assert_eq!(status, 200, "create bucket {bucket} with Object Lock: {body}");
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
    http_request(method, port, path, &[])
}

fn http_request(method: &str, port: u16, path: &str, headers: &[(&str, &str)]) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(conn, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{extra}Content-Length: 0\r\n\r\n")?;
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

pub const SSHD_INSTALL_HINT: &str = "the SFTP tests need OpenSSH's server and client: apt-get install \
                                     openssh-server openssh-client (or set GITVAULT_TEST_NO_SFTP=1 to skip them)";

/// Where Debian's openssh-server puts the daemon.
const SSHD: &str = "/usr/sbin/sshd";

/// Channels a test server lets one connection open at once, unless a test asks otherwise.
const MAX_SESSIONS: u32 = 100;

/// Whether the SFTP tests were asked to be skipped (`GITVAULT_TEST_NO_SFTP=1`).
pub fn sftp_skipped() -> bool {
    std::env::var_os("GITVAULT_TEST_NO_SFTP").is_some_and(|v| v == "1")
}

/// A running OpenSSH server with a fresh host key, accepting one fresh user key for the current
/// user, with its SFTP subsystem; killed on drop. Everything lives in one temporary directory:
/// keys, configuration, log, a `known_hosts` trusting the server, and `srv/` for vaults. Nothing
/// touches `~/.ssh`.
pub struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    user: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// A server, or `None` when SFTP tests are skipped deliberately.
    pub fn start_unless_skipped() -> Option<Self> {
        Self::start_unless_skipped_with_max_sessions(MAX_SESSIONS)
    }

    /// [`Sshd::start_with_max_sessions`], or `None` when SFTP tests are skipped deliberately.
    pub fn start_unless_skipped_with_max_sessions(max_sessions: u32) -> Option<Self> {
        (!sftp_skipped()).then(|| Self::start_with_max_sessions(max_sessions))
    }

    pub fn start() -> Self {
        Self::start_with_max_sessions(MAX_SESSIONS)
    }

    /// A server that lets a connection run at most `max_sessions` channels at once (sshd's
    /// `MaxSessions`). It logs at `VERBOSE`: each session started is a line of [`Sshd::log`].
    pub fn start_with_max_sessions(max_sessions: u32) -> Self {
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing; {SSHD_INSTALL_HINT}");
        // sshd refuses to start without its privilege separation directory (made by the
        // package's service, which tests do not run).
        if !Path::new("/run/sshd").exists() {
            std::fs::create_dir_all("/run/sshd")
                .unwrap_or_else(|e| panic!("cannot create /run/sshd ({e}); {SSHD_INSTALL_HINT}"));
        }
        // Short: the ssh master's control socket is made under it, and socket paths are short.
        let dir = tempfile::Builder::new().prefix("gvssh").tempdir_in("/tmp").expect("tempdir");
        let d = dir.path();
        for key in ["host_key", "user_key", "other_key"] {
            keygen(&d.join(key));
        }
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        std::fs::create_dir(d.join("srv")).expect("srv dir");
        let user = current_user();
        let port = free_port();
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nPidFile {d}/sshd.pid\nMaxStartups 100\n\
             MaxSessions {max_sessions}\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("host key");
        let host_pub = host_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        std::fs::write(d.join("known_hosts"), format!("[127.0.0.1]:{port} {host_pub}\n")).expect("known_hosts");
        std::fs::write(d.join("empty_known_hosts"), "").expect("known_hosts");
        let log = || std::fs::OpenOptions::new().create(true).append(true).open(d.join("sshd.log")).expect("log");
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SSHD} ({e}); {SSHD_INSTALL_HINT}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for sshd") {
                let log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
                panic!("sshd exited with {status} before answering; {SSHD_INSTALL_HINT}\n{log}");
            }
            if ssh_banner(port) {
                break;
            }
            assert!(Instant::now() < deadline, "sshd did not answer on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let sshd = Self { child, port, dir, user };
        sshd.write_client_config("ssh_config", &sshd.known_hosts(), Some(&sshd.user_key()));
        sshd
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The login name: the user running the tests (the only one sshd lets in).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The temporary directory holding everything; short enough for control sockets.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An empty directory for vaults, as an absolute path on the server.
    pub fn srv(&self) -> PathBuf {
        self.dir.path().join("srv")
    }

    /// The private key the server accepts.
    pub fn user_key(&self) -> PathBuf {
        self.dir.path().join("user_key")
    }

    /// A private key the server does not accept.
    pub fn other_key(&self) -> PathBuf {
        self.dir.path().join("other_key")
    }

    /// A known_hosts file trusting this server's host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A known_hosts file that knows no host.
    pub fn empty_known_hosts(&self) -> PathBuf {
        self.dir.path().join("empty_known_hosts")
    }

    /// An ssh_config (for `ssh -F`) that trusts this server and offers [`Sshd::user_key`].
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// Write an ssh_config named `name` that trusts only `known_hosts` and offers only `key`
    /// (or, without one, only what `ssh -i` names); returns its path. No agent, no `~/.ssh`.
    pub fn write_client_config(&self, name: &str, known_hosts: &Path, key: Option<&Path>) -> PathBuf {
        let path = self.dir.path().join(name);
        let key = key.map(|k| format!("IdentityFile {}\n", k.display())).unwrap_or_default();
        let config = format!(
            "UserKnownHostsFile {}\nGlobalKnownHostsFile /dev/null\n{key}IdentitiesOnly yes\nIdentityAgent none\n",
            known_hosts.display(),
        );
        std::fs::write(&path, config).expect("write ssh_config");
        path
    }

    /// What the server logged so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "gitvault-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen ({e}); {SSHD_INSTALL_HINT}"));
    assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether an SSH server answers with its version banner on `port`.
fn ssh_banner(port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut banner = [0u8; 4];
    conn.read_exact(&mut banner).is_ok() && &banner == b"SSH-"
}
