//! `/metrics`: the catalog and the daemon's state in the Prometheus text exposition format,
//! version 0.0.4. A pure function of what was read, so it is tested without a server.
//!
//! Counters are computed from the catalog's rows at each scrape, not kept in memory: they survive
//! a restart of `gitvault serve`, and runs typed by hand are counted too. A run is counted once it
//! has ended (a running run would otherwise move from one `outcome` to another and a counter
//! would go down). `gitvault catalog rebuild` can make them go down, which Prometheus reads as a
//! counter reset.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gitvault_ops::catalog::{Outcome, Run};
use gitvault_ops::health::RepoHealth;

use crate::control::PolicyInfo;

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Render every metric. `runs` is every run in the catalog; `repositories` comes from
/// [`gitvault_ops::health::health`].
pub fn render(repositories: &[RepoHealth], runs: &[Run], policies: &[PolicyInfo]) -> String {
    let mut out = Exposition::default();
    let breaches = repositories.iter().filter(|r| r.rpo_breached).count();

    out.family("gitvault_up", "gauge", "1 while gitvault serve answers.");
    out.sample("gitvault_up", &[], 1.0);
    out.family("gitvault_repositories", "gauge", "Repositories (per vault) the catalog knows.");
    out.sample("gitvault_repositories", &[], repositories.len() as f64);
    out.family(
        "gitvault_rpo_breaches",
        "gauge",
        "Repositories (per vault) whose newest good backup is older than their policy's RPO.",
    );
    out.sample("gitvault_rpo_breaches", &[], breaches as f64);

    repository_metrics(&mut out, repositories);
    run_metrics(&mut out, runs);
    policy_metrics(&mut out, policies);
    out.text
}

fn repository_metrics(out: &mut Exposition, repositories: &[RepoHealth]) {
    let key = |r: &RepoHealth| [r.repo.clone(), r.vault.clone().unwrap_or_default()];
    let name = "gitvault_repository_last_success_timestamp_seconds";
    out.family(name, "gauge", "When the newest good backup of the repository ended (Unix time).");
    for r in repositories {
        if let Some(good) = &r.last_good {
            let [repo, vault] = key(r);
            let at = good.finished_at.unix_timestamp_nanos() as f64 / 1e9;
            out.sample(name, &[("repository", &repo), ("vault", &vault)], at);
        }
    }
    let name = "gitvault_repository_backup_age_seconds";
    out.family(name, "gauge", "Seconds since the newest good backup of the repository ended.");
    for r in repositories {
        if let Some(age) = r.age_seconds {
            let [repo, vault] = key(r);
            out.sample(name, &[("repository", &repo), ("vault", &vault)], age as f64);
        }
    }
    let name = "gitvault_repository_rpo_seconds";
    out.family(name, "gauge", "The recovery-point objective that applies to the repository.");
    for r in repositories {
        if let Some(rpo) = r.rpo_seconds {
            let [repo, vault] = key(r);
            let policy = r.policy.clone().unwrap_or_default();
            out.sample(name, &[("repository", &repo), ("vault", &vault), ("policy", &policy)], rpo as f64);
        }
    }
    let name = "gitvault_repository_rpo_breached";
    out.family(name, "gauge", "1 when no good backup of the repository is within its RPO, else 0.");
    for r in repositories {
        let [repo, vault] = key(r);
        let policy = r.policy.clone().unwrap_or_default();
        out.sample(name, &[("repository", &repo), ("vault", &vault), ("policy", &policy)], bit(r.rpo_breached));
    }
    let name = "gitvault_repository_failing";
    out.family(name, "gauge", "1 when the newest backup attempt of the repository failed, else 0.");
    for r in repositories {
        let [repo, vault] = key(r);
        out.sample(name, &[("repository", &repo), ("vault", &vault)], bit(r.failing));
    }
}

