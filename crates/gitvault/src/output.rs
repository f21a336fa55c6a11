//! Everything the binary prints on stdout: text for people, `--json` for programs. The JSON
//! shapes are documented in README.md and pinned by tests; change them only by adding fields.

use std::io::Write;

use anyhow::Result;
use gitvault_engine::Vault;
use gitvault_engine::ops::backup::BackupReport;
use gitvault_engine::ops::copy::CopyReport;
use gitvault_engine::ops::diff::{RepoStatus, SnapshotDiff};
use gitvault_engine::ops::forget::ForgetReport;
use gitvault_engine::ops::keys::KeyInfo;
use gitvault_engine::ops::prune::PruneReport;
use gitvault_engine::ops::restore::RestoreReport;
use gitvault_engine::ops::upgrade::UpgradeReport;
use gitvault_engine::ops::verify::VerifyReport;
use gitvault_format::snapshot::{HeadRecord, Snapshot};
use gitvault_format::timestamp;
use serde::Serialize;

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Bytes for people: 1.5 MiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn short(oid: &str) -> &str {
    &oid[..oid.len().min(10)]
}

pub fn init(vault: &Vault, path: &str, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({
            "vault": vault.id(),
            "path": path,
            "format_version": vault.format_version(),
            "key_slot": vault.current_slot(),
        }));
    }
    println!("created vault {} at {path}", vault.id());
    println!("keep the passphrase safe: without it the backups cannot be read by anyone, you included");
    Ok(())
}

/// What listing forge sources found, for the backup report.
#[derive(Default, Serialize)]
pub struct Forges {
    /// One entry per forge source: the repositories it holds, those the filters left out, API
    /// requests made, or why it could not be listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<crate::forges::Listing>,
    /// Repositories a forge source held at its newest backup that it no longer lists.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gone_upstream: Vec<Gone>,
    /// The metadata fetched for each repository.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<crate::metadata::MetaRun>,
    /// API requests per forge (listing and metadata), and how many were answered 304.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub requests: std::collections::BTreeMap<String, ForgeRequests>,
}

#[derive(Default, Serialize)]
pub struct ForgeRequests {
    pub requests: u64,
    pub not_modified: u64,
}

impl Forges {
    /// Sum the requests of the listings and the metadata runs per forge.
    pub fn count_requests(&mut self) {
        let mut totals: std::collections::BTreeMap<String, ForgeRequests> = std::collections::BTreeMap::new();
        let forge_of = |name: &str| name.split(':').next().unwrap_or(name).to_string();
        for a in &self.accounts {
            totals.entry(forge_of(&a.source)).or_default().requests += a.requests;
        }
        for m in &self.metadata {
            if let Some(r) = &m.report {
                let t = totals.entry(forge_of(&m.name)).or_default();
                t.requests += r.requests;
                t.not_modified += r.not_modified;
            }
        }
        self.requests = totals;
    }
}

#[derive(Serialize)]
pub struct Gone {
    pub name: String,
    pub account: String,
    /// The newest snapshot that holds it.
    pub last_snapshot: String,
}

impl Forges {
    fn print_accounts(&self) {
        for a in &self.accounts {
            match &a.error {
                Some(e) => eprintln!("error: {e}"),
                None => println!(
                    "{}: {} repositories to back up{} ({} API requests to {})",
                    a.source,
                    a.repositories.len(),
                    if a.left_out.is_empty() {
                        String::new()
                    } else {
                        format!(", {} left out by the filters", a.left_out.len())
                    },
                    a.requests,
                    a.api_url
                ),
            }
        }
    }

    fn print_metadata(&self) {
        if self.metadata.is_empty() {
            return;
        }
        println!(
            "metadata of {} repositories: {} changed",
            self.metadata.len(),
            self.metadata.iter().filter(|m| m.changed).count()
        );
        for (forge, r) in &self.requests {
            println!(
                "{forge}: {} API requests in all, {} of them answered 304 Not Modified",
                r.requests, r.not_modified
            );
        }
        for m in &self.metadata {
            if let Some(e) = &m.error {
                eprintln!("error: metadata of {}: {e}", m.name);
            }
            if let Some(r) = &m.report {
                for d in &r.deleted {
                    println!("warning: {}: {d} was deleted upstream; kept, marked deleted", m.name);
                }
            }
        }
    }

