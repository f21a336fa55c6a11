//! One tracing span per request, carrying a request id that is also sent back in `x-request-id`
//! and quoted in internal errors, so that a caller's report leads to the log lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

tokio::task_local! {
    static REQUEST_ID: u64;
}

/// The id of the request being answered on this task, if any.
pub(crate) fn request_id() -> Option<u64> {
    REQUEST_ID.try_with(|id| *id).ok()
}

/// Middleware: run the rest of the stack inside the request's span and id. Only the path is
/// logged: headers (the token) never are.
pub(crate) async fn request_span(request: Request, next: Next) -> Response {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path());
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(
            id,
            async move {
                let response = next.run(request).await;
                tracing::debug!(
                    status = response.status().as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "answered"
                );
                response
            }
            .instrument(span),
        )
        .await;
    response.headers_mut().insert("x-request-id", HeaderValue::from(id));
    response
}
