//! `[[repository]]`: names, URLs, priorities, authentication and the files it reads.

use super::*;

#[test]
fn repositories_are_tried_by_priority_then_name_hidden_last() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[[repository]]\nname = \"b\"\nurl = \"http://b/\"\n\
         [[repository]]\nname = \"hidden\"\nurl = \"http://h/\"\npriority = -1\n\
         [[repository]]\nname = \"a\"\nurl = \"http://a/\"\n\
         [[repository]]\nname = \"top\"\nurl = \"http://t/\"\npriority = 4294967295\n",
    );
    let s = d.load(&main).unwrap();
    let names: Vec<_> = s.repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["top", "a", "b", "hidden"]);
    assert!(s.repositories[3].hidden());
}

#[test]
fn priority_out_of_range_is_an_error() {
    let d = Dir::new();
    for p in ["-2", "4294967296"] {
        let main = d.write(
            "agent.toml",
            &format!("[[repository]]\nname = \"a\"\nurl = \"http://a/\"\npriority = {p}\n"),
        );
        let err = d.load(&main).unwrap_err().to_string();
        assert!(
            err.contains("repository.priority") && err.contains("agent.toml:4"),
            "{err}"
        );
    }
}

#[test]
fn duplicate_repository_names_point_at_both_places() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[[repository]]\nname = \"a\"\nurl = \"http://a/\"\n",
    );
    d.write(
        "agent.d/x.toml",
        "\n[[repository]]\nname = \"a\"\nurl = \"http://b/\"\n",
    );
    let err = d.load(&main).unwrap_err().to_string();
    assert!(
        err.contains("x.toml:3") && err.contains("agent.toml:1"),
        "{err}"
    );
}

#[test]
fn inline_password_is_refused_without_echoing_it() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\nusername = \"u\"\npassword = \"hunter2-secret\"\n",
    );
    let err = d.load(&main).unwrap_err().to_string();
    assert!(
        err.contains("repository.password") && err.contains("agent.toml:5"),
        "{err}"
    );
    assert!(!err.contains("hunter2-secret"), "{err}");
}

#[test]
fn password_file_readable_by_others_is_refused() {
    let d = Dir::new();
    let pw = d.secret("a.pw", 0o644);
    let main = d.write(
        "agent.toml",
        &format!("[[repository]]\nname = \"a\"\nurl = \"https://a/\"\nusername = \"u\"\npassword_file = {:?}\n", pw),
    );
    let err = d.load(&main).unwrap_err().to_string();
    assert!(
        err.contains("chmod 600") && err.contains("agent.toml:5"),
        "{err}"
    );
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = d.load(&main).unwrap();
    match &s.repositories[0].auth {
        RepositoryAuth::Auto { username, password } => {
            assert_eq!(username, "u");
            assert_eq!(password.get().unwrap().expose(), "pw");
        }
        other => panic!("a username without auth follows the server, got {other:?}"),
    }
}

#[test]
fn secrets_never_appear_in_debug_or_serialized_output() {
    let d = Dir::new();
    let pw = d.write("a.pw", "very-secret-pw");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let main = d.write(
        "agent.toml",
        &format!("[[repository]]\nname = \"a\"\nurl = \"https://a/\"\nauth = \"basic\"\nusername = \"u\"\npassword_file = {:?}\n", pw),
    );
    let s = d.load(&main).unwrap();
    let json = serde_json::to_string(&s).unwrap();
    assert!(
        !json.contains("very-secret-pw") && json.contains("***"),
        "{json}"
    );
    assert!(!format!("{s:?}").contains("very-secret-pw"));
}

#[test]
fn url_with_credentials_is_refused() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[[repository]]\nname = \"a\"\nurl = \"https://u:p@a/\"\n",
    );
    let err = d.load(&main).unwrap_err().to_string();
    assert!(
        err.contains("repository.url") && !err.contains("u:p"),
        "{err}"
    );
}

#[test]
fn a_credential_outside_systemd_is_no_error_but_says_how_to_provide_it() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\nusername = \"u\"\ncredential = \"branch\"\n",
    );
    // Tests run without CREDENTIALS_DIRECTORY (no systemd credentials).
    let settings = d.load(&main).unwrap();
    let reason = settings.repositories[0]
        .auth
        .password()
        .unwrap()
        .get()
        .unwrap_err();
    assert!(
        reason.contains("CREDENTIALS_DIRECTORY") && reason.contains("daemon"),
        "{reason}"
    );
    let source = d.source(&main).with_access(FileAccess::Skip);
    assert_eq!(source.load().unwrap().repositories[0].name, "a");
}

#[test]
fn a_repository_error_carries_the_table_index_and_field() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[[repository]]\nname = \"a\"\nurl = \"http://a/\"\n\
         [[repository]]\nname = \"b\"\nurl = \"http://b/\"\nauth = \"magic\"\n",
    );
    match d.load(&main).unwrap_err() {
        ConfigError::Invalid { key, .. } => {
            assert_eq!(key, Key::at(Section::Repository, 1, "auth"));
            assert_eq!(key.to_string(), "repository.auth");
        }
        other => panic!("{other}"),
    }
}
