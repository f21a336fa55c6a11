//! One forge's HTTP API: authenticated GETs with retries of transient failures, rate limits
//! waited out (and reported), pagination by `Link` header, and a count of requests made.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;

use crate::error::{Error, Result};
use crate::{Credentials, ForgeKind};

/// Told when a request waits: for a rate limit to reset, or before retrying a failure.
pub trait Waiting: Send + Sync {
    fn waiting(&self, forge: ForgeKind, wait: Duration, reason: &str);
}

/// Logs each wait at info level.
pub struct LogWaiting;
impl Waiting for LogWaiting {
    fn waiting(&self, forge: ForgeKind, wait: Duration, reason: &str) {
        tracing::info!(%forge, wait_seconds = wait.as_secs_f64(), reason, "waiting");
    }
}

/// How patient a client is.
#[derive(Clone, Debug)]
pub struct Patience {
    /// Attempts of a request that fails transiently (5xx, connection error, timeout).
    pub attempts: u32,
    /// First backoff; doubled each attempt, with jitter.
    pub backoff: Duration,
    /// The longest rate-limit wait accepted; a longer one fails the request.
    pub max_wait: Duration,
    /// Per request.
    pub timeout: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(3600),
            timeout: Duration::from_secs(60),
        }
    }
}

/// An API client for one forge at one base URL.
#[derive(Clone)]
pub struct Api {
    pub(crate) forge: ForgeKind,
    base: String,
    http: Client,
    credentials: Credentials,
    patience: Patience,
    waiting: Arc<dyn Waiting>,
    requests: Arc<AtomicU64>,
    not_modified: Arc<AtomicU64>,
    /// Milliseconds spent waiting for rate limits (what the forge asked for).
    paused_ms: Arc<AtomicU64>,
}

/// A successful answer.
pub(crate) struct Page {
    pub body: serde_json::Value,
    pub headers: HeaderMap,
}

/// The answer to a conditional GET.
pub(crate) enum Fetched {
    /// 304: what the caller has is current (GitHub does not charge it against the rate limit).
    NotModified,
    /// The content, with its `ETag` to send next time.
    Fresh(Page, Option<String>),
}

