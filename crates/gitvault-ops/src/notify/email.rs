//! Delivery by e-mail over SMTP (lettre's blocking transport, rustls).

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport};

use super::config::{Security, SmtpEndpoint};
use super::error::{NotifyError, SmtpCause};
use super::{Event, NotifierOptions};

pub(crate) fn message(endpoint: &SmtpEndpoint, event: &Event, target: &str) -> Result<Message, NotifyError> {
    let mut builder = Message::builder()
        .from(endpoint.from.clone())
        .subject(format!("[gitvault] {}", super::one_line(&event.title)))
        .header(ContentType::TEXT_PLAIN);
    for to in &endpoint.to {
        builder = builder.to(to.clone());
    }
    builder.body(text(event)).map_err(|source| NotifyError::Message { target: target.to_string(), source })
}

/// The plain-text body: the title, every line, then where it comes from.
pub(crate) fn text(event: &Event) -> String {
    let mut text = super::one_line(&event.title);
    text.push_str("\n\n");
    for line in &event.lines {
        text.push_str(line);
        text.push('\n');
    }
    if !event.lines.is_empty() {
        text.push('\n');
    }
    text.push_str(&format!("event: {}\nhost: {}\n", event.kind.as_str(), event.host));
    if let Some(policy) = &event.policy {
        text.push_str(&format!("policy: {policy}\n"));
    }
    if let Some(vault) = &event.vault {
        text.push_str(&format!("vault: {vault}\n"));
    }
    if let Some(run) = event.run_id {
        text.push_str(&format!("run: {run}\n"));
    }
    text.push_str(&format!("time: {}\n", super::rfc3339(event.time)));
    text
}

/// One delivery attempt: connect, secure the connection as configured, authenticate, send.
pub(crate) fn send(
    endpoint: &SmtpEndpoint,
    message: &Message,
    hello: &str,
    target: &str,
    options: &NotifierOptions,
) -> Result<(), NotifyError> {
    let tls_error = |e| NotifyError::SmtpTls { target: target.to_string(), source: SmtpCause(e) };
    let tls = match endpoint.security {
        Security::None => Tls::None,
        security => {
            let mut params = TlsParameters::builder(endpoint.host.clone());
            if let Some(pem) = &endpoint.ca_pem {
                params = params.add_root_certificate(Certificate::from_pem(pem).map_err(tls_error)?);
            }
            let params = params.build_rustls().map_err(tls_error)?;
            // Required, not Opportunistic: a server (or someone in the middle) that does not
            // offer STARTTLS gets nothing, neither the password nor the message.
            if security == Security::Tls { Tls::Wrapper(params) } else { Tls::Required(params) }
        }
    };
    let mut builder = SmtpTransport::builder_dangerous(endpoint.host.as_str())
        .port(endpoint.port)
        .tls(tls)
        .timeout(Some(options.timeout));
    if is_domain(hello) {
        builder = builder.hello_name(ClientId::Domain(hello.to_string()));
    }
    if let Some((user, password)) = &endpoint.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_string()));
    }
    builder
        .build()
        .send(message)
        .map_err(|e| NotifyError::Smtp { target: target.to_string(), source: SmtpCause(e) })?;
    Ok(())
}

/// Whether `host` can be sent as the EHLO name (otherwise lettre's default, `localhost`).
fn is_domain(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_names_become_the_ehlo_name() {
        assert!(is_domain("backup-1.example.com"));
        assert!(is_domain("nas"));
        assert!(!is_domain(""));
        assert!(!is_domain("my host"));
        assert!(!is_domain("-bad.example"));
        assert!(!is_domain("a..b"));
    }
}
