//! Bearer tokens: `Authorization: Bearer gvt_...`, looked up by hash in the catalog (which keeps
//! only the hash, and records each use). A missing, malformed, unknown or revoked token is a 401
//! that says how to get one and never repeats what was sent.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use gitvault_ops::catalog::{NewAudit, Role};
use gitvault_ops::token;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::{AppState, blocking};

/// Whoever a valid token belongs to.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// How the caller appears in runs and in the audit trail.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }

    /// Operators only. A refusal is recorded in the audit trail (`outcome = denied`) before the
    /// 403 is answered.
    pub(crate) async fn require_operator(&self, state: &AppState, action: &str, target: &str) -> Result<(), ApiError> {
        if self.role == Role::Operator {
            return Ok(());
        }
        let entry = NewAudit {
            time: OffsetDateTime::now_utc(),
            actor: self.actor(),
            action: action.to_string(),
            target: target.to_string(),
            outcome: "denied".to_string(),
            detail: Some(format!("role {} may not {action}", self.role.as_str())),
            vault: None,
            ledger_seq: None,
        };
        record_audit(state, entry).await;
        tracing::warn!(actor = %self.actor(), action, target, "denied: not an operator token");
        Err(ApiError::Forbidden(format!(
            "token {:?} has role {}, which reads but changes nothing: use an operator token",
            self.name,
            self.role.as_str()
        )))
    }
}

/// Write an audit entry; a failure is logged, not answered (the action it records has happened).
pub(crate) async fn record_audit(state: &AppState, entry: NewAudit) {
    let (action, target) = (entry.action.clone(), entry.target.clone());
    if let Err(err) = blocking(state, move |catalog, _| catalog.audit(&entry).map_err(ApiError::internal)).await {
        let detail = match &err {
            ApiError::Internal(e) => crate::error::chain(e.as_ref()),
            other => format!("{other:?}"),
        };
        tracing::error!(action, target, error = %detail, "could not record an audit entry");
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("this route needs a bearer token"))?;
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, secret)| secret.trim())
            .filter(|s| !s.is_empty())
            .ok_or(ApiError::Unauthorized("the Authorization header is not `Bearer <token>`"))?;
        if !secret.starts_with(token::PREFIX) {
            return Err(ApiError::Unauthorized("this is not a gitvault API token (they start with `gvt_`)"));
        }
        let hash = token::hash(secret);
        let found = blocking(state, move |catalog, _| catalog.token_by_hash(&hash).map_err(ApiError::internal)).await?;
        match found {
            Some(t) => {
                tracing::debug!(token = %t.name, role = t.role.as_str(), "authenticated");
                Ok(Caller { name: t.name, role: t.role })
            }
            None => {
                tracing::info!("refused an unknown or revoked token");
                Err(ApiError::Unauthorized("the bearer token is unknown or revoked"))
            }
        }
    }
}
