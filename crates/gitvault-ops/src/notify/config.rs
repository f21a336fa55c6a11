//! `[[alert]]` tables of gitvault.toml, and their resolution into delivery [`Target`]s: keys
//! checked against the alert's kind, URLs and addresses parsed, secrets read from the
//! environment variable or file the table names.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use reqwest::Url;
use serde::Deserialize;

use super::error::NotifyError;
use super::secret::Secret;
use super::{EventKind, http};

/// One `[[alert]]` table. Secrets are never written inline: `secret_env`/`secret_file` and
/// `password_env`/`password_file` name where to read them. A Slack or Teams URL is itself a
/// credential, so it may come from `url_env`/`url_file` instead of `url`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// Shown in logs and errors; defaults to `<kind>-<n>` (see [`resolve_alerts`]).
    pub name: Option<String>,
    pub kind: AlertKind,
    /// Events to send; default failure, rpo, suspicious.
    pub on: Option<Vec<EventKind>>,
    /// Only events of these policies; default every event.
    pub policies: Option<Vec<String>>,
    /// An extra trusted root certificate (PEM), for HTTPS webhooks and SMTP TLS.
    pub ca_file: Option<PathBuf>,

    // webhook, slack, teams
    pub url: Option<Secret>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    // webhook: the HMAC-SHA256 signing key
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,

    // email
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub security: Option<Security>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Webhook,
    Slack,
    Teams,
    Email,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Webhook => "webhook",
            AlertKind::Slack => "slack",
            AlertKind::Teams => "teams",
            AlertKind::Email => "email",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an e-mail alert protects the SMTP connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (port 587); refuse to send if the server does not
    /// offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (port 25): only to a server on this machine.
    None,
}

impl Security {
    fn default_port(self) -> u16 {
        match self {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Security::Starttls => "starttls",
            Security::Tls => "tls",
            Security::None => "none",
        }
    }
}

/// A resolved alert: where to deliver, which events, with its secrets loaded.
#[derive(Clone, Debug)]
pub struct Target {
    pub(crate) name: String,
    pub(crate) on: Vec<EventKind>,
    pub(crate) policies: Option<Vec<String>>,
    pub(crate) channel: Channel,
}

#[derive(Clone, Debug)]
pub(crate) enum Channel {
    Webhook(HttpEndpoint),
    Slack(HttpEndpoint),
    Teams(HttpEndpoint),
    Email(SmtpEndpoint),
}

#[derive(Clone, Debug)]
pub(crate) struct HttpEndpoint {
    pub(crate) url: Secret,
    /// `scheme://host:port`, the only part of the URL ever shown.
    pub(crate) origin: String,
    /// Webhook only: the HMAC key.
    pub(crate) secret: Option<Secret>,
    pub(crate) ca_pem: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub(crate) struct SmtpEndpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) security: Security,
    pub(crate) credentials: Option<(String, Secret)>,
    pub(crate) from: Mailbox,
    pub(crate) to: Vec<Mailbox>,
    pub(crate) ca_pem: Option<Vec<u8>>,
}

impl Target {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> AlertKind {
        match self.channel {
            Channel::Webhook(_) => AlertKind::Webhook,
            Channel::Slack(_) => AlertKind::Slack,
            Channel::Teams(_) => AlertKind::Teams,
            Channel::Email(_) => AlertKind::Email,
        }
    }

    /// The events this target receives.
    pub fn on(&self) -> &[EventKind] {
        &self.on
    }

    /// Whether [`Notifier::send`](super::Notifier::send) delivers `event` here: its kind is in
    /// `on`, and when `policies` is set the event belongs to one of them (an event of no policy
    /// then does not match).
    pub fn wants(&self, event: &super::Event) -> bool {
        self.on.contains(&event.kind)
            && match &self.policies {
                None => true,
                Some(policies) => event.policy.as_ref().is_some_and(|p| policies.contains(p)),
            }
    }

