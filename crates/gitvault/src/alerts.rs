//! Turning what runs did into alerts (gitvault_ops::notify), and recording each delivery.
//!
//! A run that failed (or partly failed) raises `failure`; a force-push on a protected branch,
//! a deleted branch or tag, a moved tag, or many issues deleted at once raise `suspicious`; a
//! repository whose newest good backup is older than its policy's RPO raises `rpo` once (again
//! only after it recovered); every good run raises `success`, which targets receive only when
//! they ask for it. A delivery that fails is logged and recorded; it never fails a backup.

use gitvault_ops::catalog::Catalog;
use gitvault_ops::health::RepoHealth;
use gitvault_ops::notify::{Event, EventKind, Notifier, resolve_alerts};

use crate::config::Config;

pub struct Alerts {
    notifier: Option<Notifier>,
    host: String,
}

impl Alerts {
    /// Resolve the config's `[[alert]]` tables; a table that cannot be used (a missing secret, a
    /// bad address) is reported and left out, the others work.
    pub fn from_config(cfg: &Config, host: &str) -> Self {
        if cfg.alerts.is_empty() {
            return Self { notifier: None, host: host.to_string() };
        }
        let base = cfg.path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        let (targets, errors) = resolve_alerts(&cfg.alerts, &base);
        for e in &errors {
            tracing::warn!("an [[alert]] of {} cannot be used: {e}", cfg.path.display());
            eprintln!("warning: an [[alert]] of {} cannot be used: {e}", cfg.path.display());
        }
        Self { notifier: (!targets.is_empty()).then(|| Notifier::new(targets)), host: host.to_string() }
    }

    pub fn is_empty(&self) -> bool {
        self.notifier.is_none()
    }

    pub fn event(&self, kind: EventKind, title: String) -> Event {
        Event::new(kind, title, self.host.clone())
    }

    /// Send; record each delivery's outcome in the catalog log (never the target's secret).
    pub fn send(&self, event: &Event, catalog: Option<&Catalog>) {
        let Some(n) = &self.notifier else { return };
        for d in n.send(event) {
            let (level, message) = match &d.result {
                Ok(()) => ("info", format!("{} alert sent to {}", event.kind.as_str(), d.target)),
                Err(e) => ("warn", format!("{} alert to {} failed: {e}", event.kind.as_str(), d.target)),
            };
            if level == "warn" {
                tracing::warn!("{message}");
                eprintln!("warning: {message}");
            } else {
                tracing::info!("{message}");
            }
            if let Some(c) = catalog {
                let _ = c.log(event.run_id, level, None, &message);
            }
        }
    }

    /// `alert test`: a test event to every target, whatever its `on`.
    pub fn send_test(&self) -> Vec<gitvault_ops::notify::Delivery> {
        match &self.notifier {
            Some(n) => n.send_to_all(&gitvault_ops::notify::test_event(self.host.clone())),
            None => Vec::new(),
        }
    }

    /// The alerts of one policy run.
    pub fn after_policy(&self, policy: &str, done: &crate::PolicyDone, catalog: Option<&Catalog>) {
        if self.is_empty() {
            return;
        }
        let vaults: Vec<String> = done.run.outcomes.iter().map(|o| o.vault.clone()).collect();
        let with = |mut e: Event| {
            e.policy = Some(policy.to_string());
            e.vault = Some(vaults.join(","));
            e.run_id = done.run_id;
            e
        };
        if !done.suspicious.lines.is_empty() {
            let mut e = with(self.event(
                EventKind::Suspicious,
                format!(
                    "suspicious changes upstream in {} repositories (policy {policy})",
                    done.suspicious.repositories.len()
                ),
            ));
            e.lines = done.suspicious.lines.clone();
            e.repositories = done.suspicious.repositories.clone();
            e.data = serde_json::json!({ "changes": done.suspicious.lines });
            self.send(&e, catalog);
        }
        let mut failed_repos = Vec::new();
        let mut lines = Vec::new();
        for o in &done.run.outcomes {
            match &o.result {
                Ok(r) => {
                    for f in &r.failures {
                        failed_repos.push(f.name.clone());
                        lines.push(format!("{} into {}: {}", f.name, o.vault, f.error));
                    }
                    if r.snapshot.is_none() {
                        lines.push(format!("vault {}: no snapshot written", o.vault));
                    }
                }
                Err(e) => lines.push(format!("vault {}: {e:#}", o.vault)),
            }
        }
        for r in &done.run.retention {
            if let Some(e) = &r.error {
                lines.push(e.clone());
            }
        }
        let data = serde_json::json!({
            "outcome": done.end.outcome.map(|o| o.as_str()),
            "repositories": done.end.repositories,
            "bytes_added": done.end.bytes_added,
            "snapshot": done.end.snapshot,
        });
        if done.code == 0 {
            let mut e = with(self.event(
                EventKind::Success,
                format!("backup of policy {policy} succeeded: {} repositories", done.end.repositories),
            ));
            e.data = data;
            self.send(&e, catalog);
        } else {
            let how = if done.code == crate::exit::PARTIAL { "partly failed" } else { "failed" };
            let mut e = with(self.event(EventKind::Failure, format!("backup of policy {policy} {how}")));
            e.lines = lines;
            e.repositories = failed_repos;
            e.data = data;
            self.send(&e, catalog);
        }
    }

    /// A policy run that could not even start (its sources could not be listed...).
    pub fn run_error(&self, policy: &str, action: &str, error: &anyhow::Error, catalog: Option<&Catalog>) {
        if self.is_empty() {
            return;
        }
        let mut e = self.event(EventKind::Failure, format!("{action} of policy {policy} failed"));
        e.policy = Some(policy.to_string());
        e.lines = vec![format!("{error:#}")];
        self.send(&e, catalog);
    }

    /// Repositories newly beyond their RPO (each alerted once until it recovers).
    pub fn rpo(&self, health: &[RepoHealth], catalog: &Catalog) {
        let mut newly = Vec::new();
        for h in health {
            let key = format!("rpo-alerted:{}|{}", h.repo, h.vault.as_deref().unwrap_or(""));
            let alerted = catalog.get_value(&key).ok().flatten().is_some_and(|v| v == "1");
            match (h.rpo_breached, alerted) {
                (true, false) => {
                    newly.push(h);
                    let _ = catalog.set_value(&key, "1");
                }
                (false, true) => {
                    let _ = catalog.set_value(&key, "0");
                }
                _ => {}
            }
        }
        if newly.is_empty() || self.is_empty() {
            return;
        }
        let mut e =
            self.event(EventKind::Rpo, format!("{} repositories beyond their recovery-point objective", newly.len()));
        e.lines = newly
            .iter()
            .map(|h| {
                let age = h.age_seconds.map_or("never backed up".to_string(), |a| {
                    format!("newest good backup {}", crate::output::human_duration(a))
                });
                let rpo = h.rpo_seconds.map(crate::output::human_duration).unwrap_or_default();
                format!("{} in {}: {age} old, RPO {rpo}", h.repo, h.vault.as_deref().unwrap_or("-"))
            })
            .collect();
        e.repositories = newly.iter().map(|h| h.repo.clone()).collect();
        e.policy =
            newly.first().and_then(|h| h.policy.clone()).filter(|_| newly.iter().all(|h| h.policy == newly[0].policy));
        e.data = serde_json::to_value(&newly).unwrap_or_default();
        self.send(&e, Some(catalog));
    }
}
