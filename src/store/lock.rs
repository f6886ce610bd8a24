//! The single-instance lock of a state directory: `<state>/lock`, held with `flock` by the
//! one process that works on the directory (the daemon or a command run on its own) for as
//! long as its [`super::Store`] lives. The file also says who holds it (`<pid> <command>`), so
//! that a refused process can name the holder and say what to do. That text is a courtesy:
//! the lock is the `flock`, never the text. The lock must never do more than keep a second
//! process out: what is written, and when, is the rest of the store's.

use std::fs::File;
use std::path::Path;

use super::{StoreError, io_error, layout};

/// Takes the lock of `state_dir` (which must exist) and writes who holds it into the file.
/// The lock lasts as long as the returned file stays open.
pub(super) fn take(state_dir: &Path) -> Result<File, StoreError> {
    let lock_path = layout::lock_file(state_dir);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = read_holder(&lock_path);
            return Err(StoreError::Locked {
                path: lock_path,
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(StoreError::Io {
                path: lock_path,
                source,
            });
        }
    }
    // Who holds it, for the next process that finds it taken (best effort: the lock is
    // the flock, not this text).
    {
        use std::io::Write;
        let _ = lock.set_len(0);
        let _ = writeln!(&lock, "{} {}", std::process::id(), own_command());
    }
    Ok(lock)
}

/// Who holds the lock, in words for the error that refuses the next process.
pub(super) fn holder_text(holder: &Option<(u32, String)>) -> String {
    match holder {
        Some((pid, command)) if command == "run" => format!("the daemon (pid {pid})"),
        Some((pid, command)) => format!("`igel-update-agent {command}` (pid {pid})"),
        None => "another igel-update-agent".to_string(),
    }
}

/// What the refused user can do about it.
pub(super) fn locked_hint(holder: &Option<(u32, String)>) -> &'static str {
    match holder {
        Some((_, command)) if command == "run" => {
            "commands go to it through its control socket; if this one did not, the daemon \
             listens on another control_socket (`systemctl status igel-update-agent` shows it)"
        }
        Some(_) => "wait for it to end, or stop it (Ctrl-C keeps its partial downloads)",
        None => "is the service running? try `systemctl status igel-update-agent`",
    }
}

/// The subcommand of this process, for the lock file (only the word: the arguments may hold
/// secrets, such as `settings KEY=VALUE`).
fn own_command() -> String {
    const WITH_VALUE: [&str; 3] = ["--config", "--state-dir", "--log-level"];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            return if arg.chars().all(|c| c.is_ascii_lowercase() || c == '-') && arg.len() <= 16 {
                arg
            } else {
                "?".to_string()
            };
        }
    }
    "?".to_string()
}

/// What the holder of a lock wrote into it: `<pid> <command>`.
fn read_holder(lock_path: &Path) -> Option<(u32, String)> {
    let text = crate::durable::read_regular(lock_path, 256).ok()?;
    let text = String::from_utf8(text).ok()?;
    let (pid, command) = text.trim().split_once(' ')?;
    let command = crate::report::clean(command).into_owned();
    Some((pid.parse().ok()?, command))
}

/// Whether a process (the daemon, or a command running in its own process) holds the lock of
/// `state_dir`. `false` when there is no lock file or it cannot be opened: then nothing can
/// hold it either.
pub fn lock_held(state_dir: &Path) -> bool {
    let Ok(file) = File::open(layout::lock_file(state_dir)) else {
        return false;
    };
    matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}
