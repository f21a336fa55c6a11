use crate::{NIGHTLY_RPO, ODD_REPO, World, prom};

#[test]
fn metrics_parse_as_prometheus_text_and_match_the_catalog() {
    let w = World::start();
    let response = w.get("/metrics", Some(&w.auditor));
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().expect("text");
    let m = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    // Every sample belongs to a family with HELP and TYPE.
    for s in &m.samples {
        assert!(m.types.contains_key(&s.name) && m.help.contains_key(&s.name), "{} lacks HELP/TYPE", s.name);
    }
    for (name, kind) in [
        ("gitvault_up", "gauge"),
        ("gitvault_runs_total", "counter"),
        ("gitvault_run_failures_total", "counter"),
        ("gitvault_bytes_added_total", "counter"),
        ("gitvault_repository_rpo_breached", "gauge"),
        ("gitvault_run_last_duration_seconds", "gauge"),
    ] {
        assert_eq!(m.types.get(name).map(String::as_str), Some(kind), "{name}");
    }

    let lib = [("repository", "acme/lib"), ("vault", "main")];
    assert_eq!(m.value("gitvault_up", &[]), Some(1.0));
    assert_eq!(m.value("gitvault_repositories", &[]), Some(4.0));
    assert_eq!(m.value("gitvault_rpo_breaches", &[]), Some(3.0));
    assert_eq!(
        m.value("gitvault_repository_last_success_timestamp_seconds", &lib),
        Some(w.seeded.lib_finished.unix_timestamp() as f64)
    );
    let age = m.value("gitvault_repository_backup_age_seconds", &lib).expect("age");
    assert!((3540.0..3600.0).contains(&age), "{age}");
    assert_eq!(m.value("gitvault_repository_rpo_seconds", &lib), Some(NIGHTLY_RPO.as_secs() as f64));
    let breached = |repo| m.value("gitvault_repository_rpo_breached", &[("repository", repo), ("policy", "nightly")]);
    assert_eq!(breached("acme/app"), Some(1.0), "30 h old, RPO 26 h");
    assert_eq!(breached("acme/lib"), Some(0.0));
    assert_eq!(breached("acme/broken"), Some(1.0), "never backed up");
    assert_eq!(breached(ODD_REPO), Some(1.0), "a name with quotes, backslash and newline survives escaping");
    let failing = |repo| m.value("gitvault_repository_failing", &[("repository", repo)]);
    assert_eq!((failing("acme/broken"), failing("acme/lib")), (Some(1.0), Some(0.0)));
    assert_eq!(m.value("gitvault_repository_last_success_timestamp_seconds", &[("repository", "acme/broken")]), None);

    let runs =
        |outcome| m.value("gitvault_runs_total", &[("policy", "nightly"), ("command", "backup"), ("outcome", outcome)]);
    assert_eq!((runs("ok"), runs("partial"), runs("running")), (Some(1.0), Some(1.0), None));
    assert_eq!(m.value("gitvault_runs_running", &[("policy", "nightly")]), Some(1.0));
    assert_eq!(m.value("gitvault_run_failures_total", &[("policy", "nightly")]), Some(0.0));
    assert_eq!(m.value("gitvault_run_last_duration_seconds", &[("policy", "nightly")]), Some(90.0));
    assert_eq!(m.value("gitvault_bytes_added_total", &[("policy", "nightly")]), Some(w.seeded.bytes_added as f64));
    assert_eq!(m.value("gitvault_policy_running", &[("policy", "nightly")]), Some(0.0));
    assert_eq!(m.value("gitvault_policy_next_run_timestamp_seconds", &[("policy", "broken")]), Some(4e9));
}

#[test]
fn metrics_need_a_token() {
    let w = World::start();
    assert_eq!(w.get("/metrics", None).status().as_u16(), 401);
    assert_eq!(w.get("/metrics", Some(&w.operator)).status().as_u16(), 200);
}
