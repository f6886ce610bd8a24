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

/// Writes to stderr (first erasing a progress line, which is drawn again at its next tick);
/// after a failed write nothing more is tried.
pub fn stderr(args: std::fmt::Arguments<'_>) {
    if PROGRESS_DRAWN.swap(false, Ordering::Relaxed) {
        raw_stderr(format_args!("\r\x1b[2K"));
    }
    raw_stderr(args);
}

fn raw_stderr(args: std::fmt::Arguments<'_>) {
    if STDERR_GONE.load(Ordering::Relaxed) {
        return;
    }
    if std::io::stderr().lock().write_fmt(args).is_err() {
        STDERR_GONE.store(true, Ordering::Relaxed);
    }
}

static PROGRESS_DRAWN: AtomicBool = AtomicBool::new(false);

/// The columns of the terminal `stream` is, or `None` when it is no terminal (a pipe, a file:
/// then nothing is cut or redrawn).
pub fn terminal_width(stream: &impl std::os::fd::AsFd) -> Option<usize> {
    let (terminal_size::Width(w), _) = terminal_size::terminal_size_of(stream)?;
    (w > 0).then_some(usize::from(w))
}

/// `line` cut to `width` columns (one per character; ends in `…` when cut), so that a line
/// redrawn in place never wraps.
pub fn fit(line: &str, width: usize) -> std::borrow::Cow<'_, str> {
    if line.chars().count() <= width {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    std::borrow::Cow::Owned(cut)
}

/// Draws the one progress line of a terminal's stderr in place, cut to its width.
pub fn progress(line: &str) {
    let width = terminal_width(&std::io::stderr()).unwrap_or(80);
    raw_stderr(format_args!(
        "\r\x1b[2K{}",
        fit(line, width.saturating_sub(1))
    ));
    PROGRESS_DRAWN.store(true, Ordering::Relaxed);
}

/// Erases the progress line, if one is drawn.
pub fn clear_progress() {
    if PROGRESS_DRAWN.swap(false, Ordering::Relaxed) {
        raw_stderr(format_args!("\r\x1b[2K"));
    }
}

/// Stderr for the log: a log line first erases the progress line it would otherwise be
/// glued to; the progress line is drawn again below it at its next tick.
pub struct LogStderr;

impl Write for LogStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if PROGRESS_DRAWN.swap(false, Ordering::Relaxed) {
            err.write_all(b"\r\x1b[2K")?;
        }
        err.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
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

/// `eprintln!` without the panic.
macro_rules! errln {
    () => { $crate::cli::output::stderr(format_args!("\n")) };
    ($($arg:tt)*) => {{
        $crate::cli::output::stderr(format_args!($($arg)*));
        $crate::cli::output::stderr(format_args!("\n"));
    }};
}
