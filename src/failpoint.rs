//! Crash points for the crash-safety tests. In debug builds, setting
//! `IGEL_UPDATE_AGENT_CRASH_AT=NAME` (or `NAME#N` for its N-th hit) makes the process abort at
//! that point, as a power cut would stop it: no destructors, no flushing. Release builds
//! compile every point to nothing.

#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let Ok(target) = std::env::var("IGEL_UPDATE_AGENT_CRASH_AT") else {
        return;
    };
    let (point, nth) = match target.split_once('#') {
        Some((p, n)) => (p, n.parse::<usize>().unwrap_or(1)),
        None => (target.as_str(), 1),
    };
    if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        eprintln!("igel-update-agent: crash point {name} reached, aborting");
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// The crash points of a replacement (new content swapped in under the active version's own
/// name), which an ordinary update never reaches; `tests/it/robustness/hostile.rs` visits them.
pub const REPLACE_POINTS: &[&str] = &["replace.before_exchange", "replace.after_exchange"];

/// Every crash point of an ordinary update, for the tests that visit them all.
pub const POINTS: &[&str] = &[
    "part.synced",
    "write_atomic.before_rename",
    "write_atomic.after_rename",
    "commit.parts_renamed",
    "commit.before_rename",
    "commit.after_rename",
    "current.before_rename",
    "current.after_rename",
    "activate.after_swap",
    "activate.after_hook",
    "remove.after_rename",
];
