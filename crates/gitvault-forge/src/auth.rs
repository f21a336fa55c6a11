//! Credentials for a forge: sent to its API, and handed to git as an HTTP header scoped to the
//! forge's host — never written into a URL, a command line or a file.

use std::fmt;

use base64::Engine;

use crate::ForgeKind;

/// A secret string. `Debug` and `Display` print `****`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// How to authenticate to one forge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Credentials {
    /// Anonymous: public repositories only.
    #[default]
    None,
    /// A personal, project, group or workspace access token.
    Token(Secret),
    /// A user name and a secret (Bitbucket: an Atlassian account and its API token).
    Basic { user: String, secret: Secret },
}

impl Credentials {
    pub fn is_none(&self) -> bool {
        matches!(self, Credentials::None)
    }

    /// The `Authorization` (or GitLab `PRIVATE-TOKEN`) header for the forge's API.
    pub(crate) fn api_header(&self, forge: ForgeKind) -> Option<(&'static str, String)> {
        match (self, forge) {
            (Credentials::None, _) => None,
            (Credentials::Token(t), ForgeKind::Gitea) => Some(("Authorization", format!("token {}", t.expose()))),
            (Credentials::Token(t), ForgeKind::Gitlab) => Some(("PRIVATE-TOKEN", t.expose().to_string())),
            (Credentials::Token(t), _) => Some(("Authorization", format!("Bearer {}", t.expose()))),
            (Credentials::Basic { user, secret }, _) => Some(("Authorization", basic(user, secret.expose()))),
        }
    }

    /// The `Authorization` header git sends to the forge's smart HTTP endpoint: each forge's
    /// documented way of using a token as a git password.
    pub fn git_header(&self, forge: ForgeKind) -> Option<Secret> {
        let value = match (self, forge) {
            (Credentials::None, _) => return None,
            (Credentials::Token(t), ForgeKind::Github) => basic("x-access-token", t.expose()),
            (Credentials::Token(t), ForgeKind::Gitlab) => basic("oauth2", t.expose()),
            (Credentials::Token(t), ForgeKind::Bitbucket) => basic("x-token-auth", t.expose()),
            (Credentials::Token(t), ForgeKind::Gitea) => basic("gitvault", t.expose()),
            (Credentials::Basic { user, secret }, _) => basic(user, secret.expose()),
        };
        Some(Secret(format!("Authorization: {value}")))
    }
}

fn basic(user: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let c = Credentials::Token(Secret::new("ghp_supersecret"));
        assert!(!format!("{c:?}").contains("supersecret"));
        let h = c.git_header(ForgeKind::Github).expect("a header");
        assert!(!format!("{h:?}").contains("supersecret"));
        // x-access-token:ghp_supersecret
        assert_eq!(h.expose(), "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hwX3N1cGVyc2VjcmV0");
    }
}
