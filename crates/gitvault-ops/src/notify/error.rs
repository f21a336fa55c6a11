//! What can go wrong configuring or delivering an alert. Every variant names the alert (its
//! configured name, or for deliveries its redacted description) and never holds a secret: URLs
//! appear only as `scheme://host:port`, and errors from the HTTP client are stripped of the URL.

use std::io;
use std::path::PathBuf;

use super::config::AlertKind;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("alert {alert:?}: `{key}` is not allowed with kind = \"{kind}\"")]
    KeyNotAllowed { alert: String, kind: AlertKind, key: &'static str },

    #[error("alert {alert:?}: `{key}` is required with kind = \"{kind}\"")]
    MissingKey { alert: String, kind: AlertKind, key: &'static str },

    #[error("alert {alert:?}: give only one of {keys}")]
    ConflictingKeys { alert: String, keys: &'static str },

    #[error("alert {alert:?}: `{key}` {problem}")]
    Invalid { alert: String, key: &'static str, problem: String },

    #[error("alert {alert:?}: two alerts are named {alert:?}; give each a distinct `name`")]
    DuplicateName { alert: String },

    #[error("alert {alert:?}: environment variable {var} (named by `{key}`) is not set")]
    SecretEnvMissing { alert: String, key: &'static str, var: String },

    #[error("alert {alert:?}: environment variable {var} (named by `{key}`) is not valid UTF-8")]
    SecretEnvNotUnicode { alert: String, key: &'static str, var: String },

    #[error("alert {alert:?}: {from} (named by `{key}`) is empty")]
    SecretEmpty { alert: String, key: &'static str, from: String },

    #[error("alert {alert:?}: cannot read {} (named by `{key}`)", path.display())]
    ReadFile {
        alert: String,
        key: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("alert {alert:?}: {} (named by `ca_file`) holds no usable PEM certificate", path.display())]
    BadCaFile { alert: String, path: PathBuf },

    #[error("{target}: cannot set up the HTTP client")]
    HttpClient {
        target: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{target}: request failed")]
    Request {
        target: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{target}: answered HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status { target: String, status: u16, body: String },

    #[error("{target}: cannot build the e-mail")]
    Message {
        target: String,
        #[source]
        source: lettre::error::Error,
    },

    #[error("{target}: cannot set up TLS for SMTP")]
    SmtpTls {
        target: String,
        #[source]
        source: SmtpCause,
    },

    #[error("{target}: SMTP delivery failed")]
    Smtp {
        target: String,
        #[source]
        source: SmtpCause,
    },
}

/// An SMTP client error. lettre's message already includes its own cause, so this ends the
/// chain there rather than print that cause twice.
#[derive(Debug)]
pub struct SmtpCause(pub lettre::transport::smtp::Error);

impl std::fmt::Display for SmtpCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SmtpCause {}

impl SmtpCause {
    /// A 4xx answer, a timeout, or a connection that failed — but not a TLS failure, which
    /// another attempt would repeat.
    fn is_transient(&self) -> bool {
        let e = &self.0;
        if e.is_transient() || e.is_timeout() {
            return true;
        }
        if e.is_permanent() || e.is_client() || e.is_tls() || e.is_response() {
            return false;
        }
        !is_tls_failure(e)
    }
}

/// Whether an I/O error of kind `InvalidData` is among the causes: how rustls reports a failed
/// handshake (an untrusted certificate, no common protocol) through the socket it wraps.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.downcast_ref::<io::Error>().is_some_and(invalid_data) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// `io::Error::source` skips the error it wraps, so wrapped I/O errors are looked into here.
fn invalid_data(io: &io::Error) -> bool {
    io.kind() == io::ErrorKind::InvalidData
        || io.get_ref().and_then(|e| e.downcast_ref::<io::Error>()).is_some_and(invalid_data)
}

impl NotifyError {
    /// Whether another attempt may succeed: a connection that failed or timed out, an HTTP 5xx,
    /// 408 or 429, an SMTP 4xx. Configuration errors, HTTP 4xx, SMTP 5xx and TLS failures
    /// (an untrusted certificate, a server without STARTTLS) are not retried.
    pub fn is_transient(&self) -> bool {
        match self {
            NotifyError::Request { source, .. } => {
                (source.is_connect() || source.is_timeout() || source.is_request()) && !is_tls_failure(source)
            }
            NotifyError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            NotifyError::Smtp { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}
