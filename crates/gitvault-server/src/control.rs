//! What the server needs from the daemon that runs it: the configured policies, their RPOs, a
//! way to queue a run, and the snapshots of a vault. `gitvault serve` implements [`Control`];
//! tests implement it with a fake.

use std::error::Error as StdError;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

/// A boxed error from the daemon, kept whole so that the server can log its chain.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The daemon, as the API sees it.
///
/// `policies` and `rpo` are expected to answer from memory. `trigger` must not wait for the run:
/// it queues it and returns. `snapshots` may read a vault (slow, blocking). The server calls every
/// method from a blocking thread (`spawn_blocking`), never from the async runtime.
pub trait Control: Send + Sync + 'static {
    /// Every configured policy, in configuration order.
    fn policies(&self) -> Vec<PolicyInfo>;

    /// The recovery-point objective of a policy (`None`: runs made outside any policy, or a
    /// policy without one).
    fn rpo(&self, policy: Option<&str>) -> Option<Duration>;

    /// Queue a run of `request.policy` (only `request.repository` when given).
    fn trigger(&self, request: &TriggerRequest) -> Result<Triggered, TriggerError>;

    /// The snapshots of every vault, or of `vault`, in the JSON shape `gitvault snapshots --json`
    /// prints.
    fn snapshots(&self, vault: Option<&str>) -> Result<serde_json::Value, ControlError>;
}

/// A policy as configured, and what the scheduler knows of it now.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyInfo {
    pub name: String,
    /// The schedule expressions as written in the configuration.
    pub schedules: Vec<String>,
    pub rpo_seconds: Option<u64>,
    /// The vaults the policy backs up into.
    pub vaults: Vec<String>,
    /// A run of this policy is going on now.
    pub running: bool,
    /// When a schedule fires next (`None`: no schedule, or shutting down).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_run: Option<OffsetDateTime>,
}

/// A run asked for through the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriggerRequest {
    pub policy: String,
    /// One repository of the policy (as named in runs and `status`), or all of them.
    pub repository: Option<String>,
    /// `full`, `diff` or `incr`; `None`: what the policy's schedule would choose.
    pub backup_type: Option<String>,
    /// Who asked: `token:NAME`. Recorded in the run.
    pub actor: String,
}

/// A run was queued.
#[derive(Clone, Debug)]
pub struct Triggered {
    /// When it was queued: the run it starts is listed by `GET /api/v1/runs?since=<this>`.
    pub queued_at: OffsetDateTime,
}

/// Why a run could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no policy named {0:?} in the configuration")]
    UnknownPolicy(String),
    #[error("policy {policy:?} backs up no repository named {repository:?}")]
    UnknownRepository { policy: String, repository: String },
    #[error("a run of policy {0:?} is already going on or queued")]
    AlreadyRunning(String),
    #[error("gitvault is shutting down and starts no new run")]
    ShuttingDown,
    #[error("the run could not be queued")]
    Other(#[source] BoxError),
}

/// Why the daemon could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no vault named {0:?} in the configuration")]
    UnknownVault(String),
    #[error("the daemon could not answer")]
    Other(#[source] BoxError),
}
