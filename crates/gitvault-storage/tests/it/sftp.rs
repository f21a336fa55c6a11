//! The SFTP backend against a real OpenSSH server: sshd started on a free port of 127.0.0.1 for
//! each test, with its own host key, user key and known_hosts, killed when the test ends.
//!
//! sshd comes from Debian's openssh-server. Without it the SFTP cases fail, so that a machine
//! missing it cannot pass the suite by accident; set `GITVAULT_TEST_NO_SFTP=1` to skip SFTP
//! deliberately.

use std::io::Write;
use std::time::{Duration, Instant};

use gitvault_storage::testing::{Sshd, free_port};
use gitvault_storage::{ErrorKind, SftpConfig, SftpStore, Store};

/// Settings for the vault directory `vault` of `sshd`, trusting it and offering its user key
/// through the server's ssh_config.
fn config(sshd: &Sshd, vault: &str) -> SftpConfig {
    SftpConfig {
        user: Some(sshd.user().into()),
        host: "127.0.0.1".into(),
        port: Some(sshd.port()),
        path: sshd.srv().join(vault).to_str().expect("utf-8").into(),
        key_file: None,
        ssh_config: Some(sshd.ssh_config()),
        control_dir: sshd.dir().into(),
        connect_timeout: Duration::from_secs(10),
    }
}

/// An SFTP store in a fresh sshd, for the conformance suite; `None` when SFTP is skipped.
pub fn backend() -> Option<(Sshd, SftpStore)> {
    let sshd = Sshd::start_unless_skipped()?;
    let store = SftpStore::connect(&config(&sshd, "vault")).unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    Some((sshd, store))
}