impl Api {
    pub fn new(
        forge: ForgeKind,
        base: &str,
        credentials: Credentials,
        patience: Patience,
        waiting: Arc<dyn Waiting>,
    ) -> Result<Self> {
        let http = Client::builder()
            .user_agent(concat!("gitvault/", env!("CARGO_PKG_VERSION")))
            .timeout(patience.timeout)
            .build()
            .map_err(|source| Error::Unreachable { forge, url: base.to_string(), source })?;
        Ok(Self {
            forge,
            base: base.trim_end_matches('/').to_string(),
            http,
            credentials,
            patience,
            waiting,
            requests: Arc::new(AtomicU64::new(0)),
            not_modified: Arc::new(AtomicU64::new(0)),
            paused_ms: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Of [`Api::requests`], those answered `304 Not Modified`.
    pub fn not_modified(&self) -> u64 {
        self.not_modified.load(Ordering::Relaxed)
    }

    /// Time spent waiting because the forge said to (rate limits, `Retry-After`).
    pub fn rate_limit_pauses(&self) -> Duration {
        Duration::from_millis(self.paused_ms.load(Ordering::Relaxed))
    }

    /// `path` (starting with `/`) under the base URL.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET one URL as JSON; `what` names it in errors ("the organisation acme").
    pub(crate) fn get(&self, url: &str, what: &str) -> Result<Page> {
        match self.get_if(url, what, None)? {
            Fetched::Fresh(page, _) => Ok(page),
            Fetched::NotModified => Err(Error::Parse {
                forge: self.forge,
                what: what.to_string(),
                detail: "304 Not Modified to an unconditional request".into(),
            }),
        }
    }

    /// GET one URL as JSON, conditionally when `etag` is given (`If-None-Match`).
    pub(crate) fn get_if(&self, url: &str, what: &str, etag: Option<&str>) -> Result<Fetched> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self.http.get(url).header("Accept", self.forge.accept());
            if let Some((name, value)) = self.credentials.api_header(self.forge) {
                req = req.header(name, value);
            }
            if let Some(etag) = etag {
                req = req.header("If-None-Match", etag);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let resp = match req.send() {
                Ok(r) => r,
                Err(source) => {
                    if attempt < self.patience.attempts {
                        self.pause(self.backoff(attempt), "connection failed, retrying");
                        continue;
                    }
                    return Err(Error::Unreachable { forge: self.forge, url: url.to_string(), source });
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            if status == StatusCode::NOT_MODIFIED && etag.is_some() {
                self.not_modified.fetch_add(1, Ordering::Relaxed);
                return Ok(Fetched::NotModified);
            }
            let body = match resp.bytes() {
                Ok(b) => b,
                Err(source) => {
                    if attempt < self.patience.attempts {
                        self.pause(self.backoff(attempt), "answer cut short, retrying");
                        continue;
                    }
                    return Err(Error::Unreachable { forge: self.forge, url: url.to_string(), source });
                }
            };
            if status.is_success() {
                let body = serde_json::from_slice(&body).map_err(|e| Error::Parse {
                    forge: self.forge,
                    what: what.to_string(),
                    detail: format!("not JSON: {e}"),
                })?;
                let etag = headers.get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
                return Ok(Fetched::Fresh(Page { body, headers }, etag));
            }
            if let Some(wait) = rate_limit_wait(status, &headers) {
                if wait > self.patience.max_wait {
                    return Err(Error::RateLimitTooLong {
                        forge: self.forge,
                        wait_seconds: wait.as_secs(),
                        max_seconds: self.patience.max_wait.as_secs(),
                    });
                }
                // A rate limit is not a failure: it does not use up an attempt.
                attempt -= 1;
                self.rate_limited(wait);
                continue;
            }
            let message = error_message(&body);
            if (status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT) && attempt < self.patience.attempts {
                self.pause(self.backoff(attempt), &format!("HTTP {}, retrying", status.as_u16()));
                continue;
            }
            let what = what.to_string();
            return Err(match status {
                StatusCode::UNAUTHORIZED => {
                    Error::Unauthorized { forge: self.forge, what, message, hint: self.forge.token_hint() }
                }
                StatusCode::NOT_FOUND => Error::NotFound { forge: self.forge, what, message },
                _ => Error::Http { forge: self.forge, what, status: status.as_u16(), message },
            });
        }
    }

    /// Download `url` (asking for `application/octet-stream`, following redirects: a release
    /// asset lives behind one) into `out`, with retries of transient failures before the first
    /// byte arrives. Returns the bytes written.
    pub(crate) fn download(&self, url: &str, what: &str, out: &mut dyn std::io::Write) -> Result<u64> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self.http.get(url).header("Accept", "application/octet-stream");
            if let Some((name, value)) = self.credentials.api_header(self.forge) {
                req = req.header(name, value);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut resp = match req.send() {
                Ok(r) => r,
                Err(source) if attempt < self.patience.attempts => {
                    let _ = source;
                    self.pause(self.backoff(attempt), "connection failed, retrying");
                    continue;
                }
                Err(source) => return Err(Error::Unreachable { forge: self.forge, url: url.to_string(), source }),
            };
            let status = resp.status();
            if status.is_success() {
                return resp.copy_to(out).map_err(|source| Error::Unreachable {
                    forge: self.forge,
                    url: url.to_string(),
                    source,
                });
            }
            let headers = resp.headers().clone();
            if let Some(wait) = rate_limit_wait(status, &headers).filter(|w| *w <= self.patience.max_wait) {
                attempt -= 1;
                self.rate_limited(wait);
                continue;
            }
            if status.is_server_error() && attempt < self.patience.attempts {
                self.pause(self.backoff(attempt), &format!("HTTP {}, retrying", status.as_u16()));
                continue;
            }
            let message = error_message(&resp.bytes().unwrap_or_default());
            return Err(Error::Http { forge: self.forge, what: what.to_string(), status: status.as_u16(), message });
        }
    }

    /// Every item of a paginated listing: follows `Link: <…>; rel="next"` (GitHub, GitLab,
    /// Gitea) or the body's `next` (Bitbucket, whose pages are `{"values": [...]}`).
    pub(crate) fn get_all(&self, first: &str, what: &str) -> Result<Vec<serde_json::Value>> {
        let mut items = Vec::new();
        let mut next = Some(first.to_string());
        let mut pages = 0usize;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 100_000 {
                return Err(Error::Parse {
                    forge: self.forge,
                    what: what.into(),
                    detail: "pagination never ends".into(),
                });
            }
            let page = self.get(&url, what)?;
            match page.body {
                serde_json::Value::Array(list) => items.extend(list),
                serde_json::Value::Object(mut obj) => {
                    match obj.remove("values") {
                        Some(serde_json::Value::Array(list)) => items.extend(list),
                        _ => {
                            return Err(Error::Parse {
                                forge: self.forge,
                                what: what.into(),
                                detail: "a page is neither a list nor {\"values\": [...]}".into(),
                            });
                        }
                    }
                    next = obj.get("next").and_then(|v| v.as_str()).map(str::to_string);
                }
                _ => {
                    return Err(Error::Parse {
                        forge: self.forge,
                        what: what.into(),
                        detail: "a page is not a list".into(),
                    });
                }
            }
            if next.is_none() {
                next = link_next(&page.headers);
            }
        }
        Ok(items)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.patience.backoff.saturating_mul(1u32 << attempt.min(10).saturating_sub(1));
        // Full jitter on the upper half, so that many clients do not retry in step.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        base / 2 + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
    }

    /// A write: `method` on `url` with `body`. Only what cannot have been carried out is
    /// tried again — a refused connection, a rate limit (403/429 with `Retry-After` or no
    /// requests left: GitHub's secondary limits on content creation) —, never a 5xx or a
    /// timeout, after which the write may have happened: the caller finds out by reading.
    pub(crate) fn send(&self, method: reqwest::Method, url: &str, what: &str, body: Body<'_>) -> Result<Page> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url).header("Accept", self.forge.accept());
            if let Some((name, value)) = self.credentials.api_header(self.forge) {
                req = req.header(name, value);
            }
            req = match &body {
                Body::Json(v) => req.header("Content-Type", "application/json").body(v.to_string()),
                Body::Upload(u) => req
                    .header("Content-Type", u.content_type.as_str())
                    .body(reqwest::blocking::Body::sized(u.reader()?, u.len())),
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            let resp = match req.send() {
                Ok(r) => r,
                Err(source) if source.is_connect() && attempt < self.patience.attempts => {
                    self.pause(self.backoff(attempt), "connection failed, retrying");
                    continue;
                }
                Err(source) => return Err(Error::Unreachable { forge: self.forge, url: url.to_string(), source }),
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().map_err(|source| Error::Unreachable {
                forge: self.forge,
                url: url.to_string(),
                source,
            })?;
            if status.is_success() {
                let body = if bytes.iter().all(u8::is_ascii_whitespace) {
                    serde_json::Value::Null
                } else {
                    serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
                        forge: self.forge,
                        what: what.to_string(),
                        detail: format!("not JSON: {e}"),
                    })?
                };
                return Ok(Page { body, headers });
            }
            if let Some(wait) = rate_limit_wait(status, &headers) {
                if wait > self.patience.max_wait {
                    return Err(Error::RateLimitTooLong {
                        forge: self.forge,
                        wait_seconds: wait.as_secs(),
                        max_seconds: self.patience.max_wait.as_secs(),
                    });
                }
                attempt -= 1;
                self.rate_limited(wait);
                continue;
            }
            let message = error_message(&bytes);
            let what = what.to_string();
            return Err(match status {
                StatusCode::UNAUTHORIZED => {
                    Error::Unauthorized { forge: self.forge, what, message, hint: self.forge.token_hint() }
                }
                StatusCode::NOT_FOUND => Error::NotFound { forge: self.forge, what, message },
                _ => Error::Http { forge: self.forge, what, status: status.as_u16(), message },
            });
        }
    }

    fn rate_limited(&self, wait: Duration) {
        self.paused_ms.fetch_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.pause(wait, "rate limited");
    }

    fn pause(&self, wait: Duration, reason: &str) {
        self.waiting.waiting(self.forge, wait, reason);
        std::thread::sleep(wait);
    }
}

/// How long a refused request says to wait: `Retry-After` (secondary limits, 429s) or, with
/// no requests left, until the limit resets (`X-RateLimit-Reset` epoch seconds on GitHub and
/// Gitea, `RateLimit-Reset` on GitLab).
fn rate_limit_wait(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs.max(1)));
    }
    let remaining = header("x-ratelimit-remaining").or_else(|| header("ratelimit-remaining"));
    let reset = header("x-ratelimit-reset").or_else(|| header("ratelimit-reset")).and_then(|v| v.parse::<u64>().ok());
    match (remaining, reset) {
        (Some("0"), Some(reset)) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            // Epoch seconds, or (some servers) seconds from now.
            let wait = if reset > 1_000_000_000 { reset.saturating_sub(now) } else { reset };
            Some(Duration::from_secs(wait + 1))
        }
        // A 429 without any hint: wait a little all the same.
        _ if status == StatusCode::TOO_MANY_REQUESTS => Some(Duration::from_secs(5)),
        _ => None,
    }
}

