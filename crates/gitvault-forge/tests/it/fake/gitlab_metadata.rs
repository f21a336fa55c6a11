//! GitLab project metadata on the fake forge: notes that move their item, diff-note threads,
//! release links served as uploads, conditional answers, access to members and protection.

use gitvault_forge::testing::{FakeForge, FakeForgeKind::Gitlab};
use serde_json::{Value, json};

use super::get;

const TOKEN: (&str, &str) = ("PRIVATE-TOKEN", "good");
const DEVELOPER: (&str, &str) = ("PRIVATE-TOKEN", "dev");

fn world(notes: Value) -> Value {
    json!({
        "tokens": {"good": {"login": "alice"}, "dev": {"login": "bob"}},
        "gitlab": {"projects": [{
            "namespace": "acme/sub", "name": "api", "visibility": "private",
            "members": [{"username": "bob", "access_level": 30}],
            "issues": [{"iid": 1, "title": "Crash", "created_at": "2024-01-01T00:00:00Z",
                        "updated_at": "2024-01-01T00:00:00Z", "notes": notes}],
            "merge_requests": [{"iid": 1, "title": "Fix", "diff_notes": [
                {"id": 31, "body": "nit", "new_path": "a.rs", "new_line": 3},
                {"id": 32, "body": "done", "reply_to": 31},
                {"id": 33, "body": "elsewhere", "old_path": "b.rs", "old_line": 7}]}],
            "releases": [{"tag_name": "v1", "links": [
                {"id": 5, "name": "tool.bin", "text": "tool bytes", "filepath": "/bin/tool"},
                {"id": 6, "name": "mirror", "url": "https://elsewhere.example/tool.bin"}]}],
            "protected_branches": [{"name": "main"}],
        }]},
    })
}

fn project(forge: &FakeForge, rest: &str) -> String {
    format!("{}/projects/acme%2Fsub%2Fapi/{rest}", forge.api_url(Gitlab))
}

#[test]
fn gitlab_a_new_note_moves_its_issue_and_changes_the_etag() {
    let forge = FakeForge::start();
    forge.write_world(&world(json!([{"id": 11, "body": "first", "created_at": "2024-01-02T00:00:00Z"}])));
    let first = get(&project(&forge, "issues"), &[TOKEN]);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()[0]["updated_at"], "2024-01-02T00:00:00.000Z", "a note touches its issue");
    assert_eq!(first.header("x-total"), Some("1"));
    let etag = first.header("etag").expect("ETag").to_string();
    assert_eq!(get(&project(&forge, "issues"), &[TOKEN, ("If-None-Match", &etag)]).status, 304);
    forge.write_world(&world(json!([
        {"id": 11, "body": "first", "created_at": "2024-01-02T00:00:00Z"},
        {"id": 12, "body": "second", "system": true, "created_at": "2024-01-03T00:00:00Z"}])));
    let again = get(&project(&forge, "issues"), &[TOKEN, ("If-None-Match", &etag)]);
    assert_eq!(again.status, 200);
    assert_eq!(again.json()[0]["updated_at"], "2024-01-03T00:00:00.000Z");
    let notes = get(&project(&forge, "issues/1/notes?sort=asc"), &[TOKEN]).json();
    assert_eq!(notes.as_array().map(Vec::len), Some(2));
    assert_eq!((notes[1]["system"].clone(), notes[1]["noteable_type"].clone()), (json!(true), json!("Issue")));
}

#[test]
fn gitlab_diff_notes_come_in_threads_with_their_position() {
    let forge = FakeForge::start();
    forge.write_world(&world(json!([])));
    let discussions = get(&project(&forge, "merge_requests/1/discussions"), &[TOKEN]).json();
    let threads: Vec<Vec<u64>> = discussions
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["notes"].as_array().expect("notes").iter().filter_map(|n| n["id"].as_u64()).collect())
        .collect();
    assert_eq!(threads, [vec![31, 32], vec![33]]);
    let first = &discussions[0]["notes"][0];
    assert_eq!(first["type"], "DiffNote");
    assert_eq!(first["position"]["new_line"], 3);
    let mr = get(&project(&forge, "merge_requests/1"), &[TOKEN]).json();
    assert_eq!(first["position"]["head_sha"], mr["diff_refs"]["head_sha"]);
    assert_eq!(discussions[1]["notes"][0]["position"]["old_line"], 7);
    assert_eq!(get(&project(&forge, "merge_requests/1/notes"), &[TOKEN]).json().as_array().map(Vec::len), Some(3));
}

#[test]
fn gitlab_release_links_download_through_the_direct_url_and_others_are_not_served() {
    let forge = FakeForge::start();
    forge.write_world(&world(json!([])));
    let release = get(&project(&forge, "releases/v1"), &[TOKEN]).json();
    let links = release["assets"]["links"].as_array().expect("links").clone();
    let direct = links[0]["direct_asset_url"].as_str().expect("url");
    assert!(direct.ends_with("/gitlab/acme/sub/api/-/releases/v1/downloads/bin/tool"), "{direct}");
    let got = get(direct, &[TOKEN]);
    assert_eq!((got.status, got.body.as_str()), (200, "tool bytes"), "redirected to the upload");
    assert_eq!(get(direct, &[]).status, 404, "a private project's upload is not for strangers");
    assert_eq!(links[1]["url"], "https://elsewhere.example/tool.bin");
    assert_eq!(release["assets"]["sources"].as_array().map(Vec::len), Some(4));
    assert_eq!(get(&project(&forge, "releases/v1/assets/links"), &[TOKEN]).json(), Value::Array(links));
}

#[test]
fn gitlab_protected_branches_need_a_maintainer_and_members_include_the_groups() {
    let forge = FakeForge::start();
    let mut w = world(json!([]));
    w["gitlab"]["groups"] = json!([{"path": "acme", "members": [{"username": "carol", "access_level": 50}]}]);
    forge.write_world(&w);
    assert_eq!(get(&project(&forge, "protected_branches"), &[TOKEN]).json()[0]["name"], "main");
    let refused = get(&project(&forge, "protected_branches"), &[DEVELOPER]);
    assert_eq!((refused.status, refused.json()), (403, json!({"message": "403 Forbidden"})));
    let members = get(&project(&forge, "members/all"), &[TOKEN]).json();
    let names: Vec<&str> = members.as_array().expect("list").iter().filter_map(|m| m["username"].as_str()).collect();
    assert_eq!(names, ["bob", "carol"]);
}
