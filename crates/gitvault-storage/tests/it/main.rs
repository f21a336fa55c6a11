//! The storage conformance suite: every backend must pass every case. Backends are listed in
//! `backends()`: local, S3 (moto) and SFTP (OpenSSH's sshd), the remote ones on 127.0.0.1.

mod check;
mod s3;
mod sftp;

use std::any::Any;
use std::io::{Read, Write};
use std::sync::{Arc, Barrier};

use gitvault_storage::{ErrorKind, LocalStore, Store};

/// Whatever must live as long as a backend's store: its temporary directory, its server.
type Guard = Box<dyn Any>;

fn backends() -> Vec<(Guard, Arc<dyn Store>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path().join("vault"));
    store.create_root().expect("create root");
    let mut all: Vec<(Guard, Arc<dyn Store>)> = vec![(Box::new(dir), Arc::new(store))];
    if let Some((server, store)) = s3::backend() {
        all.push((Box::new(server), Arc::new(store)));
    }
    if let Some((server, store)) = sftp::backend() {
        all.push((Box::new(server), Arc::new(store)));
    }
    all
}

#[test]
fn round_trip_list_stat_delete() {
    for (_dir, s) in backends() {
        s.put_new("config", b"hello").expect("put");
        let mut w = s.create("data/ab/abcd").expect("create");
        w.write_all(b"streamed").expect("write");
        assert_eq!(s.stat("data/ab/abcd").expect("stat"), None, "invisible before commit");
        assert_eq!(w.commit().expect("commit"), 8);
        assert_eq!(s.read("config").expect("read"), b"hello");
        let mut r = String::new();
        s.open_read("data/ab/abcd").expect("open").read_to_string(&mut r).expect("read");
        assert_eq!(r, "streamed");
        let listed = s.list("data/").expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, "data/ab/abcd");
        assert_eq!(listed[0].size, 8);
        assert!(s.list("nothing/").expect("list").is_empty());
        s.delete("data/ab/abcd").expect("delete");
        s.delete("data/ab/abcd").expect("delete twice");
        assert_eq!(s.stat("data/ab/abcd").expect("stat"), None);
        assert_eq!(s.read("missing").expect_err("missing").kind, ErrorKind::NotFound);
    }
}

#[test]
fn refuses_to_overwrite() {
    for (_dir, s) in backends() {
        s.put_new("ledger/1", b"first").expect("put");
        assert_eq!(s.put_new("ledger/1", b"second").expect_err("exists").kind, ErrorKind::AlreadyExists);
        assert_eq!(s.read("ledger/1").expect("read"), b"first");
        let mut w = s.create("ledger/1").expect("create");
        w.write_all(b"third").expect("write");
        assert_eq!(w.commit().expect_err("exists").kind, ErrorKind::AlreadyExists);
        assert_eq!(s.read("ledger/1").expect("read"), b"first");
    }
}

#[test]
fn dropped_writer_leaves_nothing() {
    for (_dir, s) in backends() {
        let mut w = s.create("data/00/dead").expect("create");
        w.write_all(&[7u8; 4096]).expect("write");
        drop(w);
        assert_eq!(s.stat("data/00/dead").expect("stat"), None);
        assert!(s.list("data/").expect("list").is_empty());
        assert!(s.remove_incomplete().expect("cleanup").is_empty(), "the drop already removed it");
    }
}

#[test]
fn large_object_streams() {
    for (_dir, s) in backends() {
        let mut w = s.create("data/big").expect("create");
        let block = vec![0x5au8; 1 << 20];
        for _ in 0..40 {
            w.write_all(&block).expect("write");
        }
        assert_eq!(w.commit().expect("commit"), 40 << 20);
        let mut r = s.open_read("data/big").expect("open");
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = r.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|&b| b == 0x5a));
            total += n as u64;
        }
        assert_eq!(total, 40 << 20);
    }
}

#[test]
fn concurrent_create_only_has_exactly_one_winner() {
    for (_dir, s) in backends() {
        for round in 0..20 {
            let barrier = Arc::new(Barrier::new(4));
            let path = format!("ledger/{round:020}");
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let (s, b, p) = (s.clone(), barrier.clone(), path.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        s.put_new(&p, format!("writer {i}").as_bytes()).is_ok()
                    })
                })
                .collect();
            let wins = handles.into_iter().filter_map(|h| h.join().ok()).filter(|&ok| ok).count();
            assert_eq!(wins, 1, "round {round}");
        }
    }
}

#[test]
fn invalid_paths_are_refused() {
    for (_dir, s) in backends() {
        for p in ["", "/etc/passwd", "../x", "a//b", "a/./b"] {
            assert!(s.put_new(p, b"x").is_err(), "{p:?}");
        }
    }
}

#[test]
fn listing_tells_the_storage_time_and_replace_overwrites() {
    for (_dir, s) in backends() {
        let before = std::time::SystemTime::now() - std::time::Duration::from_secs(300);
        s.put_new("config", b"one").expect("put");
        let listed = s.list("").expect("list");
        let config = listed.iter().find(|o| o.path == "config").expect("listed");
        let modified = config.modified.unwrap_or_else(|| panic!("{}: no modification time", s.describe()));
        // The storage's clock, not ours, but on loopback they agree within minutes.
        assert!(modified > before, "{}: {modified:?}", s.describe());
        s.replace("config", b"two, longer").expect("replace");
        assert_eq!(s.read("config").expect("read"), b"two, longer");
        s.replace("fresh", b"created").expect("replace creates");
        assert_eq!(s.read("fresh").expect("read"), b"created");
        assert_eq!(s.put_new("config", b"x").expect_err("still create-only").kind, ErrorKind::AlreadyExists);
    }
}
