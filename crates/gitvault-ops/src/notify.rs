//! Alerts: telling people that a backup failed, that a repository's last good backup is older
//! than its policy allows (RPO), that something suspicious changed upstream (a force-push on a
//! protected branch, deleted branches or tags, issues deleted en masse), and — when asked — that
//! a run succeeded.
//!
//! Each `[[alert]]` table of `gitvault.toml` ([`AlertSpec`]) is resolved into a [`Target`];
//! a [`Notifier`] sends an [`Event`] to every target whose `on` (and `policies`) match it, each
//! target in its own thread, and reports one [`Delivery`] per target. A delivery that fails is
//! reported, never raised: alerts must not stop the backups they are about.
//!
//! ```toml
//! [[alert]]
//! name = "ops-webhook"                      # optional; default "<kind>-<n>"
//! kind = "webhook"                          # webhook | slack | teams | email
//! url = "https://hooks.example.com/gitvault"  # or url_env = "VAR" / url_file = "path"
//! secret_env = "GITVAULT_WEBHOOK_SECRET"    # or secret_file = "path"; webhook only, optional
//! on = ["failure", "rpo", "suspicious"]     # the default; "success" is opt-in
//! policies = ["nightly"]                    # optional: only events of these policies
//! ca_file = "ca.pem"                        # optional extra trusted root (PEM)
//!
//! [[alert]]
//! kind = "slack"                            # or "teams"
//! url_env = "SLACK_WEBHOOK_URL"             # the URL is the credential: keep it out of the file
//!
//! [[alert]]
//! kind = "email"
//! smtp_host = "smtp.example.com"
//! smtp_port = 587                           # default 587 (starttls), 465 (tls), 25 (none)
//! security = "starttls"                     # starttls (default) | tls | none (localhost only)
//! username = "gitvault"                     # optional; then password_env or password_file
//! password_env = "SMTP_PASSWORD"
//! from = "gitvault <backup@example.com>"
//! to = ["ops@example.com"]
//! ```
//!
//! Relative paths are taken from the configuration file's directory. Secrets are read once, when
//! the table is resolved; they never appear in errors, logs or `Debug` output, where a target is
//! shown as `name (kind scheme://host:port)`.
//!
//! # Webhook
//!
//! `POST` to `url` with `Content-Type: application/json`, `User-Agent: gitvault/<version>` and
//! the body
//!
//! ```json
//! {"event": "failure", "delivery": "<32 hex digits>", "time": "2025-01-31T02:00:00Z",
//!  "host": "backup-1", "policy": "nightly", "vault": "offsite", "run_id": 42,
//!  "title": "…", "lines": ["…"], "repositories": ["github:org/repo"], "data": {…}}
//! ```
//!
//! (`policy`, `vault` and `run_id` may be `null`; `data` is event-specific detail). Headers:
//! `X-Gitvault-Event: <event>`, `X-Gitvault-Delivery: <delivery>` (the same on every retry of one
//! delivery, so a receiver can drop duplicates), and when the alert has a secret
//! `X-Gitvault-Signature-256: sha256=<hex of HMAC-SHA256(secret, body)>` computed over the exact
//! bytes of the body. A receiver verifies it with its copy of the secret before parsing the body
//! (in constant time), and may reject deliveries whose `time` is too old, to refuse replays.
//!
//! # Slack and Teams
//!
//! Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat) get `{"text": "…"}` in
//! mrkdwn: the title in bold, one line per detail, then host, policy, vault and run. Teams gets an
//! Office 365 connector `MessageCard` (`summary`, `title`, `text`, the same facts, `themeColor`
//! red for failure, rpo and suspicious, green for success).
//!
//! # E-mail
//!
//! A plain-text message, subject `[gitvault] <title>`, body the title, every line, the event,
//! host, policy, vault, run and time. With `security = "starttls"` (the default) the message is
//! sent only after STARTTLS succeeds — a server that does not offer it gets neither the password
//! nor the message; `"tls"` speaks TLS from the first byte. The server's certificate is checked
//! against the system's roots plus `ca_file`.
//!
//! # Retries
//!
//! Each delivery has a timeout (10 s by default) and up to 3 attempts with exponential backoff,
//! retried only on errors that may pass: connection failures and timeouts, HTTP 5xx/408/429,
//! SMTP 4xx. See [`NotifierOptions`].

