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
    fn state_dir(&self) -> PathBuf {
        self.0.path().join("state")
    }
    fn source(&self, main: &Path) -> ConfigSource {
        ConfigSource::new(Some(main), Some(&self.state_dir()))
    }
    fn load(&self, main: &Path) -> Result<Settings, ConfigError> {
        self.source(main).load()
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
    assert_eq!(s.paths.state_dir, d.state_dir());
    let main = d.write("agent.toml", "");
    let inputs = inputs::merge(&fragments::read_all(&main, true).unwrap());
    assert_eq!(
        settings::state_dir(&inputs, None),
        Path::new(settings::DEFAULT_STATE_DIR)
    );
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

fn persist(d: &Dir, pairs: &[(&str, &str)]) -> Overrides {
    let values = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    std::fs::create_dir_all(d.state_dir()).unwrap();
    overrides::Change::prepare(&d.state_dir(), &Overrides::default(), &values, &[])
        .unwrap()
        .commit()
        .unwrap()
}

#[test]
fn persisted_settings_override_the_files() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[update]\nactivate_after_installation = true\nretries = 2\n",
    );
    persist(
        &d,
        &[
            ("update.activate_after_installation", "false"),
            ("update.retries", "3"),
        ],
    );
    let s = d.load(&main).unwrap();
    assert!(!s.update.activate_after_installation);
    assert_eq!(s.update.retries, 3);
    assert_eq!(
        s.overridden,
        ["update.activate_after_installation", "update.retries"]
    );
    assert!(s.set_aside.is_empty());
}

#[test]
fn a_persisted_setting_that_no_longer_validates_is_set_aside_and_the_rest_applies() {
    let d = Dir::new();
    let main = d.write("agent.toml", "");
    // Written by hand (the settings command refuses it): the daemon must still start.
    std::fs::create_dir_all(d.state_dir()).unwrap();
    std::fs::write(
        d.state_dir().join(overrides::FILE),
        r#"{"format":1,"values":{"update.splay":"100000000years","update.retries":"3",
            "update.external_binary_source4.priority":"9"}}"#,
    )
    .unwrap();
    let s = d.load(&main).unwrap();
    assert_eq!(s.update.retries, 3);
    assert_eq!(s.update.splay, std::time::Duration::ZERO);
    let names: Vec<_> = s.set_aside.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["update.external_binary_source4", "update.splay"],
        "{:?}",
        s.set_aside
    );
    assert!(
        s.set_aside[1].reason.contains("0s..=24h"),
        "{:?}",
        s.set_aside
    );
    assert!(
        s.set_aside[0]
            .reason
            .contains("external_binary_source4.url"),
        "{:?}",
        s.set_aside
    );
}

#[test]
fn a_change_is_an_error_for_the_keys_it_touches() {
    let d = Dir::new();
    let main = d.write("agent.toml", "");
    let next = persist(&d, &[("update.splay", "2d")]);
    let touched = ["update.splay".to_string()].into_iter().collect();
    let err = d
        .source(&main)
        .load_with(&next, &touched)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("setting update.splay:"), "{err}");
    assert!(err.contains("24h"), "{err}");
}

#[test]
fn an_unreadable_settings_file_is_set_aside_as_a_whole() {
    let d = Dir::new();
    let main = d.write("agent.toml", "");
    std::fs::create_dir_all(d.state_dir()).unwrap();
    std::fs::write(d.state_dir().join(overrides::FILE), b"{garbage").unwrap();
    let s = d.load(&main).unwrap();
    assert_eq!(s.set_aside[0].name, "settings.json");
}

#[test]
fn a_repository_from_settings_changes_the_file_repository_of_its_name() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[[repository]]\nname = \"source0\"\nurl = \"https://a.example/\"\n\n\
         [[repository]]\nname = \"other\"\nurl = \"https://b.example/\"\n",
    );
    persist(
        &d,
        &[
            ("update.external_binary_source0.priority", "7"),
            (
                "update.external_binary_source1.url",
                "https://c.example/apps",
            ),
            ("update.external_binary_source1.priority", "-1"),
        ],
    );
    let s = d.load(&main).unwrap();
    let find = |name: &str| s.repositories.iter().find(|r| r.name == name).unwrap();
    assert_eq!(find("source0").priority, 7);
    assert_eq!(find("source0").url.as_str(), "https://a.example/");
    assert_eq!(find("source1").url.as_str(), "https://c.example/apps/");
    assert!(find("source1").hidden());
    assert_eq!(s.repositories.len(), 3);
}

#[test]
fn every_duration_and_count_has_a_bound_named_in_the_error() {
    let d = Dir::new();
    for (line, key, bound) in [
        ("splay = \"25h\"", "update.splay", "0s..=24h"),
        (
            "reminder_interval = \"8days\"",
            "update.reminder_interval",
            "1s..=7days",
        ),
        (
            "connect_timeout = \"0s\"",
            "update.connect_timeout",
            "1s..=5m",
        ),
        ("read_timeout = \"2h\"", "update.read_timeout", "1s..=1h"),
        (
            "activate_hook_timeout = \"2h\"",
            "update.activate_hook_timeout",
            "1s..=1h",
        ),
        (
            "reboot_timeout = \"2days\"",
            "update.reboot_timeout",
            "1s..=24h",
        ),
        (
            "retry_backoff = \"61s\"",
            "update.retry_backoff",
            "0s..=60s",
        ),
        ("retries = 11", "update.retries", "0..=10"),
        (
            "parallel_downloads = 17",
            "update.parallel_downloads",
            "1..=16",
        ),
        ("max_deferrals = 101", "update.max_deferrals", "0..=100"),
    ] {
        let main = d.write("bounds.toml", &format!("[update]\n{line}\n"));
        let err = d.load(&main).unwrap_err().to_string();
        assert!(
            err.contains(key) && err.contains(bound) && err.contains("bounds.toml:2"),
            "{line}: {err}"
        );
    }
}
