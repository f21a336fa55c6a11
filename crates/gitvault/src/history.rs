//! Commands over the catalog: `status`, `logs`, `audit`, `catalog rebuild`, `token`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use gitvault_engine::Vault;
use gitvault_engine::ops::forget::parse_duration;
use gitvault_format::ledger::Event;
use gitvault_ops::catalog::{Catalog, LogFilter, NewAudit, NewRun, Outcome, RepoRun, Role, RunEnd, Trigger};
use gitvault_ops::health::{RepoHealth, health};
use serde::Serialize;
use time::OffsetDateTime;

use crate::UsageError;
use crate::output::{human_bytes, human_duration, print_json, when};

/// `--since`: a duration ago (`26h`, `7d`) or a date (`2026-11-28`, RFC 3339).
pub fn parse_since(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    let t = text.trim();
    if let Ok(at) = OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
        return Ok(at);
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(t, &day) {
        return Ok(d.midnight().assume_utc());
    }
    match parse_duration(t) {
        Ok(d) => Ok(now - d),
        Err(_) => Err(UsageError(format!(
            "--since {text:?}: give a duration ago (30d, 26h) or a date (2026-11-28 or RFC 3339)"
        ))
        .into()),
    }
}

/// The RPO of each policy, from the config; `--rpo` overrides them all.
pub struct Objectives {
    pub all: Option<Duration>,
    pub per_policy: BTreeMap<String, Duration>,
    pub default: Option<Duration>,
}

