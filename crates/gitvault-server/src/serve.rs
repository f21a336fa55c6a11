//! Listening: plain HTTP, or HTTPS when a certificate is configured, until a shutdown signal;
//! then connections finish what they are answering and the server returns.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

/// The port `gitvault serve` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8750;

/// A TLS handshake that takes longer than this is dropped, so that a client that connects and
/// says nothing holds nothing but its socket.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to listen.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Default `127.0.0.1:8750`: only this machine can connect.
    pub listen: SocketAddr,
    /// HTTPS with this certificate and key; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)), tls: None }
    }
}

/// A PEM certificate chain (the server's certificate first) and its PEM private key (PKCS#8,
/// PKCS#1 or SEC1).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot listen on {addr}: the address is in use (another `gitvault serve`?): stop the other process \
         or choose another listen address"
    )]
    AddrInUse { addr: SocketAddr, source: io::Error },
    #[error("cannot listen on {addr}: choose another listen address (ports below 1024 need privileges)")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("cannot read the TLS {what} {path}: check the path in the configuration and that gitvault may read it")]
    ReadPem { what: &'static str, path: PathBuf, source: io::Error },
    #[error("the TLS {what} file {path} holds no usable PEM {what}: {reason}")]
    BadPem { what: &'static str, path: PathBuf, reason: String },
    #[error("the TLS certificate {cert} and key {key} do not go together (is the key the certificate's?)")]
    Tls { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("the server stopped")]
    Serve { source: io::Error },
}

/// Listen per `options` and answer with `router` until `shutdown` completes.
pub async fn serve(
    options: ServeOptions,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    bind(&options).await?.run(router, shutdown).await
}

/// Read the certificate (if any) and bind the address: every configuration mistake shows here,
/// before anything is answered. [`Bound::local_addr`] tells the port when `listen` had port 0.
pub async fn bind(options: &ServeOptions) -> Result<Bound, ServerError> {
    let tls = options.tls.as_ref().map(tls_acceptor).transpose()?;
    let addr = options.listen;
    let listener = TcpListener::bind(addr).await.map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => ServerError::AddrInUse { addr, source },
        _ => ServerError::Listen { addr, source },
    })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Listen { addr, source })?;
    Ok(Bound { listener, local_addr, tls })
}

/// A bound socket, not answering yet.
pub struct Bound {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Answer until `shutdown` completes, then let open requests finish.
    pub async fn run(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %self.local_addr, scheme, "serving the API");
        if self.tls.is_none() && !self.local_addr.ip().is_loopback() {
            tracing::warn!(
                addr = %self.local_addr,
                "serving plain HTTP beyond this machine: bearer tokens cross the network in clear; configure a TLS \
                 certificate"
            );
        }
        let served = match self.tls {
            None => axum::serve(self.listener, router).with_graceful_shutdown(shutdown).await,
            Some(acceptor) => {
                let listener = TlsListener::start(self.listener, acceptor, self.local_addr);
                axum::serve(listener, router).with_graceful_shutdown(shutdown).await
            }
        };
        served.map_err(|source| ServerError::Serve { source })
    }
}

fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServerError> {
    let certs = read_pem(&files.cert, "certificate", |bytes| {
        CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>()
    })?;
    if certs.is_empty() {
        return Err(ServerError::BadPem {
            what: "certificate",
            path: files.cert.clone(),
            reason: "no `BEGIN CERTIFICATE` block found".to_string(),
        });
    }
    let key = read_pem(&files.key, "key", PrivateKeyDer::from_pem_slice)?;
    // The provider reqwest already compiles in; named, not picked from process-wide state.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls_error = |source| ServerError::Tls { cert: files.cert.clone(), key: files.key.clone(), source };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_pem<T>(
    path: &Path,
    what: &'static str,
    parse: impl FnOnce(&[u8]) -> Result<T, rustls::pki_types::pem::Error>,
) -> Result<T, ServerError> {
    let bytes =
        std::fs::read(path).map_err(|source| ServerError::ReadPem { what, path: path.to_path_buf(), source })?;
    parse(&bytes).map_err(|e| ServerError::BadPem { what, path: path.to_path_buf(), reason: e.to_string() })
}

/// Accepts TCP connections and hands over those whose TLS handshake succeeded. Each handshake
/// runs in its own task, with a timeout, so a slow client delays no one else.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accepting: AbortHandle,
}

impl TlsListener {
    fn start(listener: TcpListener, acceptor: TlsAcceptor, local_addr: SocketAddr) -> Self {
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        })
        .abort_handle();
        Self { ready, local_addr, accepting }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task loops until this listener drops it, so the channel stays open
            // while anyone waits on it.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
