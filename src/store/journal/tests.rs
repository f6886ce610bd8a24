//! Reading the journal as a specification: what is kept, what is set aside and why.

use super::*;

fn names(loaded: &Loaded) -> Vec<&str> {
    loaded
        .state
        .set_aside
        .iter()
        .map(|n| n.name.as_str())
        .collect()
}

fn reader(dir: &Path) -> Reader<'_> {
    Reader {
        state_dir: dir,
        write: true,
        now: Utc::now(),
    }
}

#[test]
fn one_bad_app_record_is_set_aside_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let json = br#"{"format":2,"apps":[
        {"name":"good","version":"1.0","state":"installed","active_version":"1.0"},
        {"name":"bad","version":"1.0","state":"exploded"},
        {"name":"../etc","version":"1","state":"installed"}],
        "update_status":"Update successful"}"#;
    let loaded = reader(dir.path()).load(json).unwrap();
    assert_eq!(loaded.state.apps.len(), 1);
    assert_eq!(loaded.state.apps[0].name, "good");
    assert_eq!(loaded.dropped_apps, ["bad"]);
    assert_eq!(names(&loaded), ["app:bad", "app:../etc"]);
    assert!(loaded.changed);
    assert_eq!(
        loaded.state.update_status.as_deref(),
        Some("Update successful")
    );
}

#[test]
fn format_1_is_converted_with_its_idfs_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let idf = r#"{"apps":[{"name":"a","version":"1"}]}"#;
    let json = format!(
        r#"{{"format":1,"idf":{idf},"commands":[
            {{"id":"c1","request":{{"id":"c1","command":"assign","idf":{idf}}}}},
            {{"id":"c2","request":{{"id":"c2","command":"update","idf":{idf},"force":true,
              "inform_user":{{"timeout_s":30}}}}}},
            {{"id":"c3","request":{{"id":"c3","command":"reboot"}}}}],
          "settings_overrides":{{"update.splay":"1m"}}}}"#
    );
    let loaded = reader(dir.path()).load(json.as_bytes()).unwrap();
    let state = loaded.state;
    assert_eq!(state.commands.len(), 2);
    let r = state.idf.clone().unwrap();
    assert_eq!(state.commands[0].command.idf(), Some(&r));
    match &state.commands[1].command {
        Queued::Update(u) => assert!(u.force && u.inform_user == Some(30)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("idf")).unwrap().count(),
        1
    );
    assert_eq!(state.set_aside[0].name, "command:c3");
}

#[test]
fn a_reference_to_a_missing_document_sets_the_command_aside() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"format":2,"commands":[{{"id":"x","command":"assign","idf":"{}"}}],
            "finished_commands":"oops"}}"#,
        "a".repeat(64)
    );
    let loaded = reader(dir.path()).load(json.as_bytes()).unwrap();
    assert!(loaded.state.commands.is_empty());
    assert_eq!(names(&loaded), ["command:x", "state:finished_commands"]);
}

#[test]
fn not_an_object_is_beyond_repair() {
    let dir = tempfile::tempdir().unwrap();
    assert!(reader(dir.path()).load(b"[1,2]").is_err());
    assert!(reader(dir.path()).load(b"{not json").is_err());
}
