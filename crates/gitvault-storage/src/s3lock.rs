//! S3 Object Lock for [`crate::S3Store`]: the few calls OpenDAL's S3 service does not expose.
//!
//! * `GET /?object-lock` (GetObjectLockConfiguration): whether the bucket can lock at all.
//! * `PUT /{key}?retention` (PutObjectRetention): lock an object until a date. S3 requires a
//!   `Content-MD5` (or checksum) header on it, which we send.
//! * `HEAD /{key}`: its `x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date`
//!   headers say how an object is locked (S3 returns them to callers allowed to read retention;
//!   `GET ?retention` says the same in XML, but not every S3-compatible server has it, and moto
//!   does not) and `x-amz-version-id` which version is current.
//! * `DELETE /{key}?versionId=…`: what a lock refuses (a plain DELETE in a bucket with Object
//!   Lock, which is always versioned, only adds a delete marker and always succeeds).
//!
//! Requests are signed with the same SigV4 signer OpenDAL uses (`reqsign`), with the store's
//! credentials, and sent through OpenDAL's HTTP transport, addressed like the store's own
//! requests (path-style or virtual-hosted). Like the store's retry layer, throttling, 5xx
//! answers and connection failures are retried with jittered exponential backoff; anything else
//! fails at once.

use std::time::{Duration, SystemTime};

use ::opendal::{Buffer, HttpTransporter};
use base64::Engine as _;
use md5::Digest as _;
use reqsign_aws_v4::{Credential, RequestSigner, StaticCredentialProvider};

use crate::{ErrorKind, LockMode, Retention, S3Config, StorageError};

/// Attempts per request, and the backoff between them (as the store's retry layer).
const ATTEMPTS: u32 = 7;
const MIN_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(20);

/// What S3 says when the bucket has no Object Lock configuration.
const NO_LOCK_CONFIG: &str = "ObjectLockConfigurationNotFoundError";

pub(crate) struct LockClient {
    /// `http` or `https`.
    scheme: String,
    /// `host[:port]` of the endpoint, without the bucket.
    host: String,
    bucket: String,
    /// Key prefix of the vault, without leading or trailing `/`.
    prefix: String,
    virtual_host_style: bool,
    /// `None` without credentials: requests go unsigned (anonymous), as S3 then expects.
    signer: Option<reqsign_core::Signer<Credential>>,
    http: HttpTransporter,
    describe: String,
    secret: Option<String>,
}