mod config;
mod email;
mod error;
mod http;
mod secret;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use config::Channel;
pub use config::{AlertKind, AlertSpec, Security, Target, resolve_alerts};
pub use error::{NotifyError, SmtpCause};
pub use http::{SIGNATURE_HEADER, sign, verify_signature};
pub use secret::Secret;

pub(crate) const USER_AGENT: &str = concat!("gitvault/", env!("CARGO_PKG_VERSION"));

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A backup (or part of it) failed.
    Failure,
    /// A repository's last good backup is older than its policy's recovery point objective.
    Rpo,
    /// Suspicious upstream changes: a force-push on a protected branch, deleted branches or
    /// tags, issues deleted en masse.
    Suspicious,
    /// A run succeeded. Sent only to targets that ask for it.
    Success,
}

impl EventKind {
    /// What a target receives when its `on` is not set.
    pub const DEFAULT: [EventKind; 3] = [EventKind::Failure, EventKind::Rpo, EventKind::Suspicious];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Failure => "failure",
            EventKind::Rpo => "rpo",
            EventKind::Suspicious => "suspicious",
            EventKind::Success => "success",
        }
    }
}

/// One thing to tell people about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// One line: the e-mail subject, the chat message's heading.
    pub title: String,
    /// Details, e.g. one per repository.
    pub lines: Vec<String>,
    pub policy: Option<String>,
    pub vault: Option<String>,
    pub run_id: Option<i64>,
    pub repositories: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The machine that ran the backup.
    pub host: String,
    /// Structured detail, copied into the webhook body as `data` (not shown in chat or e-mail).
    pub data: serde_json::Value,
}

impl Event {
    /// An event happening now, with no detail yet.
    pub fn new(kind: EventKind, title: impl Into<String>, host: impl Into<String>) -> Self {
        Event {
            kind,
            title: title.into(),
            lines: Vec::new(),
            policy: None,
            vault: None,
            run_id: None,
            repositories: Vec::new(),
            time: OffsetDateTime::now_utc(),
            host: host.into(),
            data: serde_json::Value::Null,
        }
    }
}

/// The event of `gitvault alert test`: a success-kind event meant for
/// [`Notifier::send_to_all`], so that every target receives it whatever its `on`.
pub fn test_event(host: impl Into<String>) -> Event {
    let host = host.into();
    let mut event = Event::new(EventKind::Success, format!("Test alert from gitvault on {host}"), host);
    event.lines.push("This is a test. If you can read it, gitvault's alerts reach you.".into());
    event.data = serde_json::json!({ "test": true });
    event
}

/// Timeouts and retries of deliveries.
#[derive(Clone, Debug)]
pub struct NotifierOptions {
    /// For connecting, and for the whole of one attempt.
    pub timeout: Duration,
    /// Attempts per delivery, at least 1.
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub backoff: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions { timeout: Duration::from_secs(10), attempts: 3, backoff: Duration::from_secs(2) }
    }
}

/// The outcome of sending an event to one target.
#[derive(Debug)]
pub struct Delivery {
    /// The target's description, `name (kind scheme://host:port)`: free of secrets.
    pub target: String,
    pub result: Result<(), NotifyError>,
}

/// Sends events to the configured targets.
#[derive(Clone, Debug)]
pub struct Notifier {
    targets: Vec<Target>,
    options: NotifierOptions,
}

impl Notifier {
    pub fn new(targets: Vec<Target>) -> Self {
        Self::with_options(targets, NotifierOptions::default())
    }

