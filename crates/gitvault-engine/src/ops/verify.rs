//! Verify: check structure, the ledger chain, every snapshot and (with `read_data`) every byte.
//! Damage is collected, never returned early: the report lists every problem found.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use gitvault_format::envelope::Kind;
use gitvault_format::ids::{DataId, KeySlotId, Mac, SnapshotId, paths};
use gitvault_format::ledger::Event;
use gitvault_format::snapshot::DataRef;
use gitvault_format::timestamp;
use serde::Serialize;

use crate::error::{Result, chain};
use crate::ledger::SeenHead;
use crate::progress::Progress;
use crate::vault::{Vault, damaged_or_io, read_key_slots};

/// A snapshot unrecorded in the ledger for longer than this was left by an interrupted backup
/// (younger ones may belong to a backup that is finishing right now).
const RECOVER_AFTER_SECONDS: i64 = 300;

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Decrypt and authenticate every byte of every data file.
    pub read_data: bool,
    /// Decrypt and authenticate only this part of the data files (ignored with `read_data`).
    pub read_data_subset: Option<Subset>,
}

/// A part of the data files, so that a large vault can be read in full over several runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    /// `K/N`: the K-th of N slices (1 ≤ K ≤ N). Slices are fixed by the data ids, so running
    /// 1/N … N/N reads every file exactly once.
    Slice { k: u32, n: u32 },
    /// About this percentage of the files, chosen at random each run.
    Percent(f64),
}

impl Subset {
    /// `K/N` or `P%`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{text:?}: give K/N (e.g. 2/7: the second of seven slices) or a percentage (e.g. 10%)");
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!("{text:?}: the percentage must be above 0 and at most 100"));
            }
            return Ok(Subset::Percent(p));
        }
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (k, n): (u32, u32) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if n == 0 || k == 0 || k > n {
            return Err(format!("{text:?}: K/N needs 1 <= K <= N"));
        }
        Ok(Subset::Slice { k, n })
    }

    fn contains(&self, id: &DataId) -> bool {
        match *self {
            Subset::Slice { k, n } => {
                let b = id.as_bytes();
                let x = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                x % n == k - 1
            }
            Subset::Percent(p) => {
                let mut r = [0u8; 4];
                if gitvault_format::random_bytes(&mut r).is_err() {
                    return true;
                }
                f64::from(u32::from_be_bytes(r)) < p / 100.0 * f64::from(u32::MAX)
            }
        }
    }
}

impl std::fmt::Display for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subset::Slice { k, n } => write!(f, "{k}/{n}"),
            Subset::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// The vault file concerned (e.g. `snapshots/…`, `ledger/…`, `data/…`).
    pub path: String,
    pub problem: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// True when no problem was found (warnings do not count).
    pub ok: bool,
    pub read_data: bool,
    /// The part of the data read, when only a part was (`K/N` or `P%`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_subset: Option<String>,
    pub snapshots: usize,
    pub ledger_entries: usize,
    pub key_slots: usize,
    pub data_files: usize,
    /// Bytes decrypted and authenticated (with `read_data`).
    pub bytes_read: u64,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
    /// What verify repaired: interrupted writes cleaned, unrecorded snapshots recorded.
    pub repaired: Vec<String>,
}

struct Check {
    problems: Vec<Problem>,
    warnings: Vec<String>,
    repaired: Vec<String>,
}

impl Check {
    fn problem(&mut self, path: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), problem: problem.into() });
    }
}

/// What the ledger says should exist.
#[derive(Default)]
struct LedgerFacts {
    snapshots: HashMap<SnapshotId, (u64, Mac)>,
    /// Snapshots removed by `forget`, and the entry that removed them.
    forgotten: HashMap<SnapshotId, u64>,
    /// Data files deleted by `prune`, and the entry that deleted them.
    pruned: HashMap<DataId, u64>,
    key_slots: BTreeSet<KeySlotId>,
    entries: usize,
    head: Option<SeenHead>,
}

