//! Running the programs an administrator configures: the activation hook, the notify command
//! and the reboot command. Each gets a timeout, a clean environment addition, no stdin, and
//! its failure comes back as one line that says what ran, how it ended and what it printed
//! last on stderr.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Default location of the activation hook when `[update] activate_hook` is not set.
pub const DEFAULT_HOOK: &str = "/etc/igel-update-agent/hooks/activate";
const STDERR_LINES: usize = 5;
const STDERR_LIMIT: usize = 64 * 1024;

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
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{what} {program} does not exist"),
        std::io::ErrorKind::PermissionDenied => {
            format!("{what} {program} is not executable (chmod +x?)")
        }
        _ => format!("{what} {program} cannot start: {e}"),
    })?;
    let mut stderr = child.stderr.take();
    let collect = async {
        let mut buf = Vec::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.take(STDERR_LIMIT as u64).read_to_end(&mut buf).await;
        }
        buf
    };
    let waited = tokio::time::timeout(timeout, async {
        let (status, err) = tokio::join!(child.wait(), collect);
        (status, err)
    })
    .await;
    let (status, err) = match waited {
        Ok((Ok(status), err)) => (status, err),
        Ok((Err(e), _)) => return Err(format!("{what} {program}: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            return Err(format!(
                "{what} {program} did not finish within {}s and was killed",
                timeout.as_secs()
            ));
        }
    };
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

fn last_lines(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(STDERR_LINES)..].join(" | ")
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