    /// `name (kind scheme://host:port)`: what logs and errors show of a target, free of secrets.
    pub fn describe(&self) -> String {
        match &self.channel {
            Channel::Webhook(e) | Channel::Slack(e) | Channel::Teams(e) => {
                format!("{} ({} {})", self.name, self.kind(), e.origin)
            }
            Channel::Email(e) => {
                let scheme = if e.security == Security::Tls { "smtps" } else { "smtp" };
                format!("{} (email {scheme}://{}:{} {})", self.name, e.host, e.port, e.security.as_str())
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Resolves every `[[alert]]` table, naming unnamed ones `<kind>-<n>` (`n` counting from 1 in
/// file order). A bad table does not stop the others: the good targets are returned with the
/// errors of the bad ones, so that a caller running backups can still alert through them.
pub fn resolve_alerts(specs: &[AlertSpec], base_dir: &Path) -> (Vec<Target>, Vec<NotifyError>) {
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let name = spec.name.clone().unwrap_or_else(|| format!("{}-{}", spec.kind, i + 1));
        if !names.insert(name.clone()) {
            errors.push(NotifyError::DuplicateName { alert: name });
            continue;
        }
        match spec.resolve_named(name, base_dir) {
            Ok(t) => targets.push(t),
            Err(e) => errors.push(e),
        }
    }
    (targets, errors)
}

impl AlertSpec {
    /// Validates the table and loads its secrets. Relative paths (`*_file`, `ca_file`) are taken
    /// from `base_dir`, the directory of the configuration file. An unnamed alert is named after
    /// its kind.
    pub fn resolve(&self, base_dir: &Path) -> Result<Target, NotifyError> {
        let name = self.name.clone().unwrap_or_else(|| self.kind.to_string());
        self.resolve_named(name, base_dir)
    }

    fn resolve_named(&self, name: String, base_dir: &Path) -> Result<Target, NotifyError> {
        let cx = Cx { alert: name, kind: self.kind, base_dir };
        if cx.alert.trim().is_empty() || cx.alert.contains(['\n', '\r']) {
            return Err(cx.invalid("name", "must be a non-empty single line"));
        }
        self.check_keys(&cx)?;
        let on = match &self.on {
            None => EventKind::DEFAULT.to_vec(),
            Some(on) if on.is_empty() => return Err(cx.invalid("on", "is empty: list at least one event")),
            Some(on) => dedup(on.clone()),
        };
        let policies = match &self.policies {
            Some(p) if p.is_empty() => {
                return Err(cx.invalid("policies", "is empty: leave it out to alert for every policy"));
            }
            other => other.clone(),
        };
        let ca_pem = self.ca_file.as_ref().map(|p| cx.read_ca(p)).transpose()?;
        let channel = match self.kind {
            AlertKind::Webhook | AlertKind::Slack | AlertKind::Teams => {
                let url = cx.one_secret(
                    "url, url_env or url_file",
                    ("url", self.url.as_ref()),
                    ("url_env", self.url_env.as_deref()),
                    ("url_file", self.url_file.as_deref()),
                )?;
                let url = url.ok_or_else(|| cx.missing("url (or url_env, url_file)"))?;
                let origin = cx.check_url(&url)?;
                let secret = cx.one_secret(
                    "secret_env or secret_file",
                    ("secret", None),
                    ("secret_env", self.secret_env.as_deref()),
                    ("secret_file", self.secret_file.as_deref()),
                )?;
                let endpoint = HttpEndpoint { url, origin, secret, ca_pem };
                match self.kind {
                    AlertKind::Webhook => Channel::Webhook(endpoint),
                    AlertKind::Slack => Channel::Slack(endpoint),
                    _ => Channel::Teams(endpoint),
                }
            }
            AlertKind::Email => Channel::Email(self.smtp_endpoint(&cx, ca_pem)?),
        };
        Ok(Target { name: cx.alert, on, policies, channel })
    }

    fn smtp_endpoint(&self, cx: &Cx<'_>, ca_pem: Option<Vec<u8>>) -> Result<SmtpEndpoint, NotifyError> {
        let host = self.smtp_host.clone().ok_or_else(|| cx.missing("smtp_host"))?;
        if host.is_empty() || host.contains(['/', ':', ' ']) && host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(cx.invalid("smtp_host", "must be a host name or IP address, without scheme or port"));
        }
        let security = self.security.unwrap_or_default();
        if security == Security::None && !is_loopback(&host) {
            return Err(cx.invalid(
                "security",
                "= \"none\" is only allowed for a server on this machine (localhost, 127.0.0.1, ::1); \
                 use \"starttls\" or \"tls\"",
            ));
        }
        let port = match self.smtp_port {
            Some(0) => return Err(cx.invalid("smtp_port", "must not be 0")),
            Some(p) => p,
            None => security.default_port(),
        };
        let password = cx.one_secret(
            "password_env or password_file",
            ("password", None),
            ("password_env", self.password_env.as_deref()),
            ("password_file", self.password_file.as_deref()),
        )?;
        let credentials = match (&self.username, password) {
            (Some(user), Some(password)) => Some((user.clone(), password)),
            (None, None) => None,
            (Some(_), None) => return Err(cx.missing("password_env or password_file (username is set)")),
            (None, Some(_)) => return Err(cx.missing("username (a password is set)")),
        };
        let from = self.from.as_deref().ok_or_else(|| cx.missing("from"))?;
        let from = parse_mailbox(cx, "from", from)?;
        let to = self.to.as_deref().ok_or_else(|| cx.missing("to"))?;
        if to.is_empty() {
            return Err(cx.invalid("to", "is empty: list at least one address"));
        }
        let to = to.iter().map(|a| parse_mailbox(cx, "to", a)).collect::<Result<Vec<_>, _>>()?;
        Ok(SmtpEndpoint { host, port, security, credentials, from, to, ca_pem })
    }

    /// Every key set must belong to the alert's kind.
    fn check_keys(&self, cx: &Cx<'_>) -> Result<(), NotifyError> {
        let http = matches!(self.kind, AlertKind::Webhook | AlertKind::Slack | AlertKind::Teams);
        let webhook = self.kind == AlertKind::Webhook;
        let email = self.kind == AlertKind::Email;
        let keys: [(&'static str, bool, bool); 14] = [
            ("url", self.url.is_some(), http),
            ("url_env", self.url_env.is_some(), http),
            ("url_file", self.url_file.is_some(), http),
            ("secret_env", self.secret_env.is_some(), webhook),
            ("secret_file", self.secret_file.is_some(), webhook),
            ("smtp_host", self.smtp_host.is_some(), email),
            ("smtp_port", self.smtp_port.is_some(), email),
            ("security", self.security.is_some(), email),
            ("username", self.username.is_some(), email),
            ("password_env", self.password_env.is_some(), email),
            ("password_file", self.password_file.is_some(), email),
            ("from", self.from.is_some(), email),
            ("to", self.to.is_some(), email),
            ("ca_file", self.ca_file.is_some(), true),
        ];
        match keys.iter().find(|(_, set, allowed)| *set && !*allowed) {
            Some((key, _, _)) => Err(NotifyError::KeyNotAllowed { alert: cx.alert.clone(), kind: self.kind, key }),
            None => Ok(()),
        }
    }
}

/// Context for resolving one alert: its name for errors, and where relative paths start.
struct Cx<'a> {
    alert: String,
    kind: AlertKind,
    base_dir: &'a Path,
}

impl Cx<'_> {
    fn invalid(&self, key: &'static str, problem: impl Into<String>) -> NotifyError {
        NotifyError::Invalid { alert: self.alert.clone(), key, problem: problem.into() }
    }

    fn missing(&self, key: &'static str) -> NotifyError {
        NotifyError::MissingKey { alert: self.alert.clone(), kind: self.kind, key }
    }

    fn path(&self, p: &Path) -> PathBuf {
        self.base_dir.join(p)
    }

    /// The secret given inline, by environment variable or by file; at most one of the three.
    fn one_secret(
        &self,
        keys: &'static str,
        inline: (&'static str, Option<&Secret>),
        env: (&'static str, Option<&str>),
        file: (&'static str, Option<&Path>),
    ) -> Result<Option<Secret>, NotifyError> {
        let given = [inline.1.is_some(), env.1.is_some(), file.1.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(NotifyError::ConflictingKeys { alert: self.alert.clone(), keys });
        }
        let secret = if let Some(s) = inline.1 {
            if s.expose().is_empty() {
                return Err(NotifyError::SecretEmpty {
                    alert: self.alert.clone(),
                    key: inline.0,
                    from: "the value".into(),
                });
            }
            return Ok(Some(s.clone()));
        } else if let Some(var) = env.1 {
            let value = std::env::var(var).map_err(|e| match e {
                std::env::VarError::NotPresent => {
                    NotifyError::SecretEnvMissing { alert: self.alert.clone(), key: env.0, var: var.to_string() }
                }
                std::env::VarError::NotUnicode(_) => {
                    NotifyError::SecretEnvNotUnicode { alert: self.alert.clone(), key: env.0, var: var.to_string() }
                }
            })?;
            (value, env.0, format!("environment variable {var}"))
        } else if let Some(path) = file.1 {
            let path = self.path(path);
            let value = std::fs::read_to_string(&path).map_err(|source| NotifyError::ReadFile {
                alert: self.alert.clone(),
                key: file.0,
                path: path.clone(),
                source,
            })?;
            // A secret file usually ends with a newline that is not part of the secret.
            let value = value.trim_end_matches(['\n', '\r']).to_string();
            (value, file.0, format!("file {}", path.display()))
        } else {
            return Ok(None);
        };
        let (value, key, from) = secret;
        if value.is_empty() {
            return Err(NotifyError::SecretEmpty { alert: self.alert.clone(), key, from });
        }
        Ok(Some(Secret::new(value)))
    }

    /// Checks a webhook URL and returns its `scheme://host:port`. The URL itself never appears
    /// in an error: for Slack and Teams its path is the credential.
    fn check_url(&self, url: &Secret) -> Result<String, NotifyError> {
        let parsed =
            Url::parse(url.expose().trim()).map_err(|e| self.invalid("url", format!("is not a valid URL ({e})")))?;
        let scheme = parsed.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(self.invalid("url", format!("must start with https:// or http://, not {scheme}://")));
        }
        let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| self.invalid("url", "has no host"))?;
        // A Slack or Teams URL is a bearer credential: never send it in clear over the network.
        if scheme == "http" && self.kind != AlertKind::Webhook && !is_loopback(host) {
            return Err(self.invalid("url", "must be https:// (it carries the credential)"));
        }
        let port = parsed.port_or_known_default().unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(format!("{scheme}://{host}:{port}"))
    }

    fn read_ca(&self, p: &Path) -> Result<Vec<u8>, NotifyError> {
        let path = self.path(p);
        let pem = std::fs::read(&path).map_err(|source| NotifyError::ReadFile {
            alert: self.alert.clone(),
            key: "ca_file",
            path: path.clone(),
            source,
        })?;
        let usable = match self.kind {
            AlertKind::Email => lettre::transport::smtp::client::Certificate::from_pem(&pem).is_ok(),
            _ => http::parse_ca(&pem).is_some_and(|certs| !certs.is_empty()),
        };
        if !usable || !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(NotifyError::BadCaFile { alert: self.alert.clone(), path });
        }
        Ok(pem)
    }
}

fn parse_mailbox(cx: &Cx<'_>, key: &'static str, address: &str) -> Result<Mailbox, NotifyError> {
    address.parse::<Mailbox>().map_err(|e| cx.invalid(key, format!("{address:?} is not an e-mail address ({e})")))
}

fn dedup(mut kinds: Vec<EventKind>) -> Vec<EventKind> {
    let mut seen = HashSet::new();
    kinds.retain(|k| seen.insert(*k));
    kinds
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "LOCALHOST"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1", "localhost.example.com", "::2"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
