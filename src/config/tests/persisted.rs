//! Persisted settings (the `settings` command) on top of the files, and setting aside those
//! that no longer validate.

use super::*;

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
fn a_persisted_error_names_the_field_or_the_registry_key() {
    let d = Dir::new();
    let main = d.write("agent.toml", "");
    let next = persist(&d, &[("update.splay", "2d")]);
    let touched = ["update.splay".to_string()].into_iter().collect();
    match d.source(&main).load_with(&next, &touched).unwrap_err() {
        ConfigError::Invalid { key, origin, .. } => {
            assert_eq!(key, Key::of(Section::Update, "splay"));
            assert_eq!(origin.setting.as_deref(), Some("update.splay"));
        }
        other => panic!("{other}"),
    }
    let next = persist(&d, &[("update.external_binary_source2.priority", "1")]);
    let touched = ["update.external_binary_source2".to_string()]
        .into_iter()
        .collect();
    match d.source(&main).load_with(&next, &touched).unwrap_err() {
        ConfigError::Invalid { key, .. } => assert_eq!(
            key,
            Key::Setting("update.external_binary_source2.url".into())
        ),
        other => panic!("{other}"),
    }
}
