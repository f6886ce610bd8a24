//! Running the programs an administrator configures: the activation hook, the notify command
//! and the reboot command. Each gets a timeout, a clean environment addition, no stdin, and
//! its failure comes back as one line that says what ran, how it ended and what it printed
//! last on stderr.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;

/// The variables of the agent's own environment a program it starts gets (besides its own:
/// `APP`, `VERSION`, ... or `UPDATE_*`): where to find programs, the language, the time zone,
/// and the user's display for a notify dialog. Nothing else: not systemd's `NOTIFY_SOCKET`,
/// `WATCHDOG_*`, `LISTEN_*` or `CREDENTIALS_DIRECTORY`, not the agent's own settings.
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
];
/// `PATH` when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Default location of the activation hook when `[update] activate_hook` is not set.
pub const DEFAULT_HOOK: &str = "/etc/igel-update-agent/hooks/activate";
const STDERR_LINES: usize = 5;
const STDERR_LIMIT: usize = 64 * 1024;
/// How long to wait for the last stderr lines after the program exited.
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// How a program ended when it ran to the end.
pub struct Finished {
    pub status: ExitStatus,
}

/// Runs `argv` with `env` added, waiting at most `timeout`. `Err` when it could not start, was
/// killed at the timeout, or exited other than with one of `ok_codes`.
pub async fn run(
    what: &str,
    argv: &[String],
    env: &[(&str, String)],
    timeout: Duration,
    ok_codes: &[i32],
) -> Result<Finished, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err(format!("{what}: empty command"));
    };
    let mut command = tokio::process::Command::new(program);
    command.env_clear();
    for key in PASSED_ENV {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", DEFAULT_PATH);
    }
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{what} {program} does not exist"),
        std::io::ErrorKind::PermissionDenied => {
            format!("{what} {program} is not executable (chmod +x?)")
        }
        _ => format!("{what} {program} cannot start: {e}"),
    })?;
    // stderr is read on its own: a hook may leave a background process holding it open, and
    // must not be judged by that process. Only the tail is kept, for the error message.
    let tail = Arc::new(Mutex::new(Vec::new()));
    let reader = tokio::spawn(read_tail(child.stderr.take(), tail.clone()));
    let pid = child.id();
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(format!("{what} {program}: {e}")),
        Err(_) => {
            // The hook and everything it started: it runs in its own process group.
            if let Some(pid) = pid {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = child.kill().await;
            reader.abort();
            return Err(format!(
                "{what} {program} did not finish within {} and was killed",
                humantime::format_duration(timeout)
            ));
        }
    };
    let _ = tokio::time::timeout(STDERR_GRACE, reader).await;
    let err = std::mem::take(&mut *tail.lock());
    if status.code().is_some_and(|c| ok_codes.contains(&c)) {
        return Ok(Finished { status });
    }
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("was killed ({status})"),
    };
    let tail = last_lines(&err);
    Err(if tail.is_empty() {
        format!("{what} {program} {how}")
    } else {
        format!("{what} {program} {how}: {tail}")
    })
}

/// Reads a child's stderr to its end, keeping the last [`STDERR_LIMIT`] bytes in `tail`.
async fn read_tail(stderr: Option<tokio::process::ChildStderr>, tail: Arc<Mutex<Vec<u8>>>) {
    let Some(mut stderr) = stderr else { return };
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut tail = tail.lock();
        tail.extend_from_slice(&buf[..n]);
        let excess = tail.len().saturating_sub(STDERR_LIMIT);
        tail.drain(..excess);
    }
}

fn last_lines(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(STDERR_LINES)..].join(" | ")
}

/// What the user answered through the notify command.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Go on (exit 0), or no way to ask (no notify command, or it failed: logged).
    Go,
    /// Later (exit 10), only when the user may cancel.
    Later,
}

/// Asks the user through `notify_command` (DESIGN 7): env `UPDATE_MESSAGE`, `UPDATE_TIMEOUT`
/// (seconds, 0 = until answered), `UPDATE_CAN_CANCEL`; exit 0 = go on, exit 10 = later.
pub async fn ask_user(
    notify_command: &[String],
    message: String,
    timeout_s: u64,
    can_cancel: bool,
) -> Answer {
    if notify_command.is_empty() {
        tracing::info!("no notify_command is configured to ask the user; going on");
        return Answer::Go;
    }
    let env = [
        ("UPDATE_MESSAGE", message),
        ("UPDATE_TIMEOUT", timeout_s.to_string()),
        (
            "UPDATE_CAN_CANCEL",
            if can_cancel { "1" } else { "0" }.to_string(),
        ),
    ];
    // "Until answered" still ends after a day, so a forgotten dialog cannot block for ever.
    let wait = match timeout_s {
        0 => Duration::from_secs(86_400),
        s => Duration::from_secs(s.saturating_add(5)),
    };
    match run("notify command", notify_command, &env, wait, &[0, 10]).await {
        Ok(done) if done.status.code() == Some(10) && can_cancel => Answer::Later,
        Ok(_) => Answer::Go,
        Err(e) => {
            tracing::warn!("{e}; going on without an answer");
            Answer::Go
        }
    }
}

/// The configured hook, or the default one when it exists.
pub fn activation_hook(configured: &[String]) -> Option<Vec<String>> {
    if !configured.is_empty() {
        return Some(configured.to_vec());
    }
    Path::new(DEFAULT_HOOK)
        .exists()
        .then(|| vec![DEFAULT_HOOK.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_failing_program_reports_its_status_and_last_stderr_lines() {
        let err = run(
            "hook",
            &argv(&["sh", "-c", "echo one >&2; echo two >&2; exit 3"]),
            &[],
            Duration::from_secs(10),
            &[0],
        )
        .await
        .err()
        .unwrap();
        assert!(
            err.contains("exited with status 3") && err.ends_with("one | two"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_environment_is_passed_and_accepted_codes_succeed() {
        let env = [("APP", "chromium".to_string())];
        let done = run(
            "notify",
            &argv(&["sh", "-c", "test \"$APP\" = chromium && exit 10"]),
            &env,
            Duration::from_secs(10),
            &[0, 10],
        )
        .await
        .ok()
        .unwrap();
        assert_eq!(done.status.code(), Some(10));
    }

    #[tokio::test]
    async fn a_program_gets_only_the_listed_environment() {
        // `cargo test` runs this process with CARGO and CARGO_PKG_NAME set; the child must
        // not see them (the whole-process test checks systemd's variables).
        let env = [("APP", "x".to_string())];
        let done = run(
            "hook",
            &argv(&[
                "sh",
                "-c",
                "test -n \"$PATH\" && test \"$APP\" = x && test -z \"$CARGO_PKG_NAME$CARGO\"",
            ]),
            &env,
            Duration::from_secs(10),
            &[0],
        )
        .await;
        assert!(done.is_ok(), "{:?}", done.err());
    }

    #[tokio::test]
    async fn a_hung_program_is_killed_at_the_timeout() {
        let err = run(
            "hook",
            &argv(&["sleep", "30"]),
            &[],
            Duration::from_millis(200),
            &[0],
        )
        .await
        .err()
        .unwrap();
        assert!(err.contains("did not finish within"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let err = run(
            "hook",
            &argv(&["/nonexistent/hook"]),
            &[],
            Duration::from_secs(1),
            &[0],
        )
        .await
        .err()
        .unwrap();
        assert!(err.contains("/nonexistent/hook does not exist"), "{err}");
    }
}
