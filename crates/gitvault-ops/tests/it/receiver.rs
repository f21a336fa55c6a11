//! A webhook receiver: an HTTP/1.1 server on 127.0.0.1 that records each request and answers
//! with scripted statuses (200 once the script is used up).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

pub struct Receiver {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    /// Answers the n-th request with `script[n]` (status, body), then 200.
    pub fn start(script: Vec<(u16, &str)>) -> Receiver {
        Self::serve(script, None)
    }

    /// The same over HTTPS, with this certificate chain and key (PEM files).
    pub fn start_tls(script: Vec<(u16, &str)>, cert: &Path, key: &Path) -> Receiver {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).expect("cert file").collect::<Result<_, _>>().expect("certs");
        let key = PrivateKeyDer::from_pem_file(key).expect("key");
        let config =
            rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).expect("config");
        Self::serve(script, Some(Arc::new(config)))
    }

    fn serve(script: Vec<(u16, &str)>, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: VecDeque<(u16, String)> = script.into_iter().map(|(s, b)| (s, b.to_string())).collect();
        let script = Arc::new(Mutex::new(script));
        let recorded = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let mut stream: Box<dyn ReadWrite> = match &tls {
                    None => Box::new(tcp),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(Arc::clone(config)) else { continue };
                        Box::new(rustls::StreamOwned::new(conn, tcp))
                    }
                };
                let Some(request) = read_request(&mut stream) else { continue };
                recorded.lock().expect("lock").push(request);
                let (status, body) = script.lock().expect("lock").pop_front().unwrap_or((200, "ok".into()));
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
                let _ = stream.flush();
            }
        });
        Receiver { port, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

pub fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body })
}
