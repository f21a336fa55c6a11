//! Running the git program: one place that decides the environment, the working directory,
//! how input is fed and how failures are reported.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::Error;
use crate::source::{is_ssh_url, redact_text};

/// Variables that tell git where the repository is. A caller running inside a git hook or an
/// alias has some of them set; inherited, they would make every command below act on the
/// caller's repository instead of the one we name.
const REPOSITORY_VARIABLES: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
    "GIT_CEILING_DIRECTORIES",
    "GIT_SHALLOW_FILE",
];

/// Longest stderr kept in an error; fsck on a damaged repository can print megabytes.
const MAX_STDERR: usize = 8 * 1024;

/// The ssh command used when the user configured none: never ask for a password or a host key
/// confirmation on the terminal, fail instead.
const BATCH_SSH: &str = "ssh -o BatchMode=yes";

/// How to run git: which program, and which extra environment variables to give it (for
/// example `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0` carrying an
/// `http.extraHeader` for authentication).
///
/// The user's own git configuration is kept on purpose: people rely on credential helpers and
/// `url.<base>.insteadOf`.
#[derive(Clone)]
pub struct Git {
    program: PathBuf,
    envs: Vec<(OsString, OsString)>,
    /// Configuration for every command, given as `GIT_CONFIG_COUNT`/`KEY_n`/`VALUE_n` (so that
    /// the subprocesses git starts, such as git-lfs, see it too). Values may be secrets.
    configs: Vec<(String, String)>,
}

impl Git {
    /// Runs `git` found on `PATH`.
    pub fn new() -> Self {
        Self::with_program("git")
    }

    /// Runs the given git executable.
    pub fn with_program(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into(), envs: Vec::new(), configs: Vec::new() }
    }

    /// Adds an environment variable to every git command. Values may be secrets: they are never
    /// logged nor shown by `Debug`.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Adds a configuration entry to every command, through the environment (never a file,
    /// never the command line). Values may be secrets: they are never logged.
    #[must_use]
    pub fn with_config(&self, key: impl Into<String>, value: impl Into<String>) -> Git {
        let mut git = self.clone();
        git.configs.push((key.into(), value.into()));
        git
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Starts building a git command that runs inside `repo` (or nowhere in particular).
    pub(crate) fn cmd<'a>(&'a self, repo: Option<&'a Path>) -> Invocation<'a> {
        Invocation {
            git: self,
            repo,
            args: Vec::new(),
            envs: Vec::new(),
            path_envs: Vec::new(),
            input: None,
            remote: None,
            background: false,
        }
    }

    fn has_env(&self, key: &str) -> bool {
        self.envs.iter().any(|(k, _)| k == key)
    }

    #[cfg(test)]
    pub(crate) fn config_keys(&self) -> Vec<&str> {
        self.configs.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// Whether ssh may need `BatchMode` forced: only when the user chose no ssh command of
    /// their own, because theirs may already handle prompts (or need them, through an agent).
    fn needs_batch_ssh(&self, repo: Option<&Path>) -> Result<bool, Error> {
        // Reading the environment here is deliberate: git itself would honour these variables,
        // and we only decide not to shadow them.
        if ["GIT_SSH_COMMAND", "GIT_SSH"].iter().any(|key| self.has_env(key) || std::env::var_os(key).is_some()) {
            return Ok(false);
        }
        // GIT_SSH_COMMAND would override core.sshCommand, so look at the config first.
        let configured = self.cmd(repo).args(["config", "--get", "core.sshCommand"]).output()?;
        Ok(!configured.status.success())
    }
}

impl Default for Git {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Git {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are left out: they carry tokens.
        let keys: Vec<_> = self.envs.iter().map(|(k, _)| k).collect();
        let config_keys: Vec<_> = self.configs.iter().map(|(k, _)| k).collect();
        f.debug_struct("Git")
            .field("program", &self.program)
            .field("env_keys", &keys)
            .field("config_keys", &config_keys)
            .finish()
    }
}

/// A git command being built.
pub(crate) struct Invocation<'a> {
    git: &'a Git,
    repo: Option<&'a Path>,
    args: Vec<OsString>,
    envs: Vec<(&'static str, &'static str)>,
    path_envs: Vec<(&'static str, OsString)>,
    input: Option<Vec<u8>>,
    remote: Option<&'a str>,
    /// Run at a low CPU priority (see [`Invocation::background`]).
    background: bool,
}

/// A finished git command, successful or not.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    /// Trimmed, shortened, redacted.
    pub(crate) stderr: String,
    /// The redacted command line, for errors.
    pub(crate) command: String,
}

