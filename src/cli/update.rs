//! `update [--idf FILE|URL] [--at TIME] [--inform-user SECS] [--user-can-cancel] [--clean]
//! [--force] [--wait]`: the Update command. Transfers what is missing, then activates every
//! staged version now. Goes to the daemon when one runs (`--wait` follows it to the end),
//! else runs in this process.

use super::job::{Job, command_id, idf_fields, run_here, via_daemon};
use super::{CmdResult, Failure, Global};
use crate::agent::{InformUser, UpdateOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// IDF as a JSON file or an https URL; it becomes the assigned IDF. Default: the IDF last
    /// assigned, else the [[app]] tables of the configuration, else the versions on the device
    /// (`status` says which applies).
    #[arg(long, value_name = "FILE|URL")]
    idf: Option<String>,
    /// Assign the [[app]] tables of the configuration as the IDF (they replace an IDF assigned
    /// earlier by --idf or the UMS).
    #[arg(long, conflicts_with = "idf")]
    apps_from_config: bool,
    /// First delete every inactive version and partial download ("format system partition").
    #[arg(long)]
    clean: bool,
    /// Update even if the IDF has not changed.
    #[arg(long)]
    force: bool,
    /// Run at this time (RFC 3339, e.g. 2026-11-23T02:00:00+01:00) instead of now.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Ask the user through notify_command before activating; SECS to answer (0: until answered).
    #[arg(long, value_name = "SECS")]
    inform_user: Option<u64>,
    /// With --inform-user: the user may postpone the installation.
    #[arg(long, requires = "inform_user")]
    user_can_cancel: bool,
    /// With a daemon: wait until the update ends (without one the command always waits).
    #[arg(long)]
    wait: bool,
}

pub fn run(global: &Global, args: Args) -> CmdResult {
    // Forwarding to the daemon needs no password: read none until it is clear that this
    // process transfers itself.
    let settings = global.forwarding_settings()?;
    let at = match &args.at {
        Some(text) => {
            let at = parse_at(text)?;
            crate::control::check_at(at, chrono::Utc::now())
                .map_err(|e| Failure::usage(anyhow::anyhow!("--at: {e}")))?;
            Some(at)
        }
        None => None,
    };
    if let Some(secs) = args.inform_user
        && secs > crate::control::MAX_INFORM_TIMEOUT_S
    {
        return Err(Failure::usage(anyhow::anyhow!(
            "--inform-user {secs} is over the bound of {} seconds (a day; 0 = until answered)",
            crate::control::MAX_INFORM_TIMEOUT_S
        )));
    }
    let rt = super::runtime()?;
    if let Some(url) = args.idf.as_deref().filter(|s| s.contains("://")) {
        crate::repository::document::check_idf_url(url, &settings)
            .map_err(|e| Failure::usage(anyhow::anyhow!("--idf {e}")))?;
    }
    let mut request = idf_fields(args.idf.as_deref())?;
    if args.apps_from_config {
        if settings.apps.is_empty() {
            return Err(Failure::usage(anyhow::anyhow!(
                "--apps-from-config: the configuration has no [[app]] tables"
            )));
        }
        let idf = crate::idf::Idf {
            apps: settings.apps.clone(),
        };
        request.insert(
            "idf".into(),
            serde_json::to_value(idf).map_err(Failure::failed)?,
        );
    }
    request.insert("id".into(), command_id("update").into());
    request.insert("command".into(), "update".into());
    request.insert("clean".into(), args.clean.into());
    request.insert("force".into(), args.force.into());
    request.insert("user_can_cancel".into(), args.user_can_cancel.into());
    if let Some(at) = at {
        request.insert("at".into(), at.to_rfc3339().into());
    }
    if let Some(timeout_s) = args.inform_user {
        request.insert(
            "inform_user".into(),
            serde_json::json!({ "timeout_s": timeout_s }),
        );
    }
    let request = serde_json::Value::Object(request);
    if let Some(result) = via_daemon(&rt, &settings, &request, args.wait) {
        return result;
    }
    let settings = global.settings()?;
    if let Some(at) = at {
        let wait = at
            .signed_duration_since(chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        tracing::info!(
            "no daemon runs: waiting in this process until {} to update",
            at.to_rfc3339()
        );
        std::thread::sleep(wait);
    }
    let options = UpdateOptions {
        clean: args.clean,
        force: args.force,
        stage_only: false,
        inform_user: args.inform_user.map(|timeout_s| InformUser {
            timeout_s,
            can_cancel: args.user_can_cancel,
        }),
    };
    run_here(&rt, settings, &request, args.idf.as_deref(), |idf| {
        Job::Update(idf, options)
    })
}

/// `--at` as RFC 3339; a time without a UTC offset (the usual slip) is named as such, with
/// the same time written both ways that would work.
fn parse_at(text: &str) -> Result<chrono::DateTime<chrono::Utc>, Failure> {
    let e = match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(at) => return Ok(at.with_timezone(&chrono::Utc)),
        Err(e) => e,
    };
    let local = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok());
    let hint = match local {
        Some(t) => {
            let t = t.format("%Y-%m-%dT%H:%M:%S");
            format!("it has no UTC offset; write {t}Z for UTC or {t}+01:00 for UTC+1")
        }
        None => format!("{e}; write e.g. 2026-11-23T02:00:00+01:00 or 2026-11-23T01:00:00Z"),
    };
    Err(Failure::usage(anyhow::anyhow!(
        "--at {text:?} is not an RFC 3339 time: {hint}"
    )))
}
