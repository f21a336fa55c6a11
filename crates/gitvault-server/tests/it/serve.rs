use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gitvault_ops::catalog::{Catalog, Role};
use gitvault_ops::token;
use gitvault_server::{AppState, ServeOptions, ServerError, TlsFiles};

use crate::{FakeControl, Server, World};

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files into `dir`.
fn self_signed(dir: &Path) -> (TlsFiles, Vec<u8>) {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("self-signed certificate");
    let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.cert, key.cert.pem()).expect("write cert");
    std::fs::write(&files.key, key.signing_key.serialize_pem()).expect("write key");
    (files, key.cert.pem().into_bytes())
}

fn bind_error(options: ServeOptions) -> ServerError {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    match runtime.block_on(gitvault_server::bind(&options)) {
        Ok(bound) => panic!("bound {} when it should not have", bound.local_addr()),
        Err(e) => e,
    }
}

#[test]
fn tls_serves_with_the_configured_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (files, cert_pem) = self_signed(dir.path());
    let catalog = Arc::new(Catalog::open(&dir.path().join("c.db")).expect("catalog"));
    let (secret, hash) = token::generate();
    catalog.create_token("ops", Role::Operator, &hash, "test").expect("token");
    let state = AppState::new(catalog, Arc::new(FakeControl::default()));
    let (server, addr) = Server::start(state, Some(files));

    let client = reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&cert_pem).expect("certificate")])
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let health = client.get(format!("https://{addr}/healthz")).send().expect("TLS request");
    assert_eq!(health.status().as_u16(), 200);
    let status = client.get(format!("https://{addr}/api/v1/status")).bearer_auth(&secret).send().expect("request");
    assert_eq!(status.status().as_u16(), 200);
    let status = client.get(format!("https://{addr}/api/v1/status")).send().expect("request");
    assert_eq!(status.status().as_u16(), 401);

    // Plain HTTP to the TLS port gets no answer; a client that does not trust the certificate
    // refuses it.
    let plain = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
    assert!(plain.get(format!("http://{addr}/healthz")).send().is_err());
    assert!(plain.get(format!("https://{addr}/healthz")).send().is_err());

    server.stop().expect("stops cleanly");
}

#[test]
fn unreadable_or_invalid_certificate_files_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (good, _) = self_signed(dir.path());
    let listen = "127.0.0.1:0".parse().expect("addr");
    let with = |cert: PathBuf, key: PathBuf| ServeOptions { listen, tls: Some(TlsFiles { cert, key }) };

    let missing = dir.path().join("nope.pem");
    let err = bind_error(with(missing.clone(), good.key.clone()));
    assert!(matches!(&err, ServerError::ReadPem { what: "certificate", path, .. } if *path == missing), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").expect("write");
    let err = bind_error(with(garbage.clone(), good.key.clone()));
    assert!(matches!(&err, ServerError::BadPem { what: "certificate", .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.pem"), "{err}");
    let err = bind_error(with(good.cert.clone(), garbage));
    assert!(matches!(&err, ServerError::BadPem { what: "key", .. }), "{err:?}");

    // A key that is not the certificate's.
    let other = tempfile::tempdir().expect("temp dir");
    let (stranger, _) = self_signed(other.path());
    let err = bind_error(with(good.cert.clone(), stranger.key));
    assert!(matches!(&err, ServerError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("do not go together"), "{err}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = bind_error(ServeOptions { listen: addr, tls: None });
    assert!(matches!(&err, ServerError::AddrInUse { addr: a, .. } if *a == addr), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()) && message.contains("in use"), "{message}");
}

#[test]
fn shutdown_stops_the_server_cleanly() {
    let mut w = World::start();
    assert_eq!(w.get("/healthz", None).status().as_u16(), 200);
    w.stop().expect("the server returns Ok after the shutdown signal");
    assert!(std::net::TcpStream::connect(w.addr).is_err(), "nothing listens any more");
}

#[test]
fn default_options_listen_on_localhost_only() {
    let options = ServeOptions::default();
    assert!(options.listen.ip().is_loopback());
    assert_eq!(options.listen.port(), gitvault_server::DEFAULT_PORT);
    assert!(options.tls.is_none());
}
