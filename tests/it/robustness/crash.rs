//! Crash safety (DESIGN 6): the real binary updates two apps through a rotation of versions
//! from a real Apache, and is killed with SIGKILL at random moments (transfer, staging,
//! activation with a slow hook, removal of old versions) and at every named crash point
//! (`IGEL_UPDATE_AGENT_CRASH_AT`, debug builds). After each kill:
//!
//! - every app is at its old or its new version, complete, every file SHA-256 verified;
//! - `current` never dangles and `state.json` is always valid JSON;
//! - the next run converges to the wanted version with no manual step, resuming partial
//!   downloads (Apache's access log shows the `Range` requests), delta updates included
//!   (`bin/app.bin` of each version is the one before with a few runs changed).
//!
//! `CRASH_KILLS` sets the number of random kills per test (default 25, two tests), and
//! `CRASH_SEED` the seed; both are printed so a failure can be replayed. `scripts/crashtest N`
//! runs longer campaigns.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{
    Agent, Apache, RunOutput, pseudo_random_bytes, sha256_hex, temp_dir, write_app,
};

const APPS: [&str; 2] = ["alpha", "beta"];
const VERSIONS: [&str; 3] = ["1.0", "2.0", "3.0"];
const TIMEOUT: Duration = Duration::from_secs(120);

/// A device and a repository with every app in every version.
struct Rig {
    _dirs: Vec<tempfile::TempDir>,
    apache: Apache,
    agent: Agent,
    state: PathBuf,
    idfs: Vec<PathBuf>,
}

impl Rig {
    fn new() -> Rig {
        let repo = temp_dir("crash-repo");
        for (a, app) in APPS.iter().enumerate() {
            // Each version of bin/app.bin is the one before with a few runs changed, so the
            // updates after the first are delta updates (the kills land in them too);
            // share/data.bin has nothing in common between versions: a delta that falls back.
            let mut bin = pseudo_random_bytes(a as u64 * 10, 640 * 1024);
            for (v, version) in VERSIONS.iter().enumerate() {
                let seed = (a * 10 + v) as u64;
                for run in 0..3 {
                    let at = (run * 200 + v * 37) * 1024;
                    bin[at..at + 3000]
                        .copy_from_slice(&pseudo_random_bytes(seed * 7 + run as u64, 3000));
                }
                let files = vec![
                    ("bin/app.bin", bin.clone()),
                    (
                        "share/data.bin",
                        pseudo_random_bytes(seed + 100, 300 * 1024),
                    ),
                    ("README", format!("{app} {version}\n").into_bytes()),
                ];
                write_app(repo.path(), app, version, &files, false);
            }
        }
        let apache = Apache::builder(repo.path()).start();
        let home = temp_dir("crash-device");
        let hook = home.path().join("hook.sh");
        // A slow hook widens the window in which a kill lands mid-activation.
        fs::write(&hook, "#!/bin/sh\nsleep 0.15\nexit 0\n").unwrap();
        set_mode(&hook, 0o755);
        let config = home.path().join("agent.toml");
        fs::write(
            &config,
            format!(
                "[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = \"2MB\"\n\
                 retries = 1\nretry_backoff = \"100ms\"\nconnect_timeout = \"2s\"\nread_timeout = \"5s\"\n\
                 activate_hook = [{hook:?}]\n\n\
                 [[repository]]\nname = \"central\"\nurl = \"{}\"\n",
                apache.url()
            ),
        )
        .unwrap();
        let idfs = VERSIONS
            .iter()
            .map(|version| {
                let path = home.path().join(format!("idf-{version}.json"));
                let apps: Vec<String> = APPS
                    .iter()
                    .map(|a| format!("{{\"name\":\"{a}\",\"version\":\"{version}\"}}"))
                    .collect();
                fs::write(&path, format!("{{\"apps\":[{}]}}", apps.join(","))).unwrap();
                path
            })
            .collect();
        let state = home.path().join("state");
        let agent = Agent::new(&config, &state);
        // The chunk indexes beside the files (and app.json naming them).
        agent
            .run(&["repo", "index", repo.path().to_str().unwrap()], TIMEOUT)
            .assert_success();
        Rig {
            _dirs: vec![repo, home],
            apache,
            agent,
            state,
            idfs,
        }
    }

    fn update(&self, target: usize) -> RunOutput {
        self.agent.run(
            &["update", "--idf", self.idfs[target].to_str().unwrap()],
            TIMEOUT,
        )
    }

    /// Runs the update to `target` to completion and checks it arrived there.
    #[track_caller]
    fn converge(&self, target: usize, context: &str) {
        let out = self.update(target);
        assert_eq!(
            out.code,
            Some(0),
            "{context}: the run after the crash failed:\n{}",
            out.stderr
        );
        for app in APPS {
            let version = self.check_app(app, context);
            assert_eq!(
                version.as_deref(),
                Some(VERSIONS[target]),
                "{context}: {app} did not converge"
            );
        }
    }