#[test]
fn objects_land_under_the_vault_directory_and_temporaries_are_gone() {
    let Some((sshd, s)) = backend() else { return };
    s.put_new("config", b"hello").expect("put");
    let mut w = s.create("data/ab/abcdef").expect("create");
    w.write_all(&vec![9u8; 3 << 20]).expect("write");
    w.commit().expect("commit");
    let root = sshd.srv().join("vault");
    assert_eq!(std::fs::read(root.join("config")).expect("on the server's disk"), b"hello");
    assert_eq!(std::fs::metadata(root.join("data/ab/abcdef")).expect("data").len(), 3 << 20);
    let leftovers: Vec<_> = std::fs::read_dir(root.join("tmp")).expect("tmp").collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_object_being_written_is_only_a_temporary() {
    let Some((sshd, s)) = backend() else { return };
    let mut w = s.create("data/cd/cdef").expect("create");
    w.write_all(&vec![1u8; 2 << 20]).expect("write");
    let root = sshd.srv().join("vault");
    assert!(!root.join("data/cd/cdef").exists(), "nothing under the final name before commit");
    let tmp: Vec<_> = std::fs::read_dir(root.join("tmp")).expect("tmp").flatten().collect();
    assert_eq!(tmp.len(), 1);
    let name = tmp[0].file_name().into_string().expect("utf-8");
    assert!(name.contains(&format!("-{}-", std::process::id())) && name.ends_with(".tmp"), "{name}");
    w.commit().expect("commit");
}

#[test]
fn remove_incomplete_clears_temporaries_of_dead_writers_only() {
    let Some((sshd, s)) = backend() else { return };
    let live = s.create("data/live").expect("create");
    let tmp = sshd.srv().join("vault/tmp");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let host: String = host.trim().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let dead = format!("{host}-{}-000000000000000000000000.tmp", u32::MAX);
    std::fs::write(tmp.join(&dead), b"partial").expect("plant");
    std::fs::write(tmp.join("elsewhere-1-000000000000000000000000.tmp"), b"young").expect("plant");
    let removed = s.remove_incomplete().expect("cleanup");
    assert_eq!(removed, vec![format!("tmp/{dead}")]);
    assert_eq!(std::fs::read_dir(&tmp).expect("tmp").count(), 2, "the live and the foreign young one stay");
    drop(live);
}

#[test]
fn a_lost_connection_is_made_again() {
    let Some((sshd, s)) = backend() else { return };
    s.put_new("a", b"1").expect("put");
    // Stop the ssh master, as a network cut would.
    let masters: Vec<_> = std::fs::read_dir(sshd.dir())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ssh-connection"))
        .map(|e| e.path().join("master"))
        .collect();
    assert_eq!(masters.len(), 1, "{masters:?}");
    let status = std::process::Command::new("ssh")
        .arg("-S")
        .arg(&masters[0])
        .args(["-O", "exit", "none"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("ssh -O exit");
    assert!(status.success());
    assert_eq!(s.read("a").expect("read after reconnecting"), b"1");
    s.put_new("b", b"2").expect("put after reconnecting");
}

/// Connect with `config` and return the error, which must come fast and name the destination.
fn connect_error(config: &SftpConfig) -> String {
    let started = Instant::now();
    let err = SftpStore::connect(config).expect_err("must not connect");
    assert!(started.elapsed() < Duration::from_secs(10), "a permanent failure is not retried: {err}");
    assert!(!err.is_transient(), "{err}");
    let shown = err.to_string();
    assert!(shown.contains(&format!("127.0.0.1:{}", config.port.expect("port"))), "names the destination: {shown}");
    shown
}

#[test]
fn unknown_host_key_is_refused_and_nothing_is_written() {
    let Some(sshd) = Sshd::start_unless_skipped() else { return };
    let untrusting = sshd.write_client_config("untrusting", &sshd.empty_known_hosts(), Some(&sshd.user_key()));
    let shown = connect_error(&SftpConfig { ssh_config: Some(untrusting), ..config(&sshd, "vault") });
    assert!(shown.contains("known_hosts") && shown.contains("Host key verification failed"), "{shown}");
    assert!(!sshd.srv().join("vault").exists());
    assert_eq!(std::fs::read_to_string(sshd.empty_known_hosts()).expect("read"), "", "nothing was added");
}

#[test]
fn a_refused_key_is_permission_denied() {
    let Some(sshd) = Sshd::start_unless_skipped() else { return };
    let keyless = sshd.write_client_config("keyless", &sshd.known_hosts(), None);
    let with_key =
        |key| SftpConfig { key_file: Some(key), ssh_config: Some(keyless.clone()), ..config(&sshd, "vault") };
    SftpStore::connect(&with_key(sshd.user_key())).expect("the right key, given as a key file");
    let shown = connect_error(&with_key(sshd.other_key()));
    assert!(shown.contains("Permission denied") && shown.contains("refused the key"), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

#[test]
fn an_unreachable_port_fails_fast() {
    let Some(sshd) = Sshd::start_unless_skipped() else { return };
    let config = SftpConfig { port: Some(free_port()), ..config(&sshd, "vault") };
    let shown = connect_error(&config);
    assert!(shown.contains("Connection refused"), "{shown}");
}

#[test]
fn missing_vault_directory_reads_as_not_found() {
    let Some((_sshd, s)) = backend() else { return };
    assert_eq!(s.read("config").expect_err("nothing there").kind, ErrorKind::NotFound);
    assert!(s.list("").expect("list of a missing root").is_empty());
}

/// An ssh configuration that gitvault's AES-GCM preference cannot reproduce is used as it
/// is: here a file others may write, which ssh reads when given it with `-F` but refuses to
/// include (so the master started with the preference fails, and so does `ssh -G` with it).
/// The store connects all the same, and no configuration file of gitvault's is left behind.
#[test]
fn an_ssh_configuration_the_cipher_preference_cannot_reproduce_is_used_as_it_is() {
    let Some(sshd) = Sshd::start_unless_skipped() else { return };
    let loose = sshd.dir().join("loose_ssh_config");
    std::fs::copy(sshd.ssh_config(), &loose).expect("copy");
    let mut perms = std::fs::metadata(&loose).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o666);
    std::fs::set_permissions(&loose, perms).expect("chmod");
    let store = SftpStore::connect(&SftpConfig { ssh_config: Some(loose), ..config(&sshd, "vault") })
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    store.put_new("x", b"written").expect("put");
    assert_eq!(store.read("x").expect("read"), b"written");
    drop(store);
    let wrappers: Vec<_> = std::fs::read_dir(sshd.dir())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("gitvault-ssh-"))
        .collect();
    assert!(wrappers.is_empty(), "{wrappers:?}");
}

/// A store dropped just after a file was read (the file's close still travelling to the
/// server) ends its session without a panic, and its ssh master exits.
#[test]
fn a_store_dropped_right_after_a_read_ends_its_session_cleanly() {
    let Some((sshd, s)) = backend() else { return };
    s.put_new("big", &vec![5u8; 3 << 20]).expect("put");
    drop(s);
    let masters = || {
        std::fs::read_dir(sshd.dir())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".ssh-connection"))
            .filter(|e| e.path().join("master").exists())
            .count()
    };
    for round in 0..15 {
        let store = SftpStore::connect(&config(&sshd, "vault")).expect("connect");
        let mut reader = store.open_read("big").expect("open");
        let mut head = vec![0u8; 1 << 20];
        std::io::Read::read_exact(&mut reader, &mut head).expect("read");
        drop(reader);
        drop(store);
        assert_eq!(masters(), 0, "round {round}: the ssh master exited with the store");
    }
}

/// `len` bytes that differ from one MiB to the next (so a misplaced piece would show).
fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i / 4099 + i % 251) as u8).collect()
}

