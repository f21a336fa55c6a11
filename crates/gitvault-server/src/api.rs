//! The routes and their handlers. Every handler that reads the catalog or asks the daemon does it
//! on a blocking thread ([`crate::blocking`]).

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use gitvault_ops::catalog::{LogFilter, NewAudit, RunFilter};
use gitvault_ops::health::health;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::{Caller, record_audit};
use crate::control::{ControlError, TriggerError, TriggerRequest};
use crate::error::ApiError;
use crate::{AppState, blocking, metrics, trace};

/// Runs listed when no `limit` is given, and the most one request may ask for.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

/// The backup types a trigger may ask for.
const BACKUP_TYPES: [&str; 3] = ["full", "diff", "incr"];

/// The whole API: see the crate documentation for routes, auth and metrics.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/status", get(status))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run_detail))
        .route("/snapshots", get(snapshots))
        .route("/policies/{name}/run", post(trigger))
        .route("/audit", get(audit));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .nest("/api/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(trace::request_span))
        .with_state(state)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route: the API lives under /api/v1 (status, runs, snapshots, audit)".to_string())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn status(_caller: Caller, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (repositories, policies) = blocking(&state, |catalog, control| {
        let rpo = |policy: Option<&str>| control.rpo(policy);
        let repositories = health(catalog, &rpo, OffsetDateTime::now_utc()).map_err(ApiError::internal)?;
        Ok((repositories, control.policies()))
    })
    .await?;
    let summary = json!({
        "repositories": repositories.len(),
        "rpo_breached": repositories.iter().filter(|r| r.rpo_breached).count(),
        "failing": repositories.iter().filter(|r| r.failing).count(),
    });
    Ok(Json(json!({ "repositories": repositories, "policies": policies, "summary": summary })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    policy: Option<String>,
    command: Option<String>,
    since: Option<String>,
    limit: Option<u32>,
}

async fn runs(
    _caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let filter = RunFilter { policy: q.policy, since: parse_since(q.since)?, command: q.command, limit: Some(limit) };
    let runs = blocking(&state, move |catalog, _| catalog.runs(&filter).map_err(ApiError::internal)).await?;
    Ok(Json(json!({ "runs": runs })))
}

async fn run_detail(
    _caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::BadRequest(format!("a run id is a number, not {id:?}")))?;
    let found = blocking(&state, move |catalog, _| {
        let Some(run) = catalog.run(id).map_err(ApiError::internal)? else { return Ok(None) };
        let repositories = catalog.run_repos(id).map_err(ApiError::internal)?;
        let logs = catalog.logs(&LogFilter { run: Some(id), ..LogFilter::default() }).map_err(ApiError::internal)?;
        Ok(Some((run, repositories, logs)))
    })
    .await?;
    let (run, repositories, logs) = found.ok_or_else(|| ApiError::NotFound(format!("no run with id {id}")))?;
    Ok(Json(json!({ "run": run, "repositories": repositories, "logs": logs })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotsQuery {
    vault: Option<String>,
}

async fn snapshots(
    _caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SnapshotsQuery>,
) -> Result<Json<Value>, ApiError> {
    let listed = blocking(&state, move |_, control| {
        control.snapshots(q.vault.as_deref()).map_err(|err| match err {
            ControlError::UnknownVault(_) => ApiError::NotFound(err.to_string()),
            ControlError::Other(_) => ApiError::internal(err),
        })
    })
    .await?;
    Ok(Json(listed))
}

/// The optional body of a trigger.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    repository: Option<String>,
    #[serde(rename = "type")]
    backup_type: Option<String>,
}

async fn trigger(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(policy): ApiPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body is optional, else JSON like {{\"repository\": \"acme/app\", \"type\": \"full\"}}: {e}"
            ))
        })?
    };
    if let Some(t) = body.backup_type.as_deref().filter(|t| !BACKUP_TYPES.contains(t)) {
        return Err(ApiError::BadRequest(format!("type {t:?} is none of full, diff, incr")));
    }
    let target = match &body.repository {
        Some(repo) => format!("{policy}/{repo}"),
        None => policy.clone(),
    };
    caller.require_operator(&state, "api_trigger", &target).await?;

    let request =
        TriggerRequest { policy, repository: body.repository, backup_type: body.backup_type, actor: caller.actor() };
    let asked = request.clone();
    let result = blocking(&state, move |_, control| Ok(control.trigger(&asked))).await?;
    let (outcome, detail) = match &result {
        Ok(_) => ("accepted", request.backup_type.as_ref().map(|t| format!("type {t}"))),
        Err(err) => ("failed", Some(crate::error::chain(err))),
    };
    let entry = NewAudit {
        time: OffsetDateTime::now_utc(),
        actor: caller.actor(),
        action: "api_trigger".to_string(),
        target: target.clone(),
        outcome: outcome.to_string(),
        detail,
        vault: None,
        ledger_seq: None,
    };
    record_audit(&state, entry).await;
    let triggered = result.map_err(|err| match err {
        TriggerError::UnknownPolicy(_) | TriggerError::UnknownRepository { .. } => ApiError::NotFound(err.to_string()),
        TriggerError::AlreadyRunning(_) => ApiError::Conflict(err.to_string()),
        TriggerError::ShuttingDown => ApiError::Unavailable(err.to_string()),
        TriggerError::Other(_) => ApiError::internal(err),
    })?;
    tracing::info!(actor = %caller.actor(), target = %target, "run queued");
    let queued_at = triggered.queued_at.format(&Rfc3339).map_err(ApiError::internal)?;
    let answer = json!({
        "accepted": true,
        "policy": request.policy,
        "repository": request.repository,
        "type": request.backup_type,
        "queued_at": queued_at,
    });
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    since: Option<String>,
}

async fn audit(
    _caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let since = parse_since(q.since)?;
    let entries = blocking(&state, move |catalog, _| catalog.audit_entries(since).map_err(ApiError::internal)).await?;
    Ok(Json(json!({ "entries": entries })))
}

async fn metrics_text(_caller: Caller, State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = blocking(&state, |catalog, control| {
        let rpo = |policy: Option<&str>| control.rpo(policy);
        let repositories = health(catalog, &rpo, OffsetDateTime::now_utc()).map_err(ApiError::internal)?;
        let runs = catalog.runs(&RunFilter::default()).map_err(ApiError::internal)?;
        Ok(metrics::render(&repositories, &runs, &control.policies()))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

/// `since=` as RFC 3339. A `+` of an offset that the client did not percent-encode arrives as a
/// space; it is read as the `+` it was.
fn parse_since(since: Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    since
        .map(|s| {
            OffsetDateTime::parse(&s.replace(' ', "+"), &Rfc3339).map_err(|_| {
                ApiError::BadRequest(format!("since {s:?} is not an RFC 3339 time such as 2024-05-01T00:00:00Z"))
            })
        })
        .transpose()
}

/// `Query`, with its rejection answered as a JSON 400.
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(ApiQuery(q)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// `Path`, with its rejection answered as a JSON 400.
struct ApiPath<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(ApiPath(p)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}
