//! How long operations tell the outside world what they are doing. The binary draws bars on a
//! terminal and logs plain lines elsewhere; the engine only reports.

/// Progress of per-repository work. Methods are called from one thread at a time per repository.
pub trait Progress: Sync {
    /// A repository enters a phase (`packing`, `uploading`, `restoring`), with a byte total if known.
    fn start(&self, _repo: &str, _phase: &str, _total_bytes: Option<u64>) {}
    /// Bytes processed in the current phase.
    fn bytes(&self, _n: u64) {}
    /// The repository is done.
    fn finish(&self, _repo: &str) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}
