//! Where passphrases come from: the environment, a file, or a prompt — never a flag value.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use gitvault_format::keys::Passphrase;

use crate::UsageError;

pub const PASSWORD_ENV: &str = "GITVAULT_PASSWORD";
pub const NEW_PASSWORD_ENV: &str = "GITVAULT_NEW_PASSWORD";
/// The passphrase of the vault `copy` writes into, when it differs from the source's.
pub const TO_PASSWORD_ENV: &str = "GITVAULT_TO_PASSWORD";

/// The first line of a passphrase file.
pub fn passphrase_file(path: &Path) -> Result<Passphrase> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the passphrase file {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        bail!("the passphrase file {} is empty", path.display());
    }
    Ok(Passphrase::new(line))
}

fn prompt(label: &str, confirm: bool) -> Result<Passphrase> {
    let first = rpassword::prompt_password(format!("{label}: ")).context("reading the passphrase from the terminal")?;
    if first.is_empty() {
        bail!("an empty passphrase is not allowed");
    }
    if confirm {
        let again = rpassword::prompt_password("repeat it: ").context("reading the passphrase from the terminal")?;
        if again != first {
            bail!("the two passphrases differ");
        }
    }
    Ok(Passphrase::new(first))
}

/// The vault passphrase. `confirm` asks twice at a prompt (for a new vault).
pub fn passphrase(env_value: Option<String>, file: Option<&Path>, confirm: bool) -> Result<Passphrase> {
    if let Some(p) = env_value.filter(|p| !p.is_empty()) {
        return Ok(Passphrase::new(p));
    }
    if let Some(f) = file {
        return passphrase_file(f);
    }
    if std::io::stdin().is_terminal() {
        return prompt("vault passphrase", confirm);
    }
    Err(UsageError(format!(
        "no passphrase: set {PASSWORD_ENV}, pass --password-file FILE, or run on a terminal to be asked"
    ))
    .into())
}

/// A second passphrase, for `key add`.
pub fn new_passphrase(env_value: Option<String>, file: Option<&Path>) -> Result<Passphrase> {
    if let Some(p) = env_value.filter(|p| !p.is_empty()) {
        return Ok(Passphrase::new(p));
    }
    if let Some(f) = file {
        return passphrase_file(f);
    }
    if std::io::stdin().is_terminal() {
        return prompt("new passphrase", true);
    }
    Err(UsageError(format!(
        "no new passphrase: set {NEW_PASSWORD_ENV}, pass --new-password-file FILE, or run on a terminal to be asked"
    ))
    .into())
}
