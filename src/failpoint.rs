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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Every `failpoint::hit("NAME")` in the sources.
    fn points_in(dir: &Path, found: &mut BTreeSet<String>) {
        const CALL: &str = "failpoint::hit(\"";
        for entry in std::fs::read_dir(dir).expect("cannot read src/") {
            let path = entry.expect("cannot read src/").path();
            if path.is_dir() {
                points_in(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("failpoint.rs")
            {
                let text = std::fs::read_to_string(&path).expect("cannot read a source file");
                for (at, _) in text.match_indices(CALL) {
                    let rest = &text[at + CALL.len()..];
                    let name = &rest[..rest.find('"').expect("a closing quote")];
                    found.insert(name.to_string());
                }
            }
        }
    }

    /// The lists the crash tests visit are exactly the points the code has: a point added
    /// without listing it would never be tested, a listed one that is gone would be "visited"
    /// without a crash.
    #[test]
    fn the_lists_name_every_crash_point_the_code_has() {
        let mut found = BTreeSet::new();
        points_in(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        let listed: BTreeSet<String> = super::POINTS
            .iter()
            .chain(super::REPLACE_POINTS)
            .map(|p| p.to_string())
            .collect();
        assert_eq!(found, listed);
        assert_eq!(
            listed.len(),
            super::POINTS.len() + super::REPLACE_POINTS.len(),
            "a point is listed twice"
        );
    }
}