impl Objectives {
    pub fn get(&self, policy: Option<&str>) -> Option<Duration> {
        self.all.or_else(|| policy.and_then(|p| self.per_policy.get(p).copied())).or(self.default)
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    repositories: &'a [RepoHealth],
    summary: Summary,
}

#[derive(Serialize)]
struct Summary {
    repositories: usize,
    rpo_breached: usize,
    failing: usize,
}

/// Print every repository's health; exit code 3 when any breaches its RPO or is failing.
pub fn status(catalog: &Catalog, objectives: &Objectives, json: bool) -> Result<u8> {
    let now = OffsetDateTime::now_utc();
    let rows = health(catalog, &|p| objectives.get(p), now)?;
    let summary = Summary {
        repositories: rows.len(),
        rpo_breached: rows.iter().filter(|r| r.rpo_breached).count(),
        failing: rows.iter().filter(|r| r.failing).count(),
    };
    let code = if summary.rpo_breached + summary.failing > 0 { crate::exit::PARTIAL } else { 0 };
    if json {
        print_json(&StatusJson { repositories: &rows, summary })?;
        return Ok(code);
    }
    if rows.is_empty() {
        println!("No backups recorded in the catalog {} yet.", catalog.path().display());
        println!("Run a backup, or `gitvault catalog rebuild` to read the history of an existing vault.");
        return Ok(0);
    }
    println!(
        "{:<36} {:<14} {:>9} {:<5} {:>10}  {:<30} RPO",
        "REPOSITORY", "VAULT", "AGE", "TYPE", "ADDED", "LAST FAILURE"
    );
    for r in &rows {
        let (age, kind, added) = match &r.last_good {
            Some(g) => (
                human_duration(r.age_seconds.unwrap_or_default()),
                g.backup_type.clone().unwrap_or_else(|| "-".into()),
                human_bytes(g.bytes_added),
            ),
            None => ("never".into(), "-".into(), "-".into()),
        };
        let failure = match &r.last_failure {
            Some(f) if r.failing => {
                format!("{} {}", when(f.finished_at), truncate(f.error.as_deref().unwrap_or(""), 40))
            }
            Some(f) => format!("{} (since recovered)", when(f.finished_at)),
            None => "-".into(),
        };
        let rpo = match (r.rpo_seconds, r.rpo_breached) {
            (None, _) => "-".to_string(),
            (Some(s), true) => format!("BREACHED ({})", human_duration(s)),
            (Some(s), false) => format!("ok ({})", human_duration(s)),
        };
        println!(
            "{:<36} {:<14} {:>9} {:<5} {:>10}  {:<30} {}",
            r.repo,
            r.vault.as_deref().unwrap_or("-"),
            age,
            kind,
            added,
            failure,
            rpo
        );
    }
    println!(
        "\n{} repositories; {} beyond their RPO; {} failing.",
        summary.repositories, summary.rpo_breached, summary.failing
    );
    Ok(code)
}

fn truncate(s: &str, n: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() <= n {
        first.to_string()
    } else {
        format!("{}…", first.chars().take(n).collect::<String>())
    }
}

pub fn logs(catalog: &Catalog, filter: &LogFilter, json: bool) -> Result<u8> {
    let lines = catalog.logs(filter)?;
    if json {
        print_json(&lines)?;
        return Ok(0);
    }
    for l in &lines {
        let run = l.run_id.map(|r| format!("run {r}")).unwrap_or_else(|| "-".into());
        let repo = l.repo.as_deref().map(|r| format!(" {r}:")).unwrap_or_default();
        println!("{} {:<5} {:<8}{} {}", when(l.time), l.level.to_uppercase(), run, repo, l.message);
    }
    if lines.is_empty() && !json {
        eprintln!("no log lines match");
    }
    Ok(0)
}

pub fn audit(catalog: &Catalog, since: Option<OffsetDateTime>, json: bool, csv: bool) -> Result<u8> {
    let entries = catalog.audit_entries(since)?;
    if json {
        print_json(&entries)?;
        return Ok(0);
    }
    if csv {
        println!("id,time,actor,action,target,outcome,detail,vault,ledger_seq,origin");
        for e in &entries {
            let fields = [
                e.id.to_string(),
                gitvault_ops::catalog::format_time(e.time),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.outcome.clone(),
                e.detail.clone().unwrap_or_default(),
                e.vault.clone().unwrap_or_default(),
                e.ledger_seq.map(|s| s.to_string()).unwrap_or_default(),
                e.origin.clone(),
            ];
            println!("{}", fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        }
        return Ok(0);
    }
    println!("{:<19} {:<24} {:<15} {:<9} TARGET", "TIME", "ACTOR", "ACTION", "OUTCOME");
    for e in &entries {
        let ledger = e.ledger_seq.map(|s| format!(" [ledger {s}]")).unwrap_or_default();
        println!("{:<19} {:<24} {:<15} {:<9} {}{}", when(e.time), e.actor, e.action, e.outcome, e.target, ledger);
    }
    Ok(0)
}

/// RFC 4180: quote when needed, double the quotes inside.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// What `catalog rebuild` added from one vault.
#[derive(Default, Serialize)]
pub struct Rebuilt {
    pub vault: String,
    pub runs: usize,
    pub audit_entries: usize,
    /// Ledger entries that could not be read (`verify` says why).
    pub unreadable: usize,
}

/// Add to the catalog what `vault` (labelled `label`) holds and the catalog lacks: one backup
/// run per snapshot, one audit entry per ledger entry.
pub fn rebuild(catalog: &Catalog, vault: &Vault, label: &str) -> Result<Rebuilt> {
    catalog.clear_rebuilt(label)?;
    let mut out = Rebuilt { vault: label.to_string(), ..Rebuilt::default() };
    for snap in vault.snapshots().with_context(|| format!("reading the snapshots of {label}"))? {
        let id = snap.id.to_string();
        if catalog.knows_snapshot(label, &id)? {
            continue;
        }
        let mut repos = Vec::new();
        let mut end = RunEnd { snapshot: Some(id.clone()), ..RunEnd::default() };
        for r in &snap.repositories {
            let own: Vec<_> = r.chain.iter().filter(|p| p.snapshot == snap.id).collect();
            let objects: u64 = own.iter().map(|p| p.objects).sum();
            let bytes: u64 = own.iter().map(|p| p.stored_size()).sum();
            end.repositories += 1;
            end.objects += objects;
            end.bytes_added += bytes;
            repos.push(RepoRun {
                run_id: 0,
                vault: Some(label.to_string()),
                repo: r.name.clone(),
                backup_type: Some(r.backup_type.as_str().to_string()),
                outcome: Outcome::Ok,
                snapshot: Some(id.clone()),
                refs: r.refs.len() as u64,
                objects,
                bytes_added: bytes,
                requests: 0,
                duration_ms: 0,
                warnings: vec![],
                error: None,
                finished_at: snap.time,
            });
        }
        for f in &snap.failures {
            repos.push(RepoRun {
                run_id: 0,
                vault: Some(label.to_string()),
                repo: f.name.clone(),
                backup_type: None,
                outcome: Outcome::Failed,
                snapshot: Some(id.clone()),
                refs: 0,
                objects: 0,
                bytes_added: 0,
                requests: 0,
                duration_ms: 0,
                warnings: vec![],
                error: Some(f.error.clone()),
                finished_at: snap.time,
            });
        }
        end.outcome = Some(if snap.failures.is_empty() { Outcome::Ok } else { Outcome::Partial });
        let run = NewRun {
            command: "backup".into(),
            policy: None,
            vault: Some(label.to_string()),
            trigger: Trigger::Vault,
            actor: snap.host.clone(),
            backup_type: None,
            attempt: 1,
            started_at: snap.time,
        };
        catalog.insert_rebuilt_run(&run, &end, snap.time, &repos)?;
        out.runs += 1;
    }
    for read in vault.read_ledger().with_context(|| format!("reading the ledger of {label}"))? {
        let Ok((entry, _)) = read.entry else {
            out.unreadable += 1;
            continue;
        };
        if catalog.knows_ledger_entry(label, entry.seq)? {
            continue;
        }
        let (action, target, outcome, detail) = describe(&entry.event);
        catalog.insert_rebuilt_audit(&NewAudit {
            time: entry.time,
            actor: entry.actor.clone().unwrap_or_else(|| entry.host.clone()),
            action,
            target,
            outcome,
            detail,
            vault: Some(label.to_string()),
            ledger_seq: Some(entry.seq),
        })?;
        out.audit_entries += 1;
    }
    Ok(out)
}

/// An audit row for a ledger event: action, target, outcome, detail.
pub fn describe(event: &Event) -> (String, String, String, Option<String>) {
    let list = |v: &[String]| {
        if v.len() <= 3 { v.join(", ") } else { format!("{}, … ({} repositories)", v[..3].join(", "), v.len()) }
    };
    match event {
        Event::Init { vault, .. } => ("init".into(), format!("vault {vault}"), "ok".into(), None),
        Event::Snapshot { snapshot, repositories, recovered, .. } => (
            "backup".into(),
            list(repositories),
            "ok".into(),
            Some(format!(
                "snapshot {snapshot}{}",
                if *recovered { " (recorded after its writer stopped)" } else { "" }
            )),
        ),
        Event::KeyAdd { key_slot } => ("key_add".into(), format!("key slot {key_slot}"), "ok".into(), None),
        Event::KeyRemove { key_slot } => ("key_remove".into(), format!("key slot {key_slot}"), "ok".into(), None),
        Event::Restore { snapshot, repositories } => {
            ("restore".into(), list(repositories), "ok".into(), Some(format!("snapshot {snapshot}")))
        }
        Event::Verify { read_data, problems, data_subset } => (
            "verify".into(),
            "vault".into(),
            if *problems == 0 { "ok".into() } else { "problems".into() },
            Some(format!(
                "{problems} problems; data read: {}",
                match (read_data, data_subset) {
                    (_, Some(s)) => format!("subset {s}"),
                    (true, None) => "all".into(),
                    (false, None) => "no".into(),
                }
            )),
        ),
        Event::Forget { snapshots, reason, .. } => {
            ("forget".into(), format!("{} snapshots", snapshots.len()), "ok".into(), Some(reason.clone()))
        }
        Event::Prune { data, bytes, .. } => {
            ("prune".into(), format!("{} data files", data.len()), "ok".into(), Some(format!("{bytes} bytes deleted")))
        }
        Event::Upgrade { from, to } => ("upgrade".into(), format!("format {from} -> {to}"), "ok".into(), None),
        Event::Audit { action, target, outcome, detail } => {
            (action.clone(), target.clone(), outcome.clone(), detail.clone())
        }
    }
}

pub fn print_rebuilt(done: &[Rebuilt], catalog: &Catalog, json: bool) -> Result<()> {
    if json {
        return print_json(&done);
    }
    for r in done {
        println!(
            "{}: {} runs and {} audit entries added to {}{}",
            r.vault,
            r.runs,
            r.audit_entries,
            catalog.path().display(),
            if r.unreadable > 0 {
                format!(" ({} ledger entries unreadable: run `gitvault verify`)", r.unreadable)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

pub fn token_create(catalog: &Catalog, role: Role, name: Option<String>, actor: &str, json: bool) -> Result<u8> {
    let name = match name {
        Some(n) if n.trim().is_empty() || n.contains(char::is_whitespace) => {
            return Err(UsageError(format!("--name {n:?}: a token name is one word")).into());
        }
        Some(n) => n,
        None => {
            let live = catalog.tokens()?.iter().filter(|t| t.role == role).count();
            format!("{}-{}", role.as_str(), live + 1)
        }
    };
    let (secret, hash) = gitvault_ops::token::generate();
    let token = catalog.create_token(&name, role, &hash, actor)?;
    catalog.audit(&NewAudit {
        time: OffsetDateTime::now_utc(),
        actor: actor.to_string(),
        action: "token_create".into(),
        target: name.clone(),
        outcome: "ok".into(),
        detail: Some(format!("role {}", role.as_str())),
        vault: None,
        ledger_seq: None,
    })?;
    if json {
        #[derive(Serialize)]
        struct Created<'a> {
            token: &'a gitvault_ops::catalog::Token,
            secret: &'a str,
        }
        print_json(&Created { token: &token, secret: &secret })?;
    } else {
        println!("Created {} token {:?}. It is shown only now; keep it in a secret store:", role.as_str(), name);
        println!("{secret}");
        eprintln!("Use it as: curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8750/api/v1/status");
    }
    Ok(0)
}

pub fn token_list(catalog: &Catalog, json: bool) -> Result<u8> {
    let tokens = catalog.tokens()?;
    if json {
        print_json(&tokens)?;
        return Ok(0);
    }
    println!("{:<20} {:<9} {:<19} {:<19} STATE", "NAME", "ROLE", "CREATED", "LAST USED");
    for t in &tokens {
        println!(
            "{:<20} {:<9} {:<19} {:<19} {}",
            t.name,
            t.role.as_str(),
            when(t.created_at),
            t.last_used_at.map(when).unwrap_or_else(|| "never".into()),
            t.revoked_at.map(|r| format!("revoked {}", when(r))).unwrap_or_else(|| "live".into())
        );
    }
    Ok(0)
}
