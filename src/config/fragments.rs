//! Step one of configuration: read the main file and the drop-ins (`agent.d/*.toml`, in name
//! order) as raw TOML. Unknown keys and wrong types fail here, with the file and line that the
//! TOML parser names. Every value keeps its span so later steps can point at its line.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::error::ConfigError;

type S<T> = Spanned<T>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub paths: Option<RawPaths>,
    pub update: Option<RawUpdate>,
    #[serde(default)]
    pub repository: Vec<S<RawRepository>>,
    pub ums: Option<S<RawUms>>,
    #[serde(default)]
    pub app: Vec<S<RawApp>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPaths {
    pub state_dir: Option<S<PathBuf>>,
    pub apps_dir: Option<S<PathBuf>>,
    pub control_socket: Option<S<PathBuf>>,
}

/// A bandwidth limit may be written as a string (`"2MB"`) or, meaning MB, a bare number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawLimit {
    Text(String),
    Number(i64),
}

impl RawLimit {
    pub fn text(&self) -> String {
        match self {
            RawLimit::Text(s) => s.clone(),
            RawLimit::Number(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdate {
    pub activate_after_installation: Option<S<bool>>,
    pub bandwidth_limit_enabled: Option<S<bool>>,
    pub bandwidth_limit: Option<S<RawLimit>>,
    pub parallel_downloads: Option<S<i64>>,
    pub check_on_boot: Option<S<bool>>,
    pub splay: Option<S<String>>,
    pub reboot_after_activation: Option<S<String>>,
    pub reboot_timeout: Option<S<String>>,
    pub reboot_command: Option<S<Vec<String>>>,
    pub notify_command: Option<S<Vec<String>>>,
    pub max_deferrals: Option<S<i64>>,
    pub reminder_interval: Option<S<String>>,
    pub activate_hook: Option<S<Vec<String>>>,
    pub activate_hook_timeout: Option<S<String>>,
    pub connect_timeout: Option<S<String>>,
    pub read_timeout: Option<S<String>>,
    pub retries: Option<S<i64>>,
    pub retry_backoff: Option<S<String>>,
    pub low_speed_limit: Option<S<RawLimit>>,
    pub low_speed_time: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepository {
    pub name: S<String>,
    pub url: S<String>,
    pub priority: Option<S<i64>>,
    pub auth: Option<S<String>>,
    pub username: Option<S<String>>,
    /// Accepted only to refuse it with a clear message: passwords never live in the file.
    pub password: Option<S<toml::Value>>,
    pub password_file: Option<S<PathBuf>>,
    pub credential: Option<S<String>>,
    pub ca_certificate: Option<S<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUms {
    #[serde(default)]
    pub urls: Vec<S<String>>,
    pub ca_certificate: Option<S<PathBuf>>,
    pub client_certificate: Option<S<PathBuf>>,
    pub client_key: Option<S<PathBuf>>,
    pub device_id: Option<S<String>>,
    pub allow_insecure: Option<S<bool>>,
    pub heartbeat: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub name: S<String>,
    pub version: S<String>,
    pub app_json_sha256: Option<S<String>>,
}

/// One parsed file with its text, so spans can be turned into line numbers.
#[derive(Debug)]
pub struct Fragment {
    pub path: PathBuf,
    text: String,
    pub raw: RawConfig,
}

impl Fragment {
    pub fn parse(path: &Path, text: String) -> Result<Fragment, ConfigError> {
        let mut fragment = Fragment {
            path: path.to_path_buf(),
            text,
            raw: RawConfig::default(),
        };
        fragment.raw = toml::from_str(&fragment.text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: fragment.describe_parse_error(&e),
        })?;
        Ok(fragment)
    }

    /// The parser's own Display quotes the offending line, which may hold a password: say
    /// where (line, column, and the key written at the start of that line) and why, only.
    fn describe_parse_error(&self, e: &toml::de::Error) -> String {
        let reason = e.message().trim_end();
        let Some(span) = e.span() else {
            return reason.to_string();
        };
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let key = self.text[line_start..line_end]
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            })
            .map_or_else(String::new, |k| format!("key `{k}`: "));
        format!(
            "line {}, column {}: {key}{reason}",
            self.line_of(start),
            start - line_start + 1
        )
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
}

/// Reads the main file (when `required`, its absence is an error) and every `*.toml` in the
/// drop-in directory beside it, in name order.
pub fn read_all(main: &Path, required: bool) -> Result<Vec<Fragment>, ConfigError> {
    let mut fragments = Vec::new();
    match std::fs::read_to_string(main) {
        Ok(text) => fragments.push(Fragment::parse(main, text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
        Err(source) => {
            return Err(ConfigError::Read {
                path: main.to_path_buf(),
                source,
            });
        }
    }
    for path in drop_ins(main)? {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        fragments.push(Fragment::parse(&path, text)?);
    }
    Ok(fragments)
}

/// `agent.d/*.toml` beside the main file (for `agent.toml`, `agent.d`).
fn drop_in_dir(main: &Path) -> PathBuf {
    let stem = main
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agent".into());
    main.with_file_name(format!("{stem}.d"))
}

fn drop_ins(main: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = drop_in_dir(main);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read {
            path: dir.clone(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}