pub fn verify(vault: &Vault, opts: &VerifyOptions, progress: &dyn Progress) -> Result<VerifyReport> {
    let mut c = Check { problems: Vec::new(), warnings: Vec::new(), repaired: Vec::new() };
    match vault.remove_incomplete() {
        Ok(removed) => {
            c.repaired.extend(removed.into_iter().map(|p| format!("removed {p}, left by an interrupted write")))
        }
        Err(e) => c.warnings.push(format!("could not clean up interrupted writes: {e}")),
    }
    let facts = check_ledger(vault, &mut c)?;
    let key_slots = check_key_slots(vault, &facts, &mut c)?;
    let (snapshots, referenced) = check_snapshots(vault, &facts, &mut c)?;
    let (data_files, bytes_read) = check_data(vault, &referenced, &facts, opts, &mut c, progress)?;

    let problems = c.problems.len() as u64;
    let subset = if opts.read_data { None } else { opts.read_data_subset };
    // A version-1 vault cannot record a partial read; it records that not all data was read.
    let data_subset = subset.filter(|_| vault.config.version >= 2).map(|s| s.to_string());
    match vault.append_ledger(Event::Verify { read_data: opts.read_data, problems, data_subset }) {
        Ok(_) => {}
        Err(e) => c.warnings.push(format!("could not record this verification in the ledger: {e}")),
    }
    Ok(VerifyReport {
        ok: c.problems.is_empty(),
        read_data: opts.read_data,
        data_subset: subset.map(|s| s.to_string()),
        snapshots,
        ledger_entries: facts.entries,
        key_slots,
        data_files,
        bytes_read,
        problems: c.problems,
        warnings: c.warnings,
        repaired: c.repaired,
    })
}

fn check_ledger(vault: &Vault, c: &mut Check) -> Result<LedgerFacts> {
    let mut facts = LedgerFacts::default();
    let entries = vault.read_ledger()?;
    facts.entries = entries.len();
    if entries.is_empty() {
        c.problem(paths::LEDGER_DIR, "the ledger is empty: every vault has at least its init entry");
    }
    let mut expected_seq = 1;
    let mut prev: Option<Mac> = None;
    let mut removed_slots = BTreeSet::new();
    for e in &entries {
        if e.seq != expected_seq {
            c.problem(
                paths::ledger(expected_seq),
                format!("ledger entries {expected_seq}..{} are missing (removed?)", e.seq - 1),
            );
            prev = None;
        }
        expected_seq = e.seq + 1;
        let (entry, hash) = match &e.entry {
            Ok(x) => x,
            Err(err) => {
                c.problem(&e.path, format!("unreadable ledger entry: {}", chain(err)));
                prev = None;
                continue;
            }
        };
        if e.seq == 1 && (entry.prev.is_some() || !matches!(entry.event, Event::Init { .. })) {
            c.problem(&e.path, "the first ledger entry must be the vault's init entry, with no predecessor");
        }
        if e.seq > 1
            && let Some(p) = prev
            && entry.prev != Some(p)
        {
            c.problem(
                &e.path,
                format!(
                    "does not follow entry {}: the chain is broken (an entry was altered, replaced or reordered)",
                    e.seq - 1
                ),
            );
        }
        prev = Some(*hash);
        facts.head = Some(SeenHead { seq: e.seq, hash: *hash });
        match &entry.event {
            Event::Init { vault: v, key_slot } => {
                if e.seq != 1 || *v != vault.config.id {
                    c.problem(&e.path, "an init entry that does not belong here");
                }
                facts.key_slots.insert(*key_slot);
            }
            Event::Snapshot { snapshot, mac, .. } => {
                facts.snapshots.entry(*snapshot).or_insert((e.seq, *mac));
            }
            Event::KeyAdd { key_slot } => {
                facts.key_slots.insert(*key_slot);
            }
            Event::KeyRemove { key_slot } => {
                facts.key_slots.remove(key_slot);
                removed_slots.insert(*key_slot);
            }
            Event::Forget { snapshots, .. } => {
                for id in snapshots {
                    facts.forgotten.entry(*id).or_insert(e.seq);
                }
            }
            Event::Prune { data, .. } => {
                for id in data {
                    facts.pruned.entry(*id).or_insert(e.seq);
                }
            }
            Event::Upgrade { to, .. } => {
                if *to > vault.config.version {
                    c.warnings.push(format!(
                        "ledger entry {} records an upgrade to format version {to}, but the vault is still version {}: an interrupted `gitvault upgrade`; run it again",
                        e.seq, vault.config.version
                    ));
                }
            }
            Event::Restore { .. } | Event::Verify { .. } | Event::Audit { .. } => {}
        }
        if entry.actor.is_some() && vault.config.version < 4 && !matches!(entry.event, Event::Upgrade { .. }) {
            c.problem(
                &e.path,
                format!(
                    "an `actor` field, which format version 4 introduced, in a version {} vault",
                    vault.config.version
                ),
            );
        }
        if entry.event.since_version() > vault.config.version && !matches!(entry.event, Event::Upgrade { .. }) {
            c.problem(
                &e.path,
                format!(
                    "a {} entry, which format version {} introduced, in a version {} vault",
                    entry.event.name(),
                    entry.event.since_version(),
                    vault.config.version
                ),
            );
        }
    }
    if let Some(seen) = vault.seen_head() {
        match entries.iter().find(|e| e.seq == seen.seq) {
            None => c.problem(
                paths::ledger(seen.seq),
                format!(
                    "this machine has seen the ledger reach entry {}, but it now ends at entry {}: entries were removed",
                    seen.seq,
                    entries.last().map_or(0, |e| e.seq)
                ),
            ),
            Some(e) => {
                if e.entry.as_ref().is_ok_and(|(_, h)| *h != seen.hash) {
                    c.problem(&e.path, "differs from the entry this machine saw under that number: the ledger was rewritten");
                }
            }
        }
    }
    if let Some(head) = facts.head {
        let hashes: HashMap<u64, Mac> =
            entries.iter().filter_map(|e| e.entry.as_ref().ok().map(|(_, h)| (e.seq, *h))).collect();
        vault.advance_seen_head(head, &|seq| hashes.get(&seq).copied());
    }
    Ok(facts)
}

