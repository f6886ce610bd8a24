//! `[[app]]`: the apps of the local IDF.

use super::*;

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
fn an_app_error_carries_the_table_index_and_field() {
    let d = Dir::new();
    let main = d.write(
        "agent.toml",
        "[[app]]\nname = \"a\"\nversion = \"1\"\n\n[[app]]\nname = \"a\"\nversion = \"2\"\n",
    );
    match d.load(&main).unwrap_err() {
        ConfigError::Invalid { key, origin, .. } => {
            assert_eq!(key, Key::at(Section::App, 1, "name"));
            assert_eq!(origin.line, 5);
        }
        other => panic!("{other}"),
    }
}