/// What a write sends.
pub(crate) enum Body<'a> {
    Json(&'a serde_json::Value),
    /// A file, streamed (opened again for each attempt).
    Upload(&'a crate::restore::upload::Upload),
}

/// The message of a forge's error body (`{"message": …}`, Bitbucket's `{"error": {"message": …}}`,
/// GitLab's `{"error": "…"}`), or the start of the body.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let found = v
            .get("message")
            .and_then(|m| m.as_str())
            .or_else(|| v.get("error").and_then(|e| e.get("message")).and_then(|m| m.as_str()))
            .or_else(|| v.get("error").and_then(|e| e.as_str()));
        if let Some(m) = found {
            let details = error_details(&v);
            return if details.is_empty() { m.to_string() } else { format!("{m}: {details}") };
        }
        // GitLab's validation errors: `{"message": {"name": ["has already been taken"]}}`.
        if let Some(fields) = v.get("message").and_then(|m| m.as_object()) {
            let parts: Vec<String> = fields
                .iter()
                .map(|(field, why)| match why {
                    serde_json::Value::Array(list) => {
                        let list: Vec<&str> = list.iter().filter_map(|w| w.as_str()).collect();
                        format!("{field} {}", list.join(", "))
                    }
                    other => format!("{field} {other}"),
                })
                .collect();
            return parts.join("; ");
        }
        if let Some(list) = v.get("message").and_then(|m| m.as_array()) {
            let list: Vec<&str> = list.iter().filter_map(|w| w.as_str()).collect();
            return list.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() { "no message".to_string() } else { text.chars().take(200).collect() }
}

/// GitHub's `errors` list: objects (`resource`, `field`, `code`, `message`) or sentences.
fn error_details(v: &serde_json::Value) -> String {
    let Some(list) = v.get("errors").and_then(|e| e.as_array()) else { return String::new() };
    let parts: Vec<String> = list
        .iter()
        .map(|e| match e {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => {
                let get = |k: &str| o.get(k).and_then(|x| x.as_str()).unwrap_or_default();
                match (get("message"), get("field"), get("code")) {
                    (m, _, _) if !m.is_empty() => m.to_string(),
                    (_, f, c) => format!("{} {f} {c}", get("resource")).trim().to_string(),
                }
            }
            other => other.to_string(),
        })
        .collect();
    parts.join("; ")
}

/// The `rel="next"` target of a `Link` header.
pub(crate) fn link_next(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all("link") {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let Some(target) = pieces.next() else { continue };
            let is_next = pieces.any(|p| {
                let p = p.trim();
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                let target = target.trim().trim_start_matches('<').trim_end_matches('>');
                return Some(target.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn next_link_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                "<https://x/api/v3/orgs/a/repos?page=2&per_page=100>; rel=\"next\", <https://x/api/v3/orgs/a/repos?page=3&per_page=100>; rel=\"last\"",
            ),
        );
        assert_eq!(link_next(&h).as_deref(), Some("https://x/api/v3/orgs/a/repos?page=2&per_page=100"));
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static("<https://x/?page=1>; rel=\"first\", <https://x/?page=1>; rel=\"prev\""),
        );
        assert_eq!(link_next(&h), None);
    }

    #[test]
    fn rate_limit_waits_follow_the_headers() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(rate_limit_wait(StatusCode::FORBIDDEN, &h), Some(Duration::from_secs(7)));
        let mut h = HeaderMap::new();
        let reset = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() + 30;
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset", HeaderValue::from_str(&reset.to_string()).expect("header"));
        let wait = rate_limit_wait(StatusCode::FORBIDDEN, &h).expect("a wait");
        assert!((29..=32).contains(&wait.as_secs()), "{wait:?}");
        // A 403 that is not a rate limit (no access) is an error, not a wait.
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
        assert_eq!(rate_limit_wait(StatusCode::FORBIDDEN, &h), None);
    }

    #[test]
    fn error_messages_come_from_each_forge_body() {
        assert_eq!(error_message(br#"{"message":"Bad credentials","documentation_url":"x"}"#), "Bad credentials");
        assert_eq!(error_message(br#"{"type":"error","error":{"message":"Access denied"}}"#), "Access denied");
        assert_eq!(error_message(br#"{"error":"invalid_token"}"#), "invalid_token");
        assert_eq!(error_message(b""), "no message");
        assert_eq!(
            error_message(
                br#"{"message":"Validation Failed","errors":[{"resource":"Label","code":"invalid","field":"color"}]}"#
            ),
            "Validation Failed: Label color invalid"
        );
        assert_eq!(
            error_message(br#"{"message":"Unprocessable Entity","errors":["Can not approve your own pull request"]}"#),
            "Unprocessable Entity: Can not approve your own pull request"
        );
        assert_eq!(error_message(br#"{"message":{"name":["has already been taken"]}}"#), "name has already been taken");
    }
}
