//! Pending packs (FORMAT.md §9.5): a backup records, per repository, the packs it stored before
//! its snapshot, so that a run interrupted after that point can be resumed by the next one
//! without storing them again.

use gitvault_format::envelope::Kind;
use gitvault_format::ids::{PendingId, paths};
use gitvault_format::pending::{PENDING_VERSION, Pending};
use gitvault_format::snapshot::PackRecord;
use gitvault_format::timestamp;

use crate::error::Result;
use crate::vault::Vault;

impl Vault {
    /// Every readable pending record. One that cannot be read is skipped with a warning: it is
    /// only ever an optimisation, and `verify` reports it.
    pub(crate) fn read_pending(&self) -> Result<Vec<Pending>> {
        let mut found = Vec::new();
        for obj in self.store.list(paths::PENDING_DIR)? {
            let Some(id) = obj.path.strip_prefix(paths::PENDING_DIR).and_then(|n| n.parse::<PendingId>().ok()) else {
                continue;
            };
            let read = self
                .open_small(Kind::Pending, &obj.path, &id.to_hex())
                .and_then(|plain| Ok(Pending::from_json(&plain)?))
                .and_then(|p| {
                    if p.id == id {
                        Ok(p)
                    } else {
                        Err(crate::Error::Refused("its id differs from its file name".into()))
                    }
                });
            match read {
                Ok(p) => found.push(p),
                Err(e) => tracing::warn!(path = %obj.path, error = %e, "ignoring an unreadable pending-pack record"),
            }
        }
        Ok(found)
    }

    /// Record packs stored for `name` ahead of the snapshot.
    pub(crate) fn write_pending(
        &self,
        name: &str,
        object_format: &str,
        base: Option<gitvault_format::ids::SnapshotId>,
        tips: Vec<String>,
        packs: Vec<PackRecord>,
    ) -> Result<PendingId> {
        let id = PendingId::random()?;
        let record = Pending {
            version: PENDING_VERSION,
            id,
            time: timestamp::now(),
            host: self.ctx.host.clone(),
            name: name.to_string(),
            object_format: object_format.to_string(),
            base,
            tips,
            packs,
        };
        let stored = self.seal_small(Kind::Pending, &id.to_hex(), &record.to_json())?;
        self.store.put_new(&paths::pending(&id), &stored)?;
        Ok(id)
    }

    /// Remove pending records that a committed snapshot made useless. Best effort: a record
    /// left behind costs nothing but a small file, which `prune` clears.
    pub(crate) fn remove_pending(&self, ids: &[PendingId]) {
        if self.append_only {
            return;
        }
        for id in ids {
            if let Err(e) = self.store.delete(&paths::pending(id)) {
                tracing::warn!(pending = %id, error = %e, "could not remove a used pending-pack record");
            }
        }
    }
}
