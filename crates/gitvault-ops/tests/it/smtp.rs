//! E-mail alerts against a real SMTP server on 127.0.0.1 (aiosmtpd, `tests/smtp_sink.py`) that
//! offers STARTTLS with a certificate from a throw-away CA and requires AUTH.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gitvault_ops::notify::{Notifier, NotifierOptions, NotifyError, Target};
use serde_json::Value;

use crate::{Certs, certs, chain, failure_event, fast, target};

const PASSWORD: &str = "pw-Zq9-smtp-secret";

/// Whether python3 with aiosmtpd and openssl are here.
fn tools_present() -> bool {
    let python = Command::new("python3").args(["-c", "import aiosmtpd"]).output().is_ok_and(|o| o.status.success());
    crate::present(python, "python3 with aiosmtpd (python3 -m pip install aiosmtpd)") && crate::openssl_present()
}

struct Sink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    fn start(tls: Option<&Certs>, implicit_tls: bool) -> Sink {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let mut command = Command::new("python3");
        command.arg(script).arg("--dir").arg(dir.path()).args(["--user", "gitvault", "--password", PASSWORD]);
        if let Some(certs) = tls {
            command.arg("--cert").arg(&certs.cert).arg("--key").arg(&certs.key);
        }
        if implicit_tls {
            command.arg("--implicit-tls");
        }
        let mut child = command.stdout(Stdio::piped()).spawn().expect("start smtp_sink.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read port");
        let port = line.trim().parse().unwrap_or_else(|_| panic!("smtp_sink.py printed {line:?}, not a port"));
        Sink { child, port, dir }
    }

    fn records(&self, prefix: &str) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("read sink dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{prefix}-"))))
            .collect();
        files.sort();
        files.iter().map(|p| serde_json::from_slice(&std::fs::read(p).expect("read")).expect("JSON")).collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn email_target(port: u16, dir: &Path, extra: &str) -> Target {
    target(
        &format!(
            r#"[[alert]]
            name = "mail"
            kind = "email"
            smtp_host = "127.0.0.1"
            smtp_port = {port}
            username = "gitvault"
            password_file = "smtp.password"
            from = "gitvault <backup@example.com>"
            to = ["ops@example.com", "Oncall <oncall@example.com>"]
            {extra}
            "#
        ),
        dir,
    )
}

fn send(target: Target, options: NotifierOptions) -> Result<(), NotifyError> {
    let mut deliveries = Notifier::with_options(vec![target], options).send(&failure_event());
    assert_eq!(deliveries.len(), 1);
    deliveries.remove(0).result
}

fn setup(password: &str) -> (tempfile::TempDir, Certs) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("smtp.password"), format!("{password}\n")).expect("write password");
    let certs = certs(dir.path());
    (dir, certs)
}

#[test]
fn email_is_delivered_over_starttls_with_auth() {
    if !tools_present() {
        return;
    }
    let (dir, certs) = setup(PASSWORD);
    let sink = Sink::start(Some(&certs), false);
    let t = email_target(sink.port, dir.path(), "ca_file = \"ca.pem\"");
    assert_eq!(t.describe(), format!("mail (email smtp://127.0.0.1:{} starttls)", sink.port));
    send(t, fast()).expect("delivered");

    let messages = sink.records("msg");
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["tls"], true, "sent only after STARTTLS");
    assert_eq!(m["auth_user"], "gitvault");
    assert_eq!(m["mail_from"], "backup@example.com");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ops@example.com", "oncall@example.com"]));
    let data = m["data"].as_str().expect("data");
    assert!(data.contains("Subject: [gitvault] Backup failed: 2 of 5 repositories\r\n"), "{data}");
    assert!(data.contains("From: gitvault <backup@example.com>\r\n"), "{data}");
    assert!(data.contains("To: ops@example.com, Oncall <oncall@example.com>\r\n"), "{data}");
    assert!(data.contains("Content-Type: text/plain; charset=utf-8"), "{data}");
    for expected in [
        "github:acme/api: fetch failed: connection reset",
        "github:acme/web: disk full",
        "event: failure",
        "host: backup-1.example.com",
        "policy: nightly",
        "vault: offsite",
        "run: 42",
    ] {
        assert!(data.contains(expected), "{expected:?} in {data}");
    }
    assert!(!data.contains(PASSWORD));
}

