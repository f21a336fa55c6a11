//! Forget: remove snapshots from the vault by a retention policy (keep-last, grandfather-father-
//! son buckets, keep-within) or by name. Only snapshot files go, after a ledger `forget` entry
//! that says which and why; the data they shared with kept snapshots stays, and `prune` later
//! deletes what no kept snapshot needs. Every kept snapshot's chain is complete on its own
//! (FORMAT.md §7.5), so retention can never break a restore.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use gitvault_format::ids::{SnapshotId, paths};
use gitvault_format::ledger::Event;
use gitvault_format::snapshot::Snapshot;
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::lock::LockedFile;
use crate::vault::{Vault, resolve_snapshot};

/// A retention policy. Counts of zero mean "not used".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    /// Keep every snapshot this close to the group's newest snapshot.
    pub within: Option<Duration>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.last, "last"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ] {
            if n > 0 {
                parts.push(format!("keep-{what} {n}"));
            }
        }
        if let Some(w) = self.within {
            parts.push(format!("keep-within {}", format_duration(w)));
        }
        f.write_str(&parts.join(", "))
    }
}

/// Parse a duration such as `30d`, `2w`, `1y6m`, `36h`: a sequence of numbers with units `y`
/// (365 days), `m` (30 days), `w`, `d` and `h`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            'y' => 365 * 86400,
            'm' => 30 * 86400,
            'w' => 7 * 86400,
            'd' => 86400,
            'h' => 3600,
            _ => return Err(format!("{text:?}: unknown unit {c:?} (use y, m, w, d, h, e.g. 30d or 1y6m)")),
        };
        let n: u64 = number.parse().map_err(|_| format!("{text:?}: a number must come before {c:?}"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
        any = true;
    }
    if !number.is_empty() || !any {
        return Err(format!("{text:?}: give a number and a unit (y, m, w, d, h), e.g. 30d or 1y6m"));
    }
    Ok(Duration::from_secs(total))
}

pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86400) { format!("{}d", s / 86400) } else { format!("{}h", s / 3600) }
}

/// What to forget: snapshots named explicitly, or those a policy does not keep.
#[derive(Clone, Debug)]
pub enum Selection {
    Snapshots(Vec<String>),
    Policy(Policy),
    /// The policy, applied only to the group of snapshots that back up exactly these
    /// repositories (a configured backup policy's own snapshots).
    Group(Policy, Vec<String>),
}

#[derive(Clone, Debug, Serialize)]
pub struct KeptSnapshot {
    pub id: SnapshotId,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Every rule that keeps it: `last`, `hourly 2026-11-28 14:00`, `within 30d`, …
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RemovedSnapshot {
    pub id: SnapshotId,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// Snapshots of one group: those that back up the same set of sources. A policy applies to
/// each group on its own, so hosts backing up different shards into one vault keep theirs.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub repositories: Vec<String>,
    pub keep: Vec<KeptSnapshot>,
    pub remove: Vec<RemovedSnapshot>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    /// The policy applied, or `explicit` when snapshots were named.
    pub reason: String,
    pub groups: Vec<Group>,
    /// Snapshots removed (or, with `dry_run`, that would be).
    pub removed: usize,
    /// The ledger entry that records the removal (none with `dry_run` or when nothing went).
    pub ledger_entry: Option<u64>,
    /// Snapshots that would have gone but are locked (Object Lock): kept, with the date their
    /// lock ends; forget them again after it.
    pub locked: Vec<LockedFile>,
}

/// The names a snapshot's run was asked to back up: its repositories and its failures.
fn group_key(s: &Snapshot) -> Vec<String> {
    let set: BTreeSet<String> =
        s.repositories.iter().map(|r| r.name.clone()).chain(s.failures.iter().map(|f| f.name.clone())).collect();
    set.into_iter().collect()
}

/// The name of the period a time falls in (`2026-11-28`, `2026-W48`, …).
type BucketOf = fn(OffsetDateTime) -> String;

/// Each group (by its sources) with every member and why it is kept (empty: it goes).
type Verdicts<'a> = Vec<(Vec<String>, Vec<(&'a Snapshot, Vec<String>)>)>;

