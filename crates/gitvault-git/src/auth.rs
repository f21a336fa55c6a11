//! An HTTP header (a forge token) for git's requests to one host, given through the
//! environment of each git process — never a URL, a command line or a config file on disk.

use std::fmt;

use crate::Git;

/// An `Authorization: ...` header line. `Debug` prints `****`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpAuth {
    header: String,
}

impl HttpAuth {
    /// `header` is a whole header line, such as `Authorization: Basic ...`.
    pub fn new(header: impl Into<String>) -> Self {
        Self { header: header.into() }
    }
}

impl fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpAuth(****)")
    }
}

impl Git {
    /// This git, sending `auth` with every HTTP request to the scheme, host and port of `url`
    /// (git's `http.<url>.extraHeader`, given as `GIT_CONFIG_COUNT`/`KEY`/`VALUE` variables,
    /// which git-lfs reads too): a redirect to another host does not get it.
    #[must_use]
    pub fn with_http_auth(&self, url: &str, auth: &HttpAuth) -> Git {
        let scope = match url.split_once("://") {
            Some((scheme, rest)) => {
                let authority = rest.split('/').next().unwrap_or_default();
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                format!("{scheme}://{host}/")
            }
            None => url.to_string(),
        };
        self.with_config(format!("http.{scope}.extraHeader"), auth.header.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_scoped_to_the_host_and_never_shown() {
        let auth = HttpAuth::new("Authorization: Basic c2VjcmV0");
        assert!(!format!("{auth:?}").contains("c2VjcmV0"));
        let git = Git::new().with_http_auth("http://127.0.0.1:8080/github/acme/api.git", &auth);
        assert_eq!(git.config_keys(), ["http.http://127.0.0.1:8080/.extraHeader"]);
        let shown = format!("{git:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }
}
