//! The API end to end: a real server on 127.0.0.1 (a port the OS picks), a temporary catalog
//! with known rows, a fake daemon that records what it is asked, and a blocking HTTP client.

mod api;
mod metrics;
mod prom;
mod serve;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitvault_ops::catalog::{Catalog, NewRun, Outcome, RepoRun, Role, RunEnd, Trigger};
use gitvault_ops::token;
use gitvault_server::{
    AppState, BoxError, Control, ControlError, PolicyInfo, ServeOptions, TlsFiles, TriggerError, TriggerRequest,
    Triggered,
};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The RPO of policy `nightly`.
pub const NIGHTLY_RPO: Duration = Duration::from_secs(26 * 3600);

/// The daemon, faked: two policies, one of which is always busy; triggers are recorded.
#[derive(Default)]
pub struct FakeControl {
    pub triggers: Mutex<Vec<TriggerRequest>>,
    /// Policies whose trigger answers `AlreadyRunning`.
    pub busy: Mutex<HashSet<String>>,
    pub shutting_down: Mutex<bool>,
}

impl FakeControl {
    pub fn triggers(&self) -> Vec<TriggerRequest> {
        self.triggers.lock().expect("lock").clone()
    }
}

impl Control for FakeControl {
    fn policies(&self) -> Vec<PolicyInfo> {
        let busy = self.busy.lock().expect("lock");
        ["nightly", "broken"]
            .into_iter()
            .map(|name| PolicyInfo {
                name: name.to_string(),
                schedules: vec!["daily at 02:00".to_string()],
                rpo_seconds: (name == "nightly").then_some(NIGHTLY_RPO.as_secs()),
                vaults: vec!["main".to_string()],
                running: busy.contains(name),
                next_run: OffsetDateTime::from_unix_timestamp(4_000_000_000).ok(),
            })
            .collect()
    }

    fn rpo(&self, policy: Option<&str>) -> Option<Duration> {
        (policy == Some("nightly")).then_some(NIGHTLY_RPO)
    }

    fn trigger(&self, request: &TriggerRequest) -> Result<Triggered, TriggerError> {
        if *self.shutting_down.lock().expect("lock") {
            return Err(TriggerError::ShuttingDown);
        }
        match request.policy.as_str() {
            "nightly" => {}
            "broken" => {
                let cause: BoxError = "secret internal detail: queue file /var/x unwritable".into();
                return Err(TriggerError::Other(cause));
            }
            other => return Err(TriggerError::UnknownPolicy(other.to_string())),
        }
        if let Some(repo) = request.repository.as_deref().filter(|r| !r.starts_with("acme/")) {
            return Err(TriggerError::UnknownRepository {
                policy: request.policy.clone(),
                repository: repo.to_string(),
            });
        }
        if self.busy.lock().expect("lock").contains(&request.policy) {
            return Err(TriggerError::AlreadyRunning(request.policy.clone()));
        }
        self.triggers.lock().expect("lock").push(request.clone());
        Ok(Triggered { queued_at: OffsetDateTime::now_utc() })
    }

    fn snapshots(&self, vault: Option<&str>) -> Result<Value, ControlError> {
        match vault {
            None | Some("main") => Ok(json!({ "vaults": [{ "vault": "main", "snapshots": [{ "id": "s1" }] }] })),
            Some(other) => Err(ControlError::UnknownVault(other.to_string())),
        }
    }
}

/// What the catalog was seeded with, for the tests to compare against.
pub struct Seeded {
    /// nightly, 30 h ago, ok: `acme/app` (now older than the RPO) and the oddly named repository.
    pub old_run: i64,
    /// nightly, 1 h ago, partial: `acme/lib` ok, `acme/broken` failed; 90 s long.
    pub new_run: i64,
    /// When `acme/lib` was last backed up.
    pub lib_finished: OffsetDateTime,
    pub bytes_added: u64,
}

/// A repository name with every character the exposition format must escape.
pub const ODD_REPO: &str = "odd/\"quoted\"\\back\nslash";

