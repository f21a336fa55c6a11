//! `gitvault serve`: run the policies of a configuration file on their schedules.
//!
//! One worker thread per policy takes runs from its queue, so two runs of one policy never
//! overlap: a run that comes due while the previous one still goes is skipped (or, with
//! `overlap = "queue"`, queued — at most one waits). A failed run is tried again after
//! `retry_delay`, doubling, `retries` times. On start, a schedule that should have fired while
//! nothing was serving runs once (`catchup`). SIGTERM or SIGINT: no new run starts; a running
//! backup finishes the repositories in hand, records the others as interrupted and commits, so
//! the vault is consistent; then the process exits 0.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use gitvault_engine::ops::verify;
use gitvault_engine::progress::NoProgress;
use gitvault_ops::catalog::{Catalog, NewRun, Outcome, RunEnd, Trigger};
use time::OffsetDateTime;

use crate::config::{Config, JobAction, Overlap, PolicyConf};
use crate::record::Recorder;
use crate::{PolicyRunOptions, Settings, UsageError, exit};

/// A run waiting for its policy's worker.
#[derive(Clone, Debug)]
pub struct Request {
    pub action: JobAction,
    pub trigger: Trigger,
    /// Who asked: `schedule:POLICY` or `token:NAME`.
    pub actor: String,
    pub only_repo: Option<String>,
}

/// One policy's queue and whether its worker is busy.
#[derive(Default)]
pub struct Lane {
    state: Mutex<LaneState>,
    wake: Condvar,
}

#[derive(Default)]
struct LaneState {
    queue: VecDeque<Request>,
    running: bool,
}

/// Why a request was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The policy is running and it does not queue (or one already waits).
    Busy,
    Stopping,
}

impl Lane {
    /// Queue a run unless the policy's overlap rule refuses it.
    pub fn offer(&self, req: Request, overlap: Overlap, stop: &AtomicBool) -> Result<(), Refused> {
        if stop.load(Ordering::SeqCst) {
            return Err(Refused::Stopping);
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let busy = st.running || !st.queue.is_empty();
        if busy && (overlap == Overlap::Skip || !st.queue.is_empty()) {
            return Err(Refused::Busy);
        }
        st.queue.push_back(req);
        self.wake.notify_all();
        Ok(())
    }

    /// Running, or a run waiting.
    pub fn is_busy(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.running || !st.queue.is_empty()
    }

    /// The next request, or `None` once stopping.
    fn take(&self, stop: &AtomicBool) -> Option<Request> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(r) = st.queue.pop_front() {
                st.running = true;
                return Some(r);
            }
            st = self.wake.wait_timeout(st, Duration::from_millis(500)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn done(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).running = false;
    }

    fn wake_all(&self) {
        self.wake.notify_all();
    }
}

/// The daemon's shared state: what the scheduler, the workers and the HTTP API see.
pub struct Daemon<'a> {
    pub settings: &'a Settings,
    pub config: &'a Config,
    pub catalog: Arc<Catalog>,
    pub lanes: Vec<(String, Lane)>,
    pub stop: Arc<AtomicBool>,
    pub jobs: usize,
    pub alerts: crate::alerts::Alerts,
    /// Alert deliveries in flight (a slow or unreachable endpoint never delays the next run);
    /// joined before the process exits.
    pub sending: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub objectives: crate::history::Objectives,
    pub ctx: gitvault_engine::Context,
}