/// Apply `policy` to one group's snapshots (oldest first). Returns, for each snapshot, why it
/// is kept (empty: it goes).
pub fn apply_policy(snaps: &[&Snapshot], policy: &Policy) -> Vec<Vec<String>> {
    let mut reasons = vec![Vec::new(); snaps.len()];
    // Newest first, as every rule counts back from the newest.
    let order: Vec<usize> = (0..snaps.len()).rev().collect();
    for (k, &i) in order.iter().enumerate() {
        if k < policy.last as usize {
            reasons[i].push("last".to_string());
        }
    }
    let buckets: [(u32, &str, BucketOf); 5] = [
        (policy.hourly, "hourly", |t| {
            format!("{:04}-{:02}-{:02} {:02}:00", t.year(), t.month() as u8, t.day(), t.hour())
        }),
        (policy.daily, "daily", |t| format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day())),
        (policy.weekly, "weekly", |t| {
            let (y, w, _) = t.to_iso_week_date();
            format!("{y:04}-W{w:02}")
        }),
        (policy.monthly, "monthly", |t| format!("{:04}-{:02}", t.year(), t.month() as u8)),
        (policy.yearly, "yearly", |t| format!("{:04}", t.year())),
    ];
    for (count, name, bucket_of) in buckets {
        if count == 0 {
            continue;
        }
        // The newest snapshot of each of the `count` newest buckets that hold one.
        let mut seen = BTreeSet::new();
        for &i in &order {
            if seen.len() >= count as usize {
                break;
            }
            let bucket = bucket_of(snaps[i].time.to_offset(time::UtcOffset::UTC));
            if seen.insert(bucket.clone()) {
                reasons[i].push(format!("{name} {bucket}"));
            }
        }
    }
    if let (Some(within), Some(&newest)) = (policy.within, order.first()) {
        let limit = snaps[newest].time - within;
        for &i in &order {
            if snaps[i].time >= limit {
                reasons[i].push(format!("within {} of the newest", format_duration(within)));
            }
        }
    }
    reasons
}