    fn print_gone(&self) {
        for g in &self.gone_upstream {
            println!(
                "warning: {} is no longer in {} (deleted, renamed, or hidden from the token upstream); its backups stay restorable (newest: snapshot {})",
                g.name,
                g.account,
                &g.last_snapshot[..g.last_snapshot.len().min(8)]
            );
        }
    }
}

pub fn backup(r: &BackupReport, forges: &Forges, json: bool) -> Result<()> {
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a BackupReport,
            #[serde(flatten)]
            forges: &'a Forges,
        }
        return print_json(&Out { report: r, forges });
    }
    forges.print_accounts();
    forges.print_metadata();
    backup_table(r);
    forges.print_gone();
    Ok(())
}

/// The summary table of a backup (repository, type, new objects, bytes stored, duration,
/// result), its warnings, and the snapshot line.
fn backup_table(r: &BackupReport) {
    let mut rows: Vec<[String; 7]> = Vec::new();
    for repo in &r.repositories {
        rows.push([
            repo.name.clone(),
            repo.backup_type.as_str().to_string(),
            repo.refs.to_string(),
            format!("+{}", repo.objects_added),
            format!("+{}", human_bytes(repo.bytes_added)),
            format!("{:.1} s", repo.duration_ms as f64 / 1000.0),
            "ok".to_string(),
        ]);
    }
    for f in &r.failures {
        rows.push([f.name.clone(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into(), "FAILED".into()]);
    }
    for k in &r.skipped {
        rows.push([k.name.clone(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into(), k.reason.clone()]);
    }
    let header = ["REPOSITORY", "TYPE", "REFS", "OBJECTS", "STORED", "DURATION", "RESULT"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns align left, numbers right; the last column is not padded.
            match i {
                0 | 1 => out.push_str(&format!("{cell:<w$}  ")),
                6 => out.push_str(cell),
                _ => out.push_str(&format!("{cell:>w$}  ")),
            }
        }
        println!("{}", out.trim_end());
    };
    if !rows.is_empty() {
        line(header);
        for row in &rows {
            line(row.each_ref().map(String::as_str));
        }
    }
    for repo in &r.repositories {
        if repo.lfs_objects > 0 || repo.lfs_added > 0 {
            println!("{}: {} LFS objects ({} new)", repo.name, repo.lfs_objects, repo.lfs_added);
        }
        if repo.lfs_missing > 0 {
            println!(
                "warning: {}: {} LFS objects its history points to could not be fetched (or stored: see the log); the others are backed up",
                repo.name, repo.lfs_missing
            );
        }
        for c in repo.changes.iter().filter(|c| c.change.is_warning()) {
            let detail = match (&c.old, &c.new) {
                (Some(o), Some(n)) => format!(" {} -> {}", short(o), short(n)),
                (Some(o), None) => format!(" (was {})", short(o)),
                _ => String::new(),
            };
            println!("warning: {}: {}: {}{}", repo.name, c.name, c.change.describe(), detail);
        }
    }
    for f in &r.failures {
        eprintln!("error: backing up {} ({}): {}", f.name, f.source, f.error);
    }
    match r.snapshot {
        Some(id) => println!(
            "snapshot {} saved ({} repositories{})",
            id.short(),
            r.repositories.len(),
            if r.failures.is_empty() { String::new() } else { format!(", {} failed", r.failures.len()) }
        ),
        None => println!("no snapshot saved: every source failed"),
    }
}

/// What a backup run did in one of several destinations.
pub struct DestinationOutcome {
    /// The destination as given (`--vault`).
    pub vault: String,
    pub result: Result<BackupReport>,
}

impl DestinationOutcome {
    fn status(&self) -> &'static str {
        match &self.result {
            Ok(r) if r.snapshot.is_none() => "failed",
            Ok(r) if !r.failures.is_empty() => "partial",
            Ok(_) => "ok",
            Err(_) => "failed",
        }
    }
}

