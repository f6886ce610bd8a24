//! Configuration as a specification: what an administrator writes and what the agent makes of it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::error::{Key, Section};

mod apps;
mod persisted;
mod repository;
mod ums;
mod update;

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
        paths::state_dir(&inputs, None),
        Path::new(paths::DEFAULT_STATE_DIR)
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