/// Forget snapshots. With `dry_run`, only say what would go and why the rest stays.
pub fn forget(vault: &Vault, selection: &Selection, dry_run: bool) -> Result<ForgetReport> {
    if !dry_run {
        vault.deny_in_append_only("forget")?;
        vault.require_version("forget", 2)?;
    }
    let snaps = vault.snapshots()?;
    let mut groups: BTreeMap<Vec<String>, Vec<&Snapshot>> = BTreeMap::new();
    for s in &snaps {
        groups.entry(group_key(s)).or_default().push(s);
    }
    if let Selection::Group(_, names) = selection {
        let key: BTreeSet<String> = names.iter().cloned().collect();
        let key: Vec<String> = key.into_iter().collect();
        groups.retain(|k, _| *k == key);
    }
    let (reason, verdicts): (String, Verdicts) = match selection {
        Selection::Policy(policy) | Selection::Group(policy, _) => {
            if policy.is_empty() {
                return Err(Error::Refused(
                    "no retention policy given: pass --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly or --keep-within, or name snapshots".into(),
                ));
            }
            let verdicts = groups
                .into_iter()
                .map(|(key, members)| {
                    let reasons = apply_policy(&members, policy);
                    (key, members.into_iter().zip(reasons).collect())
                })
                .collect();
            (policy.to_string(), verdicts)
        }
        Selection::Snapshots(queries) => {
            if queries.is_empty() {
                return Err(Error::Refused("name at least one snapshot to forget, or give a policy".into()));
            }
            let mut named = BTreeSet::new();
            for q in queries {
                named.insert(resolve_snapshot(&snaps, q)?.id);
            }
            let verdicts = groups
                .into_iter()
                .map(|(key, members)| {
                    let v = members
                        .into_iter()
                        .map(|s| {
                            let keep = if named.contains(&s.id) { Vec::new() } else { vec!["not named".to_string()] };
                            (s, keep)
                        })
                        .collect();
                    (key, v)
                })
                .collect();
            ("explicit".to_string(), verdicts)
        }
    };

    let mut report_groups = Vec::new();
    let mut doomed = Vec::new();
    // A locked snapshot is refused, not deleted: a delete would only hide it (see lock.rs).
    let locks = vault.lock_check(std::time::SystemTime::now())?;
    let mut locked = Vec::new();
    for (key, members) in verdicts {
        let mut group = Group { repositories: key, keep: Vec::new(), remove: Vec::new() };
        for (s, mut reasons) in members {
            if reasons.is_empty()
                && let Some(lock) = locks.locked(vault, &paths::snapshot(&s.id))?
            {
                tracing::warn!(snapshot = %s.id.short(), until = %lock.until, "not forgetting a locked snapshot");
                reasons.push(format!("locked until {}", gitvault_format::timestamp::format(lock.until)));
                locked.push(lock);
            }
            if reasons.is_empty() {
                group.remove.push(RemovedSnapshot { id: s.id, time: s.time });
                doomed.push(s.id);
            } else {
                group.keep.push(KeptSnapshot { id: s.id, time: s.time, reasons });
            }
        }
        report_groups.push(group);
    }
    let mut report = ForgetReport {
        dry_run,
        reason: reason.clone(),
        groups: report_groups,
        removed: doomed.len(),
        ledger_entry: None,
        locked,
    };
    if dry_run || doomed.is_empty() {
        return Ok(report);
    }
    // Ledger first: an interrupted forget leaves snapshots the ledger says are gone (finished
    // by the next forget or prune), never snapshots that vanished without a record.
    let entry = vault.append_ledger(Event::Forget { snapshots: doomed.clone(), reason, replaced_by: Vec::new() })?;
    report.ledger_entry = Some(entry.seq);
    for id in &doomed {
        vault.store.delete(&paths::snapshot(id))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitvault_format::ids::SnapshotId;
    use time::macros::datetime;

    fn snap(t: OffsetDateTime) -> Snapshot {
        Snapshot {
            version: 1,
            id: SnapshotId::random().expect("rng"),
            time: t,
            host: "h".into(),
            gitvault_version: "0".into(),
            repositories: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn kept(snaps: &[Snapshot], policy: &Policy) -> Vec<usize> {
        let refs: Vec<&Snapshot> = snaps.iter().collect();
        apply_policy(&refs, policy).iter().enumerate().filter(|(_, r)| !r.is_empty()).map(|(i, _)| i).collect()
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30d").expect("ok").as_secs(), 30 * 86400);
        assert_eq!(parse_duration("1y6m").expect("ok").as_secs(), (365 + 180) * 86400);
        assert_eq!(parse_duration("2w12h").expect("ok").as_secs(), 14 * 86400 + 12 * 3600);
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("3x").is_err());
    }

    #[test]
    fn keep_last_and_daily_count_back_from_the_newest() {
        // Two snapshots a day for five days.
        let snaps: Vec<Snapshot> =
            (0..10).map(|i| snap(datetime!(2026-11-01 06:00 UTC) + time::Duration::hours(12 * i))).collect();
        assert_eq!(kept(&snaps, &Policy { last: 3, ..Policy::default() }), vec![7, 8, 9]);
        // The newest of each of the 3 newest days: the evening snapshots of days 3, 4, 5.
        assert_eq!(kept(&snaps, &Policy { daily: 3, ..Policy::default() }), vec![5, 7, 9]);
        // Union of rules.
        assert_eq!(kept(&snaps, &Policy { last: 1, daily: 2, ..Policy::default() }), vec![7, 9]);
        // Within 1 day of the newest (inclusive): 3 snapshots.
        let within = Policy { within: Some(Duration::from_secs(86400)), ..Policy::default() };
        assert_eq!(kept(&snaps, &within), vec![7, 8, 9]);
    }

    #[test]
    fn gfs_buckets_skip_empty_periods_and_say_why() {
        let times = [
            datetime!(2024-03-10 10:00 UTC),
            datetime!(2025-06-01 10:00 UTC),
            datetime!(2026-01-15 10:00 UTC),
            datetime!(2026-10-31 10:00 UTC),
            datetime!(2026-11-02 10:00 UTC),
            datetime!(2026-11-28 10:00 UTC),
        ];
        let snaps: Vec<Snapshot> = times.iter().map(|t| snap(*t)).collect();
        let refs: Vec<&Snapshot> = snaps.iter().collect();
        let p = Policy { monthly: 2, yearly: 3, ..Policy::default() };
        let r = apply_policy(&refs, &p);
        assert_eq!(r[5], vec!["monthly 2026-11", "yearly 2026"]);
        assert_eq!(r[3], vec!["monthly 2026-10"]);
        assert!(r[4].is_empty(), "older than the newest of its month");
        assert!(r[2].is_empty(), "2026 already kept by its newest");
        assert_eq!(r[1], vec!["yearly 2025"]);
        assert_eq!(r[0], vec!["yearly 2024"]);
        let w = Policy { weekly: 1, ..Policy::default() };
        assert_eq!(apply_policy(&refs, &w)[5], vec!["weekly 2026-W48"]);
    }
}
