//! Log output: to the journal with structured fields (`APP`, `VERSION`, `REPOSITORY`, `STATE`,
//! `BYTES`, `COMMAND_ID`) when systemd connected stderr to it (`JOURNAL_STREAM`), otherwise
//! human-readable lines on stderr. One line per state change either way.
//!
//! Times: what people read (log lines on stderr, status texts, `status`) is local time,
//! `YYYY-MM-DD HH:MM:SS`; what programs read (`--json`, the UMS protocol) is RFC 3339 in UTC;
//! the journal stamps its entries itself.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::debug_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init(level: &str) -> Result<(), String> {
    let filter: LevelFilter = level.parse().map_err(|_| {
        format!("--log-level {level:?} is not one of error, warn, info, debug, trace")
    })?;
    super::output::set_errors_logged(filter >= LevelFilter::ERROR);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journal) => {
                // Field names as they are, upper-cased by the layer: app -> APP.
                let journal = journal
                    .with_field_prefix(None)
                    .with_syslog_identifier("igel-update-agent".into());
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journal)
                    .init();
                super::output::set_errors_logged(false);
                return Ok(());
            }
            Err(e) => errln!("igel-update-agent: no journal ({e}); logging to stderr"),
        }
    }
    // The structured fields are for the journal; on a terminal the message says it all.
    let message_only = debug_fn(|writer, field, value| {
        if field.name() == "message" {
            write!(writer, "{value:?}")
        } else {
            Ok(())
        }
    });
    tracing_subscriber::fmt()
        .with_timer(LocalTime)
        .with_max_level(filter)
        .with_target(false)
        .fmt_fields(message_only)
        .with_writer(|| super::output::LogStderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        // A closed stderr (`2>&1 | head`) ends the logging, not the process: by default the
        // layer reports a failed write with `eprintln!`, which panics on that same stderr.
        .log_internal_errors(false)
        .init();
    Ok(())
}

/// Local time with milliseconds, as the status texts write it (`2026-11-30 14:02:03.412`).
struct LocalTime;

impl tracing_subscriber::fmt::time::FormatTime for LocalTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(
            w,
            "{}",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f")
        )
    }
}
