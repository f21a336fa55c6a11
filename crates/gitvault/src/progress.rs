//! Progress bars on a terminal; nothing (logs only) elsewhere.

use std::io::IsTerminal;
use std::sync::Mutex;

use gitvault_engine::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    /// Bars when stderr is a terminal and the user did not ask for quiet; `None` otherwise.
    pub fn new(quiet: bool) -> Option<Self> {
        (!quiet && std::io::stderr().is_terminal()).then(|| Self { bar: Mutex::new(None) })
    }
}

impl Progress for Bars {
    fn start(&self, repo: &str, phase: &str, total: Option<u64>) {
        let mut slot = self.bar.lock().expect("progress lock");
        if let Some(old) = slot.take() {
            old.finish_and_clear();
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
        bar.set_prefix(repo.to_string());
        bar.set_message(phase.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        *slot = Some(bar);
    }
    fn bytes(&self, n: u64) {
        if let Some(b) = self.bar.lock().expect("progress lock").as_ref() {
            b.inc(n);
        }
    }
    fn finish(&self, _repo: &str) {
        if let Some(b) = self.bar.lock().expect("progress lock").take() {
            b.finish_and_clear();
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