#[derive(Serialize)]
struct DestinationRow<'a> {
    vault: &'a str,
    /// `ok`, `partial` (some sources failed) or `failed` (no snapshot written).
    status: &'static str,
    /// Why the destination failed as a whole (it could not be opened or written); `null` otherwise.
    error: Option<String>,
    /// The single-destination `backup --json` object; `null` when `error` is set.
    backup: Option<&'a BackupReport>,
}

fn destination_rows(outcomes: &[DestinationOutcome]) -> Vec<DestinationRow<'_>> {
    outcomes
        .iter()
        .map(|o| DestinationRow {
            vault: &o.vault,
            status: o.status(),
            error: o.result.as_ref().err().map(|e| format!("{e:#}")),
            backup: o.result.as_ref().ok(),
        })
        .collect()
}

/// A backup into several destinations: each one's report in turn, then a summary that names
/// every destination that failed.
pub fn backup_many(outcomes: &[DestinationOutcome], forges: &Forges, json: bool) -> Result<()> {
    if json {
        #[derive(Serialize)]
        struct Destinations<'a> {
            destinations: Vec<DestinationRow<'a>>,
            #[serde(flatten)]
            forges: &'a Forges,
        }
        return print_json(&Destinations { destinations: destination_rows(outcomes), forges });
    }
    forges.print_accounts();
    forges.print_metadata();
    for o in outcomes {
        println!("destination {}:", o.vault);
        match &o.result {
            Ok(r) => backup_table(r),
            Err(e) => eprintln!("error: destination {} failed: {e:#}", o.vault),
        }
    }
    forges.print_gone();
    let failed: Vec<&str> = outcomes.iter().filter(|o| o.status() == "failed").map(|o| o.vault.as_str()).collect();
    if failed.is_empty() {
        println!("backed up into all {} destinations", outcomes.len());
    } else {
        println!(
            "backed up into {} of {} destinations; failed: {}",
            outcomes.len() - failed.len(),
            outcomes.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct SnapshotRow<'a> {
    id: String,
    short_id: String,
    time: String,
    host: &'a str,
    /// `full`, `diff` or `incr` when every repository had that type, else `mixed`.
    #[serde(rename = "type")]
    kind: &'static str,
    names: Vec<&'a str>,
    repositories: Vec<RepoRow<'a>>,
    failures: Vec<&'a str>,
}

#[derive(Serialize)]
struct RepoRow<'a> {
    name: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    head: Option<&'a str>,
    refs: usize,
    /// Packs in the chain a restore installs.
    packs: usize,
    objects: u64,
    /// Stored bytes of the whole chain.
    size: u64,
    objects_added: u64,
    bytes_added: u64,
    /// Git LFS objects the repository's snapshot holds, and their stored bytes.
    lfs_objects: usize,
    lfs_size: u64,
}

fn snapshot_type(s: &Snapshot) -> &'static str {
    let mut kinds = s.repositories.iter().map(|r| r.backup_type.as_str());
    let first = kinds.next().unwrap_or("full");
    if kinds.all(|k| k == first) { first } else { "mixed" }
}

