//! The persisted settings as a specification: what is stored where, and what is refused.

use super::*;

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn secrets_go_to_private_files_and_never_into_settings_json() {
    let dir = tempfile::tempdir().unwrap();
    let change = Change::prepare(
        dir.path(),
        &Overrides::default(),
        &values(&[
            ("update.external_binary_source3.password", "pa55-word"),
            ("update.external_binary_source3.certificate", PEM),
            ("update.splay", "1h"),
        ]),
        &[],
    )
    .unwrap();
    let overrides = change.commit().unwrap();
    let json = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(
        !json.contains("pa55-word") && !json.contains("MIIB"),
        "{json}"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join(CREDENTIALS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2);
    for file in &files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    assert_eq!(Overrides::read(dir.path()).unwrap(), overrides);
    assert_eq!(
        overrides
            .shown("update.external_binary_source3.password")
            .as_deref(),
        Some("***")
    );
}

#[test]
fn removing_a_key_removes_its_file_and_abandoning_a_change_its_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let key = "update.external_binary_source0.password";
    let first = Change::prepare(
        dir.path(),
        &Overrides::default(),
        &values(&[(key, "a")]),
        &[],
    )
    .unwrap()
    .commit()
    .unwrap();
    let count = || {
        std::fs::read_dir(dir.path().join(CREDENTIALS_DIR))
            .unwrap()
            .count()
    };
    assert_eq!(count(), 1);
    Change::prepare(dir.path(), &first, &values(&[(key, "b")]), &[])
        .unwrap()
        .abandon();
    assert_eq!(count(), 1, "an abandoned change leaves the old file alone");
    let second = Change::prepare(dir.path(), &first, &values(&[(key, "b")]), &[])
        .unwrap()
        .commit()
        .unwrap();
    assert_eq!(count(), 1, "the replaced password's file is gone");
    Change::prepare(dir.path(), &second, &BTreeMap::new(), &[key.to_string()])
        .unwrap()
        .commit()
        .unwrap();
    assert_eq!(count(), 0);
}

#[test]
fn values_are_one_bounded_line_except_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let none = Overrides::default();
    for (key, value, needle) in [
        ("update.splay", "1h\nupdate.retries=9", "single line"),
        (
            "update.external_binary_source1.url",
            &"x".repeat(MAX_VALUE + 1),
            "at most",
        ),
        (
            "update.external_binary_source1.certificate",
            "relative/ca.pem",
            "absolute path",
        ),
        ("update.nonsense", "1", "unknown key"),
        ("update.retries", "many", "whole number"),
    ] {
        let err = Change::prepare(dir.path(), &none, &values(&[(key, value)]), &[]).unwrap_err();
        assert!(err.contains(needle), "{key}: {err}");
    }
    assert!(
        Change::prepare(
            dir.path(),
            &none,
            &values(&[("update.external_binary_source1.certificate", PEM)]),
            &[]
        )
        .is_ok()
    );
}

#[test]
fn crypt_password_accepts_the_password_or_its_base64_form() {
    let key = "update.external_binary_source0.crypt_password";
    assert_eq!(
        decode_password(key, SourceField::CryptPassword, "base64:c2VjcmV0").unwrap(),
        "secret"
    );
    assert_eq!(
        decode_password(key, SourceField::CryptPassword, "plain").unwrap(),
        "plain"
    );
    assert!(decode_password(key, SourceField::CryptPassword, "base64:!!").is_err());
}

#[test]
fn resets_name_keys_repositories_or_everything() {
    let dir = tempfile::tempdir().unwrap();
    let current = Change::prepare(
        dir.path(),
        &Overrides::default(),
        &values(&[
            ("update.external_binary_source2.url", "https://a.example/"),
            ("update.external_binary_source2.priority", "5"),
            ("update.splay", "1m"),
        ]),
        &[],
    )
    .unwrap()
    .next;
    let change = Change::prepare(
        dir.path(),
        &current,
        &BTreeMap::new(),
        &["update.external_binary_source2".into(), "command:x".into()],
    )
    .unwrap();
    assert_eq!(change.next.keys().collect::<Vec<_>>(), ["update.splay"]);
    assert_eq!(change.other_resets, ["command:x"]);
    let all = Change::prepare(dir.path(), &current, &BTreeMap::new(), &["*".into()]).unwrap();
    assert!(all.next.is_empty() && all.reset_all);
}
