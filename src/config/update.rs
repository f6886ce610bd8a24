//! `[update]`: when and how apps are installed and activated, the transfer limits, and the
//! reboot. Every duration and count is read through [`bounds`]; the bandwidth limit through
//! [`bandwidth`] (a bad one warns and falls back to the default).

use std::time::Duration;

use serde::Serialize;

use super::bandwidth;
use super::bounds::{self, count, duration, human_duration};
use super::error::{ConfigError, Key, Section, invalid};
use super::fragments::RawLimit;
use super::inputs::UpdateInputs;
use super::origin::{Sourced, flag};

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

/// A field of `[update]`.
fn key(field: &'static str) -> Key {
    Key::of(Section::Update, field)
}

fn argv(input: &Option<Sourced<Vec<String>>>, default: &[&str]) -> Vec<String> {
    input.as_ref().map_or_else(
        || default.iter().map(|s| s.to_string()).collect(),
        |s| s.value.clone(),
    )
}

/// Validates `[update]`; a bandwidth limit that is not one warns (into `warnings`).
pub(super) fn validate(
    u: &UpdateInputs,
    warnings: &mut Vec<String>,
) -> Result<UpdateSettings, ConfigError> {
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
                    key("reboot_after_activation"),
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
            key("parallel_downloads"),
            bounds::PARALLEL_DOWNLOADS,
        )? as usize,
        check_on_boot: flag(&u.check_on_boot, true),
        splay: duration(&u.splay, key("splay"), &bounds::SPLAY)?,
        reboot_after_activation,
        reboot_timeout: duration(
            &u.reboot_timeout,
            key("reboot_timeout"),
            &bounds::REBOOT_TIMEOUT,
        )?,
        reboot_command: argv(&u.reboot_command, &["systemctl", "reboot"]),
        notify_command: argv(&u.notify_command, &[]),
        max_deferrals: count(
            &u.max_deferrals,
            key("max_deferrals"),
            bounds::MAX_DEFERRALS,
        )? as u32,
        reminder_interval: duration(
            &u.reminder_interval,
            key("reminder_interval"),
            &bounds::REMINDER_INTERVAL,
        )?,
        activate_hook: argv(&u.activate_hook, &[]),
        activate_hook_timeout: duration(
            &u.activate_hook_timeout,
            key("activate_hook_timeout"),
            &bounds::ACTIVATE_HOOK_TIMEOUT,
        )?,
        connect_timeout: duration(
            &u.connect_timeout,
            key("connect_timeout"),
            &bounds::CONNECT_TIMEOUT,
        )?,
        read_timeout: duration(&u.read_timeout, key("read_timeout"), &bounds::READ_TIMEOUT)?,
        retries: count(&u.retries, key("retries"), bounds::RETRIES)? as u32,
        retry_backoff: duration(
            &u.retry_backoff,
            key("retry_backoff"),
            &bounds::RETRY_BACKOFF,
        )?,
        low_speed_limit: low_speed_limit(&u.low_speed_limit)?,
        low_speed_time: duration(
            &u.low_speed_time,
            key("low_speed_time"),
            &bounds::LOW_SPEED_TIME,
        )?,
    })
}

/// `low_speed_limit`: IGEL's bandwidth syntax (`512KB`; no unit means MB), or 0 for off.
fn low_speed_limit(input: &Option<Sourced<RawLimit>>) -> Result<u64, ConfigError> {
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
            key("low_speed_limit"),
            format!(
                "{text:?} is not a rate of at most 100MB (digits then KB, MB or GB, no space; \
                 0 turns the stall check off)"
            ),
        )),
    }
}