/// The `snapshots --json` document (also the HTTP API's `/api/v1/snapshots`).
pub fn snapshots_json(snaps: &[Snapshot]) -> serde_json::Value {
    let rows: Vec<SnapshotRow> = snaps
        .iter()
        .map(|s| SnapshotRow {
            id: s.id.to_hex(),
            short_id: s.id.short(),
            time: timestamp::format(s.time),
            host: &s.host,
            kind: snapshot_type(s),
            names: s.repositories.iter().map(|r| r.name.as_str()).collect(),
            repositories: s
                .repositories
                .iter()
                .map(|r| {
                    let new = r.new_pack(&s.id);
                    RepoRow {
                        name: &r.name,
                        source: &r.source,
                        kind: r.backup_type.as_str(),
                        head: r.head.as_ref().map(|h| match h {
                            HeadRecord::Symbolic(x) | HeadRecord::Detached(x) => x.as_str(),
                        }),
                        refs: r.refs.len(),
                        packs: r.chain.len(),
                        objects: r.chain.iter().map(|p| p.objects).sum(),
                        size: r.chain.iter().map(|p| p.stored_size()).sum(),
                        objects_added: new.map_or(0, |p| p.objects),
                        bytes_added: new.map_or(0, |p| p.stored_size()),
                        lfs_objects: r.lfs_objects().len(),
                        lfs_size: r.lfs_objects().iter().map(|l| l.data.size).sum(),
                    }
                })
                .collect(),
            failures: s.failures.iter().map(|f| f.name.as_str()).collect(),
        })
        .collect();
    serde_json::to_value(&rows).expect("snapshot rows serialize")
}

pub fn snapshots(snaps: &[Snapshot], json: bool) -> Result<()> {
    if json {
        return print_json(&snapshots_json(snaps));
    }
    if snaps.is_empty() {
        println!("no snapshots yet");
        return Ok(());
    }
    let when = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    println!("{:<10} {:<20} {:<6} {:>10}  REPOSITORIES", "ID", "TIME (UTC)", "TYPE", "ADDED");
    for s in snaps {
        let added: u64 = s.repositories.iter().filter_map(|r| r.new_pack(&s.id)).map(|p| p.stored_size()).sum();
        let names: Vec<&str> = s.repositories.iter().map(|r| r.name.as_str()).collect();
        println!(
            "{:<10} {:<20} {:<6} {:>10}  {}",
            s.id.short(),
            s.time.format(&when).unwrap_or_else(|_| timestamp::format(s.time)),
            snapshot_type(s),
            human_bytes(added),
            names.join(", ")
        );
    }
    println!("{} snapshots", snaps.len());
    Ok(())
}

pub fn diff(d: &SnapshotDiff, json: bool) -> Result<()> {
    if json {
        return print_json(d);
    }
    println!("comparing {} with {}", d.from.short(), d.to.short());
    for r in &d.repositories {
        let status = match r.status {
            RepoStatus::Changed => "changed",
            RepoStatus::Unchanged => "unchanged",
            RepoStatus::Added => "added",
            RepoStatus::Removed => "not in the second snapshot",
        };
        println!("{}: {status}", r.name);
        if let Some(h) = &r.head {
            println!("  HEAD {} -> {}", h.old.as_deref().unwrap_or("(none)"), h.new.as_deref().unwrap_or("(none)"));
        }
        for c in &r.changes {
            let mark = if c.change.is_warning() { "!" } else { " " };
            let detail = match (&c.old, &c.new) {
                (Some(o), Some(n)) => format!("{} -> {}", short(o), short(n)),
                (None, Some(n)) => short(n).to_string(),
                (Some(o), None) => format!("(was {})", short(o)),
                (None, None) => String::new(),
            };
            println!("  {mark} {:<40} {:<32} {detail}", c.name, c.change.describe());
        }
        if r.objects_added > 0 {
            println!("  +{} objects, +{}", r.objects_added, human_bytes(r.bytes_added));
        }
        if let Some(m) = &r.metadata {
            for (what, c) in [
                ("issues", &m.issues),
                ("pull requests", &m.pulls),
                ("comments and reviews", &m.comments),
                ("releases", &m.releases),
            ] {
                let list = |v: &[String]| {
                    v.iter().take(10).cloned().collect::<Vec<_>>().join(", ") + if v.len() > 10 { ", ..." } else { "" }
                };
                for (n, verb) in [(&c.created, "created"), (&c.changed, "changed"), (&c.deleted, "deleted upstream")] {
                    if !n.is_empty() {
                        let mark = if verb.starts_with("deleted") { "!" } else { " " };
                        println!("  {mark} {what}: {} {verb}: {}", n.len(), list(n));
                    }
                }
            }
            if !m.other.is_empty() {
                println!(
                    "    {} other metadata files changed (labels, milestones, settings, access, assets)",
                    m.other.len()
                );
            }
            if let Some(incident) = &m.incident {
                println!("  ! {incident}");
            }
        }
    }
    Ok(())
}