impl Daemon<'static> {
    /// Deliver alerts in a thread of their own.
    pub fn in_background(&'static self, send: impl FnOnce(&'static Self) + Send + 'static) {
        let handle = std::thread::spawn(move || send(self));
        let mut sending = self.sending.lock().unwrap_or_else(|p| p.into_inner());
        sending.retain(|h| !h.is_finished());
        sending.push(handle);
    }

    /// Alert on repositories newly beyond their RPO (the health is read here, the alert sent in
    /// the background).
    pub fn check_rpo(&'static self) {
        match gitvault_ops::health::health(&self.catalog, &|p| self.objectives.get(p), OffsetDateTime::now_utc()) {
            Ok(h) => self.in_background(move |d| d.alerts.rpo(&h, &d.catalog)),
            Err(e) => tracing::warn!("checking the RPO of each repository: {e}"),
        }
    }

    /// Wait for the alerts still being delivered.
    pub fn finish_sending(&self) {
        let handles: Vec<_> = self.sending.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Daemon<'_> {
    pub fn lane(&self, policy: &str) -> Option<&Lane> {
        self.lanes.iter().find(|(n, _)| n == policy).map(|(_, l)| l)
    }

    pub fn policy(&self, name: &str) -> Option<&PolicyConf> {
        self.config.policies.iter().find(|p| p.name == name)
    }

    /// Queue `req` for `policy`, logging a refusal.
    pub fn offer(&self, policy: &PolicyConf, req: Request) -> Result<(), Refused> {
        let lane = self.lane(&policy.name).expect("a lane per policy");
        let trigger = req.trigger;
        let what = req.action.describe();
        let result = lane.offer(req, policy.overlap, &self.stop);
        if let Err(Refused::Busy) = &result {
            let message = format!(
                "{what} of policy {} due ({}) but its previous run is still going: skipped",
                policy.name,
                trigger.as_str()
            );
            tracing::warn!("{message}");
            let _ = self.catalog.log(None, "warn", None, &message);
            let now = OffsetDateTime::now_utc();
            if let Ok(id) = self.catalog.start_run(&NewRun {
                command: what.clone(),
                policy: Some(policy.name.clone()),
                vault: Some(policy.vaults.join(",")),
                trigger,
                actor: format!("schedule:{}", policy.name),
                backup_type: None,
                attempt: 1,
                started_at: now,
            }) {
                let end = RunEnd {
                    outcome: Some(Outcome::Skipped),
                    error: Some("the previous run of this policy was still going".into()),
                    ..RunEnd::default()
                };
                let _ = self.catalog.finish_run(id, &end, now);
            }
        }
        result
    }
}

/// `gitvault serve --config FILE`.
pub fn serve(s: &'static Settings, config_path: &std::path::Path, listen: Option<std::net::SocketAddr>) -> Result<u8> {
    let cfg = crate::config::load(config_path).map_err(|e| UsageError(format!("{e:#}")))?;
    // The daemon lives as long as the process; the HTTP API's handlers hold it for as long.
    let cfg: &'static Config = Box::leak(Box::new(cfg));
    if !s.vaults.is_empty() {
        return Err(UsageError("--config names the vaults: do not give --vault (or GITVAULT_VAULT) too".into()).into());
    }
    if let (Some(c), false) = (&cfg.catalog, s.catalog_given) {
        s.recorder.prefer_path(c);
    }
    let catalog_path = s.recorder.path().to_path_buf();
    let catalog = Arc::new(Catalog::open(&catalog_path).context(
        "serve keeps its run history in the catalog: give a writable one with --catalog or GITVAULT_CATALOG",
    )?);
    // One daemon per catalog: a second would run every schedule twice.
    let lock_path = catalog_path.with_extension("serve-lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "another `gitvault serve` uses the catalog {} (lock {}): stop it first, or give this one another --catalog",
            catalog_path.display(),
            lock_path.display()
        );
    }
    // Holding the lock, every run a daemon started and still shows as going belongs to a daemon
    // that is gone (killed, power cut): it did not end, say so.
    let daemon_triggers = [Trigger::Schedule, Trigger::Catchup, Trigger::Retry, Trigger::Api];
    let abandoned: Vec<i64> = catalog
        .runs(&gitvault_ops::catalog::RunFilter::default())?
        .into_iter()
        .filter(|r| r.outcome == Outcome::Running && daemon_triggers.contains(&r.trigger))
        .map(|r| r.id)
        .collect();
    if !abandoned.is_empty() {
        let n = catalog.mark_abandoned(&abandoned, OffsetDateTime::now_utc())?;
        let message = format!("{n} runs of a previous `gitvault serve` never ended: marked interrupted");
        tracing::warn!("{message}");
        let _ = catalog.log(None, "warn", None, &message);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the signal handler")?;
    }
    let mut ctx = s.ctx.clone();
    if let (Some(dir), false) = (&cfg.cache_dir, s.cache_dir_given) {
        ctx.cache_dir = dir.clone();
    }
    let mut objectives = crate::history::Objectives { all: None, per_policy: Default::default(), default: cfg.rpo };
    for p in &cfg.policies {
        if let Some(r) = p.rpo {
            objectives.per_policy.insert(p.name.clone(), r);
        }
    }
    let daemon: &'static Daemon<'static> = Box::leak(Box::new(Daemon {
        settings: s,
        config: cfg,
        catalog: catalog.clone(),
        lanes: cfg.policies.iter().map(|p| (p.name.clone(), Lane::default())).collect(),
        stop: stop.clone(),
        jobs: cfg.jobs.unwrap_or(crate::DEFAULT_JOBS),
        alerts: crate::alerts::Alerts::from_config(cfg, &s.ctx.host),
        sending: Mutex::new(Vec::new()),
        objectives,
        ctx: ctx.clone(),
    }));
    let mut serve_opts = gitvault_server::ServeOptions { listen: listen.unwrap_or(cfg.serve.listen), tls: None };
    if let Some((cert, key)) = &cfg.serve.tls {
        serve_opts.tls = Some(gitvault_server::TlsFiles { cert: cert.clone(), key: key.clone() });
    }
    let api = crate::api::start(daemon, serve_opts)?;
    let scheduled: usize = cfg.policies.iter().map(|p| p.jobs.len()).sum();
    let started = format!(
        "gitvault serve started: {} policies, {scheduled} schedules, catalog {}",
        cfg.policies.len(),
        catalog_path.display()
    );
    tracing::info!("{started}");
    eprintln!("{started}");
    let _ = catalog.log(None, "info", None, &started);
    s.recorder.audit("serve_start", &config_path.display().to_string(), "ok", None, None, None);
    for p in &cfg.policies {
        for j in &p.jobs {
            let next = j.cron.next_after(OffsetDateTime::now_utc()).map(crate::output::when).unwrap_or_default();
            eprintln!("  policy {}: {} at {} — next {next} UTC", p.name, j.action.describe(), j.cron);
        }
    }

    std::thread::scope(|scope| {
        for (name, _) in &daemon.lanes {
            scope.spawn(move || worker(daemon, name));
        }
        scheduler(daemon);
        for (_, lane) in &daemon.lanes {
            lane.wake_all();
        }
    });
    api.stop();
    daemon.finish_sending();
    let message = "gitvault serve stopped";
    tracing::info!("{message}");
    eprintln!("{message}");
    let _ = catalog.log(None, "info", None, message);
    s.recorder.audit("serve_stop", &config_path.display().to_string(), "ok", None, None, None);
    Ok(0)
}

