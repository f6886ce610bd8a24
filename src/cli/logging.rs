//! Log output for commands: human-readable lines on stderr, one per state change. The
//! structured fields (app, version, repository, state) are for the journal; on a terminal the
//! message alone already says it all.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::debug_fn;

pub fn init(level: &str) -> Result<(), String> {
    let filter: LevelFilter = level.parse().map_err(|_| {
        format!("--log-level {level:?} is not one of error, warn, info, debug, trace")
    })?;
    let message_only = debug_fn(|writer, field, value| {
        if field.name() == "message" {
            write!(writer, "{value:?}")
        } else {
            Ok(())
        }
    });
    tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_target(false)
        .fmt_fields(message_only)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}