/// How many SFTP sessions the server started, from its log.
fn sessions_started(sshd: &Sshd) -> usize {
    sshd.log().matches("Starting session: subsystem 'sftp'").count()
}

/// Write `content` into `name` in pieces of a sealed chunk's size (1 MiB and a 16-byte tag), as
/// the vault does.
fn write_in_pieces(s: &SftpStore, name: &str, content: &[u8]) {
    let mut w = s.create(name).expect("create");
    for piece in content.chunks((1 << 20) + 16) {
        w.write_all(piece).expect("write");
    }
    assert_eq!(w.commit().expect("commit"), content.len() as u64);
}

#[test]
fn a_large_object_is_synced_through_a_second_session_while_it_is_written() {
    let Some((sshd, s)) = backend() else { return };
    write_in_pieces(&s, "data/sm/small", &patterned(5 << 20));
    assert_eq!((s.early_syncs(), sessions_started(&sshd)), (0, 1), "a small object is synced at its commit only");

    let content = patterned(100 << 20);
    write_in_pieces(&s, "data/la/large", &content);
    assert_eq!(s.read("data/la/large").expect("read back"), content);
    // An early sync every 32 MiB sent, each once the previous is done; the commit waits for the
    // last one (how many there are depends on the disk's speed against the link's).
    assert!(s.early_syncs() >= 1, "{}", s.early_syncs());
    assert_eq!(sessions_started(&sshd), 2, "one more session, opened once:\n{}", sshd.log());
    let before = s.early_syncs();
    write_in_pieces(&s, "data/la/larger", &content);
    assert!(s.early_syncs() > before, "{} then {}", before, s.early_syncs());
    assert_eq!(sessions_started(&sshd), 2, "the second session is kept for the next object");
    let leftovers: Vec<_> = std::fs::read_dir(sshd.srv().join("vault/tmp")).expect("tmp").collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_server_allowing_one_session_gets_large_objects_synced_at_their_commit() {
    let Some(sshd) = Sshd::start_unless_skipped_with_max_sessions(1) else { return };
    let s = SftpStore::connect(&config(&sshd, "vault")).unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    let content = patterned(80 << 20);
    write_in_pieces(&s, "data/la/large", &content);
    assert_eq!(s.read("data/la/large").expect("read back"), content);
    assert_eq!(s.early_syncs(), 0);
    assert_eq!(sessions_started(&sshd), 1, "{}", sshd.log());
}
