//! `[[alert]]` tables: every mistake is reported naming what to fix, and no error shows a secret.

use std::path::Path;

use gitvault_ops::notify::{AlertKind, NotifyError, resolve_alerts};

use crate::{chain, specs};

fn resolve_err(toml_text: &str) -> NotifyError {
    let specs = specs(toml_text);
    specs[0].resolve(Path::new("/nonexistent-config-dir")).expect_err("invalid alert")
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct File {
    alert: Vec<gitvault_ops::notify::AlertSpec>,
}

#[test]
fn unknown_key_is_rejected_by_name() {
    let err =
        toml::from_str::<File>("[[alert]]\nkind = \"webhook\"\nurl = \"https://h.example/x\"\nsecret = \"s3cr3t\"\n")
            .err()
            .expect("unknown key");
    let shown = err.to_string();
    assert!(shown.contains("unknown field `secret`"), "{shown}");
    assert!(shown.contains("line 4"), "{shown}");
    let err = toml::from_str::<File>("[[alert]]\nkind = \"pager\"\n").err().expect("unknown kind");
    assert!(err.to_string().contains("unknown variant `pager`"), "{err}");
    let err = toml::from_str::<File>("[[alert]]\nkind = \"email\"\non = [\"always\"]\n").err().expect("unknown event");
    assert!(err.to_string().contains("unknown variant `always`"), "{err}");
}

#[test]
fn key_of_another_kind_is_rejected_by_name() {
    let err = resolve_err(
        "[[alert]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://h.example/x\"\nsmtp_host = \"mail\"",
    );
    assert_eq!(err.to_string(), r#"alert "hook": `smtp_host` is not allowed with kind = "webhook""#);
    let err = resolve_err("[[alert]]\nkind = \"slack\"\nurl = \"https://h.example/x\"\nsecret_env = \"X\"");
    assert!(matches!(err, NotifyError::KeyNotAllowed { key: "secret_env", kind: AlertKind::Slack, .. }), "{err}");
    let err = resolve_err("[[alert]]\nkind = \"email\"\nurl = \"https://h.example/x\"");
    assert!(matches!(err, NotifyError::KeyNotAllowed { key: "url", .. }), "{err}");
}

#[test]
fn missing_required_key_is_named() {
    let err = resolve_err("[[alert]]\nkind = \"webhook\"");
    assert_eq!(err.to_string(), r#"alert "webhook": `url (or url_env, url_file)` is required with kind = "webhook""#);
    let email = "[[alert]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"smtp.example.com\"\n";
    let err = resolve_err(&format!("{email}to = [\"ops@example.com\"]"));
    assert_eq!(err.to_string(), r#"alert "mail": `from` is required with kind = "email""#);
    let err = resolve_err(&format!("{email}from = \"gv@example.com\""));
    assert!(err.to_string().contains("`to` is required"), "{err}");
    let err = resolve_err(&format!("{email}from = \"gv@example.com\"\nto = []"));
    assert!(err.to_string().contains("`to` is empty"), "{err}");
    let err = resolve_err(&format!("{email}from = \"gv@example.com\"\nto = [\"a@example.com\"]\nusername = \"gv\""));
    assert!(err.to_string().contains("password_env or password_file"), "{err}");
}

#[test]
fn bad_url_is_reported_without_showing_it() {
    for (url, expected) in [
        ("not a url/T0/SECRETPATH", "`url` is not a valid URL"),
        ("ftp://h.example/T0/SECRETPATH", "must start with https:// or http://, not ftp://"),
    ] {
        let err = resolve_err(&format!("[[alert]]\nkind = \"webhook\"\nurl = \"{url}\""));
        let shown = format!("{} | {err:?}", chain(&err));
        assert!(shown.contains(expected), "{url}: {shown}");
        assert!(!shown.contains("SECRETPATH"), "{shown}");
    }
    // A Slack URL is a credential: not over plain HTTP, except to this machine.
    let err = resolve_err("[[alert]]\nkind = \"slack\"\nurl = \"http://hooks.slack.example/services/SECRETPATH\"");
    assert!(err.to_string().contains("must be https://"), "{err}");
    assert!(!format!("{err:?}").contains("SECRETPATH"));
}

#[test]
fn missing_env_var_is_named_and_values_never_shown() {
    let err = resolve_err(
        "[[alert]]\nkind = \"webhook\"\nurl = \"https://h.example/x\"\nsecret_env = \"GITVAULT_TEST_UNSET_SECRET_7F3A\"",
    );
    assert_eq!(
        err.to_string(),
        r#"alert "webhook": environment variable GITVAULT_TEST_UNSET_SECRET_7F3A (named by `secret_env`) is not set"#
    );
    // A variable that is set resolves; its value (PATH's, here) shows nowhere.
    let path = std::env::var("PATH").expect("PATH is set");
    let t = specs("[[alert]]\nkind = \"slack\"\nurl_env = \"PATH\"")[0].resolve(Path::new("/")).err();
    let shown = format!("{t:?}");
    assert!(!shown.contains(&path), "{shown}");
    let email = "[[alert]]\nkind = \"email\"\nsmtp_host = \"smtp.example.com\"\nfrom = \"gv@example.com\"\nto = [\"ops@example.com\"]\nusername = \"gv\"\npassword_env = \"PATH\"";
    let t = specs(email)[0].resolve(Path::new("/")).expect("email alert");
    assert!(!format!("{t:?} {t}").contains(&path), "{t:?}");
    assert_eq!(t.describe(), "email (email smtp://smtp.example.com:587 starttls)");
}

#[test]
fn secret_files_are_read_relative_to_the_config_and_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = "[[alert]]\nkind = \"webhook\"\nurl = \"https://h.example/x\"\nsecret_file = \"secrets/hook\"";
    let err = specs(spec)[0].resolve(dir.path()).expect_err("no file yet");
    let shown = chain(&err);
    assert!(shown.contains(&format!("cannot read {}", dir.path().join("secrets/hook").display())), "{shown}");
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(dir.path().join("secrets/hook"), "\n").expect("write");
    let err = specs(spec)[0].resolve(dir.path()).expect_err("empty secret");
    assert!(err.to_string().contains("is empty"), "{err}");
    std::fs::write(dir.path().join("secrets/hook"), "s3cr3t\n").expect("write");
    let t = specs(spec)[0].resolve(dir.path()).expect("resolves");
    assert!(!format!("{t:?}").contains("s3cr3t"));
}

#[test]
fn conflicting_and_unsafe_settings_are_refused() {
    let err = resolve_err(
        "[[alert]]\nkind = \"webhook\"\nurl = \"https://h.example/x\"\nsecret_env = \"A\"\nsecret_file = \"b\"",
    );
    assert!(err.to_string().contains("give only one of secret_env or secret_file"), "{err}");
    let err = resolve_err("[[alert]]\nkind = \"slack\"\nurl = \"https://h.example/x\"\nurl_env = \"A\"");
    assert!(err.to_string().contains("give only one of url, url_env or url_file"), "{err}");
    let email =
        "[[alert]]\nkind = \"email\"\nfrom = \"gv@example.com\"\nto = [\"ops@example.com\"]\nsecurity = \"none\"\n";
    let err = resolve_err(&format!("{email}smtp_host = \"smtp.example.com\""));
    assert!(err.to_string().contains("only allowed for a server on this machine"), "{err}");
    let t = specs(&format!("{email}smtp_host = \"127.0.0.1\""))[0].resolve(Path::new("/")).expect("local");
    assert_eq!(t.describe(), "email (email smtp://127.0.0.1:25 none)");
    let err = resolve_err(
        "[[alert]]\nkind = \"email\"\nsmtp_host = \"smtp.example.com\"\nfrom = \"not an address\"\nto = [\"ops@example.com\"]",
    );
    assert!(err.to_string().contains(r#"`from` "not an address" is not an e-mail address"#), "{err}");
    let err = resolve_err("[[alert]]\nkind = \"webhook\"\nurl = \"https://h.example/x\"\non = []");
    assert!(err.to_string().contains("`on` is empty"), "{err}");
    let err = resolve_err("[[alert]]\nkind = \"webhook\"\nurl = \"https://h.example/x\"\nca_file = \"ca.pem\"");
    assert!(chain(&err).contains("cannot read /nonexistent-config-dir/ca.pem (named by `ca_file`)"), "{}", chain(&err));
}

#[test]
fn bad_ca_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").expect("write");
    for kind in [
        "kind = \"webhook\"\nurl = \"https://h.example/x\"",
        "kind = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\"]",
    ] {
        let err =
            specs(&format!("[[alert]]\n{kind}\nca_file = \"ca.pem\""))[0].resolve(dir.path()).expect_err("bad CA");
        assert!(err.to_string().contains("holds no usable PEM certificate"), "{err}");
    }
}

#[test]
fn resolve_alerts_names_unnamed_alerts_and_keeps_the_good_ones() {
    let specs = specs(
        r#"
        [[alert]]
        kind = "webhook"
        url = "https://h.example/a"
        [[alert]]
        kind = "webhook"
        [[alert]]
        name = "chat"
        kind = "teams"
        url = "https://h.example/b"
        [[alert]]
        name = "chat"
        kind = "slack"
        url = "https://h.example/c"
        "#,
    );
    let (targets, errors) = resolve_alerts(&specs, Path::new("/"));
    let names: Vec<_> = targets.iter().map(|t| t.describe()).collect();
    assert_eq!(names, ["webhook-1 (webhook https://h.example:443)", "chat (teams https://h.example:443)"]);
    let errors: Vec<_> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with(r#"alert "webhook-2": `url"#), "{errors:?}");
    assert!(errors[1].contains(r#"two alerts are named "chat""#), "{errors:?}");
}