/// Fire each schedule job when due, and catch up once on what was missed.
fn scheduler(d: &'static Daemon<'static>) {
    let now = OffsetDateTime::now_utc();
    let mut next: Vec<(&PolicyConf, &crate::config::JobConf, Option<OffsetDateTime>)> = Vec::new();
    for p in &d.config.policies {
        for j in &p.jobs {
            match d.catalog.last_fire(&p.name, &j.id) {
                Ok(Some(last)) => {
                    if let Some(missed) = j.cron.missed(last, now) {
                        let message = format!(
                            "policy {}: {} was due at {} while gitvault was not serving: running it once now",
                            p.name,
                            j.action.describe(),
                            crate::output::when(missed)
                        );
                        tracing::info!("{message}");
                        let _ = d.catalog.log(None, "info", None, &message);
                        let _ = d.offer(p, request(p, j, Trigger::Catchup));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("{e}"),
            }
            let _ = d.catalog.set_last_fire(&p.name, &j.id, now);
            next.push((p, j, j.cron.next_after(now)));
        }
    }
    let mut rpo_checked = std::time::Instant::now() - RPO_CHECK_EVERY;
    while !d.stop.load(Ordering::SeqCst) {
        if rpo_checked.elapsed() >= RPO_CHECK_EVERY {
            d.check_rpo();
            rpo_checked = std::time::Instant::now();
        }
        let now = OffsetDateTime::now_utc();
        for (p, j, due) in &mut next {
            let Some(at) = *due else { continue };
            if at > now {
                continue;
            }
            let _ = d.catalog.set_last_fire(&p.name, &j.id, at);
            let _ = d.offer(p, request(p, j, Trigger::Schedule));
            *due = j.cron.next_after(at.max(now));
        }
        let soonest = next.iter().filter_map(|(_, _, d)| *d).min();
        let wait =
            soonest.map(|t| (t - OffsetDateTime::now_utc()).whole_milliseconds().clamp(0, 500) as u64).unwrap_or(500);
        std::thread::sleep(Duration::from_millis(wait.max(10)));
    }
}

/// How often the daemon looks for repositories beyond their RPO (also after every run).
const RPO_CHECK_EVERY: Duration = Duration::from_secs(60);

fn request(p: &PolicyConf, j: &crate::config::JobConf, trigger: Trigger) -> Request {
    Request { action: j.action.clone(), trigger, actor: format!("schedule:{}", p.name), only_repo: None }
}

/// Run a policy's requests one after another, each with its retries.
fn worker(d: &'static Daemon<'static>, policy_name: &str) {
    let ctx = &d.ctx;
    let lane = d.lane(policy_name).expect("a lane per policy");
    let policy = d.policy(policy_name).expect("a policy per lane");
    while let Some(req) = lane.take(&d.stop) {
        let mut attempt = 1;
        loop {
            let trigger = if attempt == 1 { req.trigger } else { Trigger::Retry };
            let code = run_once(d, policy, &req, trigger, attempt, ctx);
            if code != exit::FAILURE || attempt > policy.retries || d.stop.load(Ordering::SeqCst) {
                break;
            }
            let delay = policy.retry_delay.saturating_mul(1 << (attempt - 1).min(16));
            let message = format!(
                "policy {}: {} failed (attempt {attempt} of {}); trying again in {}s",
                policy.name,
                req.action.describe(),
                policy.retries + 1,
                delay.as_secs()
            );
            tracing::warn!("{message}");
            let _ = d.catalog.log(None, "warn", None, &message);
            if !sleep_unless_stopped(delay, &d.stop) {
                break;
            }
            attempt += 1;
        }
        lane.done();
        d.check_rpo();
    }
}

/// Sleep; false when asked to stop meanwhile.
fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) -> bool {
    let end = std::time::Instant::now() + total;
    while std::time::Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100).min(end.saturating_duration_since(std::time::Instant::now())));
    }
    !stop.load(Ordering::SeqCst)
}

