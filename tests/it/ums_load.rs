//! Load on the UMS channel (`scripts/bench ums`): one UMS stand-in (`wss://`, mutual TLS,
//! certificates from `UmsPki`) and `BENCH_AGENTS` (default 200) agent daemons, one
//! `igel-update-agent run` process per device, so every figure is what one real device pays.
//!
//! Steps: start a few agents without `[ums]` and sample their memory (the baseline); start the
//! fleet in batches and wait until the stand-in has greeted every device id; sample every
//! agent's memory while connected and idle; broadcast one `update` command and wait for every
//! device's reply and then its `installed` event; broadcast a second `update` of the same IDF
//! (nothing to transfer: the channel's round trip alone); check every `state.json`; finally
//! drop every session at once and measure how the fleet comes back (the spread the agent's
//! reconnect jitter gives).
//!
//! Output: a JSON summary on stdout, human lines on stderr. Not a test: nothing is asserted,
//! but the exit code is 1 when a command was lost, rejected or answered twice, or a device did
//! not install, and the logs of a few affected agents are kept under `target/ums_load/`.
//!
//! Environment: `BENCH_AGENTS` (200), `BENCH_BASELINE` (5 agents), `IGEL_AGENT_BIN` (the
//! binary to measure; default: the one Cargo built for this bench), `BENCH_KEEP_LOGS` (keep
//! the logs of the three slowest installs even when all went well).

// The bench is a crate of its own (`[[bench]] path = "tests/it/ums_load.rs"` in Cargo.toml)
// whose root sits beside the test binary's (`tests/it/main.rs`), so both reach the one
// `support` module by plain module resolution, without `#[path]`. It uses the UMS stand-in,
// Apache and the agent runner; the rest of `support` serves the tests, and the test binary
// is where dead code in it is caught, hence the allowance here only.
#[allow(dead_code, unused_imports)]
mod support;

// The bench's own modules, files in `tests/it/bench/`: the fleet of agent daemons, the tally
// of what the stand-in received, the summary it prints, how SIGINT and SIGTERM end it. Each
// bench declares the files it uses here, inline, so that it compiles none of the other
// bench's (a `bench/mod.rs` shared by both would be dead code in each).
mod bench {
    pub mod fleet;
    pub mod interrupt;
    // The parts of a bench's command line; this one has none.
    #[allow(dead_code)]
    pub mod options;
    pub mod report;
    pub mod tally;
}

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use bench::fleet::{Fleet, UmsSection, Usage};
use support::{UmsPki, UmsStandIn};

const APP: &str = "bench-app";
const VERSION: &str = "1.0";
const PAYLOAD_BYTES: usize = 64 * 1024;
/// Agents started before waiting for their hellos: the stand-in's listen backlog is 128.
const BATCH: usize = 25;
/// Idle time before memory is sampled, so start-up and hello work is over.
const SETTLE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);

struct Options {
    agents: usize,
    baseline: usize,
    bin: PathBuf,
}

impl Options {
    fn from_env() -> Result<Options> {
        use bench::options::{agent_binary, number};
        let bin = agent_binary()?;
        Ok(Options {
            agents: number("BENCH_AGENTS", 200)? as usize,
            baseline: number("BENCH_BASELINE", 5)? as usize,
            bin,
        })
    }
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("ums_load: {e:#}");
            std::process::exit(2);
        }
    }
}

fn log(line: impl AsRef<str>) {
    eprintln!("ums_load: {}", line.as_ref());
}

/// Polls `condition` every [`POLL`] until it holds or `timeout` passes; returns whether it
/// held, or an error when the benchmark was interrupted.
fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        bench::interrupt::check()?;
        if condition() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

/// Sleeps `time` unless interrupted.
fn pause(time: Duration) -> Result<()> {
    wait_for(time, || false).map(drop)
}