pub fn restore(r: &RestoreReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    for repo in &r.repositories {
        println!(
            "restored {} -> {} ({} refs, {} packs, {} objects, {})",
            repo.name,
            repo.path.display(),
            repo.refs,
            repo.packs,
            repo.objects,
            human_bytes(repo.bytes)
        );
    }
    Ok(())
}

pub fn copy(r: &CopyReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let ids = |v: &[gitvault_format::ids::SnapshotId]| v.iter().map(|i| i.short()).collect::<Vec<_>>().join(", ");
    println!("copying from {} to {}", r.from, r.to);
    if !r.snapshots_copied.is_empty() {
        println!("copied {} snapshots: {}", r.snapshots_copied.len(), ids(&r.snapshots_copied));
    }
    if !r.snapshots_skipped.is_empty() {
        println!("skipped {} snapshots the destination already holds", r.snapshots_skipped.len());
    }
    if !r.snapshots_recorded.is_empty() {
        println!(
            "recorded {} snapshots an interrupted copy had left out of the destination's ledger: {}",
            r.snapshots_recorded.len(),
            ids(&r.snapshots_recorded)
        );
    }
    println!(
        "data objects: {} sent{} ({}, {} stored), {} already there{}",
        r.data_transferred,
        if r.same_keys { " as they are (the destination holds the same keys)" } else { "" },
        human_bytes(r.bytes_transferred),
        human_bytes(r.bytes_written),
        r.data_skipped,
        if r.data_rechecked > 0 {
            format!(" ({} of them left by an interrupted copy, checked in place)", r.data_rechecked)
        } else {
            String::new()
        }
    );
    if r.snapshots_copied.is_empty() && r.snapshots_recorded.is_empty() {
        println!("nothing to copy: the destination holds every selected snapshot");
    }
    Ok(())
}

pub fn verify(r: &VerifyReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    for p in &r.problems {
        println!("DAMAGE  {}: {}", p.path, p.problem);
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    for x in &r.repaired {
        println!("repaired: {x}");
    }
    println!(
        "checked {} snapshots, {} ledger entries, {} key slots, {} data files{}",
        r.snapshots,
        r.ledger_entries,
        r.key_slots,
        r.data_files,
        match (&r.data_subset, r.read_data) {
            (_, true) => format!(" ({} decrypted and authenticated)", human_bytes(r.bytes_read)),
            (Some(s), false) => format!(" (subset {s}: {} decrypted and authenticated)", human_bytes(r.bytes_read)),
            (None, false) => String::new(),
        }
    );
    if r.ok {
        println!("no problems found");
    } else {
        println!("{} problems found", r.problems.len());
    }
    Ok(())
}

pub fn keys(keys: &[KeyInfo], json: bool) -> Result<()> {
    if json {
        return print_json(keys);
    }
    for k in keys {
        println!(
            "{} {}  argon2id m={} KiB t={} p={}",
            if k.current { "*" } else { " " },
            k.id,
            k.kdf.memory_kib,
            k.kdf.iterations,
            k.kdf.parallelism
        );
    }
    Ok(())
}

pub fn key_changed(what: &str, id: &str, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({ what: id }));
    }
    println!("{what} key slot {id}");
    Ok(())
}

pub fn when(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second())
}

