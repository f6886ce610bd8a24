//! The benchmark's verdict: the agents' health (never connected, exited, warnings, memory
//! outliers, not installed), the JSON summary, the human lines, and the logs kept when
//! something went wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::bench::fleet::{Fleet, Usage};
use crate::bench::tally::median;

/// How many agents' logs are kept when something went wrong.
const KEPT_AGENTS: usize = 8;

/// What went wrong with which agent (names are device ids).
#[derive(Debug, Default)]
pub struct Health {
    pub never_connected: Vec<String>,
    pub exited: Vec<String>,
    pub not_installed: Vec<String>,
    /// Agents whose log has WARN or ERROR lines.
    pub warned: Vec<String>,
    /// Distinct warning and error messages (without timestamps) and how many lines had each.
    pub messages: BTreeMap<String, usize>,
    /// Agents that logged a retry (at INFO: a transfer that went on after a failure).
    pub retried: Vec<String>,
    /// Distinct retry messages and how many lines had each.
    pub retries: BTreeMap<String, usize>,
    /// Connected agents whose VmRSS is more than 25 % off the median.
    pub memory_outliers: Vec<(String, u64)>,
}

impl Health {
    pub fn is_clean(&self) -> bool {
        self.never_connected.is_empty()
            && self.exited.is_empty()
            && self.not_installed.is_empty()
            && self.warned.is_empty()
            && self.retried.is_empty()
            && self.memory_outliers.is_empty()
    }
}

pub fn health(
    fleet: &mut Fleet,
    greeted: &BTreeSet<String>,
    connected: &[(String, Usage)],
    app: &str,
    version: &str,
) -> Health {
    let mut health = Health::default();
    for (name, status) in fleet.exited() {
        health.exited.push(format!("{name} ({status})"));
    }
    for agent in &fleet.agents {
        if !greeted.contains(&agent.name) {
            health.never_connected.push(agent.name.clone());
        }
        if !agent.installed(app, version) {
            health.not_installed.push(agent.name.clone());
        }
        let (mut warned, mut retried) = (false, false);
        for line in agent.stderr().lines() {
            // Lines are `<timestamp> <LEVEL> <message>`: drop the timestamp.
            let text = || -> String {
                line.split_once(' ')
                    .map_or(line, |(_, rest)| rest)
                    .trim()
                    .chars()
                    .take(240)
                    .collect()
            };
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                warned = true;
                *health.messages.entry(text()).or_default() += 1;
            } else if line.contains("retrying") {
                retried = true;
                *health.retries.entry(text()).or_default() += 1;
            }
        }
        if warned {
            health.warned.push(agent.name.clone());
        }
        if retried {
            health.retried.push(agent.name.clone());
        }
    }
    let rss: Vec<u64> = connected.iter().map(|(_, u)| u.rss_kib).collect();
    let mid = median(&rss);
    health.memory_outliers = connected
        .iter()
        .filter(|(_, u)| (u.rss_kib as f64 - mid).abs() > 0.25 * mid)
        .map(|(name, u)| (name.clone(), u.rss_kib))
        .collect();
    health
}

/// Everything the summary is made of.
pub struct Figures<'a> {
    pub agents: usize,
    pub greeted: usize,
    pub greeted_s: f64,
    pub baseline: &'a [(String, Usage)],
    pub connected: &'a [(String, Usage)],
    pub after: &'a [(String, Usage)],
    pub first: &'a Value,
    pub second: &'a Value,
    pub health: &'a Health,
}

