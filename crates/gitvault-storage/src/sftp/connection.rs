//! Reaching the server: the ssh master and SFTP session, what a failure to connect means, and
//! which failures a new connection can cure.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, SessionBuilder};
use openssh_sftp_client::error::Error as SftpError;
use openssh_sftp_client::{Sftp, SftpAuxiliaryData, SftpOptions};

use super::{MASTER_IDLE_SECS, MAX_DELAY, MIN_DELAY, SftpConfig, WRITE_LIMIT};

/// One ssh master with an SFTP session over it (and a second one for early syncs, opened when
/// needed), and what the server offers.
pub(super) struct Connection {
    pub(super) sftp: Sftp,
    /// The server offers `hardlink@openssh.com` (else a plain `SSH_FXP_RENAME` publishes).
    pub(super) hardlink: bool,
    /// The server offers `fsync@openssh.com`.
    pub(super) fsync: bool,
    /// A second SFTP session over the same master, opened on first need (see
    /// [`Connection::syncer`]); `None` inside when it could not be opened.
    syncer: tokio::sync::OnceCell<Option<Sftp>>,
    /// The master; it exits once this and every session's channel are gone.
    session: Arc<openssh::Session>,
}

impl Connection {
    /// A second SFTP session on this connection, for `fsync` requests that must not wait
    /// behind (or hold up) the writes of the first: the server runs each session's requests one
    /// after another. Opened on the first call; `None` when the server refuses it.
    pub(super) async fn syncer(&self) -> Option<&Sftp> {
        let open = || async {
            match open_sftp(Arc::clone(&self.session), SftpOptions::new()).await {
                Ok(sftp) => Some(sftp),
                Err(e) => {
                    tracing::debug!(error = %e, "no second SFTP session: objects are synced at their commit only");
                    None
                }
            }
        };
        self.syncer.get_or_init(open).await.as_ref()
    }
}

/// Why connecting failed, which decides whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnectFailure {
    HostKey,
    Auth,
    Unreachable,
    Other,
}