pub fn forget(r: &ForgetReport, pruned: Option<&PruneReport>, json: bool) -> Result<()> {
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            forget: &'a ForgetReport,
            #[serde(skip_serializing_if = "Option::is_none")]
            prune: Option<&'a PruneReport>,
        }
        return print_json(&Out { forget: r, prune: pruned });
    }
    let verb = if r.dry_run { "would remove" } else { "remove" };
    for g in &r.groups {
        println!("snapshots of {}: keep {}, {verb} {}", g.repositories.join(", "), g.keep.len(), g.remove.len());
        let mut rows: Vec<(time::OffsetDateTime, String)> = Vec::new();
        for k in &g.keep {
            rows.push((k.time, format!("  keep    {}  {}  {}", k.id.short(), when(k.time), k.reasons.join(", "))));
        }
        for x in &g.remove {
            rows.push((
                x.time,
                format!("  {:<7} {}  {}", if r.dry_run { "forget?" } else { "forget" }, x.id.short(), when(x.time)),
            ));
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        for (_, line) in rows {
            println!("{line}");
        }
    }
    match (r.dry_run, r.ledger_entry) {
        (true, _) => println!("dry run: {} snapshots would be forgotten ({}); nothing changed", r.removed, r.reason),
        (false, Some(seq)) => println!(
            "forgot {} snapshots ({}), recorded in ledger entry {seq}; `gitvault prune` disposes of the data only they needed",
            r.removed, r.reason
        ),
        (false, None) => println!("nothing to forget ({})", r.reason),
    }
    for l in &r.locked {
        println!(
            "snapshot {} is locked until {} (Object Lock): kept; forget it after that",
            l.path.rsplit('/').next().map_or(l.path.as_str(), |id| &id[..id.len().min(8)]),
            when(l.until)
        );
    }
    if let Some(p) = pruned {
        prune(p, false)?;
    }
    Ok(())
}

pub fn prune(r: &PruneReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let would = if r.dry_run { "would " } else { "" };
    for id in &r.finished_forgets {
        println!("{would}finish forgetting snapshot {} (an interrupted forget)", id.short());
    }
    for c in &r.consolidated.repositories {
        println!(
            "{}: {would}consolidate {} snapshots leaning on {} packs of forgotten snapshots{}",
            c.name,
            c.snapshots,
            c.stale_packs,
            if r.dry_run {
                String::new()
            } else {
                format!(" ({} new packs, {})", c.packs_written, human_bytes(c.bytes_written))
            }
        );
    }
    for x in &r.consolidated.replaced {
        println!("snapshot {} is now {}", x.old.short(), x.new.short());
    }
    for s in &r.swept {
        println!(
            "mark {}: {would}delete {} data files ({}){}{}",
            s.mark.short(),
            s.deleted_files,
            human_bytes(s.deleted_bytes),
            if s.kept_referenced > 0 {
                format!(", keep {} referenced again", s.kept_referenced)
            } else {
                String::new()
            },
            s.ledger_entry.map(|e| format!(", ledger entry {e}")).unwrap_or_default()
        );
    }
    for p in &r.pending {
        println!(
            "mark {}: {} data files wait {} more (grace period)",
            p.mark.short(),
            p.data_files,
            human_duration(p.ripe_in_seconds)
        );
    }
    match &r.marked {
        Some(m) => println!(
            "{would}mark {} data files ({}) that no snapshot needs: a prune after the grace period deletes them{}",
            m.data_files,
            human_bytes(m.bytes),
            if r.dry_run { String::new() } else { format!(" (mark {})", m.mark.short()) }
        ),
        None => println!("nothing new to mark"),
    }
    if let Some(last) = r.locked.iter().map(|l| l.until).max() {
        println!(
            "{} files are locked (Object Lock, the last until {}): left in place for a prune after their locks end",
            r.locked.len(),
            when(last)
        );
        for l in &r.locked {
            tracing::info!(path = %l.path, until = %when(l.until), "locked: left in place");
        }
    }
    if r.young_unreferenced > 0 {
        println!(
            "{} unreferenced data files are less than an hour old (maybe a backup running now): a later prune marks them",
            r.young_unreferenced
        );
    }
    if r.pending_removed > 0 {
        println!("{would}remove {} records of interrupted backups with nothing left to resume", r.pending_removed);
    }
    println!("kept: {} data files ({}) that snapshots need", r.referenced_files, human_bytes(r.referenced_bytes));
    Ok(())
}

pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s >= 86400 => format!("{}d {}h", s / 86400, s % 86400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}m", s.div_ceil(60)),
    }
}

