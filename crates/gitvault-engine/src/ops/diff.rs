//! What changed between two states of a repository's refs, and whether it looks like an
//! intrusion: a branch moved to a commit that does not contain its old one is a force-push.

use std::collections::{BTreeMap, HashSet};

use gitvault_format::ids::SnapshotId;
use gitvault_format::snapshot::{RefRecord, RepoSnapshot, Snapshot};
use gitvault_git::{Git, ObjectId};
use serde::Serialize;

use crate::error::Result;
use crate::ops::restore::Scratch;
use crate::vault::Vault;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Deleted,
    /// A branch moved forward: its new commit contains the old one.
    FastForward,
    /// A branch moved to a commit that does not contain the old one: history was rewritten.
    ForcePush,
    /// A tag now points elsewhere; tags are expected never to move.
    TagMoved,
    /// Any other ref (notes, custom refs) points elsewhere.
    Moved,
}

impl ChangeKind {
    pub fn is_warning(self) -> bool {
        matches!(self, ChangeKind::Deleted | ChangeKind::ForcePush | ChangeKind::TagMoved)
    }
    pub fn describe(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Deleted => "deleted",
            ChangeKind::FastForward => "fast-forward",
            ChangeKind::ForcePush => "force-push (history rewritten)",
            ChangeKind::TagMoved => "tag moved",
            ChangeKind::Moved => "moved",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefChange {
    pub name: String,
    pub change: ChangeKind,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Compare two ref lists. `is_ancestor(old, new)` answers for moved branches.
pub fn ref_changes(
    old: &[RefRecord],
    new: &[RefRecord],
    is_ancestor: &mut dyn FnMut(&str, &str) -> Result<bool>,
) -> Result<Vec<RefChange>> {
    let old: BTreeMap<&str, &str> = old.iter().map(|r| (r.name.as_str(), r.oid.as_str())).collect();
    let new: BTreeMap<&str, &str> = new.iter().map(|r| (r.name.as_str(), r.oid.as_str())).collect();
    let mut changes = Vec::new();
    let names: std::collections::BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    for name in names {
        let (o, n) = (old.get(name).copied(), new.get(name).copied());
        let change = match (o, n) {
            (None, Some(_)) => ChangeKind::Created,
            (Some(_), None) => ChangeKind::Deleted,
            (Some(o), Some(n)) if o == n => continue,
            (Some(o), Some(n)) => {
                if name.starts_with("refs/heads/") {
                    if is_ancestor(o, n)? { ChangeKind::FastForward } else { ChangeKind::ForcePush }
                } else if name.starts_with("refs/tags/") {
                    ChangeKind::TagMoved
                } else {
                    ChangeKind::Moved
                }
            }
            (None, None) => continue,
        };
        changes.push(RefChange {
            name: name.to_string(),
            change,
            old: o.map(str::to_string),
            new: n.map(str::to_string),
        });
    }
    Ok(changes)
}

/// Ancestry asked of a real repository that holds both objects (a source or a mirror). A
/// missing object means the old commit is gone from the repository, so the move cannot have
/// been a fast-forward.
pub(crate) fn ancestry_in(git: &Git, repo: &std::path::Path) -> impl FnMut(&str, &str) -> Result<bool> {
    move |old, new| {
        let (Ok(old), Ok(new)) = (ObjectId::parse(old), ObjectId::parse(new)) else { return Ok(false) };
        Ok(git.is_ancestor(repo, &old, &new)?)
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoStatus {
    Changed,
    Unchanged,
    /// In the second snapshot only.
    Added,
    /// In the first snapshot only.
    Removed,
}

#[derive(Clone, Debug, Serialize)]
pub struct RepoDiff {
    pub name: String,
    pub status: RepoStatus,
    pub head: Option<HeadChange>,
    pub changes: Vec<RefChange>,
    /// Objects and stored bytes in the second snapshot's chain that the first one's lacks.
    pub objects_added: u64,
    pub bytes_added: u64,
    /// For a forge metadata repository (`…#metadata`, FORMAT.md §7.7) in both snapshots: the
    /// items created, changed and deleted upstream between them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataDiff>,
}

/// What changed in a repository's forge metadata between two snapshots.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MetadataDiff {
    pub issues: ItemChanges,
    pub pulls: ItemChanges,
    /// Conversation comments, reviews and review comments: `issues/<n>/comments/<id>`, ...
    pub comments: ItemChanges,
    pub releases: ItemChanges,
    /// Labels, milestones, settings, access records and assets that changed.
    pub other: Vec<String>,
    /// Set when many issues or pull requests were deleted at once: a possible incident.
    pub incident: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ItemChanges {
    pub created: Vec<String>,
    pub changed: Vec<String>,
    /// Items the forge stopped returning (their files gained `gitvault_deleted_at`).
    pub deleted: Vec<String>,
}

impl MetadataDiff {
    pub fn is_empty(&self) -> bool {
        [&self.issues, &self.pulls, &self.comments, &self.releases]
            .iter()
            .all(|c| c.created.is_empty() && c.changed.is_empty() && c.deleted.is_empty())
            && self.other.is_empty()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct HeadChange {
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotDiff {
    pub from: SnapshotId,
    pub to: SnapshotId,
    pub repositories: Vec<RepoDiff>,
}

fn head_text(r: &RepoSnapshot) -> Option<String> {
    r.head.as_ref().map(|h| match h {
        gitvault_format::snapshot::HeadRecord::Symbolic(s) => s.clone(),
        gitvault_format::snapshot::HeadRecord::Detached(o) => o.clone(),
    })
}

/// A scratch repository with the packs of both chains, built on first need: ancestry and
/// metadata trees need the objects, and the vault holds nothing else that knows them.
fn both_chains<'s>(
    vault: &Vault,
    a: &RepoSnapshot,
    b: &RepoSnapshot,
    slot: &'s mut Option<Scratch>,
) -> Result<&'s Scratch> {
    if slot.is_none() {
        let s = Scratch::new(vault, &a.object_format)?;
        let mut seen = HashSet::new();
        for p in a.chain.iter().chain(&b.chain) {
            if seen.insert(p.pack.id) {
                s.install(vault, p)?;
            }
        }
        *slot = Some(s);
    }
    Ok(slot.as_ref().expect("just built"))
}

fn branch_tip(r: &RepoSnapshot) -> Option<&str> {
    r.refs.iter().find(|x| x.name == gitvault_format::metadata::BRANCH).map(|x| x.oid.as_str())
}

/// The items of a metadata repository that differ between commits `old` and `new` of `repo`.
fn metadata_diff(git: &Git, repo: &std::path::Path, old: &str, new: &str) -> Result<MetadataDiff> {
    let changes = git.diff_trees(repo, old, new)?;
    // A modified item is "deleted" when it gained the deletion field.
    let modified: Vec<String> = changes.iter().filter(|c| c.status == 'M').map(|c| c.path.clone()).collect();
    let before = git.read_blobs(repo, old, &modified)?;
    let after = git.read_blobs(repo, new, &modified)?;
    let field = format!("\"{}\"", gitvault_format::metadata::DELETED_FIELD);
    let has = |b: &Option<Vec<u8>>| b.as_deref().is_some_and(|b| b.windows(field.len()).any(|w| w == field.as_bytes()));
    let newly_deleted: HashSet<&str> = modified
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| !has(b) && has(a))
        .map(|(p, _)| p.as_str())
        .collect();
    let mut d = MetadataDiff::default();
    for c in &changes {
        let parts: Vec<&str> = c.path.split('/').collect();
        let (list, key) = match parts.as_slice() {
            ["issues", n, "issue.json"] => (&mut d.issues, (*n).to_string()),
            ["pulls", n, "pull.json"] => (&mut d.pulls, (*n).to_string()),
            [kind @ ("issues" | "pulls"), n, sub @ ("comments" | "reviews" | "review_comments"), id] => {
                (&mut d.comments, format!("{kind}/{n}/{sub}/{}", id.trim_end_matches(".json")))
            }
            ["releases", id, "release.json"] => (&mut d.releases, (*id).to_string()),
            [".gitvault", ..] => continue,
            _ => {
                d.other.push(c.path.clone());
                continue;
            }
        };
        match c.status {
            'A' => list.created.push(key),
            _ if newly_deleted.contains(c.path.as_str()) => list.deleted.push(key),
            _ => list.changed.push(key),
        }
    }
    let deleted = d.issues.deleted.len() + d.pulls.deleted.len();
    if deleted >= MASS_DELETION {
        d.incident = Some(format!(
            "{deleted} issues and pull requests were deleted upstream between these snapshots: a possible incident (mass deletion)"
        ));
    }
    Ok(d)
}

/// Deleted issues and pull requests between two snapshots from which `diff` flags an incident.
pub const MASS_DELETION: usize = 10;

/// Compare two snapshots repository by repository.
pub fn diff(vault: &Vault, from: &Snapshot, to: &Snapshot) -> Result<SnapshotDiff> {
    let git = Git::new();
    let mut repos = Vec::new();
    let names: std::collections::BTreeSet<&str> =
        from.repositories.iter().chain(&to.repositories).map(|r| r.name.as_str()).collect();
    for name in names {
        let d = match (from.repo(name), to.repo(name)) {
            (Some(a), Some(b)) => diff_repo(vault, &git, a, b)?,
            (None, Some(b)) => RepoDiff {
                name: name.into(),
                status: RepoStatus::Added,
                head: Some(HeadChange { old: None, new: head_text(b) }),
                changes: ref_changes(&[], &b.refs, &mut |_, _| Ok(false))?,
                objects_added: b.chain.iter().map(|p| p.objects).sum(),
                bytes_added: b.chain.iter().map(|p| p.stored_size()).sum(),
                metadata: None,
            },
            (Some(a), None) => RepoDiff {
                name: name.into(),
                status: RepoStatus::Removed,
                head: None,
                changes: ref_changes(&a.refs, &[], &mut |_, _| Ok(false))?,
                objects_added: 0,
                bytes_added: 0,
                metadata: None,
            },
            (None, None) => continue,
        };
        repos.push(d);
    }
    Ok(SnapshotDiff { from: from.id, to: to.id, repositories: repos })
}

fn diff_repo(vault: &Vault, git: &Git, a: &RepoSnapshot, b: &RepoSnapshot) -> Result<RepoDiff> {
    let in_a: HashSet<_> = a.chain.iter().map(|p| p.pack.id).collect();
    let added: Vec<_> = b.chain.iter().filter(|p| !in_a.contains(&p.pack.id)).collect();
    // Ancestry needs the objects: only when a branch moved, rebuild both chains' packs in a
    // scratch repository (the vault holds nothing else that knows the commit graph).
    let mut scratch: Option<Scratch> = None;
    let mut is_ancestor = |old: &str, new: &str| -> Result<bool> {
        let s = both_chains(vault, a, b, &mut scratch)?;
        ancestry_in(git, s.path())(old, new)
    };
    let changes = ref_changes(&a.refs, &b.refs, &mut is_ancestor)?;
    let metadata = if b.name.ends_with(gitvault_format::metadata::SUFFIX) {
        let (old, new) = (branch_tip(a), branch_tip(b));
        match (old, new) {
            (Some(old), Some(new)) if old != new => {
                let s = both_chains(vault, a, b, &mut scratch)?;
                Some(metadata_diff(git, s.path(), old, new)?)
            }
            _ => Some(MetadataDiff::default()),
        }
    } else {
        None
    };
    let (ha, hb) = (head_text(a), head_text(b));
    let status = if changes.is_empty() && ha == hb { RepoStatus::Unchanged } else { RepoStatus::Changed };
    Ok(RepoDiff {
        name: b.name.clone(),
        status,
        head: (ha != hb).then_some(HeadChange { old: ha, new: hb }),
        changes,
        metadata,
        objects_added: added.iter().map(|p| p.objects).sum(),
        bytes_added: added.iter().map(|p| p.stored_size()).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, oid: &str) -> RefRecord {
        RefRecord { name: name.into(), oid: oid.into() }
    }

    #[test]
    fn classifies_every_kind_of_ref_change() {
        let old = [
            r("refs/heads/main", "a1"),
            r("refs/heads/dev", "b1"),
            r("refs/heads/gone", "c1"),
            r("refs/tags/v1", "d1"),
            r("refs/notes/commits", "e1"),
        ];
        let new = [
            r("refs/heads/main", "a2"),
            r("refs/heads/dev", "b2"),
            r("refs/heads/new", "f1"),
            r("refs/tags/v1", "d2"),
            r("refs/notes/commits", "e2"),
        ];
        // main fast-forwarded; dev was rewritten.
        let mut anc = |o: &str, _n: &str| Ok(o == "a1");
        let got: Vec<(String, ChangeKind)> =
            ref_changes(&old, &new, &mut anc).expect("diff").into_iter().map(|c| (c.name, c.change)).collect();
        assert_eq!(
            got,
            vec![
                ("refs/heads/dev".into(), ChangeKind::ForcePush),
                ("refs/heads/gone".into(), ChangeKind::Deleted),
                ("refs/heads/main".into(), ChangeKind::FastForward),
                ("refs/heads/new".into(), ChangeKind::Created),
                ("refs/notes/commits".into(), ChangeKind::Moved),
                ("refs/tags/v1".into(), ChangeKind::TagMoved),
            ]
        );
    }
}