fn run() -> Result<bool> {
    let opts = Options::from_env()?;
    bench::interrupt::catch()?;
    let limit = raise_fd_limit(opts.agents as u64 * 8 + 512)?;
    log(format!(
        "{} agents, binary {}, open files limit {limit}",
        opts.agents,
        opts.bin.display()
    ));
    let repo = support::temp_dir("bench-repo");
    let payload = support::pseudo_random_bytes(7, PAYLOAD_BYTES);
    support::write_app(
        repo.path(),
        APP,
        VERSION,
        &[("payload.bin", payload)],
        false,
    );
    let apache = support::Apache::builder(repo.path())
        .server_config(&repository_capacity(opts.agents))
        .start();

    let baseline = baseline_usage(&opts, &apache.url())?;
    log(format!(
        "baseline (no [ums]), {} agents: VmRSS {:?} KiB",
        baseline.len(),
        baseline.iter().map(|(_, u)| u.rss_kib).collect::<Vec<_>>()
    ));

    let pki = UmsPki::new();
    let ums = UmsStandIn::start(&pki);
    let mut fleet = Fleet::new(&opts.bin, &apache.url(), "ums")?;
    let greeted_s = start_fleet(&mut fleet, &pki, &ums, opts.agents)?;
    let greeted = bench::tally::greeted_devices(&ums.hellos());
    log(format!(
        "{} of {} devices greeted after {greeted_s:.2} s ({} sessions open)",
        greeted.len(),
        opts.agents,
        ums.greeted_sessions()
    ));
    pause(SETTLE)?;
    let connected = sample(&fleet);

    let update = json!({"id": "bench-update-1", "command": "update",
                        "idf": {"apps": [{"name": APP, "version": VERSION}]}});
    let first = broadcast(&ums, &update, opts.agents, greeted.len(), true)?;
    let mut second = json!(null);
    if first["lost"] == 0 {
        pause(Duration::from_secs(1))?;
        let again = json!({"id": "bench-update-2", "command": "update",
                           "idf": {"apps": [{"name": APP, "version": VERSION}]}});
        second = broadcast(&ums, &again, opts.agents, greeted.len(), false)?;
    }
    pause(SETTLE)?;
    let after = sample(&fleet);

    let health = bench::report::health(&mut fleet, &greeted, &connected, APP, VERSION);
    // Last, because every agent logs the lost connection as a warning.
    let reconnect = reconnect_storm(&ums, greeted.len())?;
    let mut summary = bench::report::summary(bench::report::Figures {
        agents: opts.agents,
        greeted: greeted.len(),
        greeted_s,
        baseline: &baseline,
        connected: &connected,
        after: &after,
        first: &first,
        second: &second,
        health: &health,
    });
    summary["reconnect"] = reconnect;
    let ok = summary["ok"] == true;
    if !ok || !health.is_clean() || std::env::var_os("BENCH_KEEP_LOGS").is_some() {
        let kept = bench::report::keep_logs(&fleet, &health, &slowest(&first), &ums.log())?;
        log(format!("logs kept in {}", kept.display()));
    }
    let killed = fleet.stop();
    if killed > 0 {
        log(format!(
            "{killed} agents did not stop after SIGTERM; killed"
        ));
    }
    bench::report::print_human(&summary);
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(ok)
}