pub fn upgrade(r: &UpgradeReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    if r.upgraded {
        println!(
            "upgraded the vault from format version {} to {}; older gitvault versions now refuse it",
            r.from, r.to
        );
    } else {
        println!("the vault already is at format version {}", r.to);
    }
    Ok(())
}

/// A policy's retention applied in one vault after its backup.
#[derive(Serialize)]
pub struct RetentionRun {
    pub vault: String,
    pub forget: Option<ForgetReport>,
    pub prune: Option<PruneReport>,
    pub error: Option<String>,
}

/// One policy of `backup --config`: the backup into each of its vaults, then its retention.
pub struct PolicyRun {
    pub policy: String,
    pub forges: Forges,
    pub outcomes: Vec<DestinationOutcome>,
    pub retention: Vec<RetentionRun>,
}

pub fn config_backup(runs: &[PolicyRun], json: bool) -> Result<()> {
    if json {
        #[derive(Serialize)]
        struct Row<'a> {
            name: &'a str,
            destinations: Vec<DestinationRow<'a>>,
            retention: &'a [RetentionRun],
            #[serde(flatten)]
            forges: &'a Forges,
        }
        #[derive(Serialize)]
        struct Out<'a> {
            policies: Vec<Row<'a>>,
        }
        let policies = runs
            .iter()
            .map(|r| Row {
                name: &r.policy,
                destinations: destination_rows(&r.outcomes),
                retention: &r.retention,
                forges: &r.forges,
            })
            .collect();
        return print_json(&Out { policies });
    }
    for r in runs {
        println!("== policy {}", r.policy);
        backup_many(&r.outcomes, &r.forges, false)?;
        for x in &r.retention {
            match (&x.forget, &x.error) {
                (_, Some(e)) => eprintln!("error: vault {}: {e}", x.vault),
                (Some(f), None) => {
                    println!("vault {}: retention ({}): forgot {} snapshots", x.vault, f.reason, f.removed);
                    if let Some(p) = &x.prune {
                        prune(p, false)?;
                    }
                }
                (None, None) => {}
            }
        }
    }
    Ok(())
}