/// Backoff before attempt `attempt + 1`: exponential from [`MIN_DELAY`], capped at
/// [`MAX_DELAY`], with "full jitter" (a random point of the interval) so that many writers
/// cut off together do not come back together.
pub(super) fn backoff(attempt: u32) -> Duration {
    let ceiling = MIN_DELAY.saturating_mul(1 << attempt.min(16)).min(MAX_DELAY);
    let mut rnd = [0u8; 8];
    let fraction = match getrandom::fill(&mut rnd) {
        Ok(()) => (u64::from_le_bytes(rnd) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    };
    MIN_DELAY.max(ceiling.mul_f64(fraction))
}

/// Whether `e` means the connection (ssh, the channel, the SFTP session) broke, rather than the
/// server refusing the request.
pub(super) fn is_connection_failure(e: &SftpError) -> bool {
    matches!(
        e,
        SftpError::IOError(_)
            | SftpError::BackgroundTaskFailure(_)
            | SftpError::SftpServerFailure(_)
            | SftpError::AwaitableError(_)
            | SftpError::TaskJoinError(_)
            | SftpError::RecursiveErrors(_)
            | SftpError::RecursiveErrors3(_)
            | SftpError::RemoteChildSpawnError(_)
    )
}

/// How the ssh master of `config` starts, reading `ssh_config` (else ssh's own files).
fn builder(config: &SftpConfig, ssh_config: Option<&std::path::Path>) -> SessionBuilder {
    let mut builder = SessionBuilder::default();
    builder
        .known_hosts_check(KnownHosts::Strict)
        .control_directory(&config.control_dir)
        .control_persist(ControlPersist::IdleFor(NonZeroUsize::new(MASTER_IDLE_SECS).expect("not zero")))
        .connect_timeout(config.connect_timeout)
        // A connection that silently died is noticed (then retried) instead of hanging.
        .server_alive_interval(Duration::from_secs(15));
    if let Some(user) = &config.user {
        builder.user(user.clone());
    }
    if let Some(port) = config.port {
        builder.port(port);
    }
    if let Some(key) = &config.key_file {
        builder.keyfile(key);
    }
    if let Some(file) = ssh_config {
        builder.config_file(file);
    }
    builder
}

/// Start an ssh master for `config` and an SFTP session over it.
pub(super) async fn connect(config: &SftpConfig) -> Result<Connection, (ConnectFailure, String)> {
    // With an AES-GCM preference when the CPU has AES instructions (see `cipher`): the check
    // that it changes nothing else runs while the master connects; when it fails, the master
    // is stopped and ssh connects again as configured.
    let session = match super::cipher::Preference::start(config, &config.control_dir) {
        Some(preference) => {
            let session = builder(config, Some(preference.path())).connect(&config.host).await;
            if preference.check().is_some() {
                session
            } else {
                drop(session);
                builder(config, config.ssh_config.as_deref()).connect(&config.host).await
            }
        }
        None => builder(config, config.ssh_config.as_deref()).connect(&config.host).await,
    };
    let session = Arc::new(session.map_err(|e| explain_ssh_failure(e, config))?);
    let sftp = open_sftp(
        Arc::clone(&session),
        SftpOptions::new().tokio_compat_file_write_limit(NonZeroUsize::new(WRITE_LIMIT).expect("not zero")),
    )
    .await
    .map_err(|e| {
        let message = format!(
            "the server did not start an SFTP session ({e}); check that sshd_config has a `Subsystem sftp` line"
        );
        (ConnectFailure::Other, message)
    })?;
    let (hardlink, fsync) = (sftp.support_hardlink(), sftp.support_fsync());
    if !hardlink && sftp.support_posix_rename() {
        // The client library renames with posix-rename whenever the server offers it, and
        // posix-rename replaces an existing object: no create-only publish is possible then.
        return Err((
            ConnectFailure::Other,
            "the server offers posix-rename@openssh.com but not hardlink@openssh.com, so objects cannot be \
             published create-only; use an OpenSSH server (or one with hardlink@openssh.com)"
                .into(),
        ));
    }
    if !fsync {
        tracing::warn!(host = %config.host, "the SFTP server lacks fsync@openssh.com: objects are not synced to its disk");
    }
    Ok(Connection { sftp, hardlink, fsync, syncer: tokio::sync::OnceCell::new(), session })
}

/// Bytes each pipe between the SFTP client and ssh holds. At the default 64 KiB, ssh drains
/// the pipe in a few reads and both sides sleep and wake for every 32 KiB written (17,000
/// context switches for a 204 MB backup on our benchmark machine, against 10,000 with larger
/// pipes, and 10% of its time); OpenSSH's own `sftp` talks to ssh over a socket pair, whose
/// buffers are larger too.
const PIPE_SIZE: usize = 1 << 20;

/// Start the SFTP subsystem over `session`, as `Sftp::from_session` does, but with larger pipes
/// (see [`PIPE_SIZE`]; where the system refuses, they keep their size). The channel's `ssh`
/// process holds a reference to the session until the SFTP server has exited (the client
/// closes its input when the `Sftp` is dropped) or the `Sftp` is dropped; the last reference
/// to go — the [`Connection`]'s, usually — closes the session, which stops the ssh master.
async fn open_sftp(session: Arc<openssh::Session>, options: SftpOptions) -> Result<Sftp, SftpError> {
    let mut child = openssh::Session::to_subsystem(Arc::clone(&session), "sftp")
        .stdin(openssh::Stdio::piped())
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::null())
        .spawn()
        .await?;
    let (Some(stdin), Some(stdout)) = (child.stdin().take(), child.stdout().take()) else {
        return Err(SftpError::IOError(io::Error::other("the ssh channel came without its pipes")));
    };
    for pipe in [stdin.as_fd(), stdout.as_fd()] {
        if let Err(e) = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_SIZE) {
            tracing::debug!(error = %e, "the pipes to ssh keep their size");
        }
    }
    let lifetime = tokio::spawn(async move {
        let _ = child.wait().await;
        if let Ok(session) = Arc::try_unwrap(session) {
            let _ = session.close().await;
        }
    });
    Sftp::new_with_auxiliary(stdin, stdout, options, SftpAuxiliaryData::Boxed(Box::new(AbortOnDrop(lifetime)))).await
}