/// One attempt of a request; returns its exit code.
fn run_once(
    d: &'static Daemon<'static>,
    policy: &PolicyConf,
    req: &Request,
    trigger: Trigger,
    attempt: u32,
    base: &gitvault_engine::Context,
) -> u8 {
    let rec = Recorder::with_catalog(d.catalog.clone(), req.actor.clone(), trigger);
    let mut ctx = base.clone();
    ctx.actor = Some(req.actor.clone());
    match &req.action {
        JobAction::Backup(backup_type) => {
            let opts = PolicyRunOptions {
                jobs: d.jobs,
                backup_type: *backup_type,
                only_repo: req.only_repo.clone(),
                cancel: Some(d.stop.clone()),
                attempt,
            };
            match crate::run_policy(d.settings, d.config, policy, &ctx, &rec, &opts, &NoProgress) {
                Ok(done) => {
                    let name = policy.name.clone();
                    let code = done.code;
                    tracing::info!(
                        policy = %policy.name,
                        outcome = done.end.outcome.map_or("?", Outcome::as_str),
                        repositories = done.end.repositories,
                        bytes_added = done.end.bytes_added,
                        "backup run ended"
                    );
                    d.in_background(move |d| d.alerts.after_policy(&name, &done, Some(&d.catalog)));
                    code
                }
                Err(e) => {
                    tracing::error!(policy = %policy.name, "backup run failed: {e:#}");
                    let name = policy.name.clone();
                    d.in_background(move |d| d.alerts.run_error(&name, "backup", &e, Some(&d.catalog)));
                    exit::FAILURE
                }
            }
        }
        JobAction::Verify { read_data } => verify_policy(d, policy, *read_data, &ctx, &rec, attempt),
    }
}

/// `verify` (optionally `--read-data`) of each vault of the policy.
fn verify_policy(
    d: &'static Daemon<'static>,
    policy: &PolicyConf,
    read_data: bool,
    ctx: &gitvault_engine::Context,
    rec: &Recorder,
    attempt: u32,
) -> u8 {
    let mut codes = Vec::new();
    for name in &policy.vaults {
        let run = rec.start_attempt("verify", Some(&policy.name), Some(name), None, attempt);
        let result = (|| -> Result<verify::VerifyReport> {
            let vault = crate::open_configured(d.settings, ctx, d.config.vault(name))
                .with_context(|| format!("opening the vault {name}"))?;
            let opts = verify::VerifyOptions { read_data, ..verify::VerifyOptions::default() };
            Ok(verify::verify(&vault, &opts, &NoProgress)?)
        })();
        let (outcome, error, code) = match &result {
            Ok(r) if r.ok => ("ok", None, 0),
            Ok(r) => (
                "problems",
                Some(format!("{} problems found: run `gitvault verify` for the list", r.problems.len())),
                exit::DAMAGE,
            ),
            Err(e) => ("failed", Some(format!("{e:#}")), exit::FAILURE),
        };
        run.finish(RunEnd {
            outcome: Some(if code == 0 { Outcome::Ok } else { Outcome::Failed }),
            error: error.clone(),
            ..RunEnd::default()
        });
        if let Some(why) = &error {
            let title = format!(
                "verify of vault {name} (policy {}) {}",
                policy.name,
                if code == exit::DAMAGE { "found damage" } else { "failed" }
            );
            let mut e = d.alerts.event(gitvault_ops::notify::EventKind::Failure, title);
            e.policy = Some(policy.name.clone());
            e.vault = Some(name.clone());
            e.run_id = run.id;
            e.lines = vec![why.clone()];
            d.in_background(move |d| d.alerts.send(&e, Some(&d.catalog)));
        }
        rec.audit("verify", name, outcome, error, Some(name), None);
        codes.push(code);
    }
    codes.into_iter().max().unwrap_or(0)
}