/// `config check`: what each policy would back up, and where.
pub fn config_check(
    cfg: &crate::config::Config,
    listings: &std::collections::BTreeMap<String, crate::forges::Listing>,
    json: bool,
) -> Result<()> {
    let redact = |u: &str| gitvault_engine::ops::backup::redact(u);
    if json {
        let vault = |n: &String| {
            let v = cfg.vault(n);
            serde_json::json!({"name": v.name, "url": redact(&v.url), "append_only": v.append_only})
        };
        let source = |n: &String| {
            let s = cfg.source(n);
            match listings.get(n) {
                Some(l) => serde_json::json!({
                    "name": s.name,
                    "url": s.url,
                    "api_url": l.api_url,
                    "repositories": l.repositories,
                    "left_out": l.left_out,
                    "requests": l.requests,
                    "error": l.error,
                }),
                None => serde_json::json!({"name": s.name, "url": redact(&s.url)}),
            }
        };
        let policies: Vec<serde_json::Value> = cfg
            .policies
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "type": p.backup_type.map(|t| t.as_str()),
                    "vaults": p.vaults.iter().map(vault).collect::<Vec<_>>(),
                    "sources": p.sources.iter().map(source).collect::<Vec<_>>(),
                    "retention": p.retention.as_ref().map(|r| r.to_string()),
                    "prune": p.prune,
                    "rpo_seconds": p.rpo.or(cfg.rpo).map(|d| d.as_secs()),
                    "schedules": p.jobs.iter().map(|j| serde_json::json!({
                        "cron": j.cron.expr(),
                        "timezone": j.cron.zone_name(),
                        "action": j.action.describe(),
                        "next": j.cron.next_after(time::OffsetDateTime::now_utc()).map(timestamp::format),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        return print_json(&serde_json::json!({"config": cfg.path, "policies": policies}));
    }
    println!("{}: valid", cfg.path.display());
    for p in &cfg.policies {
        println!(
            "policy {} ({}): {} sources into {} vaults",
            p.name,
            p.backup_type.map_or("full, then incremental", |t| t.as_str()),
            p.sources.len(),
            p.vaults.len()
        );
        for n in &p.sources {
            let s = cfg.source(n);
            match listings.get(n) {
                None => println!("  source {}  {}", s.name, redact(&s.url)),
                Some(l) => match &l.error {
                    Some(e) => println!("  source {}  (via {}): cannot be listed: {e}", s.name, l.api_url),
                    None => {
                        println!(
                            "  source {}  (via {}): {} repositories{}",
                            s.name,
                            l.api_url,
                            l.repositories.len(),
                            if l.left_out.is_empty() {
                                String::new()
                            } else {
                                format!(", {} left out", l.left_out.len())
                            }
                        );
                        for r in &l.repositories {
                            println!("    {r}");
                        }
                        for x in &l.left_out {
                            println!("    ({} left out: {})", x.name, x.reason);
                        }
                    }
                },
            }
        }
        for n in &p.vaults {
            let v = cfg.vault(n);
            println!("  vault  {}  {}{}", v.name, redact(&v.url), if v.append_only { "  (append-only)" } else { "" });
        }
        match &p.retention {
            Some(r) => println!("  retention: {r}{}", if p.prune { ", then prune" } else { "" }),
            None => println!("  retention: none (every snapshot is kept)"),
        }
        if let Some(rpo) = p.rpo.or(cfg.rpo) {
            println!("  rpo: {}", human_duration(rpo.as_secs()));
        }
        for j in &p.jobs {
            let next = j.cron.next_after(time::OffsetDateTime::now_utc()).map(when).unwrap_or_else(|| "never".into());
            println!("  schedule: {} at {} (next {next} UTC)", j.action.describe(), j.cron);
        }
        if p.jobs.is_empty() {
            println!("  schedule: none (`gitvault serve` does not run it; `backup --config` does)");
        }
    }
    if !cfg.alerts.is_empty() {
        let names: Vec<String> = cfg
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| a.name.clone().unwrap_or_else(|| format!("alert {}", i + 1)))
            .collect();
        println!("alerts: {} (`gitvault alert test` sends a test to each)", names.join(", "));
    }
    Ok(())
}

pub fn storage_check(r: &gitvault_storage::check::CheckReport, json: bool) -> Result<()> {
    if json {
        let checks: Vec<serde_json::Value> = r
            .checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "required": c.required,
                    "status": c.status.as_str().to_ascii_lowercase(),
                    "detail": c.detail,
                })
            })
            .collect();
        return print_json(&checks);
    }
    println!("checking {} (writing under {}/)", r.store, r.scratch);
    for c in &r.checks {
        let name = if c.required { c.name.to_string() } else { format!("{} (optional)", c.name) };
        println!("{:<8} {:<22} {}", c.status.as_str(), name, c.detail);
    }
    for (path, until) in &r.left_locked {
        println!("left {path} in place: locked until {}", when(time::OffsetDateTime::from(*until)));
    }
    for what in &r.left_over {
        println!("could not remove {what}");
    }
    if r.fit() {
        println!("everything a gitvault vault needs works here");
    } else {
        println!("NOT fit for a gitvault vault: see the MISSING and FAILED lines above");
    }
    Ok(())
}

pub fn export(r: &crate::metadata::Exported, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let x = &r.report;
    println!(
        "exported the metadata of {} (snapshot {}) into {}: {} issues, {} pull requests, {} releases, {} assets ({})",
        r.repository,
        &r.snapshot[..r.snapshot.len().min(8)],
        r.target.display(),
        x.issues,
        x.pulls,
        x.releases,
        x.assets,
        human_bytes(x.asset_bytes)
    );
    println!("open {}", r.target.join("index.html").display());
    for m in &x.missing_assets {
        println!("warning: {m}: the backup does not hold its bytes");
    }
    Ok(())
}
