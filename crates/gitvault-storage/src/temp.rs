//! Temporaries of backends that publish by linking (local, SFTP): where they live, how they are
//! named, and when one counts as abandoned (FORMAT.md §9.1 and §9.3).

use std::path::Path;
use std::time::Duration;

/// Temporaries live here, relative to the vault root, until they are published.
pub(crate) const TMP_DIR: &str = "tmp";
/// A temporary of another host is considered abandoned after this long.
pub(crate) const FOREIGN_TMP_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A fresh temporary's file name, `<host>-<pid>-<24 hex>.tmp`: the writer can be recognised as
/// gone later, by this host (dead pid) or by any other (age).
pub(crate) fn temp_name() -> Result<String, getrandom::Error> {
    let mut rnd = [0u8; 12];
    getrandom::fill(&mut rnd)?;
    Ok(format!("{}-{}-{}.tmp", host_tag(), std::process::id(), hex::encode(rnd)))
}

/// Whether the temporary `name` (its file name) was left by a writer that is gone: one of this
/// host whose process no longer runs, or one of another host older than
/// [`FOREIGN_TMP_MAX_AGE`]. `age` is `None` when it cannot be told, which keeps the file.
pub(crate) fn is_abandoned(name: &str, age: Option<Duration>) -> bool {
    let mut parts = name.splitn(3, '-');
    let (host, pid) = (parts.next().unwrap_or_default(), parts.next().and_then(|p| p.parse::<u32>().ok()));
    if host == host_tag() { pid.is_none_or(|p| !pid_alive(p)) } else { age.is_some_and(|a| a > FOREIGN_TMP_MAX_AGE) }
}

/// Hostname for temporary names (so that a shared NAS or server can tell whose temporaries are
/// whose), with every character other than `[A-Za-z0-9]` replaced by `_`.
fn host_tag() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "host".into());
    host.trim().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_live_temporaries_are_kept_and_dead_or_old_ones_go() {
        let mine = temp_name().expect("random");
        assert!(!is_abandoned(&mine, None), "this process is alive");
        let dead = format!("{}-{}-00.tmp", host_tag(), u32::MAX);
        assert!(is_abandoned(&dead, None));
        let day = Duration::from_secs(24 * 3600);
        assert!(!is_abandoned("otherhost-1-00.tmp", Some(day / 2)));
        assert!(!is_abandoned("otherhost-1-00.tmp", None));
        assert!(is_abandoned("otherhost-1-00.tmp", Some(day * 2)));
    }
}