fn run_metrics(out: &mut Exposition, runs: &[Run]) {
    // (policy, command) → values; BTreeMaps keep the output in a stable order.
    let mut by_outcome: BTreeMap<(String, String, &'static str), u64> = BTreeMap::new();
    let mut running: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut failures: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut last_duration: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    // `runs` is newest first: the first duration seen per key is the newest.
    for run in runs {
        let policy = run.policy.clone().unwrap_or_default();
        let key = (policy.clone(), run.command.clone());
        if run.outcome == Outcome::Running {
            *running.entry(key).or_default() += 1;
            continue;
        }
        *by_outcome.entry((key.0.clone(), key.1.clone(), run.outcome.as_str())).or_default() += 1;
        *failures.entry(key.clone()).or_default() += u64::from(run.outcome == Outcome::Failed);
        *bytes.entry(policy).or_default() += run.bytes_added;
        if let Some(d) = run.duration() {
            last_duration.entry(key).or_insert(d.as_secs_f64());
        }
    }

    let name = "gitvault_runs_total";
    out.family(name, "counter", "Runs that have ended, by policy, command and outcome.");
    for ((policy, command, outcome), n) in &by_outcome {
        out.sample(name, &[("policy", policy), ("command", command), ("outcome", outcome)], *n as f64);
    }
    let name = "gitvault_run_failures_total";
    out.family(name, "counter", "Runs that ended with outcome failed, by policy and command.");
    for ((policy, command), n) in &failures {
        out.sample(name, &[("policy", policy), ("command", command)], *n as f64);
    }
    let name = "gitvault_runs_running";
    out.family(name, "gauge", "Runs going on now (or left running by a process that died).");
    for ((policy, command), n) in &running {
        out.sample(name, &[("policy", policy), ("command", command)], *n as f64);
    }
    let name = "gitvault_run_last_duration_seconds";
    out.family(name, "gauge", "How long the newest ended run took, by policy and command.");
    for ((policy, command), d) in &last_duration {
        out.sample(name, &[("policy", policy), ("command", command)], *d);
    }
    let name = "gitvault_bytes_added_total";
    out.family(name, "counter", "Bytes stored into vaults by ended runs, by policy.");
    for (policy, n) in &bytes {
        out.sample(name, &[("policy", policy)], *n as f64);
    }
}

fn policy_metrics(out: &mut Exposition, policies: &[PolicyInfo]) {
    let name = "gitvault_policy_running";
    out.family(name, "gauge", "1 while a run of the policy is going on, else 0.");
    for p in policies {
        out.sample(name, &[("policy", &p.name)], bit(p.running));
    }
    let name = "gitvault_policy_next_run_timestamp_seconds";
    out.family(name, "gauge", "When a schedule of the policy fires next (Unix time).");
    for p in policies {
        if let Some(next) = p.next_run {
            out.sample(name, &[("policy", &p.name)], next.unix_timestamp() as f64);
        }
    }
}

fn bit(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The text being written. Callers write a family's `HELP` and `TYPE` and then all its samples,
/// so that each family is one contiguous group, as the format requires.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }
}

/// A label value as the format wants it: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: integers without a fraction, the special values as Go's `ParseFloat` reads
/// them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let mut e = Exposition::default();
        e.sample("m", &[("repository", "we\"ird\\repo\n")], 1.0);
        assert_eq!(e.text, "m{repository=\"we\\\"ird\\\\repo\\n\"} 1\n");
    }

    #[test]
    fn numbers_print_as_prometheus_reads_them() {
        assert_eq!(number(1_700_000_000.0), "1700000000");
        assert_eq!(number(1_700_000_000.25), "1700000000.25");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }

    #[test]
    fn empty_catalog_still_reports_up_and_zero_breaches() {
        let text = render(&[], &[], &[]);
        assert!(text.contains("\ngitvault_up 1\n"), "{text}");
        assert!(text.contains("\ngitvault_rpo_breaches 0\n"), "{text}");
        assert!(text.contains("# TYPE gitvault_runs_total counter\n"), "{text}");
    }
}
