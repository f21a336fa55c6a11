//! Webhook, Slack and Teams deliveries against the local receiver.

use std::path::Path;
use std::time::{Duration, Instant};

use gitvault_ops::notify::{
    Event, EventKind, Notifier, NotifierOptions, NotifyError, SIGNATURE_HEADER, test_event, verify_signature,
};

use crate::receiver::Receiver;
use crate::{chain, failure_event, fast, target};

const SECRET: &str = "whsec-Vq7-very-secret";

fn webhook_with_secret(receiver: &Receiver, dir: &Path) -> gitvault_ops::notify::Target {
    std::fs::write(dir.join("webhook.secret"), format!("{SECRET}\n")).expect("write secret");
    target(
        &format!(
            r#"[[alert]]
            name = "ops-webhook"
            kind = "webhook"
            url = "{}"
            secret_file = "webhook.secret"
            "#,
            receiver.url("/hooks/gitvault")
        ),
        dir,
    )
}

#[test]
fn webhook_posts_signed_json_with_documented_headers() {
    let receiver = Receiver::start(vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let notifier = Notifier::with_options(vec![webhook_with_secret(&receiver, dir.path())], fast());
    let event = failure_event();

    let deliveries = notifier.send(&event);
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].result.is_ok(), "{:?}", deliveries[0].result);
    assert_eq!(deliveries[0].target, format!("ops-webhook (webhook http://127.0.0.1:{})", receiver.port));

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/hooks/gitvault"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("user-agent"), Some(concat!("gitvault/", env!("CARGO_PKG_VERSION"))));
    assert_eq!(request.header("x-gitvault-event"), Some("failure"));

    let body = request.json();
    let delivery = body["delivery"].as_str().expect("delivery id");
    assert_eq!(delivery.len(), 32);
    assert_eq!(request.header("x-gitvault-delivery"), Some(delivery));
    assert_eq!(body["event"], "failure");
    assert_eq!(body["title"], event.title);
    assert_eq!(body["host"], "backup-1.example.com");
    assert_eq!(body["policy"], "nightly");
    assert_eq!(body["vault"], "offsite");
    assert_eq!(body["run_id"], 42);
    assert_eq!(body["lines"], serde_json::json!(event.lines));
    assert_eq!(body["repositories"], serde_json::json!(["github:acme/api", "github:acme/web"]));
    assert_eq!(body["data"], serde_json::json!({"failed": 2, "total": 5}));
    let time = body["time"].as_str().expect("time");
    let parsed = time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
    assert_eq!(parsed.unix_timestamp(), event.time.unix_timestamp());
    let keys: Vec<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
    let mut expected =
        ["event", "delivery", "time", "host", "policy", "vault", "run_id", "title", "lines", "repositories", "data"];
    expected.sort_unstable();
    assert_eq!(keys, expected, "exactly the documented fields");

    // The signature covers the exact bytes received, under the configured secret only.
    let signature = request.header(SIGNATURE_HEADER).expect("signature header");
    assert!(verify_signature(SECRET.as_bytes(), &request.body, signature));
    assert!(!verify_signature(b"another secret", &request.body, signature));
    let mut tampered = request.body.clone();
    tampered[10] ^= 1;
    assert!(!verify_signature(SECRET.as_bytes(), &tampered, signature));
}