impl<'a> Invocation<'a> {
    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable for this command only; the caller's extra variables still win.
    pub(crate) fn env(mut self, key: &'static str, value: &'static str) -> Self {
        self.envs.push((key, value));
        self
    }

    /// An environment variable with a computed value, for this command only.
    pub(crate) fn env_owned(mut self, key: &'static str, value: &str) -> Self {
        self.path_envs.push((key, OsString::from(value)));
        self
    }

    /// An environment variable holding a path, for this command only.
    pub(crate) fn env_path(mut self, key: &'static str, value: &Path) -> Self {
        self.path_envs.push((key, value.as_os_str().to_owned()));
        self
    }

    /// Starts the command with stdin, stdout and stderr piped, for callers that stream; returns
    /// the child and the redacted command line for errors. The caller must drain the pipes.
    pub(crate) fn spawn(self) -> Result<(std::process::Child, String), Error> {
        let command = self.describe();
        let mut cmd = Command::new(&self.git.program);
        self.prepare(&mut cmd)?;
        cmd.args(&self.args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        tracing::debug!(command = %command, repo = ?self.repo, "running git");
        let child = cmd.spawn().map_err(|source| Error::Spawn { program: self.git.program.clone(), source })?;
        Ok((child, command))
    }

    /// Run git at the lowest CPU priority (nice 19): work that runs beside the pack being
    /// stored and is not needed before it is, so that on a busy machine it takes what the
    /// storing leaves idle instead of slowing it down.
    pub(crate) fn background(mut self) -> Self {
        self.background = true;
        self
    }

    /// Bytes fed to git's stdin; without input, stdin is closed so git can never wait on it.
    pub(crate) fn input(mut self, input: Vec<u8>) -> Self {
        self.input = Some(input);
        self
    }

    /// Marks the command as talking to `url`, so ssh is kept from prompting.
    pub(crate) fn remote(mut self, url: &'a str) -> Self {
        self.remote = Some(url);
        self
    }

    /// Runs the command and insists on success. Returns stdout.
    pub(crate) fn run(self) -> Result<Vec<u8>, Error> {
        let repo = self.repo.map(Path::to_path_buf);
        let finished = self.output()?;
        if finished.status.success() { Ok(finished.stdout) } else { Err(finished.into_error(repo)) }
    }

    /// Runs the command and returns stdout as text, without the final newline.
    pub(crate) fn run_text(self) -> Result<String, Error> {
        let stdout = self.run()?;
        let text = String::from_utf8(stdout).map_err(|e| Error::Parse {
            what: "UTF-8 output",
            line: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })?;
        Ok(text.trim_end_matches(['\n', '\r']).to_owned())
    }

    /// Runs the command and returns whatever happened; only failing to start git is an error.
    pub(crate) fn output(self) -> Result<Finished, Error> {
        let command = self.describe();
        let mut cmd = Command::new(&self.git.program);
        self.prepare(&mut cmd)?;
        cmd.args(&self.args).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(if self.input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        tracing::debug!(command = %command, repo = ?self.repo, "running git");

        let spawn_error = |source| Error::Spawn { program: self.git.program.clone(), source };
        let mut child = cmd.spawn().map_err(spawn_error)?;
        if self.background
            && let Err(e) = rustix::process::setpriority_process(Some(rustix::process::Pid::from_child(&child)), 19)
        {
            tracing::debug!(error = %e, "git runs at the normal priority");
        }
        let (output, written) = match (child.stdin.take(), self.input.as_deref()) {
            // Input is written from a second thread while this one drains stdout and stderr:
            // with both pipes full, git and we would otherwise wait on each other forever.
            (Some(mut stdin), Some(input)) => std::thread::scope(|scope| {
                let writer = scope.spawn(move || stdin.write_all(input));
                let output = child.wait_with_output();
                let written = writer.join().unwrap_or_else(|_| Err(std::io::Error::other("stdin writer panicked")));
                (output, written)
            }),
            _ => (child.wait_with_output(), Ok(())),
        };
        let output = output.map_err(spawn_error)?;
        // A write error only matters when git claims success: a git that failed early closes
        // its stdin, and its own error message is the one worth reporting.
        if let Err(source) = written
            && output.status.success()
        {
            return Err(Error::Io { path: self.git.program.clone(), source });
        }
        Ok(Finished { status: output.status, stdout: output.stdout, stderr: clean_stderr(&output.stderr), command })
    }

    fn prepare(&self, cmd: &mut Command) -> Result<(), Error> {
        for key in REPOSITORY_VARIABLES {
            cmd.env_remove(key);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            // Replace refs change what a walk sees; packing through them would leave out the
            // replaced objects' real history and produce a pack that does not restore.
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            // A partial clone would otherwise fetch missing objects from its promisor remote
            // in the middle of a backup, silently and with the user's credentials.
            .env("GIT_NO_LAZY_FETCH", "1");
        if let Some(url) = self.remote
            && is_ssh_url(url)
            && self.git.needs_batch_ssh(self.repo)?
        {
            cmd.env("GIT_SSH_COMMAND", BATCH_SSH);
        }
        if let Some(repo) = self.repo {
            let dir = std::fs::canonicalize(repo).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    Error::NotFound { path: repo.to_path_buf() }
                } else {
                    Error::io(repo, source)
                }
            })?;
            // Without a ceiling, a directory that is not a repository but sits inside one
            // (a stray folder in a work tree) would silently resolve to the enclosing
            // repository.
            if let Some(parent) = dir.parent() {
                cmd.env("GIT_CEILING_DIRECTORIES", parent);
            }
            // A backup user reads repositories owned by others (a git server's, say), which git
            // refuses as "dubious ownership" unless told the directory is trusted. Naming a
            // repository to back up is that trust; none of the commands run here executes
            // anything a repository's own config could name. Command-line config counts as
            // protected configuration, where git honours safe.directory.
            cmd.arg("-c").arg(format!("safe.directory={}", dir.display()));
            if dir.file_name().is_some_and(|n| n == ".git")
                && let Some(work_tree) = dir.parent()
            {
                cmd.arg("-c").arg(format!("safe.directory={}", work_tree.display()));
            }
            cmd.current_dir(dir);
        }
        if !self.git.configs.is_empty() {
            cmd.env("GIT_CONFIG_COUNT", self.git.configs.len().to_string());
            for (i, (key, value)) in self.git.configs.iter().enumerate() {
                cmd.env(format!("GIT_CONFIG_KEY_{i}"), key).env(format!("GIT_CONFIG_VALUE_{i}"), value);
            }
        }
        cmd.envs(self.envs.iter().copied());
        cmd.envs(self.path_envs.iter().map(|(k, v)| (k, v)));
        cmd.envs(self.git.envs.iter().map(|(k, v)| (k, v)));
        Ok(())
    }

