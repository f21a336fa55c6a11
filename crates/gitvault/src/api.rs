//! The daemon side of the HTTP API: what `gitvault_server` asks (`Control`) answered from the
//! running `serve`, and the server's own thread and runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use gitvault_format::snapshot::BackupType;
use gitvault_ops::catalog::Trigger;
use gitvault_server::{
    AppState, Control, ControlError, PolicyInfo, ServeOptions, TriggerError, TriggerRequest, Triggered,
};
use time::OffsetDateTime;

use crate::config::{JobAction, Overlap};
use crate::serve::{Daemon, Refused, Request};

struct DaemonControl(&'static Daemon<'static>);

impl Control for DaemonControl {
    fn policies(&self) -> Vec<PolicyInfo> {
        let now = OffsetDateTime::now_utc();
        self.0
            .config
            .policies
            .iter()
            .map(|p| PolicyInfo {
                name: p.name.clone(),
                schedules: p.jobs.iter().map(|j| format!("{}: {}", j.action.describe(), j.cron)).collect(),
                rpo_seconds: self.0.objectives.get(Some(&p.name)).map(|d| d.as_secs()),
                vaults: p.vaults.clone(),
                running: self.0.lane(&p.name).is_some_and(|l| l.is_busy()),
                next_run: p.jobs.iter().filter_map(|j| j.cron.next_after(now)).min(),
            })
            .collect()
    }

    fn rpo(&self, policy: Option<&str>) -> Option<Duration> {
        self.0.objectives.get(policy)
    }

    fn trigger(&self, request: &TriggerRequest) -> Result<Triggered, TriggerError> {
        let d = self.0;
        let policy = d.policy(&request.policy).ok_or_else(|| TriggerError::UnknownPolicy(request.policy.clone()))?;
        if let Some(repo) = &request.repository {
            // Repositories of forge accounts are known only once listed: the run says if one is
            // not there. Plain sources are checked now.
            let forge = policy.sources.iter().any(|n| d.config.source(n).forge.is_some());
            if !forge && !policy.sources.iter().any(|n| n == repo) {
                return Err(TriggerError::UnknownRepository { policy: policy.name.clone(), repository: repo.clone() });
            }
        }
        let backup_type = match request.backup_type.as_deref() {
            None => policy.backup_type,
            Some("full") => Some(BackupType::Full),
            Some("diff") => Some(BackupType::Diff),
            Some("incr") => Some(BackupType::Incr),
            Some(other) => {
                return Err(TriggerError::Other(format!("type {other:?} is not full, diff or incr").into()));
            }
        };
        let req = Request {
            action: JobAction::Backup(backup_type),
            trigger: Trigger::Api,
            actor: request.actor.clone(),
            only_repo: request.repository.clone(),
        };
        let lane = d.lane(&policy.name).expect("a lane per policy");
        // An operator asking for a run while one goes is told so (409) rather than queued.
        match lane.offer(req, Overlap::Skip, &d.stop) {
            Ok(()) => {
                let message = format!("run of policy {} queued by {}", policy.name, request.actor);
                tracing::info!("{message}");
                let _ = d.catalog.log(None, "info", None, &message);
                Ok(Triggered { queued_at: OffsetDateTime::now_utc() })
            }
            Err(Refused::Busy) => Err(TriggerError::AlreadyRunning(policy.name.clone())),
            Err(Refused::Stopping) => Err(TriggerError::ShuttingDown),
        }
    }

    fn snapshots(&self, vault: Option<&str>) -> Result<serde_json::Value, ControlError> {
        let d = self.0;
        let conf = match vault {
            Some(name) => d.config.vaults.iter().find(|v| v.name == name),
            None => d.config.vaults.first(),
        }
        .ok_or_else(|| ControlError::UnknownVault(vault.unwrap_or("").to_string()))?;
        let opened = crate::open_configured(d.settings, &d.ctx, conf)
            .with_context(|| format!("opening the vault {}", conf.name))
            .map_err(|e| ControlError::Other(e.into()))?;
        let snaps = opened.snapshots().map_err(|e| ControlError::Other(Box::new(e)))?;
        Ok(crate::output::snapshots_json(&snaps))
    }
}

/// The API server's thread, stopped with [`Running::stop`].
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bind the API's address (an error now if it is taken or the certificate is bad), then serve
/// in a thread of its own.
pub fn start(daemon: &'static Daemon<'static>, opts: ServeOptions) -> Result<Running> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gitvault-api")
        .enable_all()
        .build()
        .context("starting the HTTP API's runtime")?;
    let listen = opts.listen;
    let bound = runtime.block_on(gitvault_server::bind(&opts)).with_context(|| format!("the HTTP API on {listen}"))?;
    let scheme = if bound.is_tls() { "https" } else { "http" };
    let address = bound.local_addr();
    let message = format!("HTTP API and /metrics on {scheme}://{address} (bearer token: `gitvault token create`)");
    tracing::info!("{message}");
    eprintln!("{message}");
    let _ = daemon.catalog.log(None, "info", None, &message);
    let router = gitvault_server::router(AppState::new(daemon.catalog.clone(), Arc::new(DaemonControl(daemon))));
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, outer) = (stop.clone(), daemon.stop.clone());
    let thread = std::thread::Builder::new()
        .name("gitvault-api".into())
        .spawn(move || {
            let shutdown = async move {
                while !flag.load(Ordering::SeqCst) && !outer.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            if let Err(e) = runtime.block_on(bound.run(router, shutdown)) {
                tracing::error!("the HTTP API stopped: {e}");
                eprintln!("error: the HTTP API stopped: {e}");
            }
        })
        .context("starting the HTTP API's thread")?;
    Ok(Running { stop, thread: Some(thread) })
}
