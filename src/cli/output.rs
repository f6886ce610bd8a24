//! Printing for the command line that never panics: `std`'s `println!` panics when stdout
//! is a pipe whose reader went away (`igel-update-agent demo | head -1`). Here a closed
//! stdout or stderr only ends the printing: the command goes on to its end (a demo still
//! removes its temporary directory) and exits as it would have.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

static QUIET: AtomicBool = AtomicBool::new(false);
static ERRORS_LOGGED: AtomicBool = AtomicBool::new(true);

/// `--quiet`: no progress and no chatter on stderr, only errors and results.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether errors reach the log on stderr (not with `--log-level off`, nor into the journal):
/// then a command does not print them a second time at its end.
pub fn set_errors_logged(logged: bool) {
    ERRORS_LOGGED.store(logged, Ordering::Relaxed);
}

pub fn errors_logged() -> bool {
    ERRORS_LOGGED.load(Ordering::Relaxed)
}

/// Writes to stdout; after a failed write (EPIPE) nothing more is tried.
pub fn stdout(args: std::fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

/// Whether stdout's reader went away (a loop that only prints can stop).
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// Writes to stderr; after a failed write nothing more is tried.
pub fn stderr(args: std::fmt::Arguments<'_>) {
    if STDERR_GONE.load(Ordering::Relaxed) {
        return;
    }
    if std::io::stderr().lock().write_fmt(args).is_err() {
        STDERR_GONE.store(true, Ordering::Relaxed);
    }
}

/// `print!` without the panic.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::stdout(format_args!($($arg)*)) };
}

/// `println!` without the panic.
macro_rules! outln {
    () => { $crate::cli::output::stdout(format_args!("\n")) };
    ($($arg:tt)*) => {{
        $crate::cli::output::stdout(format_args!($($arg)*));
        $crate::cli::output::stdout(format_args!("\n"));
    }};
}

/// `eprint!` without the panic.
macro_rules! err {
    ($($arg:tt)*) => { $crate::cli::output::stderr(format_args!($($arg)*)) };
}

/// `eprintln!` without the panic.
macro_rules! errln {
    () => { $crate::cli::output::stderr(format_args!("\n")) };
    ($($arg:tt)*) => {{
        $crate::cli::output::stderr(format_args!($($arg)*));
        $crate::cli::output::stderr(format_args!("\n"));
    }};
}