/// An S3 answer: status, the headers we read, the body.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl LockClient {
    pub(crate) fn new(config: &S3Config, region: &str, describe: &str) -> Self {
        let endpoint = config.endpoint.clone().unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let (scheme, host) = match endpoint.split_once("://") {
            Some((scheme, rest)) => (scheme.to_string(), rest.trim_end_matches('/').to_string()),
            None => ("https".to_string(), endpoint.trim_end_matches('/').to_string()),
        };
        let signer = match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => Some(reqsign_core::Signer::new(
                reqsign_core::Context::new(),
                StaticCredentialProvider::new(id, secret),
                RequestSigner::new("s3", region),
            )),
            _ => None,
        };
        Self {
            scheme,
            host,
            bucket: config.bucket.clone(),
            prefix: config.prefix.trim_matches('/').to_string(),
            virtual_host_style: config.virtual_host_style,
            signer,
            // The process-wide transport OpenDAL's own requests use (installed by S3Store::new).
            http: HttpTransporter::default(),
            describe: describe.to_string(),
            secret: config.secret_access_key.clone(),
        }
    }

    /// The URL of the vault object `path` (the bucket itself when `None`), with `query`.
    fn url(&self, path: Option<&str>, query: &str) -> String {
        let key = match path {
            Some(p) if self.prefix.is_empty() => uri_encode(p),
            Some(p) => uri_encode(&format!("{}/{p}", self.prefix)),
            None => String::new(),
        };
        let query = if query.is_empty() { String::new() } else { format!("?{query}") };
        if self.virtual_host_style {
            format!("{}://{}.{}/{key}{query}", self.scheme, self.bucket, self.host)
        } else if key.is_empty() {
            format!("{}://{}/{}{query}", self.scheme, self.host, self.bucket)
        } else {
            format!("{}://{}/{}/{key}{query}", self.scheme, self.host, self.bucket)
        }
    }

    fn error(&self, op: &'static str, path: &str, kind: ErrorKind, message: String) -> StorageError {
        let message = match self.secret.as_deref().filter(|s| !s.is_empty()) {
            Some(secret) => message.replace(secret, "****"),
            None => message,
        };
        StorageError { kind, op, path: path.to_string(), store: self.describe.clone(), message, io: None }
    }

    /// Send one request, retrying transient failures; any answer that is not transient is
    /// returned, whatever its status.
    async fn send(
        &self,
        op: &'static str,
        path: &str,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Answer, StorageError> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let mut builder = http::Request::builder().method(method.clone()).uri(url);
            for (name, value) in headers {
                builder = builder.header(*name, value);
            }
            let (mut parts, ()) = builder
                .body(())
                .map_err(|e| self.error(op, path, ErrorKind::Other, format!("cannot build the request: {e}")))?
                .into_parts();
            if let Some(signer) = &self.signer {
                signer
                    .sign(&mut parts, None)
                    .await
                    .map_err(|e| self.error(op, path, ErrorKind::Other, format!("cannot sign the request: {e}")))?;
            }
            let request = http::Request::from_parts(parts, Buffer::from(body.to_vec()));
            match self.http.send(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let (parts, buffer) = response.into_parts();
                    let answer = Answer { status, headers: parts.headers, body: buffer.to_vec() };
                    if status == 429 || status >= 500 {
                        last = format!("HTTP {status} {}", s3_error(&answer.body));
                        tracing::debug!(op, path, status, attempt, "retrying an S3 lock request");
                        continue;
                    }
                    return Ok(answer);
                }
                Err(e) => {
                    // No answer at all: refused, reset, timed out.
                    last = format!("no answer from the server: {e}");
                    tracing::debug!(op, path, error = %e, attempt, "retrying an S3 lock request");
                }
            }
        }
        Err(self.error(op, path, ErrorKind::Transient, format!("{last}; gave up after {ATTEMPTS} attempts")))
    }

    /// A failed answer as an error of the right kind.
    fn refused(&self, op: &'static str, path: &str, answer: &Answer) -> StorageError {
        let detail = s3_error(&answer.body);
        let code = xml_field(&answer.body, "Code").unwrap_or_default();
        let (kind, hint) = match answer.status {
            404 if code == NO_LOCK_CONFIG => (ErrorKind::Unsupported, " (enable Object Lock on the bucket)"),
            404 => (ErrorKind::NotFound, ""),
            403 => (
                ErrorKind::PermissionDenied,
                " (check the credentials and the bucket policy; locking needs s3:PutObjectRetention and \
                 s3:GetObjectRetention)",
            ),
            400 if code == "InvalidRequest" && detail.contains("Object Lock") => {
                (ErrorKind::Unsupported, " (enable Object Lock on the bucket)")
            }
            _ => (ErrorKind::Other, ""),
        };
        self.error(op, path, kind, format!("HTTP {} {detail}{hint}", answer.status))
    }

    /// Whether the bucket has Object Lock enabled.
    pub(crate) async fn bucket_lock_enabled(&self) -> Result<(), StorageError> {
        let url = self.url(None, "object-lock");
        let answer = self.send("check locking of", "", http::Method::GET, &url, &[], &[]).await?;
        if answer.status != 200 {
            let mut err = self.refused("check locking of", "", &answer);
            if err.kind == ErrorKind::Unsupported {
                err.message = format!(
                    "bucket {} has no Object Lock configuration: create the bucket with Object Lock enabled, or \
                     enable it on the bucket (it needs versioning)",
                    self.bucket
                );
            }
            return Err(err);
        }
        match xml_field(&answer.body, "ObjectLockEnabled").as_deref() {
            Some("Enabled") => Ok(()),
            _ => Err(self.error(
                "check locking of",
                "",
                ErrorKind::Unsupported,
                format!("Object Lock is not enabled on bucket {}: enable it on the bucket", self.bucket),
            )),
        }
    }

    /// Lock `path` until `retention.until`.
    pub(crate) async fn put_retention(&self, path: &str, retention: Retention) -> Result<(), StorageError> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{}</RetainUntilDate></Retention>",
            retention.mode.s3_name(),
            format_until(retention.until)
        );
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()));
        let headers = [("content-md5", md5), ("content-type", "application/xml".to_string())];
        let url = self.url(Some(path), "retention");
        let answer = self.send("lock", path, http::Method::PUT, &url, &headers, body.as_bytes()).await?;
        if answer.status != 200 && answer.status != 204 {
            return Err(self.refused("lock", path, &answer));
        }
        Ok(())
    }

    /// `path`'s lock and current version id, or `None` when it does not exist.
    pub(crate) async fn head(&self, path: &str) -> Result<Option<(Option<Retention>, Option<String>)>, StorageError> {
        let url = self.url(Some(path), "");
        let answer = self.send("read the lock of", path, http::Method::HEAD, &url, &[], &[]).await?;
        match answer.status {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.refused("read the lock of", path, &answer)),
        }
        let header = |name: &str| answer.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let version = header("x-amz-version-id").filter(|v| v != "null");
        let retention = match (header("x-amz-object-lock-mode"), header("x-amz-object-lock-retain-until-date")) {
            (Some(mode), Some(until)) => {
                let mode = LockMode::from_s3_name(&mode).ok_or_else(|| {
                    self.error("read the lock of", path, ErrorKind::Other, format!("unknown Object Lock mode {mode:?}"))
                })?;
                let until = parse_until(&until).ok_or_else(|| {
                    self.error(
                        "read the lock of",
                        path,
                        ErrorKind::Other,
                        format!("unreadable Object Lock retain-until date {until:?}"),
                    )
                })?;
                Some(Retention { mode, until })
            }
            _ => None,
        };
        Ok(Some((retention, version)))
    }

    /// Delete one version of `path` for good; a lock makes S3 refuse it.
    pub(crate) async fn delete_version(&self, path: &str, version: &str) -> Result<(), StorageError> {
        let url = self.url(Some(path), &format!("versionId={}", uri_encode(version)));
        let answer = self.send("delete", path, http::Method::DELETE, &url, &[], &[]).await?;
        match answer.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.refused("delete", path, &answer)),
        }
    }
}