#[test]
fn webhook_without_secret_is_not_signed_and_null_fields_stay_null() {
    let receiver = Receiver::start(vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let t = target(&format!("[[alert]]\nkind = \"webhook\"\nurl = \"{}\"", receiver.url("/")), dir.path());
    let event = Event::new(EventKind::Failure, "Backup failed", "nas");
    let deliveries = Notifier::with_options(vec![t], fast()).send(&event);
    assert!(deliveries[0].result.is_ok(), "{:?}", deliveries[0].result);
    let request = &receiver.requests()[0];
    assert_eq!(request.header(SIGNATURE_HEADER), None);
    let body = request.json();
    assert!(body["policy"].is_null() && body["vault"].is_null() && body["run_id"].is_null() && body["data"].is_null());
}

#[test]
fn webhook_retries_after_500_and_429_with_the_same_delivery_id() {
    let receiver = Receiver::start(vec![(500, "oops"), (429, "slow down")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let notifier = Notifier::with_options(vec![webhook_with_secret(&receiver, dir.path())], fast());
    let deliveries = notifier.send(&failure_event());
    assert!(deliveries[0].result.is_ok(), "{:?}", deliveries[0].result);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "500 and 429 are retried");
    let ids: Vec<_> = requests.iter().map(|r| r.header("x-gitvault-delivery").expect("id").to_string()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(requests.iter().all(|r| r.body == requests[0].body));
}

#[test]
fn webhook_gives_up_after_the_last_attempt() {
    let receiver = Receiver::start(vec![(503, "down"), (503, "down"), (503, "down"), (503, "down")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let notifier = Notifier::with_options(vec![webhook_with_secret(&receiver, dir.path())], fast());
    let deliveries = notifier.send(&failure_event());
    let err = deliveries[0].result.as_ref().expect_err("503 three times");
    assert!(matches!(err, NotifyError::Status { status: 503, .. }), "{err:?}");
    assert_eq!(receiver.requests().len(), 3);
}

#[test]
fn webhook_4xx_is_an_error_naming_the_target_without_path_or_secret() {
    // The answer quotes the request path and the secret: neither may reach the error.
    let receiver = Receiver::start(vec![(404, &format!("no hook at /hooks/gitvault (key {SECRET})"))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let notifier = Notifier::with_options(vec![webhook_with_secret(&receiver, dir.path())], fast());
    let deliveries = notifier.send(&failure_event());
    let err = deliveries[0].result.as_ref().expect_err("404");
    let shown = format!("{} | {err:?}", chain(err));
    assert!(shown.contains("ops-webhook") && shown.contains(&format!("http://127.0.0.1:{}", receiver.port)), "{shown}");
    assert!(shown.contains("404") && shown.contains("no hook at"), "{shown}");
    assert!(!shown.contains("/hooks/gitvault") && !shown.contains(SECRET), "{shown}");
    assert_eq!(receiver.requests().len(), 1, "a 4xx is not retried");
}

#[test]
fn unreachable_webhook_fails_quickly_with_a_clear_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{port}/secret-path-token");
    let t = target(&format!("[[alert]]\nname = \"down\"\nkind = \"webhook\"\nurl = \"{url}\""), dir.path());
    let options = NotifierOptions { timeout: Duration::from_secs(2), attempts: 2, backoff: Duration::from_millis(10) };
    let started = Instant::now();
    let deliveries = Notifier::with_options(vec![t], options).send(&failure_event());
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let err = deliveries[0].result.as_ref().expect_err("nothing listens");
    let shown = chain(err);
    assert!(shown.starts_with(&format!("down (webhook http://127.0.0.1:{port}): request failed")), "{shown}");
    assert!(shown.to_lowercase().contains("connect"), "{shown}");
    assert!(!shown.contains("secret-path-token"), "{shown}");
    assert!(err.is_transient());
}

#[test]
fn targets_get_only_the_events_they_ask_for() {
    let failures = Receiver::start(vec![]);
    let successes = Receiver::start(vec![]);
    let nightly = Receiver::start(vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = crate::specs(&format!(
        r#"
        [[alert]]
        kind = "webhook"
        url = "{}"
        [[alert]]
        kind = "webhook"
        url = "{}"
        on = ["success"]
        [[alert]]
        kind = "webhook"
        url = "{}"
        on = ["failure", "success"]
        policies = ["nightly"]
        "#,
        failures.url("/"),
        successes.url("/"),
        nightly.url("/")
    ));
    let (targets, errors) = gitvault_ops::notify::resolve_alerts(&specs, dir.path());
    assert!(errors.is_empty(), "{errors:?}");
    let notifier = Notifier::with_options(targets, fast());

    let mut success = Event::new(EventKind::Success, "Backup done", "nas");
    success.policy = Some("weekly".into());
    let sent: Vec<String> = notifier.send(&success).into_iter().map(|d| d.target).collect();
    assert_eq!(sent, [format!("webhook-2 (webhook http://127.0.0.1:{})", successes.port)]);

    let mut failure = failure_event(); // policy "nightly"
    assert_eq!(notifier.send(&failure).len(), 2);
    failure.policy = None;
    assert_eq!(notifier.send(&failure).len(), 1, "an event of no policy skips a policy filter");
    for rpo in [EventKind::Rpo, EventKind::Suspicious] {
        assert_eq!(notifier.send(&Event::new(rpo, "x", "nas")).len(), 1);
    }
    assert_eq!((failures.requests().len(), successes.requests().len(), nightly.requests().len()), (4, 1, 1));

    // The test event reaches every target, whatever its `on` and `policies`.
    let all = notifier.send_to_all(&test_event("nas"));
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|d| d.result.is_ok()), "{all:?}");
    let last = failures.requests().pop().expect("test event");
    assert_eq!(last.header("x-gitvault-event"), Some("success"));
    assert_eq!(last.json()["data"]["test"], true);
}

#[test]
fn slack_gets_a_text_message_in_mrkdwn() {
    let receiver = Receiver::start(vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let t =
        target(&format!("[[alert]]\nkind = \"slack\"\nurl = \"{}\"", receiver.url("/services/T0/B0/XYZ")), dir.path());
    assert_eq!(t.describe(), format!("slack (slack http://127.0.0.1:{})", receiver.port));
    let mut event = failure_event();
    event.lines.push("a <b> & c".into());
    let deliveries = Notifier::with_options(vec![t], fast()).send(&event);
    assert!(deliveries[0].result.is_ok(), "{:?}", deliveries[0].result);
    let request = &receiver.requests()[0];
    assert_eq!(request.path, "/services/T0/B0/XYZ");
    assert_eq!(request.header(SIGNATURE_HEADER), None);
    let body = request.json();
    assert_eq!(body.as_object().expect("object").len(), 1, "{body}");
    let text = body["text"].as_str().expect("text");
    assert!(text.starts_with("*Backup failed: 2 of 5 repositories*\ngithub:acme/api: fetch failed"), "{text}");
    assert!(text.contains("\na &lt;b&gt; &amp; c\n"), "{text}");
    assert!(text.ends_with("_host backup-1.example.com · policy nightly · vault offsite · run 42_"), "{text}");
}

#[test]
fn teams_gets_a_message_card_coloured_by_event() {
    let receiver = Receiver::start(vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let t = target(
        &format!(
            "[[alert]]\nkind = \"teams\"\non = [\"failure\", \"success\"]\nurl = \"{}\"",
            receiver.url("/webhookb2/abc")
        ),
        dir.path(),
    );
    let notifier = Notifier::with_options(vec![t], fast());
    assert!(notifier.send(&failure_event())[0].result.is_ok());
    assert!(notifier.send(&Event::new(EventKind::Success, "Backup done", "nas"))[0].result.is_ok());
    let requests = receiver.requests();
    let (failure, success) = (requests[0].json(), requests[1].json());
    assert_eq!(failure["@type"], "MessageCard");
    assert_eq!(failure["@context"], "https://schema.org/extensions");
    assert_eq!(failure["title"], "[gitvault] Backup failed: 2 of 5 repositories");
    assert_eq!(failure["summary"], failure["title"]);
    assert_eq!(failure["themeColor"], "D40E0D");
    assert_eq!(success["themeColor"], "2EB67D");
    let text = failure["text"].as_str().expect("text");
    assert!(text.contains("github:acme/api: fetch failed: connection reset\n\ngithub:acme/web: disk full"), "{text}");
    let facts = &failure["sections"][0]["facts"];
    assert!(
        facts.as_array().expect("facts").contains(&serde_json::json!({"name": "vault", "value": "offsite"})),
        "{facts}"
    );
}

#[test]
fn debug_output_of_targets_shows_no_secret() {
    let receiver = Receiver::start(vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let webhook = webhook_with_secret(&receiver, dir.path());
    let slack =
        target(&format!("[[alert]]\nkind = \"slack\"\nurl = \"{}\"", receiver.url("/services/T0/B0/XYZ")), dir.path());
    let shown = format!("{:?}", Notifier::new(vec![webhook, slack]));
    assert!(!shown.contains(SECRET) && !shown.contains("/hooks/gitvault") && !shown.contains("XYZ"), "{shown}");
    assert!(shown.contains("****"), "{shown}");
}

#[test]
fn https_webhook_trusts_its_ca_file_and_nothing_else() {
    if !crate::openssl_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = crate::certs(dir.path());
    let receiver = Receiver::start_tls(vec![], &certs.cert, &certs.key);
    let url = receiver.https_url("/hooks/gitvault");
    let trusted = target(
        &format!("[[alert]]\nname = \"tls\"\nkind = \"webhook\"\nurl = \"{url}\"\nca_file = \"ca.pem\""),
        dir.path(),
    );
    assert_eq!(trusted.describe(), format!("tls (webhook https://localhost:{})", receiver.port));
    let untrusted = target(&format!("[[alert]]\nname = \"no-ca\"\nkind = \"webhook\"\nurl = \"{url}\""), dir.path());

    let deliveries = Notifier::with_options(vec![trusted, untrusted], fast()).send(&failure_event());
    assert!(deliveries[0].result.is_ok(), "{:?}", deliveries[0].result);
    let err = deliveries[1].result.as_ref().expect_err("the test CA is not a system root");
    let shown = chain(err);
    assert!(
        shown.starts_with(&format!("no-ca (webhook https://localhost:{}): request failed", receiver.port)),
        "{shown}"
    );
    assert!(shown.to_lowercase().contains("certificate"), "{shown}");
    assert!(!shown.contains("/hooks/gitvault"), "{shown}");
    assert!(!err.is_transient(), "an untrusted certificate is not retried: {err:?}");
    assert_eq!(receiver.requests().len(), 1, "only the trusting target got through");
    assert_eq!(receiver.requests()[0].json()["event"], "failure");
}
