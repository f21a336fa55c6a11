//! Forge accounts: which repositories a `github:`, `gitlab:`, `bitbucket:` or `gitea:` source
//! names, found through the forge's HTTP API, with the clone URLs and the credentials git needs.

#[cfg(feature = "testing")]
pub mod testing;
