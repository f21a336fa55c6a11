//! The SSH transport's cipher. A backup over SFTP moves every byte of the vault through ssh,
//! and on both ends its cipher is then most of the CPU the transfer costs: OpenSSH's default,
//! chacha20-poly1305@openssh.com, runs in software, while AES-GCM (also one of OpenSSH's
//! default ciphers, also an AEAD) runs on the AES and carry-less multiply instructions most
//! CPUs have. On the two cores of our benchmark machine, preferring it made a 204 MB backup
//! 15% faster.
//!
//! So when this machine has those instructions, the ssh master is started with a
//! configuration that moves the two AES-GCM ciphers to the head of the default list
//! (`Ciphers ^...`), after the user's own configuration — ssh keeps the first value it reads
//! for an option, so a `Ciphers` line of the user's wins and nothing changes. The file
//! includes what ssh would read anyway (the `GITVAULT_SSH_CONFIG` file, or `~/.ssh/config`
//! and `/etc/ssh/ssh_config`), and it is only kept when `ssh -G` shows that, for this
//! destination, it yields exactly the configuration ssh would use on its own but for the
//! cipher list. That check runs while the master connects with the file; when it fails, the
//! master is stopped and ssh connects again as configured (host keys are checked strictly
//! either way, so a key is only ever offered to a server known for that name). A server that
//! does not offer AES-GCM negotiates one of the other ciphers, as it would have.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use tempfile::NamedTempFile;

use super::SftpConfig;

/// The ciphers moved to the head of ssh's default list.
const PREFERRED: &str = "aes128-gcm@openssh.com,aes256-gcm@openssh.com";

/// Whether this CPU computes AES-GCM in hardware.
fn has_aes_instructions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The text of the configuration: what ssh reads for `config`, then the preference.
fn wrapper_text(config: &SftpConfig) -> String {
    let mut text = String::from("# Written by gitvault for one ssh master, removed once it runs.\n");
    match &config.ssh_config {
        // `ssh -F FILE` reads that file alone.
        Some(file) => text.push_str(&format!("Include \"{}\"\n", file.display())),
        None => text.push_str("Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n"),
    }
    text.push_str(&format!("Ciphers ^{PREFERRED}\n"));
    text
}

/// `ssh -G` for the destination of `config`, read with `file` (else as ssh reads by default),
/// started: it prints the configuration the master would run with, one `option value` line
/// each.
fn effective(config: &SftpConfig, file: Option<&Path>) -> Option<Child> {
    let mut cmd = Command::new("ssh");
    cmd.arg("-G").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    if let Some(port) = config.port {
        cmd.arg("-p").arg(port.to_string());
    }
    if let Some(user) = &config.user {
        cmd.arg("-l").arg(user);
    }
    if let Some(key) = &config.key_file {
        cmd.arg("-o").arg("IdentitiesOnly=yes").arg("-i").arg(key);
    }
    if let Some(f) = file.or(config.ssh_config.as_deref()) {
        cmd.arg("-F").arg(f);
    }
    // The host was checked not to look like an option.
    cmd.arg(&config.host);
    cmd.spawn().ok()
}

/// What a started `ssh -G` printed, if it succeeded.
fn printed(child: Child) -> Option<String> {
    let out = child.wait_with_output().ok().filter(|o| o.status.success())?;
    String::from_utf8(out.stdout).ok()
}

/// The configuration's lines but the cipher list, and the cipher list.
fn split_ciphers(effective: &str) -> (Vec<&str>, Option<&str>) {
    let mut rest = Vec::new();
    let mut ciphers = None;
    for line in effective.lines() {
        match line.strip_prefix("ciphers ") {
            Some(list) => ciphers = Some(list),
            None => rest.push(line),
        }
    }
    (rest, ciphers)
}

/// A configuration file for the ssh master of `config` that prefers AES-GCM, written in a
/// directory, with the `ssh -G` runs that check it started beside it.
pub(super) struct Preference {
    file: NamedTempFile,
    plain: Option<Child>,
    wrapped: Option<Child>,
}

impl Preference {
    /// `None` (ssh reads its configuration as it would anyway) when this CPU lacks AES
    /// instructions or the file cannot be written.
    pub(super) fn start(config: &SftpConfig, dir: &Path) -> Option<Self> {
        if !has_aes_instructions() {
            return None;
        }
        let mut file = tempfile::Builder::new().prefix("gitvault-ssh-").suffix(".conf").tempfile_in(dir).ok()?;
        file.write_all(wrapper_text(config).as_bytes()).ok()?;
        file.flush().ok()?;
        // Each is a few tens of milliseconds of ssh starting up: they run while ssh connects.
        let (plain, wrapped) = (effective(config, None), effective(config, Some(file.path())));
        Some(Self { file, plain, wrapped })
    }

