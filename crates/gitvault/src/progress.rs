//! Progress bars on a terminal; nothing (logs only) elsewhere.
//!
//! With `--jobs N` several repositories are worked on at once, each on its own thread: every
//! thread gets its own bar, and byte counts go to the bar of the thread that reports them.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::thread::ThreadId;

use gitvault_engine::progress::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<ThreadId, ProgressBar>>,
}

impl Bars {
    /// Bars when stderr is a terminal and the user did not ask for quiet; `None` otherwise.
    pub fn new(quiet: bool) -> Option<Self> {
        (!quiet && std::io::stderr().is_terminal())
            .then(|| Self { multi: MultiProgress::new(), bars: Mutex::new(HashMap::new()) })
    }
}

impl Progress for Bars {
    fn start(&self, repo: &str, phase: &str, total: Option<u64>) {
        let mut bars = self.bars.lock().expect("progress lock");
        if let Some(old) = bars.remove(&std::thread::current().id()) {
            old.finish_and_clear();
            self.multi.remove(&old);
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template("{prefix:.bold} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} {bytes} {bytes_per_sec}")
                    .expect("valid template"),
            ),
        };
        let bar = self.multi.add(bar);
        bar.set_prefix(repo.to_string());
        bar.set_message(phase.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bars.insert(std::thread::current().id(), bar);
    }
    fn bytes(&self, n: u64) {
        if let Some(b) = self.bars.lock().expect("progress lock").get(&std::thread::current().id()) {
            b.inc(n);
        }
    }
    fn finish(&self, _repo: &str) {
        if let Some(b) = self.bars.lock().expect("progress lock").remove(&std::thread::current().id()) {
            b.finish_and_clear();
            self.multi.remove(&b);
        }
    }
}

/// Plain structured log lines, for when nobody watches a terminal.
pub struct LogProgress;

impl Progress for LogProgress {
    fn start(&self, repo: &str, phase: &str, total: Option<u64>) {
        tracing::info!(repo, phase, total_bytes = total, "progress");
    }
}