/// Stops the task waiting on the SFTP channel when the client is gone.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What ssh said when the master connection failed, with what to do about it.
fn explain_ssh_failure(e: openssh::Error, config: &SftpConfig) -> (ConnectFailure, String) {
    let (kind, said) = match &e {
        openssh::Error::Connect(io) if io.kind() == io::ErrorKind::NotFound => {
            return (ConnectFailure::Other, format!("cannot run ssh ({io}); install the OpenSSH client"));
        }
        openssh::Error::Connect(io) => (io.kind(), io.to_string()),
        openssh::Error::Master(io) => {
            return (ConnectFailure::Other, format!("cannot create the ssh control socket directory ({io})"));
        }
        other => (io::ErrorKind::Other, other.to_string()),
    };
    let said = said.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    let lower = said.to_ascii_lowercase();
    let refused_key = match &config.key_file {
        Some(key) => format!(
            "the server refused the key {}: check that its public key is in the server's authorized_keys for this \
             user",
            key.display()
        ),
        None => "the server refused every key offered: load the key into ssh-agent, put it in ~/.ssh, or pass \
                 --ssh-key FILE; and check the user name"
            .to_string(),
    };
    let (failure, hint) = if lower.contains("host key verification failed")
        || lower.contains("host key is known")
        || lower.contains("host identification has changed")
    {
        (
            ConnectFailure::HostKey,
            "the server's host key is not in known_hosts (or differs from it): check its fingerprint, then add it \
             to ~/.ssh/known_hosts (ssh-keyscan prints it)"
                .to_string(),
        )
    } else if kind == io::ErrorKind::PermissionDenied || lower.contains("permission denied") {
        (ConnectFailure::Auth, refused_key)
    } else if kind == io::ErrorKind::ConnectionRefused
        || kind == io::ErrorKind::TimedOut
        || ["connection refused", "timed out", "no route to host", "network is unreachable", "could not resolve"]
            .iter()
            .any(|s| lower.contains(s))
    {
        (ConnectFailure::Unreachable, "check the host name and port, and that the SSH server runs".to_string())
    } else {
        (ConnectFailure::Other, String::new())
    };
    let said = if said.is_empty() { "ssh failed without saying why".to_string() } else { said };
    let message = if hint.is_empty() { format!("ssh: {said}") } else { format!("ssh: {said} ({hint})") };
    (failure, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(key_file: Option<&str>) -> SftpConfig {
        SftpConfig {
            user: None,
            host: "h".into(),
            port: None,
            path: "/v".into(),
            key_file: key_file.map(Into::into),
            ssh_config: None,
            control_dir: std::env::temp_dir(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            assert!(d >= MIN_DELAY && d <= MAX_DELAY, "{attempt}: {d:?}");
        }
        let early: Duration = (0..50).map(|_| backoff(1)).sum();
        assert!(early <= MIN_DELAY * 2 * 50);
    }

    #[test]
    fn ssh_failures_are_explained() {
        let refused = openssh::Error::Connect(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "connect to host 127.0.0.1 port 9: Connection refused",
        ));
        let plain = config(None);
        let (failure, message) = explain_ssh_failure(refused, &plain);
        assert_eq!(failure, ConnectFailure::Unreachable);
        assert!(message.contains("Connection refused") && message.contains("port"), "{message}");
        let host_key = openssh::Error::Connect(io::Error::other(
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\nHost key verification failed.",
        ));
        let (failure, message) = explain_ssh_failure(host_key, &plain);
        assert_eq!(failure, ConnectFailure::HostKey);
        assert!(message.contains("known_hosts"), "{message}");
        let denied = openssh::Error::Connect(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "root@127.0.0.1: Permission denied (publickey).",
        ));
        let (failure, message) = explain_ssh_failure(denied, &plain);
        assert_eq!(failure, ConnectFailure::Auth);
        assert!(message.contains("--ssh-key"), "{message}");
        let denied = openssh::Error::Connect(io::Error::new(io::ErrorKind::PermissionDenied, "Permission denied"));
        let keyed = config(Some("/keys/backup"));
        let (_, message) = explain_ssh_failure(denied, &keyed);
        assert!(message.contains("refused the key /keys/backup"), "{message}");
    }
}
