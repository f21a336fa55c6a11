//! Integration tests of gitvault-ops against real servers on 127.0.0.1: a webhook receiver
//! (std, in a thread) and an SMTP sink with STARTTLS (aiosmtpd, `tests/smtp_sink.py`).

mod config;
mod receiver;
mod smtp;
mod webhook;

use std::path::{Path, PathBuf};
use std::process::Command;

use gitvault_ops::notify::{AlertSpec, Event, EventKind, NotifierOptions, Target};

/// Parses `[[alert]]` tables the way gitvault.toml is parsed.
pub fn specs(toml_text: &str) -> Vec<AlertSpec> {
    #[derive(serde::Deserialize)]
    struct File {
        alert: Vec<AlertSpec>,
    }
    toml::from_str::<File>(toml_text).expect("alert tables").alert
}

pub fn target(toml_text: &str, base_dir: &Path) -> Target {
    let specs = specs(toml_text);
    assert_eq!(specs.len(), 1);
    specs[0].resolve(base_dir).expect("resolve")
}

/// Fast retries, so that tests of retrying stay quick.
pub fn fast() -> NotifierOptions {
    NotifierOptions {
        timeout: std::time::Duration::from_secs(5),
        attempts: 3,
        backoff: std::time::Duration::from_millis(20),
    }
}

pub fn failure_event() -> Event {
    let mut e = Event::new(EventKind::Failure, "Backup failed: 2 of 5 repositories", "backup-1.example.com");
    e.lines = vec!["github:acme/api: fetch failed: connection reset".into(), "github:acme/web: disk full".into()];
    e.policy = Some("nightly".into());
    e.vault = Some("offsite".into());
    e.run_id = Some(42);
    e.repositories = vec!["github:acme/api".into(), "github:acme/web".into()];
    e.data = serde_json::json!({"failed": 2, "total": 5});
    e
}

/// The error with all its causes, as a user would see it.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether a tool the test needs is here. Missing, the test is skipped loudly, except under CI
/// (`CI` set), where it fails: .ci/run installs it.
pub fn present(found: bool, what: &str) -> bool {
    if found {
        return true;
    }
    let message = format!("this test needs {what}");
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("\n!!!!!!!! SKIPPED: {message} !!!!!!!!\n");
    false
}

pub fn openssl_present() -> bool {
    present(Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()), "openssl")
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 and localhost, made with openssl.
pub struct Certs {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn certs(dir: &Path) -> Certs {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=gitvault test CA"],
    ]
    .concat());
    run(&[&["req"], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    Certs { cert: dir.join("server.pem"), key: dir.join("server.key") }
}