    /// The invariants that must hold at every instant. Returns the active version.
    #[track_caller]
    fn check_app(&self, app: &str, context: &str) -> Option<String> {
        let json = fs::read(self.state.join("state.json")).ok();
        if let Some(json) = json {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&json).is_ok(),
                "{context}: state.json is not valid JSON"
            );
        }
        let link = self.state.join("apps").join(app).join("current");
        let target = fs::read_link(&link).ok()?;
        let version = target.to_string_lossy().into_owned();
        assert!(
            VERSIONS.contains(&version.as_str()),
            "{context}: {app} current -> {version}"
        );
        verify_version(&self.state.join("apps").join(app).join(&version), context);
        Some(version)
    }
}

/// Every file the version's app.json lists is there with its SHA-256.
#[track_caller]
fn verify_version(dir: &Path, context: &str) {
    let manifest = fs::read(dir.join("app.json")).unwrap_or_else(|e| {
        panic!(
            "{context}: {} has no app.json ({e}): `current` dangles",
            dir.display()
        )
    });
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("app.json is JSON");
    for file in manifest["files"].as_array().expect("files") {
        let path = dir.join(file["path"].as_str().expect("path"));
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{context}: {}: {e}", path.display()));
        assert_eq!(
            sha256_hex(&data),
            file["sha256"].as_str().unwrap(),
            "{context}: {} is not the verified file",
            path.display()
        );
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// xorshift: enough randomness for kill times, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn seed(salt: u64) -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
        ^ salt
        | 1
}

fn kills() -> usize {
    std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25)
}

/// Kills updates at random moments; every kill must leave a consistent device that the next
/// run brings to the wanted versions.
fn random_kills(salt: u64) {
    let rig = Rig::new();
    let seed = seed(salt);
    let mut rng = Rng(seed);
    eprintln!("crash test: seed {seed}, {} kills", kills());
    // An uninterrupted update after the first install (a delta update of bin/app.bin, a
    // full download of share/data.bin) tells how long a run takes.
    rig.converge(0, "initial install");
    let started = Instant::now();
    rig.converge(1, "first update");
    let full_run = started.elapsed().max(Duration::from_millis(200));
    let mut target = 1;
    let mut killed_in_flight = 0;
    for kill in 0..kills() {
        target = (target + 1) % VERSIONS.len();
        let delay = full_run.mul_f64((rng.next() % 1000) as f64 / 1000.0 * 1.2);
        let context = format!(
            "seed {seed}, kill {kill} after {delay:?} (update to {})",
            VERSIONS[target]
        );
        let mut running = rig
            .agent
            .spawn(&["update", "--idf", rig.idfs[target].to_str().unwrap()]);
        std::thread::sleep(delay);
        if running.is_running() {
            killed_in_flight += 1;
        }
        running.kill_hard();
        for app in APPS {
            let version = rig.check_app(app, &context);
            assert!(
                version.is_some(),
                "{context}: {app} lost its active version"
            );
        }
        rig.converge(target, &context);
    }
    let resumed = rig
        .apache
        .access_log()
        .iter()
        .filter(|e| e.range.is_some())
        .count();
    // A delta gets closed ranges (`bytes=A-B`) of bin/app.bin answered with 206.
    let delta_requests = rig
        .apache
        .access_log()
        .iter()
        .filter(|e| {
            e.status == 206
                && e.path.ends_with("/bin/app.bin")
                && e.range.as_deref().is_some_and(|r| !r.ends_with('-'))
        })
        .count();
    eprintln!(
        "crash test: seed {seed}: {killed_in_flight} of {} kills hit a running update, {resumed} ranged requests, {delta_requests} of them for a delta",
        kills()
    );
    assert!(delta_requests > 0, "seed {seed}: no delta update ran");
    assert!(
        killed_in_flight > kills() / 2,
        "seed {seed}: most kills came too late to test anything"
    );
}

#[test]
fn random_kills_during_updates_never_break_an_app_first_half() {
    random_kills(0x5eed_0001);
}

#[test]
fn random_kills_during_updates_never_break_an_app_second_half() {
    random_kills(0x5eed_0002);
}

/// Every named crash point: abort exactly there, check the invariants, converge.
#[test]
fn a_crash_at_every_crash_point_is_survived() {
    let rig = Rig::new();
    rig.converge(0, "initial install");
    // Points that happen more than once in an update are also hit later (`#N`).
    let points: Vec<String> = igel_update_agent::failpoint::POINTS
        .iter()
        .flat_map(|p| [p.to_string(), format!("{p}#3")])
        .collect();
    let mut target = 0;
    let mut reached = Vec::new();
    for point in &points {
        target = (target + 1) % VERSIONS.len();
        let context = format!("crash point {point} (update to {})", VERSIONS[target]);
        let agent = rig.agent.clone().env("IGEL_UPDATE_AGENT_CRASH_AT", point);
        let out = agent.run(
            &["update", "--idf", rig.idfs[target].to_str().unwrap()],
            TIMEOUT,
        );
        if out.stderr.contains("crash point") {
            assert!(
                out.code.is_none(),
                "{context}: expected an abort, got {:?}",
                out.code
            );
            reached.push(point.clone());
        }
        for app in APPS {
            assert!(
                rig.check_app(app, &context).is_some(),
                "{context}: {app} lost its active version"
            );
        }
        rig.converge(target, &context);
    }
    eprintln!("crash points reached: {reached:?}");
    for point in igel_update_agent::failpoint::POINTS {
        assert!(
            reached.iter().any(|r| r == point),
            "crash point {point} was never reached by an update; the test does not cover it"
        );
    }
}
