//! `gitvault.toml`: one file declares the sources, two vaults, the backup type and the
//! retention; `backup --config` runs it and applies the retention to each vault after each
//! backup; `config check` says what it would do without writing anything.

use crate::common::{PASSWORD, World, commit, new_repo, noise};

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).expect("json")
}

#[test]
fn a_config_file_backs_up_into_two_vaults_and_applies_its_retention() {
    let w = World::new();
    let api = new_repo(&w.path("src/api"));
    let web = new_repo(&w.path("src/web"));
    let pass_file = w.path("b.pass");
    std::fs::write(&pass_file, "another passphrase\n").expect("write");
    let (a, b) = (w.path("vault-a"), w.path("vault-b"));
    for (v, file) in [(&a, None), (&b, Some(&pass_file))] {
        let mut c = w.cmd(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
        c.args(["--vault", v.to_str().expect("utf-8")]).env_remove("GITVAULT_VAULT");
        let c = match file {
            Some(f) => c.env_remove("GITVAULT_PASSWORD").env("GITVAULT_PASSWORD_FILE", f),
            None => &mut c,
        };
        assert!(c.output().expect("init").status.success());
    }
    let config = w.path("etc/gitvault.toml");
    std::fs::create_dir_all(config.parent().expect("dir")).expect("mkdir");
    std::fs::write(
        &config,
        format!(
            r#"
[[vault]]
name = "a"
url = "../vault-a"

[[vault]]
name = "b"
url = "{}"
passphrase_file = "../b.pass"

[[source]]
url = "{}"

[[source]]
url = "{}"
name = "acme/web"

[[policy]]
name = "nightly"
retention = {{ keep_last = 2 }}
"#,
            b.display(),
            api.display(),
            web.display()
        ),
    )
    .expect("write config");
    // No --vault: the config names the vaults (the World's default vault is not used).
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gitvault"));
        c.args(args)
            .env("GITVAULT_PASSWORD", PASSWORD)
            .env("GITVAULT_CACHE_DIR", &w.cache)
            .env("HOME", w.dir.path())
            .env_remove("GITVAULT_VAULT")
            .env_remove("GITVAULT_PASSWORD_FILE");
        c.output().expect("run")
    };
    let cfg = config.to_str().expect("utf-8");
    let check = run(&["config", "check", "--config", cfg, "--json"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let check = json(&check.stdout);
    assert_eq!(check["policies"][0]["sources"].as_array().map(Vec::len), Some(2), "{check}");
    assert!(!a.join("snapshots").exists(), "config check writes nothing");

    for i in 0..3u64 {
        commit(&api, &format!("a{i}"), &noise(i, 2000), "api");
        commit(&web, &format!("w{i}"), &noise(10 + i, 2000), "web");
        let out = run(&["backup", "--config", cfg, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let report = json(&out.stdout);
        let policy = &report["policies"][0];
        assert_eq!(policy["name"], "nightly");
        assert_eq!(policy["destinations"].as_array().map(Vec::len), Some(2), "{report}");
        let forgot: u64 = policy["retention"]
            .as_array()
            .expect("retention")
            .iter()
            .map(|r| r["forget"]["removed"].as_u64().expect("n"))
            .sum();
        assert_eq!(forgot, if i == 2 { 2 } else { 0 }, "round {i}: {report}");
    }
    for (v, pass) in [(&a, PASSWORD), (&b, "another passphrase")] {
        let out = w
            .cmd(&["snapshots", "--json"])
            .args(["--vault", v.to_str().expect("utf-8")])
            .env("GITVAULT_PASSWORD", pass)
            .output()
            .expect("run");
        let snaps = json(&out.stdout);
        assert_eq!(snaps.as_array().map(Vec::len), Some(2), "keep_last = 2 in {}: {snaps}", v.display());
        assert_eq!(snaps[0]["names"], serde_json::json!(["api", "acme/web"]));
    }

    // Mistakes are usage errors that name the line; an unknown policy too.
    std::fs::write(w.path("etc/bad.toml"), "[[vault]]\nname = \"a\"\nurl = \"x\"\ncolour = 1\n").expect("write");
    let bad = run(&["config", "check", "--config", w.path("etc/bad.toml").to_str().expect("utf-8")]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 4"), "{}", String::from_utf8_lossy(&bad.stderr));
    let unknown = run(&["backup", "--config", cfg, "--policy", "weekly"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nightly"));
    let both = run(&["backup", "--config", cfg, "--vault", a.to_str().expect("utf-8")]);
    assert_eq!(both.status.code(), Some(2));
}
