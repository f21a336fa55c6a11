//! `gitvault serve`: schedules fire within seconds against local sources; a failed run is
//! retried with backoff; a run due while the previous one still goes is skipped and logged; a
//! schedule missed while nothing was serving runs once on start; SIGTERM stops cleanly with the
//! vault consistent; a bad schedule is a clear error.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitvault_ops::catalog::{Catalog, Outcome, RunFilter, Trigger};

use crate::common::{PASSWORD, World, commit, new_repo, noise};

/// `gitvault serve [EXTRA...] --config CONFIG` in the world `w`, its catalog `catalog.db`.
fn serve_cmd(w: &World, config: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gitvault"));
    c.arg("serve")
        .args(extra)
        .arg("--config")
        .arg(config)
        .env("GITVAULT_PASSWORD", PASSWORD)
        .env("GITVAULT_CACHE_DIR", &w.cache)
        .env("GITVAULT_CATALOG", w.path("catalog.db"))
        .env("HOME", w.dir.path())
        .env_remove("GITVAULT_VAULT");
    c
}

struct Serve {
    child: Child,
}

impl Serve {
    fn start(w: &World, config: &Path) -> Self {
        // Port 0: tests run side by side, each daemon's API on a port of its own.
        let child = serve_cmd(w, config, &["--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        Self { child }
    }

    /// SIGTERM, then the exit code and what it wrote on stderr.
    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
                }
                return (status.code(), err);
            }
            assert!(Instant::now() < deadline, "serve did not stop within 60 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn catalog(w: &World) -> Catalog {
    Catalog::open(&w.path("catalog.db")).expect("catalog")
}

/// Wait until `check` holds (polling the catalog), or fail after `secs`.
fn wait_for(w: &World, secs: u64, what: &str, check: impl Fn(&Catalog) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if w.path("catalog.db").exists() && check(&catalog(w)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for: {what}; runs: {:#?}", catalog(w).runs(&RunFilter::default()));
}

fn runs_of(c: &Catalog, policy: &str) -> Vec<gitvault_ops::catalog::Run> {
    c.runs(&RunFilter { policy: Some(policy.into()), ..RunFilter::default() }).expect("runs")
}

fn write_config(w: &World, body: &str) -> PathBuf {
    let path = w.path("gitvault.toml");
    let text = format!("[[vault]]\nname = \"local\"\nurl = \"{}\"\n\n{body}", w.vault.display());
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn serve_runs_schedules_retries_failures_and_stops_cleanly_on_sigterm() {
    let w = World::new();
    w.init();
    let app = new_repo(&w.path("src/app"));
    commit(&app, "a", &noise(1, 1000), "a");
    let config = write_config(
        &w,
        &format!(
            r#"
[[source]]
url = "{}"
name = "app"

[[source]]
url = "{}"
name = "gone"

[[policy]]
name = "often"
sources = ["app"]
schedule = "* * * * * *"
timezone = "UTC"

[[policy]]
name = "broken"
sources = ["gone"]
retries = 2
retry_delay = "1s"
schedule = "*/30 * * * * *"

# Alerts that cannot be delivered, and one that cannot even be set up: the backups still run.
[[alert]]
name = "nobody-listens"
kind = "webhook"
url = "http://127.0.0.1:{closed}/hook"
on = ["failure", "success"]

[[alert]]
name = "no-mail-server"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {closed}
security = "none"
from = "gitvault <backup@example.org>"
to = ["ops@example.org"]

[[alert]]
name = "no-secret"
kind = "webhook"
url = "http://127.0.0.1:{closed}/hook"
secret_env = "GITVAULT_TEST_UNSET_SECRET"
"#,
            app.display(),
            w.path("src/does-not-exist").display(),
            closed = closed_port(),
        ),
    );
    let serve = Serve::start(&w, &config);
    wait_for(&w, 90, "two good runs of `often`", |c| {
        runs_of(c, "often").iter().filter(|r| r.outcome == Outcome::Ok).count() >= 2
    });
    wait_for(&w, 120, "the failing policy tried three times", |c| {
        let runs = runs_of(c, "broken");
        runs.iter().filter(|r| r.outcome == Outcome::Failed).count() >= 3
    });
    let (code, stderr) = serve.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("gitvault serve stopped"), "{stderr}");

    let c = catalog(&w);
    let often = runs_of(&c, "often");
    assert!(often.iter().all(|r| r.actor == "schedule:often" && r.command == "backup"));
    assert!(often.iter().any(|r| r.trigger == Trigger::Schedule));
    let broken = runs_of(&c, "broken");
    let mut first_three: Vec<_> = broken.iter().rev().take(3).collect();
    first_three.sort_by_key(|r| r.id);
    let attempts: Vec<(u32, Trigger)> = first_three.iter().map(|r| (r.attempt, r.trigger)).collect();
    assert_eq!(attempts[1..], [(2, Trigger::Retry), (3, Trigger::Retry)], "{broken:#?}");
    // Backoff: the second retry waits twice as long as the first (1 s, then 2 s).
    let gap = |a: &gitvault_ops::catalog::Run, b: &gitvault_ops::catalog::Run| {
        (b.started_at - a.ended_at.expect("ended")).whole_milliseconds()
    };
    assert!(gap(first_three[0], first_three[1]) >= 900, "{broken:#?}");
    assert!(gap(first_three[1], first_three[2]) >= 1900, "{broken:#?}");
    assert!(broken[0].error.as_deref().unwrap_or("").contains("failed"), "{broken:#?}");

    // No run was left `running`, and the vault verifies.
    assert!(c.runs(&RunFilter::default()).expect("runs").iter().all(|r| r.outcome != Outcome::Running));
    let verify = w.run(&["verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let log = c.logs(&Default::default()).expect("logs");
    assert!(log.iter().any(|l| l.message.contains("trying again in 1s")), "{log:#?}");
    assert!(
        log.iter().any(|l| l.level == "warn"
            && l.message.contains("alert to nobody-listens")
            && l.message.contains("failed")),
        "an undeliverable alert is logged: {log:#?}"
    );
    assert!(
        log.iter().any(|l| l.message.contains("alert to no-mail-server") && l.message.contains("failed")),
        "{log:#?}"
    );
    assert!(stderr.contains("GITVAULT_TEST_UNSET_SECRET"), "the unusable alert is named: {stderr}");
    assert!(log.iter().any(|l| l.message.contains("trying again in 2s")), "{log:#?}");
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An HTTP server on 127.0.0.1 that answers every request after `delay` with 404: a git source
/// that keeps a backup busy for that long.
fn slow_http(delay_secs: u32) -> (Child, u16) {
    let script = format!(
        r#"
import http.server, socketserver, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep({delay_secs})
        self.send_response(404); self.end_headers()
    do_POST = do_GET
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 for a slow HTTP server");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")), &mut line)
        .expect("port");
    (child, line.trim().parse().expect("port number"))
}

#[test]
fn a_run_due_while_the_previous_one_still_goes_is_skipped_and_logged() {
    let w = World::new();
    w.init();
    let (mut server, port) = slow_http(4);
    let config = write_config(
        &w,
        &format!(
            r#"
[[source]]
url = "http://127.0.0.1:{port}/slow.git"
name = "slow"

[[policy]]
name = "busy"
retries = 0
schedule = "* * * * * *"
"#
        ),
    );
    let serve = Serve::start(&w, &config);
    wait_for(&w, 90, "a skipped run", |c| runs_of(c, "busy").iter().any(|r| r.outcome == Outcome::Skipped));
    let (code, stderr) = serve.terminate();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code, Some(0), "{stderr}");
    let c = catalog(&w);
    let runs = runs_of(&c, "busy");
    let running_at_once = runs.iter().filter(|r| r.outcome == Outcome::Running).count();
    assert_eq!(running_at_once, 0, "{runs:#?}");
    let skipped = runs.iter().find(|r| r.outcome == Outcome::Skipped).expect("skipped");
    assert_eq!(skipped.error.as_deref(), Some("the previous run of this policy was still going"));
    // Runs that did start never overlapped: each began after the previous one ended.
    let mut started: Vec<_> = runs.iter().filter(|r| r.outcome != Outcome::Skipped).collect();
    started.sort_by_key(|r| r.id);
    for pair in started.windows(2) {
        assert!(pair[1].started_at >= pair[0].ended_at.expect("ended"), "{runs:#?}");
    }
    let log = c.logs(&Default::default()).expect("logs");
    assert!(log.iter().any(|l| l.level == "warn" && l.message.contains("still going: skipped")), "{log:#?}");
}

#[test]
fn a_schedule_missed_while_not_serving_runs_once_on_start() {
    let w = World::new();
    w.init();
    let app = new_repo(&w.path("src/app"));
    commit(&app, "a", &noise(1, 1000), "a");
    let config = write_config(
        &w,
        &format!(
            r#"
[[source]]
url = "{}"
name = "app"

[[policy]]
name = "hourly"
schedule = "0 * * * *"
timezone = "UTC"
"#,
            app.display()
        ),
    );
    // The last time the schedule fired, as a previous `serve` recorded it: three hours ago.
    let three_hours_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(3);
    catalog(&w).set_last_fire("hourly", "0", three_hours_ago).expect("seed");
    // A run that daemon was in when it was killed: still `running` in the catalog.
    let killed = catalog(&w)
        .start_run(&gitvault_ops::catalog::NewRun {
            command: "backup".into(),
            policy: Some("hourly".into()),
            vault: Some("local".into()),
            trigger: Trigger::Schedule,
            actor: "schedule:hourly".into(),
            backup_type: None,
            attempt: 1,
            started_at: three_hours_ago,
        })
        .expect("seed a run");
    let serve = Serve::start(&w, &config);
    wait_for(&w, 60, "the catch-up run", |c| runs_of(c, "hourly").iter().any(|r| r.outcome == Outcome::Ok));
    std::thread::sleep(Duration::from_secs(2));
    let (code, stderr) = serve.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    let runs: Vec<_> = runs_of(&catalog(&w), "hourly").into_iter().filter(|r| r.id != killed).collect();
    assert_eq!(runs.len(), 1, "three missed hours are caught up once: {runs:#?}");
    assert_eq!(runs[0].trigger, Trigger::Catchup);
    let abandoned = catalog(&w).run(killed).expect("run").expect("the seeded run");
    assert_eq!(abandoned.outcome, Outcome::Interrupted, "the killed daemon's run is marked, not left running");
    assert_eq!(w.snapshots().len(), 1);
}

#[test]
fn bad_schedules_and_a_second_daemon_are_clear_errors() {
    let w = World::new();
    w.init();
    let app = new_repo(&w.path("src/app"));
    commit(&app, "a", &noise(1, 1000), "a");
    let source = format!("[[source]]\nurl = \"{}\"\nname = \"app\"\n", app.display());
    for (policy, expected) in [
        ("[[policy]]\nname = \"p\"\nschedule = \"0 25 * * *\"\n", "line 10: cron expression \"0 25 * * *\": Hours"),
        ("[[policy]]\nname = \"p\"\nschedule = \"0 2 * *\"\n", "4 fields"),
        ("[[policy]]\nname = \"p\"\nschedule = \"0 2 * * *\"\ntimezone = \"Mars/Olympus\"\n", "Mars/Olympus"),
        (
            "[[policy]]\nname = \"p\"\n[[policy.schedule]]\ncron = \"0 3 1 * *\"\naction = \"prune\"\n",
            "not backup or verify",
        ),
        ("[[policy]]\nname = \"p\"\nschedule = \"0 2 * * *\"\noverlap = \"sometimes\"\n", "not skip or queue"),
    ] {
        let config = write_config(&w, &format!("{source}\n{policy}"));
        let out = serve_cmd(&w, &config, &[]).output().expect("serve");
        assert_eq!(out.status.code(), Some(2), "{policy}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{policy}: {stderr}");
    }
    let config = write_config(&w, &format!("{source}\n[[policy]]\nname = \"p\"\nschedule = \"0 2 * * *\"\n"));
    let first = Serve::start(&w, &config);
    wait_for(&w, 30, "the first daemon", |c| {
        c.logs(&Default::default()).expect("logs").iter().any(|l| l.message.starts_with("gitvault serve started"))
    });
    let second = serve_cmd(&w, &config, &["--listen", "127.0.0.1:0"]).output().expect("second serve");
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another `gitvault serve` uses the catalog"));
    let (code, _) = first.terminate();
    assert_eq!(code, Some(0));
}

/// A webhook receiver on 127.0.0.1: every request's headers and body, answered 200.
struct Receiver {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

fn receiver() -> Receiver {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            sink.lock().expect("lock").push((head, String::from_utf8_lossy(&body).into_owned()));
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    Receiver { port, got }
}

/// The SMTP sink of the alert tests (aiosmtpd) with STARTTLS and AUTH, and a self-signed
/// certificate for 127.0.0.1.
fn smtp_sink(dir: &Path) -> (Child, u16, PathBuf) {
    std::fs::create_dir_all(dir).expect("mkdir");
    // A CA, and a server certificate it signs (a self-signed CA cannot be the server's own).
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req", "-x509"], &ec[..], &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA"]]
        .concat());
    run(&[&["req"], &ec[..], &["-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
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
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    let (cert, key, ca) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gitvault-ops/tests/smtp_sink.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--dir")
        .arg(dir.join("mail"))
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .args(["--user", "gitvault", "--password", "smtp-secret"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 smtp_sink.py (pip install aiosmtpd)");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")), &mut line)
        .expect("port");
    (child, line.trim().parse().expect("port"), ca)
}

/// Read serve's stderr until it says where the API listens.
fn api_address(serve: &mut Serve) -> String {
    let stderr = serve.child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(stderr);
        for line in std::io::BufRead::lines(reader).map_while(Result::ok) {
            eprintln!("serve: {line}");
            if let Some(rest) = line.split("HTTP API and /metrics on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(a) => a,
        Err(_) => panic!("serve printed no API address; exit: {:?}", serve.child.wait()),
    }
}

fn bearer(client: &reqwest::blocking::Client, url: &str, token: Option<&str>) -> reqwest::blocking::Response {
    let mut r = client.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().expect("request")
}

#[test]
fn serve_answers_the_api_and_metrics_and_sends_alerts_by_webhook_and_smtp() {
    let w = World::new();
    w.init();
    let app = new_repo(&w.path("src/app"));
    commit(&app, "a", &noise(1, 1000), "a");
    crate::common::git(&app, &["tag", "v1"]);
    let hook = receiver();
    let (mut smtp, smtp_port, cert) = smtp_sink(&w.path("smtp"));
    let config = write_config(
        &w,
        &format!(
            r#"
[serve]
listen = "127.0.0.1:0"

[[source]]
url = "{app}"
name = "app"

[[source]]
url = "{gone}"
name = "gone"

[[policy]]
name = "nightly"
sources = ["app"]
schedule = "0 3 1 1 *"

[[policy]]
name = "broken"
sources = ["gone"]
retries = 0
rpo = "26h"
schedule = "0 3 1 1 *"

[[alert]]
name = "ops-hook"
kind = "webhook"
url = "http://127.0.0.1:{hook}/gitvault"
secret_env = "TEST_WEBHOOK_SECRET"
on = ["failure", "suspicious", "success", "rpo"]

[[alert]]
name = "ops-mail"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
username = "gitvault"
password_env = "TEST_SMTP_PASSWORD"
from = "gitvault <backup@example.org>"
to = ["ops@example.org"]
ca_file = "{cert}"
on = ["failure"]
"#,
            app = app.display(),
            gone = w.path("src/missing").display(),
            hook = hook.port,
            cert = cert.display(),
        ),
    );
    // Tokens first (the catalog is the daemon's).
    let token = |role: &str, name: &str| -> String {
        let out = w
            .cmd_without_vault(&["token", "create", "--role", role, "--name", name, "--json"])
            .env("GITVAULT_CATALOG", w.path("catalog.db"))
            .output()
            .expect("token");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["secret"]
            .as_str()
            .expect("secret")
            .to_string()
    };
    let (operator, auditor) = (token("operator", "ci"), token("auditor", "soc2"));

    let child = serve_cmd(&w, &config, &[])
        .env("TEST_WEBHOOK_SECRET", "hook-secret")
        .env("TEST_SMTP_PASSWORD", "smtp-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut serve = Serve { child };
    let base = api_address(&mut serve);
    let client = reqwest::blocking::Client::new();

    assert_eq!(bearer(&client, &format!("{base}/healthz"), None).status(), 200);
    for path in ["/api/v1/status", "/api/v1/runs", "/metrics"] {
        let r = bearer(&client, &format!("{base}{path}"), None);
        assert_eq!(r.status(), 401, "{path} without a token");
        let r = bearer(&client, &format!("{base}{path}"), Some("gvt_not-a-real-token"));
        assert_eq!(r.status(), 401, "{path} with a bad token");
    }
    // An auditor reads but cannot trigger; an operator triggers.
    let trigger = |tok: &str, policy: &str| {
        client.post(format!("{base}/api/v1/policies/{policy}/run")).bearer_auth(tok).send().expect("post").status()
    };
    assert_eq!(trigger(&auditor, "nightly"), 403);
    assert_eq!(trigger(&operator, "nope"), 404);
    assert_eq!(trigger(&operator, "nightly"), 202);
    wait_for(&w, 60, "the triggered run", |c| runs_of(c, "nightly").iter().any(|r| r.outcome == Outcome::Ok));
    let run = &runs_of(&catalog(&w), "nightly")[0];
    assert_eq!((run.trigger, run.actor.as_str()), (Trigger::Api, "token:ci"));

    // A tag deleted upstream, then another run: a suspicious-change alert.
    crate::common::git(&app, &["tag", "-d", "v1"]);
    assert_eq!(trigger(&operator, "nightly"), 202);
    wait_for(&w, 60, "the second run", |c| {
        runs_of(c, "nightly").iter().filter(|r| r.outcome == Outcome::Ok).count() == 2
    });
    // A failing policy: a failure alert by webhook and by e-mail.
    assert_eq!(trigger(&operator, "broken"), 202);
    wait_for(&w, 60, "the failed run", |c| runs_of(c, "broken").iter().any(|r| r.outcome == Outcome::Failed));

    let status: serde_json::Value =
        serde_json::from_str(&bearer(&client, &format!("{base}/api/v1/status"), Some(&auditor)).text().expect("body"))
            .expect("json");
    assert_eq!(status["summary"]["repositories"], 2, "{status}");
    assert_eq!(status["summary"]["failing"], 1, "{status}");
    let runs: serde_json::Value = serde_json::from_str(
        &bearer(&client, &format!("{base}/api/v1/runs?policy=nightly"), Some(&auditor)).text().expect("body"),
    )
    .expect("json");
    let id = runs["runs"][0]["id"].as_i64().expect("id");
    let detail: serde_json::Value = serde_json::from_str(
        &bearer(&client, &format!("{base}/api/v1/runs/{id}"), Some(&auditor)).text().expect("body"),
    )
    .expect("json");
    assert_eq!(detail["repositories"][0]["repo"], "app", "{detail}");
    let snaps: serde_json::Value = serde_json::from_str(
        &bearer(&client, &format!("{base}/api/v1/snapshots?vault=local"), Some(&auditor)).text().expect("body"),
    )
    .expect("json");
    assert_eq!(
        snaps.as_array().map(Vec::len),
        Some(2),
        "two good runs (a run where every source failed writes none): {snaps}"
    );
    let metrics = bearer(&client, &format!("{base}/metrics"), Some(&auditor));
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().expect("text");
    assert!(metrics.contains("gitvault_up 1"), "{metrics}");
    assert!(
        metrics.contains(r#"gitvault_repository_rpo_breached{repository="gone",vault="local",policy="broken"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"gitvault_runs_total{policy="nightly",command="backup",outcome="ok"} 2"#), "{metrics}");

    // Alerts: the webhook got success, suspicious, failure and rpo, each signed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let kinds = || -> Vec<String> {
        hook.got
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, b)| {
                serde_json::from_str::<serde_json::Value>(b).expect("json")["event"].as_str().unwrap_or("").to_string()
            })
            .collect()
    };
    while !["success", "suspicious", "failure", "rpo"].iter().all(|k| kinds().iter().any(|x| x == k)) {
        assert!(Instant::now() < deadline, "webhook deliveries: {:?}", kinds());
        std::thread::sleep(Duration::from_millis(200));
    }
    for (head, body) in hook.got.lock().expect("lock").iter() {
        let sig = head.lines().find_map(|l| {
            l.strip_prefix("x-gitvault-signature-256: ").or_else(|| l.strip_prefix("X-Gitvault-Signature-256: "))
        });
        let sig = sig.expect("signed").trim();
        assert!(gitvault_ops::notify::verify_signature(b"hook-secret", body.as_bytes(), sig), "{head}");
        assert!(!body.contains("hook-secret") && !body.contains("smtp-secret"));
    }
    let suspicious = hook
        .got
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, b)| serde_json::from_str::<serde_json::Value>(b).expect("json"))
        .find(|v| v["event"] == "suspicious")
        .expect("suspicious");
    assert_eq!(suspicious["lines"], serde_json::json!(["app: refs/tags/v1 deleted"]), "{suspicious}");
    assert_eq!(suspicious["policy"], "nightly");
    // E-mail: one failure message, over STARTTLS, authenticated.
    let mail_dir = w.path("smtp/mail");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mails = || -> Vec<serde_json::Value> {
        std::fs::read_dir(&mail_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("msg-"))
                    .map(|e| serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("json"))
                    .collect()
            })
            .unwrap_or_default()
    };
    while mails().is_empty() {
        assert!(Instant::now() < deadline, "no e-mail arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mail = &mails()[0];
    assert_eq!(mail["tls"], true);
    assert_eq!(mail["auth_user"], "gitvault");
    let data = mail["data"].as_str().expect("data");
    assert!(data.contains("Subject: [gitvault] backup of policy broken failed"), "{data}");
    assert!(data.contains("does not exist"), "{data}");

    // The audit trail has the API's decisions.
    let audit = catalog(&w).audit_entries(None).expect("audit");
    let api: Vec<(&str, &str)> =
        audit.iter().filter(|a| a.action == "api_trigger").map(|a| (a.actor.as_str(), a.outcome.as_str())).collect();
    assert!(api.contains(&("token:soc2", "denied")) && api.contains(&("token:ci", "accepted")), "{api:?}");

    let (code, _) = serve.terminate();
    assert_eq!(code, Some(0));
    let _ = smtp.kill();
    let _ = smtp.wait();
}

#[test]
fn serve_speaks_https_with_a_configured_certificate_and_says_when_its_port_is_taken() {
    let w = World::new();
    w.init();
    let app = new_repo(&w.path("src/app"));
    commit(&app, "a", &noise(1, 1000), "a");
    // The SMTP helper makes a CA and a certificate for 127.0.0.1; the sink itself is not needed.
    let (mut sink, _, ca) = smtp_sink(&w.path("tls"));
    let _ = sink.kill();
    let _ = sink.wait();
    let source = format!("[[source]]\nurl = \"{}\"\nname = \"app\"\n", app.display());
    let tls = format!(
        "[serve]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n",
        w.path("tls/cert.pem").display(),
        w.path("tls/key.pem").display()
    );
    let path = w.path("gitvault.toml");
    std::fs::write(&path, format!("{tls}[[vault]]\nname = \"local\"\nurl = \"{}\"\n\n{source}", w.vault.display()))
        .expect("config");
    let child = serve_cmd(&w, &path, &[]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("serve");
    let mut serve = Serve { child };
    let base = api_address(&mut serve);
    assert!(base.starts_with("https://"), "{base}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("ca")).expect("pem");
    let client = reqwest::blocking::Client::builder().add_root_certificate(ca).build().expect("client");
    let r = client.get(format!("{base}/healthz")).send().expect("https request");
    assert_eq!(r.status(), 200);
    let plain = reqwest::blocking::Client::new().get(format!("{}/healthz", base.replace("https://", "http://"))).send();
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true), "plain HTTP is not answered on the TLS port");

    // A second daemon on another catalog but a port already taken: a clear error, exit 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let listen = format!("127.0.0.1:{port}");
    let out = serve_cmd(&w, &path, &["--listen", &listen])
        .env("GITVAULT_CATALOG", w.path("other.db"))
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("in use"), "{err}");
    let (code, _) = serve.terminate();
    assert_eq!(code, Some(0));
}
