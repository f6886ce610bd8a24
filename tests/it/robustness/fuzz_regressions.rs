//! Replays what the fuzzer found (`fuzz/regressions/<target>/*`, each a minimized input that
//! once crashed or hung a parser) and the seeds it starts from (`fuzz/seeds/<target>/*`), so
//! CI guards every finding without running the fuzzer. Each input runs through the same entry
//! point the fuzz target calls (`igel_update_agent::fuzz`); a panic fails the test.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use igel_update_agent::fuzz;

/// Every file below `dir/<target>/` for every target, with its target.
fn inputs(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mut found = Vec::new();
    let Ok(targets) = fs::read_dir(dir) else {
        return found;
    };
    for target in targets.flatten().filter(|t| t.path().is_dir()) {
        let name = target.file_name().to_string_lossy().into_owned();
        assert!(
            fuzz::TARGETS.contains(&name.as_str()),
            "{}: no fuzz target is named {name:?}",
            target.path().display()
        );
        for input in fs::read_dir(target.path()).unwrap().flatten() {
            found.push((name.clone(), input.path()));
        }
    }
    found.sort();
    found
}

fn replay(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let inputs = inputs(&root);
    for (target, path) in &inputs {
        let data = fs::read(path).unwrap();
        let started = Instant::now();
        assert!(fuzz::run(target, &data));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}: {target} took {:?}",
            path.display(),
            started.elapsed()
        );
    }
    inputs.len()
}

#[test]
fn every_input_the_fuzzer_found_is_handled() {
    replay("fuzz/regressions");
}

#[test]
fn every_seed_is_handled_and_every_target_has_seeds() {
    assert!(replay("fuzz/seeds") >= fuzz::TARGETS.len());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for target in fuzz::TARGETS {
        assert!(
            root.join(target)
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some()),
            "no seed for {target}"
        );
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        assert!(source.exists(), "{} is missing", source.display());
    }
}