fn check_key_slots(vault: &Vault, facts: &LedgerFacts, c: &mut Check) -> Result<usize> {
    let slots = match read_key_slots(vault.store.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            c.problem(paths::KEYS_DIR, chain(&e));
            return Ok(0);
        }
    };
    let present: BTreeSet<KeySlotId> = slots.iter().map(|s| s.id).collect();
    // A slot file and its ledger entry are two writes: `key add` writes the slot first and
    // `key remove` records the removal first, so an interrupted key change leaves a difference
    // here. Neither loses data, so they are warnings, worded for both causes.
    for id in present.difference(&facts.key_slots) {
        c.warnings.push(format!(
            "key slot {id} is not recorded in the ledger as present (an interrupted `key add` or `key remove`, or added outside gitvault)"
        ));
    }
    for id in facts.key_slots.difference(&present) {
        c.problem(paths::key_slot(id), "this key slot is recorded in the ledger but its file is missing (deleted?)");
    }
    Ok(slots.len())
}

/// Every data file the snapshots reference: what it is and who references it.
type Referenced = BTreeMap<DataId, (DataRef, Kind, String)>;

/// Returns the number of snapshots and every data file they reference.
fn check_snapshots(vault: &Vault, facts: &LedgerFacts, c: &mut Check) -> Result<(usize, Referenced)> {
    let mut referenced = BTreeMap::new();
    let ids = vault.snapshot_ids()?;
    let present: BTreeSet<SnapshotId> = ids.iter().copied().collect();
    for id in &ids {
        let path = paths::snapshot(id);
        let (snap, mac) = match vault.read_snapshot(id) {
            Ok(x) => x,
            Err(e) => {
                c.problem(&path, chain(&e));
                continue;
            }
        };
        if let Some(seq) = facts.forgotten.get(id) {
            c.warnings.push(format!(
                "snapshot {} was forgotten in ledger entry {seq} but its file remains (an interrupted forget); `gitvault prune` finishes it",
                id.short()
            ));
        }
        match facts.snapshots.get(id) {
            Some((_, recorded)) if *recorded != mac => {
                c.problem(&path, "differs from the snapshot recorded in the ledger");
            }
            Some(_) => {}
            None => {
                let age = (timestamp::now() - snap.time).whole_seconds();
                if age > RECOVER_AFTER_SECONDS {
                    let event = Event::Snapshot {
                        snapshot: *id,
                        mac,
                        repositories: snap.repositories.iter().map(|r| r.name.clone()).collect(),
                        recovered: true,
                    };
                    match vault.append_ledger(event) {
                        Ok(e) => c.repaired.push(format!(
                            "recorded snapshot {} in the ledger (entry {}); its backup stopped before it could",
                            id.short(),
                            e.seq
                        )),
                        Err(e) => c.problem(&path, format!("not recorded in the ledger, and recording it failed: {e}")),
                    }
                } else {
                    c.warnings.push(format!(
                        "snapshot {} is not recorded in the ledger yet (a backup finishing now?)",
                        id.short()
                    ));
                }
            }
        }
        for repo in &snap.repositories {
            let who = format!("repository {} of snapshot {}", repo.name, id.short());
            for pack in &repo.chain {
                for (data, kind) in pack.data() {
                    referenced.entry(data.id).or_insert((*data, kind, who.clone()));
                }
            }
            for l in repo.lfs_objects() {
                referenced.entry(l.data.id).or_insert((l.data, Kind::LfsObject, who.clone()));
            }
        }
    }
    for (id, (seq, _)) in &facts.snapshots {
        if !present.contains(id) && !facts.forgotten.contains_key(id) {
            c.problem(
                paths::snapshot(id),
                format!("recorded in ledger entry {seq} but missing from the vault (deleted?)"),
            );
        }
    }
    Ok((ids.len(), referenced))
}