    pub(super) fn path(&self) -> &Path {
        self.file.path()
    }

    /// The file, when the configuration it yields for `host` is, but for the cipher list,
    /// exactly the one ssh would use on its own, and its cipher list differs (a user's
    /// `Ciphers` line keeps it the same: nothing to gain).
    pub(super) fn check(self) -> Option<NamedTempFile> {
        let (plain, wrapped) = (self.plain.and_then(printed), self.wrapped.and_then(printed));
        let (plain, wrapped) = (plain?, wrapped?);
        let ((plain_rest, plain_ciphers), (wrapped_rest, wrapped_ciphers)) =
            (split_ciphers(&plain), split_ciphers(&wrapped));
        if plain_rest != wrapped_rest {
            tracing::debug!("the ssh configuration could not be reproduced: ssh's default cipher stays");
            return None;
        }
        if plain_ciphers == wrapped_ciphers {
            return None;
        }
        tracing::debug!(ciphers = wrapped_ciphers, "ssh prefers AES-GCM");
        Some(self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_reads_what_ssh_reads_then_the_preference() {
        let mut config = SftpConfig {
            user: None,
            host: "h".into(),
            port: None,
            path: "/v".into(),
            key_file: None,
            ssh_config: None,
            control_dir: std::env::temp_dir(),
            connect_timeout: std::time::Duration::from_secs(5),
        };
        let text = wrapper_text(&config);
        let includes: Vec<&str> = text.lines().filter(|l| l.starts_with("Include")).collect();
        assert_eq!(includes, ["Include ~/.ssh/config", "Include /etc/ssh/ssh_config"]);
        assert!(text.ends_with("Ciphers ^aes128-gcm@openssh.com,aes256-gcm@openssh.com\n"), "{text}");
        config.ssh_config = Some("/etc/my ssh.conf".into());
        let text = wrapper_text(&config);
        let includes: Vec<&str> = text.lines().filter(|l| l.starts_with("Include")).collect();
        assert_eq!(includes, ["Include \"/etc/my ssh.conf\""]);
    }

    /// With the system's `ssh` (it only prints configurations here: nothing connects).
    #[test]
    fn aes_gcm_goes_first_unless_the_configuration_names_its_ciphers() {
        let dir = tempfile::tempdir().expect("dir");
        let config_with = |text: &str| {
            let file = dir.path().join(format!("config-{}", text.len()));
            std::fs::write(&file, text).expect("write");
            SftpConfig {
                user: Some("someone".into()),
                host: "vault.example".into(),
                port: Some(2222),
                path: "/v".into(),
                key_file: None,
                ssh_config: Some(file),
                control_dir: dir.path().to_path_buf(),
                connect_timeout: std::time::Duration::from_secs(5),
            }
        };
        let plain = config_with("Host vault.example\n  ServerAliveCountMax 7\n");
        let chosen = config_with("Host *\n  Ciphers chacha20-poly1305@openssh.com\n  ServerAliveCountMax 7\n");
        let prefer = |config: &SftpConfig| Preference::start(config, dir.path()).and_then(Preference::check);
        assert!(prefer(&chosen).is_none(), "the user's Ciphers line is kept");
        let Some(file) = prefer(&plain) else {
            assert!(!has_aes_instructions(), "this CPU has AES instructions: AES-GCM should go first");
            return;
        };
        let wrapped = printed(effective(&plain, Some(file.path())).expect("ssh -G")).expect("printed");
        let (rest, ciphers) = split_ciphers(&wrapped);
        assert!(ciphers.expect("a cipher list").starts_with(PREFERRED), "{wrapped}");
        // The user's configuration still applies, and so do the destination's settings.
        for line in ["serveralivecountmax 7", "port 2222", "user someone"] {
            assert!(rest.contains(&line), "{line} in {wrapped}");
        }
    }

    #[test]
    fn the_cipher_line_is_told_apart_from_the_rest() {
        let (rest, ciphers) = split_ciphers("user me\nciphers a,b\nport 22\n");
        assert_eq!((rest, ciphers), (vec!["user me", "port 22"], Some("a,b")));
    }
}
