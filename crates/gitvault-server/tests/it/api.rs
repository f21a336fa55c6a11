use gitvault_server::TriggerRequest;
use serde_json::{Value, json};

use crate::{World, json_of};

/// Every route that needs a token, with its method.
const PROTECTED: [(&str, &str); 7] = [
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/runs/1"),
    ("GET", "/api/v1/snapshots"),
    ("GET", "/api/v1/audit"),
    ("POST", "/api/v1/policies/nightly/run"),
    ("GET", "/metrics"),
];

fn call(w: &World, method: &str, path: &str, token: Option<&str>) -> reqwest::blocking::Response {
    match method {
        "GET" => w.get(path, token),
        _ => w.post(path, token, None),
    }
}

fn audit_rows(w: &World) -> Vec<gitvault_ops::catalog::AuditEntry> {
    w.catalog.audit_entries(None).expect("audit entries")
}

#[test]
fn healthz_answers_without_a_token() {
    let w = World::start();
    let response = w.get("/healthz", None);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(json_of(response), (200, json!({ "status": "ok" })));
}

#[test]
fn every_other_route_refuses_a_missing_malformed_unknown_or_revoked_token() {
    let w = World::start();
    let unknown = "gvt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let cases: [(Option<&str>, &str); 4] = [
        (None, "needs a bearer token"),
        (Some("not-a-gitvault-token"), "not a gitvault API token"),
        (Some(unknown), "unknown or revoked"),
        (Some(&w.revoked), "unknown or revoked"),
    ];
    for (method, path) in PROTECTED {
        for (token, why) in cases {
            let response = call(&w, method, path, token);
            let www = response.headers().get("www-authenticate").map(|v| v.to_str().expect("ascii").to_string());
            assert_eq!(www.as_deref(), Some("Bearer"), "{method} {path}");
            let (status, body) = json_of(response);
            assert_eq!(status, 401, "{method} {path} with {token:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
            let message = body["error"]["message"].as_str().expect("message");
            assert!(message.contains(why), "{message}");
            assert!(message.contains("gitvault token create --role operator|auditor"), "{message}");
            if let Some(token) = token {
                assert!(!body.to_string().contains(token), "the answer repeats the token: {body}");
            }
        }
    }
    // Another scheme is refused the same way.
    let response = w.client.get(format!("{}/api/v1/status", w.base)).basic_auth("ops", Some("x")).send().expect("send");
    assert_eq!(response.status().as_u16(), 401);
    assert!(w.control.triggers().is_empty(), "nothing was triggered");
    assert!(audit_rows(&w).is_empty(), "refused tokens change nothing");
}

#[test]
fn auditor_reads_everything_but_a_trigger_is_forbidden_and_audited() {
    let w = World::start();
    for path in ["/api/v1/status", "/api/v1/runs", "/api/v1/audit", "/api/v1/snapshots"] {
        assert_eq!(json_of(w.get(path, Some(&w.auditor))).0, 200, "{path}");
    }
    assert_eq!(w.get("/metrics", Some(&w.auditor)).status().as_u16(), 200);

    let body = json!({ "repository": "acme/app" });
    let (status, answer) = json_of(w.post("/api/v1/policies/nightly/run", Some(&w.auditor), Some(body)));
    assert_eq!(status, 403);
    assert_eq!(answer["error"]["code"], "forbidden");
    assert!(answer["error"]["message"].as_str().expect("message").contains("operator"), "{answer}");
    assert!(w.control.triggers().is_empty());

    let rows = audit_rows(&w);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].actor.as_str(), rows[0].action.as_str(), rows[0].target.as_str(), rows[0].outcome.as_str()),
        ("token:watcher", "api_trigger", "nightly/acme/app", "denied")
    );
    // The audit trail shows the refusal to the auditor too.
    let (_, listed) = json_of(w.get("/api/v1/audit", Some(&w.auditor)));
    assert_eq!(listed["entries"][0]["outcome"], "denied");
}