fn seed(catalog: &Catalog) -> Seeded {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let at = |secs_ago: i64| OffsetDateTime::from_unix_timestamp(now - secs_ago).expect("time");
    let start = |started_at| {
        catalog
            .start_run(&NewRun {
                command: "backup".into(),
                policy: Some("nightly".into()),
                vault: Some("main".into()),
                trigger: Trigger::Schedule,
                actor: "schedule:nightly".into(),
                backup_type: None,
                attempt: 1,
                started_at,
            })
            .expect("start run")
    };
    let repo = |run_id, repo: &str, outcome, bytes_added, finished_at| {
        catalog
            .add_repo(&RepoRun {
                run_id,
                vault: Some("main".into()),
                repo: repo.into(),
                backup_type: Some("full".into()),
                outcome,
                snapshot: outcome.is_good().then(|| format!("snap-{run_id}")),
                refs: 3,
                objects: 10,
                bytes_added,
                requests: 1,
                duration_ms: 1000,
                warnings: vec![],
                error: (!outcome.is_good()).then(|| "fetch failed".to_string()),
                finished_at,
            })
            .expect("add repo")
    };
    let end = |id, outcome, bytes_added, at| {
        let end = RunEnd { outcome: Some(outcome), bytes_added, repositories: 2, ..RunEnd::default() };
        catalog.finish_run(id, &end, at).expect("finish run")
    };

    let old_run = start(at(30 * 3600));
    repo(old_run, "acme/app", Outcome::Ok, 1000, at(30 * 3600 - 5));
    repo(old_run, ODD_REPO, Outcome::Ok, 24, at(30 * 3600 - 6));
    end(old_run, Outcome::Ok, 1024, at(30 * 3600 - 10));

    let new_run = start(at(3600));
    let lib_finished = at(3600 - 60);
    repo(new_run, "acme/lib", Outcome::Ok, 4096, lib_finished);
    repo(new_run, "acme/broken", Outcome::Failed, 0, at(3600 - 61));
    catalog.log(Some(new_run), "warn", Some("acme/broken"), "fetch failed: connection reset").expect("log");
    end(new_run, Outcome::Partial, 4096, at(3600 - 90));

    // A run still going on: counted as running, in no counter.
    start(at(10));
    Seeded { old_run, new_run, lib_finished, bytes_added: 1024 + 4096 }
}

/// A served API over a seeded catalog, with one token of each role and a revoked one.
pub struct World {
    _dir: tempfile::TempDir,
    pub catalog: Arc<Catalog>,
    pub control: Arc<FakeControl>,
    pub seeded: Seeded,
    pub addr: SocketAddr,
    pub base: String,
    pub client: Client,
    pub operator: String,
    pub auditor: String,
    pub revoked: String,
    server: Option<Server>,
}

/// A running server; stopped (gracefully) when dropped.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), gitvault_server::ServerError>>>,
}

impl Server {
    /// Bind 127.0.0.1:0 (with `tls` when given) and serve `state` on a runtime of its own.
    pub fn start(state: AppState, tls: Option<TlsFiles>) -> (Self, SocketAddr) {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
        let options = ServeOptions { listen: "127.0.0.1:0".parse().expect("addr"), tls };
        let bound = runtime.block_on(gitvault_server::bind(&options)).expect("bind");
        let addr = bound.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = gitvault_server::router(state);
        let served = runtime.spawn(bound.run(router, async move {
            let _ = rx.await;
        }));
        (Self { runtime, shutdown: Some(tx), served: Some(served) }, addr)
    }

    /// Signal shutdown and wait for the server to return.
    pub fn stop(mut self) -> Result<(), gitvault_server::ServerError> {
        self.stop_inner().expect("server was running")
    }

    fn stop_inner(&mut self) -> Option<Result<(), gitvault_server::ServerError>> {
        let _ = self.shutdown.take()?.send(());
        let served = self.served.take()?;
        let joined = self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), served).await });
        Some(joined.expect("server stops within 10 s").expect("server task"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

impl World {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog = Arc::new(Catalog::open(&dir.path().join("catalog.db")).expect("catalog"));
        let seeded = seed(&catalog);
        let make_token = |name: &str, role| {
            let (secret, hash) = token::generate();
            catalog.create_token(name, role, &hash, "test").expect("create token");
            secret
        };
        let operator = make_token("ops", Role::Operator);
        let auditor = make_token("watcher", Role::Auditor);
        let revoked = make_token("old", Role::Operator);
        catalog.revoke_token("old").expect("revoke");
        let control = Arc::new(FakeControl::default());
        let state = AppState::new(catalog.clone(), control.clone());
        let (server, addr) = Server::start(state, None);
        let client = Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
        World {
            _dir: dir,
            catalog,
            control,
            seeded,
            addr,
            base: format!("http://{addr}"),
            client,
            operator,
            auditor,
            revoked,
            server: Some(server),
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(self.client.get(format!("{}{path}", self.base)), token)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut request = self.client.post(format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request, token)
    }

    fn send(&self, request: RequestBuilder, token: Option<&str>) -> Response {
        let request = match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        request.send().expect("the server answers")
    }

    /// Stop the server and wait for it to return.
    pub fn stop(&mut self) -> Result<(), gitvault_server::ServerError> {
        self.server.take().expect("server running").stop()
    }
}

/// The status and JSON body of an answer, checking its content type.
pub fn json_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/json", "status {status}");
    (status, response.json().expect("a JSON body"))
}
