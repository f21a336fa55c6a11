//! `gitvault serve`: schedules fire within seconds against local sources; a failed run is
//! retried with backoff; a run due while the previous one still goes is skipped and logged; a
//! schedule missed while nothing was serving runs once on start; SIGTERM stops cleanly with the
//! vault consistent; a bad schedule is a clear error.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitvault_ops::catalog::{Catalog, Outcome, RunFilter, Trigger};

use crate::common::{PASSWORD, World, commit, new_repo, noise};

struct Serve {
    child: Child,
}

impl Serve {
    fn start(w: &World, config: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_gitvault"))
            .args(["serve", "--config", config.to_str().expect("utf-8")])
            .env("GITVAULT_PASSWORD", PASSWORD)
            .env("GITVAULT_CACHE_DIR", &w.cache)
            .env("GITVAULT_CATALOG", w.path("catalog.db"))
            .env("HOME", w.dir.path())
            .env_remove("GITVAULT_VAULT")
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
"#,
            app.display(),
            w.path("src/does-not-exist").display()
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
    assert!(log.iter().any(|l| l.message.contains("trying again in 2s")), "{log:#?}");
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
    let serve = Serve::start(&w, &config);
    wait_for(&w, 60, "the catch-up run", |c| runs_of(c, "hourly").iter().any(|r| r.outcome == Outcome::Ok));
    std::thread::sleep(Duration::from_secs(2));
    let (code, stderr) = serve.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    let runs = runs_of(&catalog(&w), "hourly");
    assert_eq!(runs.len(), 1, "three missed hours are caught up once: {runs:#?}");
    assert_eq!(runs[0].trigger, Trigger::Catchup);
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
        let out = Command::new(env!("CARGO_BIN_EXE_gitvault"))
            .args(["serve", "--config", config.to_str().expect("utf-8")])
            .env("GITVAULT_PASSWORD", PASSWORD)
            .env("HOME", w.dir.path())
            .env_remove("GITVAULT_VAULT")
            .output()
            .expect("serve");
        assert_eq!(out.status.code(), Some(2), "{policy}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{policy}: {stderr}");
    }
    let config = write_config(&w, &format!("{source}\n[[policy]]\nname = \"p\"\nschedule = \"0 2 * * *\"\n"));
    let first = Serve::start(&w, &config);
    wait_for(&w, 30, "the first daemon", |_| true);
    std::thread::sleep(Duration::from_millis(500));
    let second = Command::new(env!("CARGO_BIN_EXE_gitvault"))
        .args(["serve", "--config", config.to_str().expect("utf-8")])
        .env("GITVAULT_PASSWORD", PASSWORD)
        .env("GITVAULT_CATALOG", w.path("catalog.db"))
        .env("HOME", w.dir.path())
        .env_remove("GITVAULT_VAULT")
        .output()
        .expect("second serve");
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another `gitvault serve` uses the catalog"));
    let (code, _) = first.terminate();
    assert_eq!(code, Some(0));
}