#[test]
fn operator_trigger_is_queued_and_audited() {
    let w = World::start();
    let body = json!({ "repository": "acme/app", "type": "full" });
    let (status, answer) = json_of(w.post("/api/v1/policies/nightly/run", Some(&w.operator), Some(body)));
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], true);
    assert_eq!(answer["policy"], "nightly");
    assert_eq!(answer["repository"], "acme/app");
    assert_eq!(answer["type"], "full");
    assert!(answer["queued_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{answer}");
    assert_eq!(
        w.control.triggers(),
        vec![TriggerRequest {
            policy: "nightly".into(),
            repository: Some("acme/app".into()),
            backup_type: Some("full".into()),
            actor: "token:ops".into(),
        }]
    );
    // No body: the whole policy.
    assert_eq!(json_of(w.post("/api/v1/policies/nightly/run", Some(&w.operator), None)).0, 202);
    assert_eq!(w.control.triggers()[1].repository, None);

    let rows = audit_rows(&w);
    let seen: Vec<_> = rows.iter().map(|r| (r.actor.as_str(), r.target.as_str(), r.outcome.as_str())).collect();
    assert_eq!(seen, [("token:ops", "nightly/acme/app", "accepted"), ("token:ops", "nightly", "accepted")]);
    assert!(rows.iter().all(|r| r.action == "api_trigger"));
}

#[test]
fn trigger_failures_answer_their_status_and_are_audited_as_failed() {
    let w = World::start();
    w.control.busy.lock().expect("lock").insert("nightly".into());
    let post = |path: &str, body: Option<Value>| json_of(w.post(path, Some(&w.operator), body));

    let (status, answer) = post("/api/v1/policies/nope/run", None);
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{answer}");
    assert!(answer["error"]["message"].as_str().expect("message").contains("nope"));
    let (status, _) = post("/api/v1/policies/nightly/run", Some(json!({ "repository": "other/x" })));
    assert_eq!(status, 404);
    let (status, answer) = post("/api/v1/policies/nightly/run", None);
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("conflict")), "{answer}");
    *w.control.shutting_down.lock().expect("lock") = true;
    assert_eq!(post("/api/v1/policies/nightly/run", None).0, 503);
    *w.control.shutting_down.lock().expect("lock") = false;

    // An internal failure: logged, answered with a request id and nothing of the cause.
    let response = w.post("/api/v1/policies/broken/run", Some(&w.operator), None);
    let id = response.headers()["x-request-id"].to_str().expect("ascii").to_string();
    let (status, answer) = json_of(response);
    assert_eq!((status, answer["error"]["code"].as_str()), (500, Some("internal")));
    let message = answer["error"]["message"].as_str().expect("message");
    assert_eq!(message, format!("internal error, see the server log (request id {id})"));

    let rows = audit_rows(&w);
    let seen: Vec<_> = rows.iter().map(|r| (r.target.as_str(), r.outcome.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("nope", "failed"),
            ("nightly/other/x", "failed"),
            ("nightly", "failed"),
            ("nightly", "failed"),
            ("broken", "failed")
        ]
    );
    assert!(rows[2].detail.as_deref().is_some_and(|d| d.contains("already")), "{:?}", rows[2]);
    assert!(rows[4].detail.as_deref().is_some_and(|d| d.contains("queue file")), "the audit keeps the cause");
    assert!(w.control.triggers().is_empty());
}

#[test]
fn malformed_trigger_bodies_are_bad_requests_and_trigger_nothing() {
    let w = World::start();
    for body in [json!({ "type": "weekly" }), json!({ "repo": "acme/app" }), json!(["nightly"])] {
        let (status, answer) = json_of(w.post("/api/v1/policies/nightly/run", Some(&w.operator), Some(body.clone())));
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")), "{body}: {answer}");
    }
    let response = w
        .client
        .post(format!("{}/api/v1/policies/nightly/run", w.base))
        .bearer_auth(&w.operator)
        .body("{not json")
        .send()
        .expect("send");
    assert_eq!(json_of(response).0, 400);
    assert!(w.control.triggers().is_empty());
}

