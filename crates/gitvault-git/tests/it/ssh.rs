//! ssh must never prompt: without an ssh command of the user's, `BatchMode=yes` is forced.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gitvault_git::{Error, Git};

use crate::fixture::Sandbox;

/// A fake `ssh` on `PATH` that appends its arguments to `log` and fails.
fn fake_ssh(sb: &Sandbox, name: &str) -> (PathBuf, PathBuf) {
    let bin = sb.path(&format!("{name}-bin"));
    fs::create_dir(&bin).expect("mkdir");
    let log = sb.path(&format!("{name}.log"));
    let script = bin.join(name);
    fs::write(&script, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\nexit 255\n", log.display()))
        .expect("write script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    (bin, log)
}

fn with_path(git: Git, bin: &Path) -> Git {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    git.env("PATH", std::env::join_paths(dirs).expect("join PATH"))
}

#[test]
fn ssh_runs_in_batch_mode_unless_the_user_chose_an_ssh_command() {
    if std::env::var_os("GIT_SSH_COMMAND").is_some() || std::env::var_os("GIT_SSH").is_some() {
        eprintln!("skipped: the environment already chooses an ssh command");
        return;
    }
    let sb = Sandbox::new();
    let url = "ssh://git@example.invalid/acme/api.git";

    let (bin, log) = fake_ssh(&sb, "ssh");
    let err = with_path(sb.git(), &bin).ls_remote(url).expect_err("fake ssh fails");
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    let args = fs::read_to_string(&log).expect("fake ssh ran");
    assert!(args.contains("BatchMode=yes"), "{args}");

    // With core.sshCommand configured, the user's command runs untouched.
    let (own_bin, own_log) = fake_ssh(&sb, "my-ssh");
    fs::write(sb.global_config(), "[core]\n\tsshCommand = my-ssh\n").expect("write config");
    let err = with_path(sb.git(), &own_bin).ls_remote("git@example.invalid:acme/api.git").expect_err("fake ssh fails");
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    let args = fs::read_to_string(&own_log).expect("user's ssh ran");
    assert!(!args.contains("BatchMode"), "{args}");
}