fn check_data(
    vault: &Vault,
    referenced: &Referenced,
    facts: &LedgerFacts,
    opts: &VerifyOptions,
    c: &mut Check,
    progress: &dyn Progress,
) -> Result<(usize, u64)> {
    let listed: HashMap<String, u64> =
        vault.store.list(paths::DATA_DIR)?.into_iter().map(|o| (o.path, o.size)).collect();
    let mut bytes_read = 0;
    let subset = if opts.read_data { None } else { opts.read_data_subset };
    let to_read: BTreeSet<DataId> = match subset {
        _ if opts.read_data => referenced.keys().copied().collect(),
        Some(s) => referenced.keys().filter(|id| s.contains(id)).copied().collect(),
        None => BTreeSet::new(),
    };
    if !to_read.is_empty() {
        progress.start("vault", "reading data", Some(to_read.iter().map(|id| referenced[id].0.size).sum()));
    }
    for (id, (data, kind, who)) in referenced {
        let path = paths::data(id);
        match listed.get(&path) {
            None => {
                let why = match facts.pruned.get(id) {
                    Some(seq) => format!(" (deleted by the prune of ledger entry {seq} although a snapshot needs it)"),
                    None => String::new(),
                };
                c.problem(&path, format!("missing {} of {who}{why}", kind.name()));
                continue;
            }
            Some(&size) if size != data.size => {
                c.problem(&path, format!("{} of {who} is {size} bytes, {} expected", kind.name(), data.size));
                continue;
            }
            Some(_) => {}
        }
        if to_read.contains(id) {
            let result = vault.open_data(data, *kind).and_then(|mut r| {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = r.read(&mut buf).map_err(|e| damaged_or_io(&path, e))?;
                    if n == 0 {
                        return Ok(());
                    }
                    progress.bytes(n as u64);
                }
            });
            match result {
                Ok(()) => bytes_read += data.plain_size,
                Err(e) => c.problem(&path, format!("{} of {who}: {}", kind.name(), chain(&e))),
            }
        }
    }
    let unreferenced: Vec<_> = listed
        .iter()
        .filter(|(p, _)| {
            p.rsplit('/').next().and_then(|n| n.parse::<DataId>().ok()).is_none_or(|id| !referenced.contains_key(&id))
        })
        .collect();
    let pending: BTreeSet<DataId> = match vault.read_pending() {
        Ok(p) => {
            p.into_iter().flat_map(|p| p.packs).flat_map(|k| k.data().map(|(d, _)| d.id).collect::<Vec<_>>()).collect()
        }
        Err(e) => {
            c.warnings.push(format!("could not read the pending-pack records: {}", chain(&e)));
            BTreeSet::new()
        }
    };
    let marked = match vault.read_marks() {
        Ok(marks) => marks.into_iter().flat_map(|m| m.mark.data).collect::<BTreeSet<_>>(),
        Err(e) => {
            c.problem(paths::MARKS_DIR, format!("a deletion mark cannot be read: {}", chain(&e)));
            BTreeSet::new()
        }
    };
    if !unreferenced.is_empty() {
        let bytes: u64 = unreferenced.iter().map(|(_, s)| **s).sum();
        let already = unreferenced
            .iter()
            .filter(|(p, _)| {
                p.rsplit('/').next().and_then(|n| n.parse::<DataId>().ok()).is_some_and(|id| marked.contains(&id))
            })
            .count();
        let resumable = unreferenced
            .iter()
            .filter(|(p, _)| {
                p.rsplit('/').next().and_then(|n| n.parse::<DataId>().ok()).is_some_and(|id| pending.contains(&id))
            })
            .count();
        c.warnings.push(format!(
            "{} data files ({bytes} bytes) are referenced by no snapshot, {already} of them already marked for deletion and {resumable} stored by an interrupted backup that the next one resumes from: left by forgotten snapshots or interrupted backups (`gitvault prune` disposes of them), or written by a backup running now",
            unreferenced.len()
        ));
    }
    Ok((listed.len(), bytes_read))
}
