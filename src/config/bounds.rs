//! The bounds of every duration and count of the configuration (DESIGN 5: every duration
//! and count has an upper bound; out of bounds is an error naming key and bound), and the
//! readers that enforce them. The README's table of bounds is this file.

use std::time::Duration;

use super::error::{ConfigError, Key, invalid};
use super::origin::Sourced;

/// A bound as the README writes it: `0s`, `60s`, `5m`, `24h`, `7days`.
pub fn show(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % DAY == 0 && s > DAY => format!("{}days", s / DAY),
        s if s % HOUR == 0 => format!("{}h", s / HOUR),
        s if s % 60 == 0 && s > 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A duration and the range it must lie in (DESIGN 5: every duration has an upper bound).
pub struct Bound {
    pub default: Duration,
    pub min: Duration,
    pub max: Duration,
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The bounds of every duration under `[update]` and `[ums]`, as the README lists them.
pub const SPLAY: Bound = Bound {
    default: secs(0),
    min: secs(0),
    max: secs(DAY),
};
pub const REBOOT_TIMEOUT: Bound = Bound {
    default: secs(60),
    min: secs(1),
    max: secs(DAY),
};
pub const REMINDER_INTERVAL: Bound = Bound {
    default: secs(HOUR),
    min: secs(1),
    max: secs(7 * DAY),
};
pub const ACTIVATE_HOOK_TIMEOUT: Bound = Bound {
    default: secs(120),
    min: secs(1),
    max: secs(HOUR),
};
pub const CONNECT_TIMEOUT: Bound = Bound {
    default: secs(15),
    min: secs(1),
    max: secs(300),
};
pub const READ_TIMEOUT: Bound = Bound {
    default: secs(60),
    min: secs(1),
    max: secs(HOUR),
};
pub const RETRY_BACKOFF: Bound = Bound {
    default: secs(2),
    min: secs(0),
    max: secs(60),
};
pub const HEARTBEAT: Bound = Bound {
    default: secs(30),
    min: secs(1),
    max: secs(HOUR),
};
pub const LOW_SPEED_TIME: Bound = Bound {
    default: secs(60),
    min: secs(1),
    max: secs(HOUR),
};
/// `low_speed_limit` in bytes per second: 1KB by default, 0 turns the stall check off.
pub const LOW_SPEED_LIMIT_DEFAULT: u64 = 1024;
pub const LOW_SPEED_LIMIT_MAX: u64 = 100 * 1024 * 1024;
/// `parallel_downloads`, `retries`, `max_deferrals`: (default, min, max).
pub const PARALLEL_DOWNLOADS: (i64, i64, i64) = (2, 1, 16);
pub const RETRIES: (i64, i64, i64) = (4, 0, 10);
pub const MAX_DEFERRALS: (i64, i64, i64) = (3, 0, 100);

pub(super) fn duration(
    input: &Option<Sourced<String>>,
    key: Key,
    bound: &Bound,
) -> Result<Duration, ConfigError> {
    let Some(s) = input else {
        return Ok(bound.default);
    };
    let value = humantime::parse_duration(s.value.trim()).map_err(|e| {
        invalid(
            &s.origin,
            key.clone(),
            format!(
                "{:?} is not a duration ({e}); write e.g. \"30s\", \"5m\", \"1h\"",
                s.value
            ),
        )
    })?;
    if value < bound.min || value > bound.max {
        let reason = format!(
            "{:?} is outside {}..={} (the bound of {key})",
            s.value,
            show(bound.min),
            show(bound.max)
        );
        return Err(invalid(&s.origin, key, reason));
    }
    Ok(value)
}

pub(super) fn count(
    input: &Option<Sourced<i64>>,
    key: Key,
    (default, min, max): (i64, i64, i64),
) -> Result<i64, ConfigError> {
    match input {
        None => Ok(default),
        Some(s) if (min..=max).contains(&s.value) => Ok(s.value),
        Some(s) => {
            let reason = format!("{} is outside {min}..={max} (the bound of {key})", s.value);
            Err(invalid(&s.origin, key, reason))
        }
    }
}

/// A duration serialized as the files write it (`1h 30m`).
pub(super) mod human_duration {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}
