//! Each repository's health, from the catalog: its newest good backup, its newest failure, and
//! whether the newest good one is older than the recovery-point objective (RPO) of the policy
//! that backs it up. `gitvault status`, the HTTP API and `/metrics` all read it from here.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::catalog::{Catalog, RepoRun, Result};

#[derive(Clone, Debug, Serialize)]
pub struct RepoHealth {
    pub repo: String,
    pub vault: Option<String>,
    pub policy: Option<String>,
    pub last_good: Option<RepoRun>,
    pub last_failure: Option<RepoRun>,
    /// Seconds since the newest good backup ended.
    pub age_seconds: Option<u64>,
    /// The RPO that applies, in seconds.
    pub rpo_seconds: Option<u64>,
    /// No good backup within the RPO (or none at all while an RPO applies).
    pub rpo_breached: bool,
    /// The newest attempt failed (a failure newer than the newest good backup).
    pub failing: bool,
}

/// Every repository the catalog knows, per vault. `rpo` gives the objective of a policy (`None`:
/// runs made outside any policy).
pub fn health(
    catalog: &Catalog,
    rpo: &dyn Fn(Option<&str>) -> Option<Duration>,
    now: OffsetDateTime,
) -> Result<Vec<RepoHealth>> {
    Ok(catalog
        .repo_status()?
        .into_iter()
        .map(|s| {
            let age = s.last_good.as_ref().map(|g| (now - g.finished_at).whole_seconds().max(0) as u64);
            let objective = rpo(s.policy.as_deref());
            let rpo_breached = match (objective, age) {
                (Some(o), Some(age)) => age > o.as_secs(),
                (Some(_), None) => true,
                (None, _) => false,
            };
            let failing = match (&s.last_failure, &s.last_good) {
                (Some(f), Some(g)) => f.finished_at > g.finished_at,
                (Some(_), None) => true,
                (None, _) => false,
            };
            RepoHealth {
                repo: s.repo,
                vault: s.vault,
                policy: s.policy,
                last_good: s.last_good,
                last_failure: s.last_failure,
                age_seconds: age,
                rpo_seconds: objective.map(|o| o.as_secs()),
                rpo_breached,
                failing,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{NewRun, Outcome, Trigger};

    #[test]
    fn breach_and_failing_follow_the_newest_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = Catalog::open(&dir.path().join("c.db")).expect("open");
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let run = |policy: &str, at| {
            c.start_run(&NewRun {
                command: "backup".into(),
                policy: Some(policy.into()),
                vault: None,
                trigger: Trigger::Cli,
                actor: "a".into(),
                backup_type: None,
                attempt: 1,
                started_at: at,
            })
            .expect("run")
        };
        let add = |run_id, repo: &str, outcome, at| {
            c.add_repo(&RepoRun {
                run_id,
                vault: Some("v".into()),
                repo: repo.into(),
                backup_type: None,
                outcome,
                snapshot: None,
                refs: 0,
                objects: 0,
                bytes_added: 0,
                requests: 0,
                duration_ms: 0,
                warnings: vec![],
                error: None,
                finished_at: at,
            })
            .expect("repo")
        };
        let r1 = run("hourly", t0);
        add(r1, "fresh", Outcome::Ok, t0 + time::Duration::hours(29));
        add(r1, "stale", Outcome::Ok, t0);
        add(r1, "broken", Outcome::Failed, t0 + time::Duration::hours(29));
        let now = t0 + time::Duration::hours(30);
        let rpo = |p: Option<&str>| (p == Some("hourly")).then_some(Duration::from_secs(26 * 3600));
        let h = health(&c, &rpo, now).expect("health");
        let get = |n: &str| h.iter().find(|x| x.repo == n).expect("row");
        assert!(!get("fresh").rpo_breached);
        assert_eq!(get("fresh").age_seconds, Some(3600));
        assert!(get("stale").rpo_breached, "30 h old, RPO 26 h");
        assert!(get("broken").rpo_breached, "never backed up while an RPO applies");
        assert!(get("broken").failing);
        assert!(!get("stale").failing);
        let none = health(&c, &|_| None, now).expect("health");
        assert!(none.iter().all(|x| !x.rpo_breached), "no RPO, no breach");
    }
}