/// The stand-in drops every session at once (a UMS restart behind a load balancer): the
/// seconds until each device said hello again, and how the returns spread over time.
fn reconnect_storm(ums: &UmsStandIn, devices: usize) -> Result<Value> {
    let dropped_at = Instant::now();
    ums.drop_connections();
    let back = || -> BTreeMap<String, f64> {
        let mut first = BTreeMap::new();
        for hello in ums.hellos().iter().filter(|h| h.at > dropped_at) {
            if let Some(id) = hello.json["hello"]["device_id"].as_str() {
                let secs = (hello.at - dropped_at).as_secs_f64();
                first.entry(id.to_string()).or_insert(secs);
            }
        }
        first
    };
    wait_for(Duration::from_secs(60), || back().len() >= devices)?;
    let mut secs: Vec<f64> = back().into_values().collect();
    secs.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        secs.get(((secs.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .map(ms)
    };
    let mut per_100ms = vec![0usize; secs.last().map_or(0, |s| (s * 10.0) as usize + 1)];
    for s in &secs {
        per_100ms[(s * 10.0) as usize] += 1;
    }
    let out = json!({
        "devices_back": secs.len(),
        "time_all_back_s": (secs.len() == devices).then(|| quantile(1.0)).flatten(),
        "back_latency_s": {"min": secs.first().copied().map(ms), "p50": quantile(0.5), "p95": quantile(0.95)},
        "hellos_per_100ms": per_100ms.iter().max(),
    });
    log(format!(
        "reconnect after every session was dropped: {} of {devices} back, all after {} s (min {} s, p50 {} s), at most {} hellos in one 100 ms",
        out["devices_back"],
        out["time_all_back_s"],
        out["back_latency_s"]["min"],
        out["back_latency_s"]["p50"],
        out["hellos_per_100ms"]
    ));
    Ok(out)
}

/// Apache directives that let the repository hold a connection for every agent at once.
///
/// The test support's Apache is sized for tests (2 processes of 16 threads: about 96
/// connections with keep-alive). With 200 agents the rest waited in the listen queue until a
/// kept-alive connection timed out (`KeepAliveTimeout 5`), and the installs came in steps of
/// 5 s: the repository was measured, not the agent. These come after the support's own
/// directives, so they win; every process is started at once and none is reaped while idle.
fn repository_capacity(agents: usize) -> String {
    const THREADS: usize = 16;
    let servers = agents.div_ceil(THREADS) + 1;
    let workers = servers * THREADS;
    format!(
        "ServerLimit {servers}\nStartServers {servers}\nMaxRequestWorkers {workers}\n\
         MaxSpareThreads {workers}\nThreadsPerChild {THREADS}"
    )
}

/// The devices of `slowest_installs` in a broadcast's figures.
fn slowest(figures: &Value) -> Vec<String> {
    figures["slowest_installs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["device"].as_str().map(String::from))
        .collect()
}

/// Memory of `opts.baseline` agents with the same configuration but no `[ums]`, idle.
fn baseline_usage(opts: &Options, repo_url: &str) -> Result<Vec<(String, Usage)>> {
    let mut fleet = Fleet::new(&opts.bin, repo_url, "baseline")?;
    for i in 0..opts.baseline {
        fleet.spawn(&format!("baseline-{i}"), None)?;
    }
    let answering = || fleet.agents.iter().all(|a| a.answers());
    if !wait_for(Duration::from_secs(60), answering)? {
        bail!(
            "a baseline agent did not answer on its control socket within 60 s; first log:\n{}",
            fleet.agents[0].stderr()
        );
    }
    pause(SETTLE)?;
    let usage = sample(&fleet);
    fleet.stop();
    Ok(usage)
}

/// Starts `n` agents in batches of [`BATCH`], each batch once the previous one said hello;
/// returns the seconds until every device was greeted (or the wait gave up).
fn start_fleet(fleet: &mut Fleet, pki: &UmsPki, ums: &UmsStandIn, n: usize) -> Result<f64> {
    let certs: Vec<_> = (0..n)
        .map(|i| pki.ca.client_cert(&format!("bench-{i}")))
        .collect();
    let url = ums.url();
    let greeted = || bench::tally::greeted_devices(&ums.hellos()).len();
    let started = Instant::now();
    for (i, cert) in certs.iter().enumerate() {
        let device_id = format!("bench-{i}");
        let section = UmsSection {
            url: &url,
            ca: pki.ca.cert_path(),
            cert: &cert.cert_path,
            key: &cert.key_path,
            device_id: &device_id,
        };
        fleet.spawn(&device_id, Some(&section))?;
        let spawned = i + 1;
        if (spawned % BATCH == 0 || spawned == n)
            && !wait_for(Duration::from_secs(60), || greeted() >= spawned)?
        {
            log(format!(
                "only {} of {spawned} devices greeted after 60 s; going on",
                greeted()
            ));
        }
    }
    wait_for(Duration::from_secs(30), || greeted() >= n)?;
    Ok(started.elapsed().as_secs_f64())
}

/// Memory and CPU time of every agent still running, by name.
fn sample(fleet: &Fleet) -> Vec<(String, Usage)> {
    fleet
        .agents
        .iter()
        .filter_map(|a| Some((a.name.clone(), a.usage()?)))
        .collect()
}

/// Sends `command` to every greeted session and waits for the `expected` greeted devices to
/// reply (and, with `install`, to report the app installed). Returns the figures as JSON; a
/// command is lost for each of the `agents` devices without an `accepted` reply.
fn broadcast(
    ums: &UmsStandIn,
    command: &Value,
    agents: usize,
    expected: usize,
    install: bool,
) -> Result<Value> {
    let id = command["id"].as_str().unwrap_or_default().to_string();
    let sent = Instant::now();
    let sent_to = ums.send(command);
    let reply_timeout = Duration::from_secs(60) + Duration::from_millis(200) * expected as u32;
    let replied = |ums: &UmsStandIn| -> BTreeSet<u64> {
        ums.replies_for(&id).iter().map(|f| f.conn).collect()
    };
    wait_for(reply_timeout, || replied(ums).len() >= expected)?;
    let devices = bench::tally::devices_by_connection(&ums.hellos());
    let replies = bench::tally::replies(&ums.replies_for(&id), &devices, sent);
    let (p50, p95, max) = bench::tally::quantiles(replies.accepted.values().copied());
    let all_replied = replies.accepted.len() == agents;
    log(format!(
        "{id}: sent to {sent_to} sessions; {} accepted, {} rejected, {} answered twice; \
         reply p50 {p50:.3} s, p95 {p95:.3} s, max {max:.3} s",
        replies.accepted.len(),
        replies.rejected.len(),
        replies.duplicates.len()
    ));
    let mut out = json!({
        "id": id,
        "sent_to": sent_to,
        "accepted": replies.accepted.len(),
        "rejected": replies.rejected.len(),
        "rejected_examples": replies.rejected.iter().take(3).map(|(d, v)| json!({"device": d, "reply": v})).collect::<Vec<_>>(),
        "duplicates": replies.duplicates.len(),
        "replies_from_unknown_connections": replies.unknown,
        "lost": agents.saturating_sub(replies.accepted.len()),
        "missing": (0..agents)
            .map(|i| format!("bench-{i}"))
            .filter(|d| !replies.accepted.contains_key(d))
            .take(20)
            .collect::<Vec<_>>(),
        "time_all_replied_s": all_replied.then_some(ms(max)),
        "reply_latency_s": {"p50": ms(p50), "p95": ms(p95), "max": ms(max)},
    });
    if install {
        let install_timeout =
            Duration::from_secs(120) + Duration::from_millis(500) * expected as u32;
        let done =
            |ums: &UmsStandIn| bench::tally::installed(&ums.events(), &devices, APP, VERSION, sent);
        wait_for(install_timeout, || done(ums).len() >= expected)?;
        let installed = done(ums);
        let (p50, p95, max) = bench::tally::quantiles(installed.values().copied());
        log(format!(
            "{id}: {} devices reported {APP} {VERSION} installed; p50 {p50:.3} s, p95 {p95:.3} s, max {max:.3} s",
            installed.len()
        ));
        out["installed_events"] = json!(installed.len());
        out["time_all_installed_s"] = json!((installed.len() == agents).then_some(ms(max)));
        out["installed_latency_s"] = json!({"p50": ms(p50), "p95": ms(p95), "max": ms(max)});
        let mut by_time: Vec<(&String, &f64)> = installed.iter().collect();
        by_time.sort_by(|a, b| b.1.total_cmp(a.1));
        out["slowest_installs"] = by_time
            .iter()
            .take(3)
            .map(|(d, t)| json!({"device": d, "s": ms(**t)}))
            .collect();
        let mut per_second = vec![0usize; max as usize + 1];
        for t in installed.values() {
            per_second[*t as usize] += 1;
        }
        out["installed_per_second"] = json!(per_second);
    }
    Ok(out)
}

/// Seconds rounded to the millisecond (the figures are not more precise than that).
fn ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// Raises the soft limit on open files to `needed` (the stand-in holds one socket per agent);
/// returns the limit in force.
fn raise_fd_limit(needed: u64) -> Result<u64> {
    use nix::libc;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct passed, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
    }
    if limit.rlim_cur >= needed {
        return Ok(limit.rlim_cur);
    }
    if limit.rlim_max < needed {
        bail!(
            "{needed} open files are needed but the hard limit is {} (raise `ulimit -Hn` or lower BENCH_AGENTS)",
            limit.rlim_max
        );
    }
    limit.rlim_cur = needed;
    // SAFETY: setrlimit only reads the struct passed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        bail!(
            "setrlimit(RLIMIT_NOFILE, {needed}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(needed)
}
