//! Step three of configuration: validate the merged inputs into typed settings. Nothing
//! downstream re-validates: a `Settings` value is always complete and consistent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use url::Url;

use super::bandwidth;
use super::bounds::{self, count, duration};
use super::inputs::{Inputs, Origin, Sourced, UmsInputs};
use super::overrides::SetAside;
use super::{ConfigError, FileAccess, Password};
use crate::idf::{Idf, WantedApp};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/igel-update-agent";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/igel-update-agent/control.sock";
pub(super) const MAX_PRIORITY: i64 = u32::MAX as i64;
pub const HIDDEN_PRIORITY: i64 = -1;

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub files: Vec<PathBuf>,
    pub paths: PathSettings,
    pub update: UpdateSettings,
    #[serde(rename = "repository")]
    pub repositories: Vec<RepositorySettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ums: Option<UmsSettings>,
    #[serde(rename = "app")]
    pub apps: Vec<WantedApp>,
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Persisted settings (the `settings` command) that no longer validate: not applied.
    #[serde(skip)]
    pub set_aside: Vec<SetAside>,
    /// The registry keys of the `settings` command in force.
    #[serde(skip)]
    pub overridden: Vec<String>,
}

impl Settings {
    /// The defaults with these paths, for a command that shows state without a readable
    /// configuration.
    pub fn defaults(paths: PathSettings) -> Settings {
        let state_dir = paths.state_dir.clone();
        let mut settings = validate(Inputs::default(), Some(&state_dir), super::FileAccess::Skip)
            // Nothing is given, so nothing can be invalid: the defaults always validate.
            .unwrap_or_else(|_| unreachable!("the defaults validate"));
        settings.paths = paths;
        settings
    }

