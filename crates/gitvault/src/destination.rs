//! Where a vault lives, from what the user typed: a local path (or `file://` URL), or
//! `s3://BUCKET/PREFIX` with credentials and endpoint taken the AWS way. Resolved once, here at
//! the edge: the storage crate reads no environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use gitvault_storage::{LocalStore, S3Config, S3Store, Store};

/// The AWS settings of the environment, read once (`AWS_*` variables and the shared files).
#[derive(Default)]
pub struct AwsEnv {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub profile: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    /// `GITVAULT_S3_ADDRESSING`: `path` or `virtual`.
    pub addressing: Option<String>,
}

impl AwsEnv {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self {
            endpoint: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            profile: var("AWS_PROFILE"),
            credentials_file: var("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials"))),
            config_file: var("AWS_CONFIG_FILE").map(PathBuf::from).or_else(|| home.map(|h| h.join(".aws/config"))),
            addressing: var("GITVAULT_S3_ADDRESSING"),
        }
    }
}

pub enum Destination {
    Local(PathBuf),
    S3(S3Config),
}

/// The `key = value` pairs of one `[section]` of an AWS shared file.
fn ini_section(path: &Path, section: &str) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return HashMap::new() };
    let mut current = String::new();
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
        } else if current == section
            && let Some((k, v)) = line.split_once('=')
        {
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

impl Destination {
    pub fn parse(value: &str, aws: &AwsEnv) -> Result<Self> {
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("{value:?}: an S3 vault is s3://BUCKET/PREFIX");
            }
            // Environment first, then the profile's entries in the shared files, as AWS tools do.
            let profile = aws.profile.clone().unwrap_or_else(|| "default".into());
            let creds = aws.credentials_file.as_deref().map(|f| ini_section(f, &profile)).unwrap_or_default();
            let config_section = if profile == "default" { profile.clone() } else { format!("profile {profile}") };
            let config = aws.config_file.as_deref().map(|f| ini_section(f, &config_section)).unwrap_or_default();
            if aws.profile.is_some() && creds.is_empty() && config.is_empty() && aws.access_key_id.is_none() {
                bail!("AWS_PROFILE={profile}: no such profile in the AWS credentials or config file");
            }
            let endpoint = aws.endpoint.clone().or_else(|| config.get("endpoint_url").cloned());
            let virtual_host_style = match aws.addressing.as_deref() {
                Some("virtual") => true,
                Some("path") => false,
                Some(other) => bail!("GITVAULT_S3_ADDRESSING={other:?}: expected \"path\" or \"virtual\""),
                // S3-compatible servers (MinIO and friends) want path-style; AWS itself virtual.
                None => endpoint.is_none(),
            };
            return Ok(Destination::S3(S3Config {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                endpoint,
                region: aws.region.clone().or_else(|| config.get("region").cloned()),
                access_key_id: aws.access_key_id.clone().or_else(|| creds.get("aws_access_key_id").cloned()),
                secret_access_key: aws
                    .secret_access_key
                    .clone()
                    .or_else(|| creds.get("aws_secret_access_key").cloned()),
                virtual_host_style,
            }));
        }
        if let Some(path) = value.strip_prefix("file://") {
            return Ok(Destination::Local(PathBuf::from(path)));
        }
        if value.contains("://") {
            bail!("{value:?}: unsupported vault location (use a path, file://PATH or s3://BUCKET/PREFIX)");
        }
        Ok(Destination::Local(PathBuf::from(value)))
    }

    pub fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Destination::Local(p) => Arc::new(LocalStore::new(p)),
            Destination::S3(c) => Arc::new(S3Store::new(c)?),
        })
    }

    /// A store for a new vault: a local directory is created; any destination must be empty.
    pub fn open_new(&self) -> Result<Arc<dyn Store>> {
        match self {
            Destination::Local(p) => {
                let store = LocalStore::new(p);
                store.create_root()?;
                Ok(Arc::new(store))
            }
            Destination::S3(c) => {
                let store = S3Store::new(c)?;
                let existing = store.list("").context("checking that the S3 prefix is empty")?;
                if let Some(first) = existing.first() {
                    bail!("{} is not empty (it holds {} and more); choose a new prefix", store.describe(), first.path);
                }
                Ok(Arc::new(store))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_take_settings_the_aws_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = dir.path().join("credentials");
        std::fs::write(&creds, "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n[ci]\naws_access_key_id = CI\naws_secret_access_key = CS\n").expect("write");
        let mut aws = AwsEnv { credentials_file: Some(creds), ..AwsEnv::default() };
        let Destination::S3(c) = Destination::parse("s3://bucket/some/prefix/", &aws).expect("parse") else {
            panic!("not s3")
        };
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bucket", "some/prefix"));
        assert_eq!(c.access_key_id.as_deref(), Some("AK"));
        assert!(c.virtual_host_style, "AWS itself: virtual-hosted style");
        aws.profile = Some("ci".into());
        aws.endpoint = Some("http://127.0.0.1:9000".into());
        let Destination::S3(c) = Destination::parse("s3://b", &aws).expect("parse") else { panic!("not s3") };
        assert_eq!(c.secret_access_key.as_deref(), Some("CS"));
        assert!(!c.virtual_host_style, "an endpoint means path style unless told otherwise");
        aws.access_key_id = Some("ENV".into());
        let Destination::S3(c) = Destination::parse("s3://b", &aws).expect("parse") else { panic!("not s3") };
        assert_eq!(c.access_key_id.as_deref(), Some("ENV"), "the environment wins over the profile");
        aws.profile = Some("nope".into());
        aws.access_key_id = None;
        assert!(Destination::parse("s3://b", &aws).is_err());
        assert!(Destination::parse("ftp://x", &aws).is_err());
        assert!(
            matches!(Destination::parse("file:///srv/v", &aws), Ok(Destination::Local(p)) if p == Path::new("/srv/v"))
        );
    }
}
