//! Log output for commands: human-readable lines on stderr, one per state change.

use tracing_subscriber::filter::LevelFilter;

pub fn init(level: &str) -> Result<(), String> {
    let filter: LevelFilter = level
        .parse()
        .map_err(|_| format!("--log-level {level:?} is not one of error, warn, info, debug, trace"))?;
    tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}