#[test]
fn email_is_delivered_over_implicit_tls() {
    if !tools_present() {
        return;
    }
    let (dir, certs) = setup(PASSWORD);
    let sink = Sink::start(Some(&certs), true);
    let t = email_target(sink.port, dir.path(), "security = \"tls\"\nca_file = \"ca.pem\"");
    assert_eq!(t.describe(), format!("mail (email smtps://127.0.0.1:{} tls)", sink.port));
    send(t, fast()).expect("delivered");
    let messages = sink.records("msg");
    assert_eq!((messages.len(), &messages[0]["tls"]), (1, &Value::Bool(true)));
}

#[test]
fn wrong_password_is_a_clear_error_without_the_password() {
    if !tools_present() {
        return;
    }
    let (dir, certs) = setup("wrong-Kx8-password");
    let sink = Sink::start(Some(&certs), false);
    let err = send(email_target(sink.port, dir.path(), "ca_file = \"ca.pem\""), fast()).expect_err("bad password");
    let shown = format!("{} | {err:?}", chain(&err));
    eprintln!("{shown}");
    assert!(
        shown.starts_with(&format!("mail (email smtp://127.0.0.1:{} starttls): SMTP delivery failed", sink.port)),
        "{shown}"
    );
    assert!(shown.contains("535"), "{shown}");
    assert!(!shown.contains("wrong-Kx8-password") && !shown.contains(PASSWORD), "{shown}");
    assert!(!err.is_transient(), "a refused password is not retried");
    let auths = sink.records("auth");
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert_eq!((&auths[0]["ok"], &auths[0]["tls"]), (&Value::Bool(false), &Value::Bool(true)));
    assert!(sink.records("msg").is_empty());
}

#[test]
fn server_without_starttls_gets_neither_password_nor_message() {
    if !tools_present() {
        return;
    }
    let (dir, _certs) = setup(PASSWORD);
    let sink = Sink::start(None, false);
    let err = send(email_target(sink.port, dir.path(), "ca_file = \"ca.pem\""), fast()).expect_err("no STARTTLS");
    let shown = chain(&err);
    eprintln!("{shown}");
    assert!(shown.contains("SMTP delivery failed") && shown.to_lowercase().contains("starttls"), "{shown}");
    assert!(sink.records("auth").is_empty(), "no AUTH in clear");
    assert!(sink.records("msg").is_empty(), "no message in clear");
}

#[test]
fn untrusted_server_certificate_is_refused() {
    if !tools_present() {
        return;
    }
    let (dir, certs) = setup(PASSWORD);
    let sink = Sink::start(Some(&certs), false);
    // No ca_file: the throw-away CA is not trusted.
    let err = send(email_target(sink.port, dir.path(), ""), fast()).expect_err("untrusted certificate");
    eprintln!("{}", chain(&err));
    assert!(!err.is_transient());
    assert!(chain(&err).to_lowercase().contains("certificate"), "{}", chain(&err));
    assert!(sink.records("auth").is_empty() && sink.records("msg").is_empty());
}

#[test]
fn unreachable_smtp_is_a_clear_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("smtp.password"), PASSWORD).expect("write password");
    let options = NotifierOptions { timeout: Duration::from_secs(2), attempts: 2, backoff: Duration::from_millis(10) };
    let started = std::time::Instant::now();
    let err = send(email_target(port, dir.path(), ""), options).expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(3));
    let shown = chain(&err);
    assert!(
        shown.starts_with(&format!("mail (email smtp://127.0.0.1:{port} starttls): SMTP delivery failed")),
        "{shown}"
    );
    assert!(shown.to_lowercase().contains("refused"), "{shown}");
    assert!(!shown.contains(PASSWORD));
    assert!(err.is_transient());
}