    /// The UMS channel to use, when `[ums]` names at least one URL.
    pub fn ums(&self) -> Option<&UmsSettings> {
        self.ums.as_ref().filter(|u| !u.urls.is_empty())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PathSettings {
    pub state_dir: PathBuf,
    pub apps_dir: PathBuf,
    pub control_socket: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RebootPolicy {
    Never,
    Ask,
    Immediately,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpdateSettings {
    pub activate_after_installation: bool,
    pub bandwidth_limit_enabled: bool,
    /// The limit as written (or the default when the written one was not valid).
    pub bandwidth_limit: String,
    pub bandwidth_limit_bytes_per_sec: u64,
    pub parallel_downloads: usize,
    pub check_on_boot: bool,
    #[serde(with = "human_duration")]
    pub splay: Duration,
    pub reboot_after_activation: RebootPolicy,
    #[serde(with = "human_duration")]
    pub reboot_timeout: Duration,
    pub reboot_command: Vec<String>,
    pub notify_command: Vec<String>,
    pub max_deferrals: u32,
    #[serde(with = "human_duration")]
    pub reminder_interval: Duration,
    pub activate_hook: Vec<String>,
    #[serde(with = "human_duration")]
    pub activate_hook_timeout: Duration,
    #[serde(with = "human_duration")]
    pub connect_timeout: Duration,
    #[serde(with = "human_duration")]
    pub read_timeout: Duration,
    pub retries: u32,
    #[serde(with = "human_duration")]
    pub retry_backoff: Duration,
    /// A repository slower than this (bytes/s, not counting the device's own limit) for
    /// `low_speed_time` is left for the next one; 0: never.
    pub low_speed_limit: u64,
    #[serde(with = "human_duration")]
    pub low_speed_time: Duration,
}

impl UpdateSettings {
    /// Bytes per second all transfers share, or `None` when no limit is in force.
    pub fn effective_limit(&self) -> Option<u64> {
        self.bandwidth_limit_enabled
            .then_some(self.bandwidth_limit_bytes_per_sec)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "auth", rename_all = "lowercase")]
pub enum RepositoryAuth {
    None,
    Basic {
        username: String,
        password: Password,
    },
    Digest {
        username: String,
        password: Password,
    },
    /// A username without `auth`: the server's challenge decides (Digest when offered; Basic
    /// only over https).
    Auto {
        username: String,
        password: Password,
    },
}

impl RepositoryAuth {
    pub fn name(&self) -> &'static str {
        match self {
            RepositoryAuth::None => "none",
            RepositoryAuth::Basic { .. } => "basic",
            RepositoryAuth::Digest { .. } => "digest",
            RepositoryAuth::Auto { .. } => "auto",
        }
    }

    pub fn password(&self) -> Option<&Password> {
        match self {
            RepositoryAuth::None => None,
            RepositoryAuth::Basic { password, .. }
            | RepositoryAuth::Digest { password, .. }
            | RepositoryAuth::Auto { password, .. } => Some(password),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RepositorySettings {
    pub name: String,
    pub url: Url,
    pub priority: i64,
    #[serde(flatten)]
    pub auth: RepositoryAuth,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<PathBuf>,
    #[serde(skip)]
    pub origin: Origin,
}

impl RepositorySettings {
    /// Synced, but not to be used by devices yet (priority -1).
    pub fn hidden(&self) -> bool {
        self.priority == HIDDEN_PRIORITY
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UmsSettings {
    pub urls: Vec<String>,
    pub ca_certificate: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub device_id: Option<String>,
    pub allow_insecure: bool,
    /// WebSocket ping interval; a ping unanswered for as long ends the connection.
    #[serde(with = "human_duration")]
    pub heartbeat: Duration,
}

mod human_duration {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

pub(super) fn invalid(origin: &Origin, key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.clone(),
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn flag(input: &Option<Sourced<bool>>, default: bool) -> bool {
    input.as_ref().map_or(default, |s| s.value)
}

fn argv(input: &Option<Sourced<Vec<String>>>, default: &[&str]) -> Vec<String> {
    input.as_ref().map_or_else(
        || default.iter().map(|s| s.to_string()).collect(),
        |s| s.value.clone(),
    )
}

/// The state directory: the `--state-dir` flag (or its variable), else `[paths] state_dir`,
/// else the default.
pub fn state_dir(inputs: &Inputs, state_dir_override: Option<&Path>) -> PathBuf {
    state_dir_override
        .map(Path::to_path_buf)
        .or_else(|| inputs.state_dir.as_ref().map(|s| s.value.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Validates merged inputs. `state_dir_override` is the `--state-dir` flag or its variable;
/// `access` says whether the files the configuration names (passwords, CAs) are read.
pub fn validate(
    inputs: Inputs,
    state_dir_override: Option<&Path>,
    access: FileAccess,
) -> Result<Settings, ConfigError> {
    let mut warnings = Vec::new();
    let state_dir = state_dir(&inputs, state_dir_override);
    let paths = PathSettings {
        apps_dir: inputs
            .apps_dir
            .as_ref()
            .map_or_else(|| state_dir.join("apps"), |s| s.value.clone()),
        control_socket: inputs.control_socket.as_ref().map_or_else(
            || PathBuf::from(DEFAULT_CONTROL_SOCKET),
            |s| s.value.clone(),
        ),
        state_dir,
    };
    let update = validate_update(&inputs, &mut warnings)?;
    let mut repositories = Vec::new();
    for input in &inputs.repositories {
        let repo = super::repository::validate_repository(input, &mut warnings, access)?;
        if let Some(first) = repositories
            .iter()
            .find(|r: &&RepositorySettings| r.name == repo.name)
        {
            return Err(invalid(
                &input.name.origin,
                "repository.name",
                format!(
                    "repository {:?} is already defined at {}",
                    repo.name, first.origin
                ),
            ));
        }
        repositories.push(repo);
    }
    sort_in_try_order(&mut repositories);
    let ums = match &inputs.ums {
        Some(u) => Some(validate_ums(u)?),
        None => None,
    };
    let apps = validate_apps(&inputs)?;
    Ok(Settings {
        files: inputs.files,
        paths,
        update,
        repositories,
        ums,
        apps,
        warnings,
        set_aside: Vec::new(),
        overridden: Vec::new(),
    })
}

/// `[ums]`: every URL `wss://` (or `ws://` with `allow_insecure`), certificate and key
/// together. Whether the files can be read is the channel's business (it reads them at every
/// connection round, so that a renewed certificate needs no restart) and `check`'s.
fn validate_ums(u: &UmsInputs) -> Result<UmsSettings, ConfigError> {
    let allow_insecure = flag(&u.allow_insecure, false);
    let mut urls = Vec::new();
    for url in &u.urls {
        let parsed = url::Url::parse(&url.value)
            .map_err(|e| invalid(&url.origin, "ums.urls", format!("{:?}: {e}", url.value)))?;
        match parsed.scheme() {
            "wss" => {}
            "ws" if allow_insecure => {}
            "ws" => {
                return Err(invalid(
                    &url.origin,
                    "ums.urls",
                    format!(
                        "{:?}: ws:// is not encrypted; use wss:// (allow_insecure = true is for tests only)",
                        url.value
                    ),
                ));
            }
            other => {
                return Err(invalid(
                    &url.origin,
                    "ums.urls",
                    format!(
                        "{:?}: scheme {other:?}; the UMS channel is wss://",
                        url.value
                    ),
                ));
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                &url.origin,
                "ums.urls",
                "credentials do not belong in the URL; the device authenticates with client_certificate",
            ));
        }
        urls.push(parsed.to_string());
    }
    if u.client_certificate.is_some() != u.client_key.is_some() {
        let missing = if u.client_key.is_none() {
            "ums.client_key"
        } else {
            "ums.client_certificate"
        };
        return Err(invalid(
            &u.origin,
            missing,
            "client_certificate and client_key go together",
        ));
    }
    if !urls.is_empty() && u.ca_certificate.is_none() && !allow_insecure {
        return Err(invalid(
            &u.origin,
            "ums.ca_certificate",
            "required: the UMS server's certificate must chain to it",
        ));
    }
    let heartbeat = duration(&u.heartbeat, "ums.heartbeat", &bounds::HEARTBEAT)?;
    Ok(UmsSettings {
        urls,
        heartbeat,
        ca_certificate: u.ca_certificate.as_ref().map(|s| s.value.clone()),
        client_certificate: u.client_certificate.as_ref().map(|s| s.value.clone()),
        client_key: u.client_key.as_ref().map(|s| s.value.clone()),
        device_id: u
            .device_id
            .as_ref()
            .map(|s| s.value.clone())
            .filter(|s| !s.is_empty()),
        allow_insecure,
    })
}

/// Larger priority first; ties by name so the order is the same on every device.
pub fn sort_in_try_order(repositories: &mut [RepositorySettings]) {
    repositories.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
}

fn validate_update(
    inputs: &Inputs,
    warnings: &mut Vec<String>,
) -> Result<UpdateSettings, ConfigError> {
    let u = &inputs.update;
    let (limit_text, limit_bytes) = match &u.bandwidth_limit {
        None => (
            bandwidth::DEFAULT_LIMIT.to_string(),
            bandwidth::DEFAULT_LIMIT_BYTES,
        ),
        Some(s) => {
            let text = s.value.text();
            let (bytes, warning) = bandwidth::parse_limit_or_default(&text, &s.origin.to_string());
            match warning {
                Some(w) => {
                    warnings.push(w);
                    (bandwidth::DEFAULT_LIMIT.to_string(), bytes)
                }
                None => (text, bytes),
            }
        }
    };
    let reboot_after_activation = match &u.reboot_after_activation {
        None => RebootPolicy::Never,
        Some(s) => match s.value.as_str() {
            "never" => RebootPolicy::Never,
            "ask" => RebootPolicy::Ask,
            "immediately" => RebootPolicy::Immediately,
            other => {
                return Err(invalid(
                    &s.origin,
                    "update.reboot_after_activation",
                    format!("{other:?} is not one of \"never\", \"ask\", \"immediately\""),
                ));
            }
        },
    };
    Ok(UpdateSettings {
        activate_after_installation: flag(&u.activate_after_installation, true),
        bandwidth_limit_enabled: flag(&u.bandwidth_limit_enabled, false),
        bandwidth_limit: limit_text,
        bandwidth_limit_bytes_per_sec: limit_bytes,
        parallel_downloads: count(
            &u.parallel_downloads,
            "update.parallel_downloads",
            bounds::PARALLEL_DOWNLOADS,
        )? as usize,
        check_on_boot: flag(&u.check_on_boot, true),
        splay: duration(&u.splay, "update.splay", &bounds::SPLAY)?,
        reboot_after_activation,
        reboot_timeout: duration(
            &u.reboot_timeout,
            "update.reboot_timeout",
            &bounds::REBOOT_TIMEOUT,
        )?,
        reboot_command: argv(&u.reboot_command, &["systemctl", "reboot"]),
        notify_command: argv(&u.notify_command, &[]),
        max_deferrals: count(
            &u.max_deferrals,
            "update.max_deferrals",
            bounds::MAX_DEFERRALS,
        )? as u32,
        reminder_interval: duration(
            &u.reminder_interval,
            "update.reminder_interval",
            &bounds::REMINDER_INTERVAL,
        )?,
        activate_hook: argv(&u.activate_hook, &[]),
        activate_hook_timeout: duration(
            &u.activate_hook_timeout,
            "update.activate_hook_timeout",
            &bounds::ACTIVATE_HOOK_TIMEOUT,
        )?,
        connect_timeout: duration(
            &u.connect_timeout,
            "update.connect_timeout",
            &bounds::CONNECT_TIMEOUT,
        )?,
        read_timeout: duration(
            &u.read_timeout,
            "update.read_timeout",
            &bounds::READ_TIMEOUT,
        )?,
        retries: count(&u.retries, "update.retries", bounds::RETRIES)? as u32,
        retry_backoff: duration(
            &u.retry_backoff,
            "update.retry_backoff",
            &bounds::RETRY_BACKOFF,
        )?,
        low_speed_limit: low_speed_limit(&u.low_speed_limit)?,
        low_speed_time: duration(
            &u.low_speed_time,
            "update.low_speed_time",
            &bounds::LOW_SPEED_TIME,
        )?,
    })
}

/// `low_speed_limit`: IGEL's bandwidth syntax (`512KB`; no unit means MB), or 0 for off.
fn low_speed_limit(
    input: &Option<Sourced<super::fragments::RawLimit>>,
) -> Result<u64, ConfigError> {
    let Some(s) = input else {
        return Ok(bounds::LOW_SPEED_LIMIT_DEFAULT);
    };
    let text = s.value.text();
    if text.trim() == "0" {
        return Ok(0);
    }
    match bandwidth::parse_limit(&text) {
        Some(bytes) if bytes <= bounds::LOW_SPEED_LIMIT_MAX => Ok(bytes),
        _ => Err(invalid(
            &s.origin,
            "update.low_speed_limit",
            format!(
                "{text:?} is not a rate of at most 100MB (digits then KB, MB or GB, no space; \
                 0 turns the stall check off)"
            ),
        )),
    }
}

fn validate_apps(inputs: &Inputs) -> Result<Vec<WantedApp>, ConfigError> {
    let apps: Vec<WantedApp> = inputs
        .apps
        .iter()
        .map(|a| WantedApp {
            name: a.name.value.clone(),
            version: a.version.value.clone(),
            app_json_sha256: a.app_json_sha256.as_ref().map(|s| s.value.clone()),
        })
        .collect();
    let idf = Idf { apps };
    if let Err(crate::idf::IdfError::Field { field, reason }) = idf.validate() {
        // `apps[3].name` -> the third [[app]] table.
        let index: usize = field
            .trim_start_matches("apps[")
            .split(']')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        let key = format!("app.{}", field.rsplit('.').next().unwrap_or("name"));
        let origin = inputs
            .apps
            .get(index)
            .map_or_else(|| inputs.apps[0].origin.clone(), |a| a.origin.clone());
        return Err(invalid(&origin, &key, reason));
    }
    Ok(idf.apps)
}
