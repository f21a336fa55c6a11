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
    key_slots: BTreeSet<KeySlotId>,
    entries: usize,
    head: Option<SeenHead>,
}

pub fn verify(vault: &Vault, opts: &VerifyOptions, progress: &dyn Progress) -> Result<VerifyReport> {
    let mut c = Check { problems: Vec::new(), warnings: Vec::new(), repaired: Vec::new() };
    match vault.store.remove_incomplete() {
        Ok(removed) => {
            c.repaired.extend(removed.into_iter().map(|p| format!("removed {p}, left by an interrupted write")))
        }
        Err(e) => c.warnings.push(format!("could not clean up interrupted writes: {e}")),
    }
    let facts = check_ledger(vault, &mut c)?;
    let key_slots = check_key_slots(vault, &facts, &mut c)?;
    let (snapshots, referenced) = check_snapshots(vault, &facts, &mut c)?;
    let (data_files, bytes_read) = check_data(vault, &referenced, opts, &mut c, progress)?;

    let problems = c.problems.len() as u64;
    match vault.append_ledger(Event::Verify { read_data: opts.read_data, problems }) {
        Ok(_) => {}
        Err(e) => c.warnings.push(format!("could not record this verification in the ledger: {e}")),
    }
    Ok(VerifyReport {
        ok: c.problems.is_empty(),
        read_data: opts.read_data,
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
            Event::Restore { .. } | Event::Verify { .. } => {}
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
            for pack in &repo.chain {
                let who = format!("repository {} of snapshot {}", repo.name, id.short());
                referenced.entry(pack.pack.id).or_insert((pack.pack, Kind::Pack, who.clone()));
                referenced.entry(pack.index.id).or_insert((pack.index, Kind::PackIndex, who));
            }
        }
    }
    for (id, (seq, _)) in &facts.snapshots {
        if !present.contains(id) {
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
    opts: &VerifyOptions,
    c: &mut Check,
    progress: &dyn Progress,
) -> Result<(usize, u64)> {
    let listed: HashMap<String, u64> =
        vault.store.list(paths::DATA_DIR)?.into_iter().map(|o| (o.path, o.size)).collect();
    let mut bytes_read = 0;
    if opts.read_data {
        progress.start("vault", "reading data", Some(referenced.values().map(|(d, _, _)| d.size).sum()));
    }
    for (id, (data, kind, who)) in referenced {
        let path = paths::data(id);
        match listed.get(&path) {
            None => {
                c.problem(&path, format!("missing {} of {who}", kind.name()));
                continue;
            }
            Some(&size) if size != data.size => {
                c.problem(&path, format!("{} of {who} is {size} bytes, {} expected", kind.name(), data.size));
                continue;
            }
            Some(_) => {}
        }
        if opts.read_data {
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
    if !unreferenced.is_empty() {
        let bytes: u64 = unreferenced.iter().map(|(_, s)| **s).sum();
        c.warnings.push(format!(
            "{} data files ({bytes} bytes) are referenced by no snapshot: left by interrupted backups, or by a backup running now",
            unreferenced.len()
        ));
    }
    Ok((listed.len(), bytes_read))
}
