//! Errors as the API answers them: a status, a stable `code`, and a short message that helps the
//! caller act. Internal errors are logged whole inside the request's span; the caller gets only
//! the request id to quote.

use std::fmt::Write as _;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::control::BoxError;
use crate::trace;

/// How to get a token, said in every 401.
pub(crate) const GET_A_TOKEN: &str = "create a token with `gitvault token create --role operator|auditor` and send it as `Authorization: Bearer gvt_...`";

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed; the message says how.
    BadRequest(String),
    /// 401: no usable token. The message never contains what the caller sent.
    Unauthorized(&'static str),
    /// 403: the token's role may not do this.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 405.
    MethodNotAllowed,
    /// 409: the thing is busy (a run of the policy is going on).
    Conflict(String),
    /// 503: the daemon is shutting down.
    Unavailable(String),
    /// 500: logged whole, answered with the request id only.
    Internal(BoxError),
}

impl ApiError {
    pub(crate) fn internal(err: impl Into<BoxError>) -> Self {
        ApiError::Internal(err.into())
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// An error and its sources, `: `-separated, for the log.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m) => m,
            ApiError::Unauthorized(why) => format!("{why}: {GET_A_TOKEN}"),
            ApiError::MethodNotAllowed => "this route does not answer that method".to_string(),
            ApiError::Internal(err) => {
                tracing::error!(error = %chain(err.as_ref()), "request failed");
                match trace::request_id() {
                    Some(id) => format!("internal error, see the server log (request id {id})"),
                    None => "internal error, see the server log".to_string(),
                }
            }
        };
        let mut response = (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
