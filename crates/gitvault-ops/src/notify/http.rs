//! Delivery over HTTP: the signed JSON webhook, Slack and Teams incoming webhooks.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::blocking::Client;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::config::HttpEndpoint;
use super::error::NotifyError;
use super::{Event, EventKind, NotifierOptions, USER_AGENT};

/// The signature header of a webhook whose alert has a secret.
pub const SIGNATURE_HEADER: &str = "X-Gitvault-Signature-256";

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the value of [`SIGNATURE_HEADER`].
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` (the value of [`SIGNATURE_HEADER`]) is the signature of `body` under
/// `secret`; compared in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else { return false };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

pub(crate) fn parse_ca(pem: &[u8]) -> Option<Vec<reqwest::Certificate>> {
    reqwest::Certificate::from_pem_bundle(pem).ok()
}

/// The webhook's JSON body; field order is the documented one.
#[derive(Serialize)]
struct WebhookBody<'a> {
    event: EventKind,
    delivery: &'a str,
    time: String,
    host: &'a str,
    policy: Option<&'a str>,
    vault: Option<&'a str>,
    run_id: Option<i64>,
    title: &'a str,
    lines: &'a [String],
    repositories: &'a [String],
    data: &'a Value,
}

pub(crate) fn webhook_body(event: &Event, delivery: &str) -> Vec<u8> {
    let body = WebhookBody {
        event: event.kind,
        delivery,
        time: super::rfc3339(event.time),
        host: &event.host,
        policy: event.policy.as_deref(),
        vault: event.vault.as_deref(),
        run_id: event.run_id,
        title: &event.title,
        lines: &event.lines,
        repositories: &event.repositories,
        data: &event.data,
    };
    serde_json::to_vec(&body).expect("a struct of strings and JSON values always serializes")
}

/// Slack's (and Mattermost's, Rocket.Chat's) incoming webhook: `{"text": …}` in mrkdwn.
pub(crate) fn slack_body(event: &Event) -> Vec<u8> {
    let mut text = format!("*{}*", slack_escape(&super::one_line(&event.title)));
    for line in &event.lines {
        text.push('\n');
        text.push_str(&slack_escape(line));
    }
    let context = super::context_line(event);
    text.push_str(&format!("\n_{}_", slack_escape(&context)));
    serde_json::to_vec(&json!({ "text": text })).expect("JSON of strings always serializes")
}

/// Slack treats `&`, `<` and `>` as control characters in mrkdwn.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Microsoft Teams (Office 365 connector) MessageCard.
pub(crate) fn teams_body(event: &Event) -> Vec<u8> {
    let title = super::one_line(&event.title);
    let color = match event.kind {
        EventKind::Success => "2EB67D",
        EventKind::Failure | EventKind::Rpo | EventKind::Suspicious => "D40E0D",
    };
    let mut facts =
        vec![json!({"name": "event", "value": event.kind.as_str()}), json!({"name": "host", "value": event.host})];
    for (name, value) in [("policy", event.policy.clone()), ("vault", event.vault.clone())] {
        if let Some(value) = value {
            facts.push(json!({"name": name, "value": value}));
        }
    }
    if let Some(run) = event.run_id {
        facts.push(json!({"name": "run", "value": run.to_string()}));
    }
    // Teams renders the text as Markdown, where a single newline is not a line break.
    let text = event.lines.join("\n\n");
    let card = json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": format!("[gitvault] {title}"),
        "title": format!("[gitvault] {title}"),
        "themeColor": color,
        "text": text,
        "sections": [{ "facts": facts }],
    });
    serde_json::to_vec(&card).expect("JSON of strings always serializes")
}

pub(crate) enum Flavor {
    Webhook,
    Slack,
    Teams,
}

/// One delivery attempt: POST the body, expect a 2xx answer.
pub(crate) fn post(
    endpoint: &HttpEndpoint,
    flavor: &Flavor,
    event: &Event,
    delivery_id: &str,
    body: &[u8],
    target: &str,
    options: &NotifierOptions,
) -> Result<(), NotifyError> {
    let client = client(endpoint, target, options)?;
    let mut request = client.post(endpoint.url.expose().trim()).header(CONTENT_TYPE, "application/json");
    if let Flavor::Webhook = flavor {
        request = request.header("X-Gitvault-Event", event.kind.as_str()).header("X-Gitvault-Delivery", delivery_id);
        if let Some(secret) = &endpoint.secret {
            request = request.header(SIGNATURE_HEADER, sign(secret.expose().as_bytes(), body));
        }
    }
    let response = request
        .body(body.to_vec())
        .send()
        .map_err(|e| NotifyError::Request { target: target.to_string(), source: e.without_url() })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // The answer may quote the request (its URL, our secret): show a short, redacted excerpt.
    let text = response.text().unwrap_or_default();
    Err(NotifyError::Status { target: target.to_string(), status: status.as_u16(), body: excerpt(&text, endpoint) })
}

fn client(endpoint: &HttpEndpoint, target: &str, options: &NotifierOptions) -> Result<Client, NotifyError> {
    let mut builder = Client::builder()
        .user_agent(USER_AGENT)
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        // A webhook that redirects is misconfigured; following it would re-send the body (and
        // for Slack or Teams, possibly the credential in the URL) somewhere else.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = &endpoint.ca_pem {
        builder = builder.tls_certs_merge(parse_ca(pem).unwrap_or_default());
    }
    builder.build().map_err(|e| NotifyError::HttpClient { target: target.to_string(), source: e.without_url() })
}

const EXCERPT_CHARS: usize = 200;

fn excerpt(text: &str, endpoint: &HttpEndpoint) -> String {
    let mut text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let url = endpoint.url.expose().trim();
    let mut secrets = vec![url.to_string()];
    if let Ok(parsed) = reqwest::Url::parse(url) {
        if parsed.path().len() > 1 {
            secrets.push(parsed.path().to_string());
        }
        if let Some(q) = parsed.query() {
            secrets.push(q.to_string());
        }
    }
    if let Some(s) = &endpoint.secret {
        secrets.push(s.expose().to_string());
    }
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s.as_str(), "****");
    }
    if text.chars().count() > EXCERPT_CHARS {
        text = text.chars().take(EXCERPT_CHARS).collect::<String>() + "…";
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::secret::Secret;

    #[test]
    fn signature_verifies_only_with_its_secret_and_body() {
        let sig = sign(b"key", b"body");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(verify_signature(b"key", b"body", &sig));
        assert!(!verify_signature(b"other", b"body", &sig));
        assert!(!verify_signature(b"key", b"body!", &sig));
        assert!(!verify_signature(b"key", b"body", "sha1=00"));
    }

    #[test]
    fn signature_matches_a_known_hmac_sha256_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn excerpt_redacts_url_path_and_secret_and_truncates() {
        let endpoint = HttpEndpoint {
            url: Secret::new("https://hooks.example.com/services/T0/B0/XYZ?token=abc"),
            origin: "https://hooks.example.com:443".into(),
            secret: Some(Secret::new("s3cr3t")),
            ca_pem: None,
        };
        let text = format!("no route /services/T0/B0/XYZ\n token=abc key s3cr3t {}", "x".repeat(500));
        let shown = excerpt(&text, &endpoint);
        assert!(!shown.contains("XYZ") && !shown.contains("abc") && !shown.contains("s3cr3t"), "{shown}");
        assert!(shown.starts_with("no route **** ****"), "{shown}");
        assert!(shown.chars().count() <= EXCERPT_CHARS + 1);
    }
}