pub fn summary(f: Figures) -> Value {
    let med = |samples: &[(String, Usage)], pick: fn(&Usage) -> u64| -> f64 {
        median(&samples.iter().map(|(_, u)| pick(u)).collect::<Vec<_>>())
    };
    let rss = |u: &Usage| u.rss_kib;
    let anon = |u: &Usage| u.anon_kib;
    let cpu = |u: &Usage| u.cpu_ms;
    let connected_rss: Vec<u64> = f.connected.iter().map(|(_, u)| u.rss_kib).collect();
    let count =
        |key: &str| f.first[key].as_u64().unwrap_or(0) + f.second[key].as_u64().unwrap_or(0);
    let (lost, duplicates, rejected) = (count("lost"), count("duplicates"), count("rejected"));
    let installed = f.agents - f.health.not_installed.len();
    let ok = lost == 0
        && duplicates == 0
        && rejected == 0
        && installed == f.agents
        && f.first["installed_events"] == f.agents
        && f.health.exited.is_empty();
    json!({
        "agents": f.agents,
        "greeted": f.greeted,
        "time_all_greeted_s": crate::ms(f.greeted_s),
        "time_all_replied_s": f.first["time_all_replied_s"],
        "reply_latency_s": f.first["reply_latency_s"],
        "time_all_installed_s": f.first["time_all_installed_s"],
        "installed_latency_s": f.first["installed_latency_s"],
        "second_update": f.second,
        "rss_connected_median_kib": med(f.connected, rss),
        "rss_baseline_median_kib": med(f.baseline, rss),
        "per_connection_kib": med(f.connected, rss) - med(f.baseline, rss),
        "rss_connected_min_kib": connected_rss.iter().min(),
        "rss_connected_max_kib": connected_rss.iter().max(),
        "rss_baseline_kib": f.baseline.iter().map(|(_, u)| u.rss_kib).collect::<Vec<_>>(),
        "anon_connected_median_kib": med(f.connected, anon),
        "anon_baseline_median_kib": med(f.baseline, anon),
        "per_connection_anon_kib": med(f.connected, anon) - med(f.baseline, anon),
        "rss_after_update_median_kib": med(f.after, rss),
        "anon_after_update_median_kib": med(f.after, anon),
        "cpu_ms_baseline_median": med(f.baseline, cpu),
        "cpu_ms_connected_median": med(f.connected, cpu),
        "cpu_ms_after_update_median": med(f.after, cpu),
        "update": f.first,
        "lost": lost,
        "duplicates": duplicates,
        "rejected": rejected,
        "state_installed": installed,
        "never_connected": f.health.never_connected,
        "exited": f.health.exited,
        "not_installed": f.health.not_installed.iter().take(20).collect::<Vec<_>>(),
        "agents_with_warnings": f.health.warned.len(),
        "warning_messages": f.health.messages.iter().take(10).map(|(m, n)| json!({"lines": n, "message": m})).collect::<Vec<_>>(),
        "agents_with_retries": f.health.retried.len(),
        "retry_messages": f.health.retries.iter().take(10).map(|(m, n)| json!({"lines": n, "message": m})).collect::<Vec<_>>(),
        "memory_outliers": f.health.memory_outliers.iter().map(|(n, k)| json!({"agent": n, "rss_kib": k})).collect::<Vec<_>>(),
        "ok": ok,
    })
}

pub fn print_human(s: &Value) {
    let lines = [
        format!(
            "{} agents, {} greeted in {} s",
            s["agents"], s["greeted"], s["time_all_greeted_s"]
        ),
        format!(
            "update: all replied after {} s (reply p50/p95/max {}/{}/{} s), all installed after {} s",
            s["time_all_replied_s"],
            s["reply_latency_s"]["p50"],
            s["reply_latency_s"]["p95"],
            s["reply_latency_s"]["max"],
            s["time_all_installed_s"]
        ),
        format!(
            "second update (nothing to transfer): all replied after {} s",
            s["second_update"]["time_all_replied_s"]
        ),
        format!(
            "VmRSS median: connected {} KiB, baseline {} KiB, per connection {} KiB (RssAnon {} KiB); after the update {} KiB",
            s["rss_connected_median_kib"],
            s["rss_baseline_median_kib"],
            s["per_connection_kib"],
            s["per_connection_anon_kib"],
            s["rss_after_update_median_kib"]
        ),
        format!(
            "lost {}, duplicates {}, rejected {}, state.json installed {}/{}; never connected {}, exited {}, with warnings {}, with retries {}, memory outliers {}",
            s["lost"],
            s["duplicates"],
            s["rejected"],
            s["state_installed"],
            s["agents"],
            s["never_connected"].as_array().map_or(0, Vec::len),
            s["exited"].as_array().map_or(0, Vec::len),
            s["agents_with_warnings"],
            s["agents_with_retries"],
            s["memory_outliers"].as_array().map_or(0, Vec::len)
        ),
    ];
    for line in lines {
        crate::log(line);
    }
}

/// Copies the logs, `state.json` and `ums.json` of up to [`KEPT_AGENTS`] affected agents (and
/// of `also`) and the stand-in's connection log into `target/ums_load/` (emptied first); returns the path.
pub fn keep_logs(
    fleet: &Fleet,
    health: &Health,
    also: &[String],
    standin_log: &[String],
) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("ums_load");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let exited: Vec<&str> = health
        .exited
        .iter()
        .filter_map(|e| e.split(' ').next())
        .collect();
    let affected: BTreeSet<&str> = health
        .never_connected
        .iter()
        .map(String::as_str)
        .chain(exited)
        .chain(health.not_installed.iter().map(String::as_str))
        .chain(health.warned.iter().map(String::as_str))
        .chain(health.retried.iter().map(String::as_str))
        .chain(health.memory_outliers.iter().map(|(n, _)| n.as_str()))
        .chain(also.iter().map(String::as_str))
        .collect();
    for agent in fleet
        .agents
        .iter()
        .filter(|a| affected.contains(a.name.as_str()))
        .take(KEPT_AGENTS)
    {
        let _ = fs::write(dir.join(format!("{}.stderr", agent.name)), agent.stderr());
        for file in ["state.json", "ums.json"] {
            let _ = fs::copy(
                agent.state_dir.join(file),
                dir.join(format!("{}.{file}", agent.name)),
            );
        }
    }
    fs::write(dir.join("standin.log"), standin_log.join("\n"))
        .with_context(|| format!("cannot write {}", dir.display()))?;
    Ok(dir)
}