    fn describe(&self) -> String {
        let mut line = String::from("git");
        for arg in &self.args {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        redact_text(&line)
    }
}

impl Finished {
    /// The error for a command that failed; a repository that is not one gets its own variant.
    pub(crate) fn into_error(self, repo: Option<PathBuf>) -> Error {
        match repo {
            Some(path) if self.stderr.contains("not a git repository") => Error::NotARepository { path },
            repo => Error::Command { command: self.command, repo, status: self.status, stderr: self.stderr },
        }
    }
}

/// Everything a child's pipe gives until it closes (read on its own thread, so that git never
/// blocks on a full pipe).
pub(crate) fn read_all(mut pipe: impl Read) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    pipe.read_to_end(&mut v).map(|_| v)
}

/// The error for a streamed command (started with [`Invocation::spawn`]) that failed in `repo`.
pub(crate) fn failed(command: String, repo: &Path, status: ExitStatus, stderr: &[u8]) -> Error {
    Finished { status, stdout: Vec::new(), stderr: clean_stderr(stderr), command }.into_error(Some(repo.to_path_buf()))
}

/// Trims, redacts and shortens git's stderr, keeping both ends: the first lines say what git
/// was doing, the last ones why it died.
pub(crate) fn clean_stderr(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = redact_text(text.trim());
    if text.len() <= MAX_STDERR {
        return text;
    }
    let half = MAX_STDERR / 2;
    let mut head_end = half;
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len() - half;
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!("{}\n[... {} bytes omitted ...]\n{}", &text[..head_end], tail_start - head_end, &text[tail_start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_env_values() {
        let git = Git::new().env("GIT_CONFIG_VALUE_0", "Authorization: Bearer s3cr3t");
        let shown = format!("{git:?}");
        assert!(shown.contains("GIT_CONFIG_VALUE_0"));
        assert!(!shown.contains("s3cr3t"));
    }

    #[test]
    fn long_stderr_keeps_both_ends() {
        let raw = format!("first{}last", "x".repeat(3 * MAX_STDERR));
        let cleaned = clean_stderr(raw.as_bytes());
        assert!(cleaned.starts_with("first"));
        assert!(cleaned.ends_with("last"));
        assert!(cleaned.len() < MAX_STDERR + 100);
    }
}