/// Jittered exponential backoff before attempt `attempt` (1-based): between half and all of
/// `MIN_DELAY * 2^(attempt-1)`, at most `MAX_DELAY`.
fn backoff(attempt: u32) -> Duration {
    let full = MIN_DELAY.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_DELAY);
    let mut r = [0u8; 2];
    let fraction = match getrandom::fill(&mut r) {
        Ok(()) => 0.5 + f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX) / 2.0,
        Err(_) => 1.0,
    };
    full.mul_f64(fraction)
}

/// AWS's URI encoding of a key: everything but unreserved characters and `/` as `%XX`.
fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of the first `<field>` element of an XML answer. S3's answers here are small and
/// flat, with no attributes or entities in the fields we read.
fn xml_field(body: &[u8], field: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("<{field}>"))? + field.len() + 2;
    let end = text[start..].find(&format!("</{field}>"))?;
    Some(text[start..start + end].trim().to_string())
}

/// `Code: Message` of an S3 error answer, or nothing useful when the body has none.
fn s3_error(body: &[u8]) -> String {
    match (xml_field(body, "Code"), xml_field(body, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => "(no error details)".to_string(),
    }
}

/// `until` as S3 takes it: whole seconds, rounded up so a lock is never shorter than asked.
pub(crate) fn format_until(until: SystemTime) -> String {
    let since = until.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0);
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_until(text: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok().map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_up_to_whole_seconds_and_read_back() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_893_456_000_250);
        assert_eq!(format_until(t), "2030-01-01T00:00:01Z");
        assert_eq!(
            parse_until("2030-01-01T00:00:01Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_001))
        );
        assert_eq!(
            parse_until("2030-01-01T00:00:01.000Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_001))
        );
        assert_eq!(parse_until("tomorrow"), None);
    }

    #[test]
    fn keys_are_encoded_and_addressed_both_ways() {
        let config = S3Config {
            bucket: "b".into(),
            prefix: "/team vault/".into(),
            endpoint: Some("http://127.0.0.1:9000/".into()),
            ..S3Config::default()
        };
        let path_style = LockClient::new(&config, "us-east-1", "d");
        assert_eq!(
            path_style.url(Some("data/ab/x"), "retention"),
            "http://127.0.0.1:9000/b/team%20vault/data/ab/x?retention"
        );
        assert_eq!(path_style.url(None, "object-lock"), "http://127.0.0.1:9000/b?object-lock");
        let virtual_host =
            LockClient::new(&S3Config { virtual_host_style: true, endpoint: None, ..config }, "eu-west-1", "d");
        assert_eq!(virtual_host.url(Some("config"), ""), "https://b.s3.eu-west-1.amazonaws.com/team%20vault/config");
    }

    #[test]
    fn s3_errors_show_code_and_message() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        assert_eq!(s3_error(body), "AccessDenied: Access Denied");
        assert_eq!(s3_error(b""), "(no error details)");
    }
}
