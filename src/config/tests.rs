//! Configuration as a specification: what an administrator writes and what the agent makes of it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
    fn secret(&self, name: &str, mode: u32) -> PathBuf {
        let path = self.write(name, "pw\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
    fn load(&self, main: &Path) -> Result<Settings, ConfigError> {
        ConfigSource::new(Some(main), None).load()
    }
}

#[test]
fn defaults_apply_to_an_empty_file() {
    let d = Dir::new();
    let s = d.load(&d.write("agent.toml", "")).unwrap();
    assert!(s.update.activate_after_installation);
    assert_eq!(s.update.effective_limit(), None);
    assert_eq!(s.update.bandwidth_limit_bytes_per_sec, 2 * 1024 * 1024);
    assert_eq!(s.update.parallel_downloads, 2);
    assert_eq!(s.paths.state_dir, Path::new(settings::DEFAULT_STATE_DIR));
}

#[test]
fn explicit_missing_file_is_an_error_naming_it() {
    let d = Dir::new();
    let err = d.load(&d.0.path().join("nope.toml")).unwrap_err();
    assert!(err.to_string().contains("nope.toml"), "{err}");
}

#[test]
fn unknown_key_names_file_key_and_line() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[update]\nactivate_after_installation = true\nbandwith_limit = \"2MB\"\n",
    );
    let err = d.load(&main).unwrap_err().to_string();
    assert!(err.contains("agent.toml"), "{err}");
    assert!(err.contains("bandwith_limit"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn wrong_type_names_file_and_line() {
    let d = Dir::new();
    let main = d.write("agent.toml", "[update]\n\nparallel_downloads = \"two\"\n");
    let err = d.load(&main).unwrap_err().to_string();
    assert!(
        err.contains("agent.toml") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn drop_ins_override_in_name_order_and_add_repositories() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = \"1MB\"\n\
         [[repository]]\nname = \"central\"\nurl = \"https://central.example/apps\"\n",
    );
    d.write(
        "agent.d/20-late.toml",
        "[update]\nbandwidth_limit = \"512KB\"\n",
    );
    d.write("agent.d/10-early.toml", "[update]\nbandwidth_limit = \"4MB\"\n[[repository]]\nname = \"branch\"\nurl = \"http://branch.example/\"\npriority = 200\n");
    d.write("agent.d/ignored.txt", "this is not toml");
    let s = d.load(&main).unwrap();
    assert_eq!(s.update.effective_limit(), Some(512 * 1024));
    let names: Vec<_> = s.repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["branch", "central"]);
    assert_eq!(
        s.repositories[1].url.as_str(),
        "https://central.example/apps/"
    );
    assert_eq!(s.files.len(), 3);
}

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
        RepositoryAuth::Digest { username, password } => {
            assert_eq!(username, "u");
            assert_eq!(password.expose(), "pw");
        }
        other => panic!("expected digest, got {other:?}"),
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
fn bad_bandwidth_strings_warn_and_use_2mb() {
    let d = Dir::new();
    for bad in ["2 MB", "2mb", "1.5MB", "0", "2Mbit", ""] {
        let main = d.write(
            "agent.toml",
            &format!("[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = {bad:?}\n"),
        );
        let s = d.load(&main).unwrap();
        assert_eq!(s.update.effective_limit(), Some(2 * 1024 * 1024), "{bad:?}");
        assert_eq!(s.warnings.len(), 1, "{bad:?}");
        assert!(
            s.warnings[0].contains(&format!("{bad:?}")) && s.warnings[0].contains("agent.toml:3"),
            "{}",
            s.warnings[0]
        );
    }
    let main = d.write(
        "agent.toml",
        "[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = 3\n",
    );
    assert_eq!(
        d.load(&main).unwrap().update.effective_limit(),
        Some(3 * 1024 * 1024)
    );
}

#[test]
fn bad_local_app_names_the_app_table() {
    let d = Dir::new();
    let main = d.write("agent.toml", "[[app]]\nname = \"ok\"\nversion = \"latest\"\n\n[[app]]\nname = \"../evil\"\nversion = \"1\"\n");
    let err = d.load(&main).unwrap_err().to_string();
    assert!(
        err.contains("agent.toml:5") && err.contains("app.name"),
        "{err}"
    );
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
fn without_secrets_a_missing_credential_is_not_an_error() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[[repository]]\nname = \"a\"\nurl = \"https://a/\"\nusername = \"u\"\ncredential = \"branch\"\n",
    );
    // Tests run without CREDENTIALS_DIRECTORY (no systemd credentials).
    assert!(
        d.load(&main)
            .unwrap_err()
            .to_string()
            .contains("CREDENTIALS_DIRECTORY")
    );
    let mut source = ConfigSource::new(Some(&main), None);
    source.secrets = false;
    assert_eq!(source.load().unwrap().repositories[0].name, "a");
}

#[test]
fn ums_urls_must_be_wss_unless_insecure_is_allowed() {
    let d = Dir::new();
    let ums = "[ums]\nca_certificate = \"/ca.pem\"\n";
    let err = d
        .load(&d.write("a.toml", &format!("{ums}urls = [\"ws://ums:8080/x\"]\n")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a.toml") && err.contains("ums.urls") && err.contains("ws://"),
        "{err}"
    );
    let err = d
        .load(&d.write("b.toml", &format!("{ums}urls = [\"https://ums/x\"]\n")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ums.urls") && err.contains("https"), "{err}");
    let s = d
        .load(&d.write(
            "c.toml",
            &format!("{ums}urls = [\"ws://ums:8080/x\"]\nallow_insecure = true\n"),
        ))
        .unwrap();
    let ums = s.ums().expect("urls given");
    assert!(ums.allow_insecure);
    assert_eq!(ums.heartbeat, std::time::Duration::from_secs(30));
}

#[test]
fn ums_needs_its_ca_and_certificate_and_key_together() {
    let d = Dir::new();
    let err = d
        .load(&d.write("a.toml", "[ums]\nurls = [\"wss://ums/x\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ums.ca_certificate"), "{err}");
    let err = d
        .load(&d.write(
            "b.toml",
            "[ums]\nurls = [\"wss://ums/x\"]\nca_certificate = \"/ca\"\nclient_certificate = \"/c\"\n",
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ums.client_key"), "{err}");
    let err = d
        .load(&d.write(
            "c.toml",
            "[ums]\nurls = [\"wss://ums/x\"]\nca_certificate = \"/ca\"\nheartbeat = \"0s\"\n",
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ums.heartbeat"), "{err}");
    // Without URLs there is no channel, and nothing is required.
    let s = d.load(&d.write("d.toml", "[ums]\n")).unwrap();
    assert!(s.ums().is_none());
}
