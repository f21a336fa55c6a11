//! The HTTP API and Prometheus metrics of `gitvault serve`.
//!
//! `gitvault serve` listens on `127.0.0.1:8750` unless configured otherwise, over HTTPS when a
//! certificate and key are configured (rustls). Every answer is JSON (`Content-Type:
//! application/json`) except `/metrics`, and carries an `x-request-id` header that the server's
//! log lines of that request carry too.
//!
//! # Authentication
//!
//! Every route but `/healthz` needs `Authorization: Bearer gvt_...`, a token made with
//! `gitvault token create --role operator|auditor` (the catalog keeps only its SHA-256; `gitvault
//! token revoke` ends it at once). An **auditor** token reads everything; an **operator** token
//! also triggers runs. A missing, malformed, unknown or revoked token gets `401` with
//! `WWW-Authenticate: Bearer`; an auditor that triggers gets `403`. The token is never logged nor
//! repeated in an answer.
//!
//! Errors have one shape: `{"error": {"code": "unauthorized", "message": "..."}}`, with codes
//! `bad_request` (400), `unauthorized` (401), `forbidden` (403), `not_found` (404),
//! `method_not_allowed` (405), `conflict` (409), `internal` (500: the message quotes the request
//! id; the server's log has the error) and `unavailable` (503).
//!
//! # Routes
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | `{"status": "ok"}`, no token needed |
//! | `GET /api/v1/status` | `{"repositories": [health...], "policies": [policy...], "summary": {"repositories": N, "rpo_breached": N, "failing": N}}` |
//! | `GET /api/v1/runs?policy=&command=&since=&limit=` | `{"runs": [run...]}`, newest first; `since` is RFC 3339, `limit` 1–1000 (default 50) |
//! | `GET /api/v1/runs/{id}` | `{"run": run, "repositories": [repository run...], "logs": [log line...]}`; 404 when unknown |
//! | `GET /api/v1/snapshots?vault=` | what `gitvault snapshots --json` prints; 404 for an unknown vault |
//! | `POST /api/v1/policies/{name}/run` | operators: queue a run (below) |
//! | `GET /api/v1/audit?since=` | `{"entries": [audit entry...]}`, oldest first |
//! | `GET /metrics` | Prometheus text format 0.0.4 (below) |
//!
//! A health is `{repo, vault, policy, last_good, last_failure, age_seconds, rpo_seconds,
//! rpo_breached, failing}`; a policy is `{name, schedules, rpo_seconds, vaults, running,
//! next_run}`; runs, repository runs, log lines and audit entries are the catalog's rows
//! (`gitvault_ops::catalog`), times in RFC 3339.
//!
//! **Triggering a run.** `POST /api/v1/policies/{name}/run` with no body, or with
//! `{"repository": "acme/app", "type": "full"}` (both optional; `type` is `full`, `diff` or
//! `incr`), queues a run and answers `202 {"accepted": true, "policy", "repository", "type",
//! "queued_at"}` at once; the run then shows in `GET /api/v1/runs?policy=NAME&since=QUEUED_AT`.
//! An unknown policy or repository is `404`, a run of the policy already going on `409`, a
//! daemon shutting down `503`. Every attempt is recorded in the audit trail: actor
//! `token:NAME`, action `api_trigger`, target `policy` or `policy/repository`, outcome
//! `accepted`, `denied` (an auditor token) or `failed` (the reason in `detail`).
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `gitvault_up` | gauge | |
//! | `gitvault_repositories` | gauge | |
//! | `gitvault_rpo_breaches` (repositories in breach) | gauge | |
//! | `gitvault_repository_last_success_timestamp_seconds` | gauge | `repository`, `vault` |
//! | `gitvault_repository_backup_age_seconds` | gauge | `repository`, `vault` |
//! | `gitvault_repository_rpo_seconds` | gauge | `repository`, `vault`, `policy` |
//! | `gitvault_repository_rpo_breached` (0 or 1) | gauge | `repository`, `vault`, `policy` |
//! | `gitvault_repository_failing` (0 or 1) | gauge | `repository`, `vault` |
//! | `gitvault_runs_total` (ended runs) | counter | `policy`, `command`, `outcome` |
//! | `gitvault_run_failures_total` | counter | `policy`, `command` |
//! | `gitvault_runs_running` | gauge | `policy`, `command` |
//! | `gitvault_run_last_duration_seconds` | gauge | `policy`, `command` |
//! | `gitvault_bytes_added_total` | counter | `policy` |
//! | `gitvault_policy_running` (0 or 1) | gauge | `policy` |
//! | `gitvault_policy_next_run_timestamp_seconds` | gauge | `policy` |
//!
//! An empty `vault` or `policy` label means none (a run outside any policy). Counters are counted
//! from the catalog at each scrape, so they survive restarts and include runs typed by hand.
//!
//! # Embedding
//!
//! The daemon implements [`Control`], builds an [`AppState`] and calls [`serve`] (or [`bind`]
//! then [`Bound::run`], to learn the port first) with a shutdown future.

mod api;
mod auth;
mod control;
mod error;
pub mod metrics;
mod serve;
mod trace;

use std::sync::Arc;

use gitvault_ops::catalog::Catalog;

pub use api::router;
pub use auth::Caller;
pub use control::{BoxError, Control, ControlError, PolicyInfo, TriggerError, TriggerRequest, Triggered};
pub use error::ApiError;
pub use serve::{Bound, DEFAULT_PORT, ServeOptions, ServerError, TlsFiles, bind, serve};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub control: Arc<dyn Control>,
}

impl AppState {
    pub fn new(catalog: Arc<Catalog>, control: Arc<dyn Control>) -> Self {
        Self { catalog, control }
    }
}

/// Run `f` on a blocking thread, inside the current request's span: the catalog holds one
/// SQLite connection behind a mutex, and the daemon's methods may block.
pub(crate) async fn blocking<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Catalog, &dyn Control) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let (catalog, control) = (state.catalog.clone(), state.control.clone());
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| f(&catalog, control.as_ref())))
        .await
        .map_err(ApiError::internal)?
}