    pub fn with_options(targets: Vec<Target>, options: NotifierOptions) -> Self {
        Notifier { targets, options }
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Sends `event` to every target that [wants](Target::wants) it, all at once, and waits for
    /// them: at most about `attempts × timeout` plus the backoff. Blocks the calling thread
    /// (which may belong to an async runtime: the HTTP clients live in threads of their own).
    /// One [`Delivery`] per target sent to, in configuration order.
    pub fn send(&self, event: &Event) -> Vec<Delivery> {
        self.deliver(self.targets.iter().filter(|t| t.wants(event)).collect(), event)
    }

    /// Sends `event` to every target regardless of `on` and `policies` (for `gitvault alert test`).
    pub fn send_to_all(&self, event: &Event) -> Vec<Delivery> {
        self.deliver(self.targets.iter().collect(), event)
    }

    fn deliver(&self, targets: Vec<&Target>, event: &Event) -> Vec<Delivery> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = targets
                .into_iter()
                .map(|target| {
                    let description = target.describe();
                    let handle = scope.spawn(|| deliver_one(target, event, &self.options));
                    (description, handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(target, handle)| {
                    let result = handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    match &result {
                        Ok(()) => tracing::debug!(alert = %target, event = event.kind.as_str(), "alert delivered"),
                        Err(e) => tracing::warn!(error = %chain(e), event = event.kind.as_str(), "alert not delivered"),
                    }
                    Delivery { target, result }
                })
                .collect()
        })
    }
}

fn deliver_one(target: &Target, event: &Event, options: &NotifierOptions) -> Result<(), NotifyError> {
    let describe = target.describe();
    match &target.channel {
        Channel::Webhook(endpoint) => {
            let id = delivery_id();
            let body = http::webhook_body(event, &id);
            retry(options, &describe, || {
                http::post(endpoint, &http::Flavor::Webhook, event, &id, &body, &describe, options)
            })
        }
        Channel::Slack(endpoint) => {
            let body = http::slack_body(event);
            retry(options, &describe, || {
                http::post(endpoint, &http::Flavor::Slack, event, "", &body, &describe, options)
            })
        }
        Channel::Teams(endpoint) => {
            let body = http::teams_body(event);
            retry(options, &describe, || {
                http::post(endpoint, &http::Flavor::Teams, event, "", &body, &describe, options)
            })
        }
        Channel::Email(endpoint) => {
            let message = email::message(endpoint, event, &describe)?;
            retry(options, &describe, || email::send(endpoint, &message, &event.host, &describe, options))
        }
    }
}

fn retry(
    options: &NotifierOptions,
    target: &str,
    mut attempt: impl FnMut() -> Result<(), NotifyError>,
) -> Result<(), NotifyError> {
    let attempts = options.attempts.max(1);
    let mut wait = options.backoff;
    for n in 1.. {
        match attempt() {
            Err(e) if n < attempts && e.is_transient() => {
                tracing::info!(alert = %target, attempt = n, error = %chain(&e), "alert delivery failed, retrying");
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
            }
            result => return result,
        }
    }
    unreachable!("the loop returns by the last attempt")
}

/// An error and its causes on one line, for logs.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A random id for one delivery (the same on each of its retries).
fn delivery_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No system randomness: still unique enough to tell deliveries apart.
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        bytes = (nanos as u128 ^ u128::from(std::process::id()) << 96).to_be_bytes();
    }
    hex::encode(bytes)
}

/// A title fit for a subject line: control characters (newlines included) become spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string()
}

/// `host backup-1 · policy nightly · vault offsite · run 42` for chat messages.
pub(crate) fn context_line(event: &Event) -> String {
    let mut parts = vec![format!("host {}", event.host)];
    if let Some(p) = &event.policy {
        parts.push(format!("policy {p}"));
    }
    if let Some(v) = &event.vault {
        parts.push(format!("vault {v}"));
    }
    if let Some(r) = event.run_id {
        parts.push(format!("run {r}"));
    }
    parts.join(" · ")
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_use_their_config_names() {
        let kinds: Vec<EventKind> = serde_json::from_str(r#"["failure","rpo","suspicious","success"]"#).expect("kinds");
        assert_eq!(kinds, [EventKind::Failure, EventKind::Rpo, EventKind::Suspicious, EventKind::Success]);
        for k in kinds {
            assert_eq!(serde_json::to_value(k).expect("kind"), k.as_str());
        }
    }

    #[test]
    fn one_line_flattens_control_characters() {
        assert_eq!(one_line(" a\r\nb\tc "), "a  b c");
    }

    #[test]
    fn delivery_ids_are_random_hex() {
        let (a, b) = (delivery_id(), delivery_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
