//! Where a vault lives, from what the user typed: a local path (or `file://` URL),
//! `s3://BUCKET/PREFIX` with credentials and endpoint taken the AWS way, or
//! `sftp://USER@HOST[:PORT]/PATH` reached with the user's ssh. Resolved once, here at the edge:
//! the storage crate reads no environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use gitvault_storage::{LocalStore, S3Config, S3Store, SftpConfig, SftpStore, Store};

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

/// How to reach an `sftp://` vault besides its URL (`--ssh-key`, `--ssh-config`).
#[derive(Default)]
pub struct SshSettings {
    pub key_file: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub control_dir: PathBuf,
}

/// How long ssh may take to reach the server before the vault counts as unreachable.
const SSH_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

pub enum Destination {
    Local(PathBuf),
    S3(S3Config),
    Sftp(SftpConfig),
}

/// `sftp://[USER@]HOST[:PORT]/PATH`: PATH is absolute on the server, except `/~/PATH` (or `/~`),
/// which is relative to the login directory. No password: keys only. Errors never repeat the
/// URL, which could hold one.
fn parse_sftp(rest: &str, ssh: &SshSettings) -> Result<SftpConfig> {
    const FORM: &str = "an SFTP vault is sftp://USER@HOST[:PORT]/PATH";
    let (authority, path) = rest.split_once('/').with_context(|| format!("no path: {FORM}"))?;
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, _)) if user.contains(':') => {
            bail!("passwords in sftp:// URLs are not supported: use a key (ssh-agent, ~/.ssh or --ssh-key)")
        }
        Some((user, host_port)) => (Some(user.to_string()).filter(|u| !u.is_empty()), host_port),
        None => (None, authority),
    };
    let (host, port) = match host_port.strip_prefix('[') {
        // [IPv6]:PORT
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').with_context(|| format!("unclosed [ in the host: {FORM}"))?;
            (host, after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port = port.map(|p| p.parse::<u16>().with_context(|| format!("bad port {p:?}: {FORM}"))).transpose()?;
    if host.is_empty() || host.starts_with('-') {
        bail!("no valid host: {FORM}");
    }
    let path = match path.strip_prefix('~') {
        Some(home) if home.is_empty() || home.starts_with('/') => home.trim_start_matches('/').to_string(),
        _ => format!("/{path}"),
    };
    Ok(SftpConfig {
        user,
        host: host.to_string(),
        port,
        path: path.trim_end_matches('/').to_string(),
        key_file: ssh.key_file.clone(),
        ssh_config: ssh.config_file.clone(),
        control_dir: ssh.control_dir.clone(),
        connect_timeout: SSH_CONNECT_TIMEOUT,
    })
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
    pub fn parse(value: &str, aws: &AwsEnv, ssh: &SshSettings) -> Result<Self> {
        if let Some(rest) = value.strip_prefix("sftp://") {
            return Ok(Destination::Sftp(parse_sftp(rest, ssh)?));
        }
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
            bail!(
                "{value:?}: unsupported vault location (use a path, file://PATH, s3://BUCKET/PREFIX or \
                 sftp://USER@HOST[:PORT]/PATH)"
            );
        }
        Ok(Destination::Local(PathBuf::from(value)))
    }

    pub fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Destination::Local(p) => Arc::new(LocalStore::new(p)),
            Destination::S3(c) => Arc::new(S3Store::new(c)?),
            Destination::Sftp(c) => Arc::new(SftpStore::connect(c)?),
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
            Destination::Sftp(c) => {
                let store = SftpStore::connect(c)?;
                let existing = store.list("").context("checking that the SFTP directory is empty")?;
                if let Some(first) = existing.first() {
                    bail!(
                        "{} is not empty (it holds {} and more); choose a new or empty directory",
                        store.describe(),
                        first.path
                    );
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
        let ssh = SshSettings::default();
        let Destination::S3(c) = Destination::parse("s3://bucket/some/prefix/", &aws, &ssh).expect("parse") else {
            panic!("not s3")
        };
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bucket", "some/prefix"));
        assert_eq!(c.access_key_id.as_deref(), Some("AK"));
        assert!(c.virtual_host_style, "AWS itself: virtual-hosted style");
        aws.profile = Some("ci".into());
        aws.endpoint = Some("http://127.0.0.1:9000".into());
        let Destination::S3(c) = Destination::parse("s3://b", &aws, &ssh).expect("parse") else { panic!("not s3") };
        assert_eq!(c.secret_access_key.as_deref(), Some("CS"));
        assert!(!c.virtual_host_style, "an endpoint means path style unless told otherwise");
        aws.access_key_id = Some("ENV".into());
        let Destination::S3(c) = Destination::parse("s3://b", &aws, &ssh).expect("parse") else { panic!("not s3") };
        assert_eq!(c.access_key_id.as_deref(), Some("ENV"), "the environment wins over the profile");
        aws.profile = Some("nope".into());
        aws.access_key_id = None;
        assert!(Destination::parse("s3://b", &aws, &ssh).is_err());
        assert!(Destination::parse("ftp://x", &aws, &ssh).is_err());
        assert!(
            matches!(Destination::parse("file:///srv/v", &aws, &ssh), Ok(Destination::Local(p)) if p == Path::new("/srv/v"))
        );
    }

    #[test]
    fn sftp_urls_name_user_host_port_and_path() {
        let ssh = SshSettings { key_file: Some("/k".into()), ..SshSettings::default() };
        let parse = |url: &str| match Destination::parse(url, &AwsEnv::default(), &ssh) {
            Ok(Destination::Sftp(c)) => Ok((c.user, c.host, c.port, c.path, c.key_file)),
            Ok(_) => panic!("{url}: not sftp"),
            Err(e) => Err(format!("{e:#}")),
        };
        let key = Some(PathBuf::from("/k"));
        assert_eq!(
            parse("sftp://backup@nas:2222/srv/vault/"),
            Ok((Some("backup".into()), "nas".into(), Some(2222), "/srv/vault".into(), key.clone()))
        );
        assert_eq!(parse("sftp://nas/~/vault"), Ok((None, "nas".into(), None, "vault".into(), key.clone())));
        assert_eq!(parse("sftp://u@nas/~"), Ok((Some("u".into()), "nas".into(), None, String::new(), key.clone())));
        assert_eq!(parse("sftp://u@nas/~x/v"), Ok((Some("u".into()), "nas".into(), None, "/~x/v".into(), key.clone())));
        assert_eq!(parse("sftp://u@[::1]:22/v"), Ok((Some("u".into()), "::1".into(), Some(22), "/v".into(), key)));
        for bad in ["sftp://nas", "sftp://u@nas:port/v", "sftp://u@/v", "sftp://-oProxyCommand=x/v"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let err = parse("sftp://u:hunter2@nas/v").expect_err("password");
        assert!(err.contains("passwords") && !err.contains("hunter2"), "{err}");
    }
}
