//! `[update]`: the bandwidth limit and the bounds of every duration and count.

use super::*;

#[test]
fn bad_bandwidth_strings_warn_and_use_2mb() {
    let d = Dir::new();
    for bad in ["2 MB", "2mb", "1.5MB", "0", "2Mbit", ""] {
        let main = d.write(
            "agent.toml",
            &format!("[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = {bad:?}\n"),
        );
        let s = d.load(&main).unwrap();
        assert_eq!(s.update.effective_limit(), Some(2 * 1024 * 1024), "{bad:?}");
        assert_eq!(s.warnings.len(), 1, "{bad:?}");
        assert!(
            s.warnings[0].contains(&format!("{bad:?}")) && s.warnings[0].contains("agent.toml:3"),
            "{}",
            s.warnings[0]
        );
    }
    let main = d.write(
        "agent.toml",
        "[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = 3\n",
    );
    assert_eq!(
        d.load(&main).unwrap().update.effective_limit(),
        Some(3 * 1024 * 1024)
    );
}

#[test]
fn every_duration_and_count_has_a_bound_named_in_the_error() {
    let d = Dir::new();
    for (line, key, bound) in [
        ("splay = \"25h\"", "update.splay", "0s..=24h"),
        (
            "reminder_interval = \"8days\"",
            "update.reminder_interval",
            "1s..=7days",
        ),
        (
            "connect_timeout = \"0s\"",
            "update.connect_timeout",
            "1s..=5m",
        ),
        ("read_timeout = \"2h\"", "update.read_timeout", "1s..=1h"),
        (
            "activate_hook_timeout = \"2h\"",
            "update.activate_hook_timeout",
            "1s..=1h",
        ),
        (
            "reboot_timeout = \"2days\"",
            "update.reboot_timeout",
            "1s..=24h",
        ),
        (
            "retry_backoff = \"61s\"",
            "update.retry_backoff",
            "0s..=60s",
        ),
        ("retries = 11", "update.retries", "0..=10"),
        (
            "parallel_downloads = 17",
            "update.parallel_downloads",
            "1..=16",
        ),
        ("max_deferrals = 101", "update.max_deferrals", "0..=100"),
    ] {
        let main = d.write("bounds.toml", &format!("[update]\n{line}\n"));
        let err = d.load(&main).unwrap_err().to_string();
        assert!(
            err.contains(key) && err.contains(bound) && err.contains("bounds.toml:2"),
            "{line}: {err}"
        );
    }
}