#[test]
fn run_detail_includes_its_repositories_and_logs() {
    let w = World::start();
    let (status, detail) = json_of(w.get(&format!("/api/v1/runs/{}", w.seeded.new_run), Some(&w.auditor)));
    assert_eq!(status, 200);
    assert_eq!(detail["run"]["id"], w.seeded.new_run);
    assert_eq!(detail["run"]["outcome"], "partial");
    let repos: Vec<_> = detail["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| (r["repo"].as_str().expect("repo"), r["outcome"].as_str().expect("outcome")))
        .collect();
    assert_eq!(repos, [("acme/lib", "ok"), ("acme/broken", "failed")]);
    assert_eq!(detail["logs"][0]["message"], "fetch failed: connection reset");
    assert_eq!(detail["logs"][0]["repo"], "acme/broken");

    let (status, answer) = json_of(w.get("/api/v1/runs/999999", Some(&w.auditor)));
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")));
    assert_eq!(json_of(w.get("/api/v1/runs/abc", Some(&w.auditor))).0, 400);
}

#[test]
fn runs_are_listed_newest_first_and_filtered() {
    let w = World::start();
    let ids = |body: &Value| -> Vec<i64> {
        body["runs"].as_array().expect("runs").iter().map(|r| r["id"].as_i64().expect("id")).collect()
    };
    let (status, all) = json_of(w.get("/api/v1/runs", Some(&w.operator)));
    assert_eq!(status, 200);
    assert_eq!(ids(&all)[1..], [w.seeded.new_run, w.seeded.old_run], "the running run is newest");
    let (_, one) = json_of(w.get("/api/v1/runs?policy=nightly&limit=1", Some(&w.operator)));
    assert_eq!(ids(&one).len(), 1);
    let since = (time::OffsetDateTime::now_utc() - time::Duration::hours(2))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let (_, recent) = json_of(w.get(&format!("/api/v1/runs?since={since}"), Some(&w.operator)));
    assert!(!ids(&recent).contains(&w.seeded.old_run), "{recent}");
    assert!(ids(&recent).contains(&w.seeded.new_run));
    let (_, none) = json_of(w.get("/api/v1/runs?policy=other", Some(&w.operator)));
    assert_eq!(none, json!({ "runs": [] }));

    for bad in ["since=yesterday", "limit=0", "limit=many", "polcy=nightly"] {
        let (status, answer) = json_of(w.get(&format!("/api/v1/runs?{bad}"), Some(&w.operator)));
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}: {answer}");
    }
}

#[test]
fn status_reports_health_policies_and_a_summary() {
    let w = World::start();
    let (status, body) = json_of(w.get("/api/v1/status", Some(&w.auditor)));
    assert_eq!(status, 200);
    assert_eq!(body["summary"], json!({ "repositories": 4, "rpo_breached": 3, "failing": 1 }), "{body}");
    let repo = |name: &str| {
        body["repositories"].as_array().expect("repositories").iter().find(|r| r["repo"] == name).expect(name).clone()
    };
    assert_eq!(repo("acme/app")["rpo_breached"], true);
    assert_eq!(repo("acme/lib")["rpo_breached"], false);
    assert_eq!(repo("acme/lib")["rpo_seconds"], 26 * 3600);
    assert_eq!(repo("acme/broken")["failing"], true);
    assert_eq!(body["policies"][0]["name"], "nightly");
    assert_eq!(body["policies"][0]["next_run"], "2096-10-02T07:06:40Z");
}

#[test]
fn snapshots_come_from_the_daemon_and_an_unknown_vault_is_not_found() {
    let w = World::start();
    let (status, body) = json_of(w.get("/api/v1/snapshots?vault=main", Some(&w.auditor)));
    assert_eq!(status, 200);
    assert_eq!(body["vaults"][0]["snapshots"][0]["id"], "s1");
    let (status, body) = json_of(w.get("/api/v1/snapshots?vault=elsewhere", Some(&w.auditor)));
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    assert!(body["error"]["message"].as_str().expect("message").contains("elsewhere"));
}

#[test]
fn unknown_routes_and_methods_answer_json_errors() {
    let w = World::start();
    for path in ["/", "/api/v2/status", "/api/v1/nothing"] {
        let (status, body) = json_of(w.get(path, Some(&w.operator)));
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{path}");
    }
    let (status, body) = json_of(w.post("/api/v1/status", Some(&w.operator), None));
    assert_eq!((status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    let (status, _) = json_of(w.get("/api/v1/policies/nightly/run", Some(&w.operator)));
    assert_eq!(status, 405);
}

#[test]
fn token_use_is_recorded() {
    let w = World::start();
    assert_eq!(json_of(w.get("/api/v1/status", Some(&w.auditor))).0, 200);
    let tokens = w.catalog.tokens().expect("tokens");
    let used = |name: &str| tokens.iter().find(|t| t.name == name).expect(name).last_used_at.is_some();
    assert!(used("watcher"));
    assert!(!used("ops"));
}
