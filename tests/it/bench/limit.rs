//! The bandwidth limit: `BENCH_LIMIT_MB` MB (decimal) from a private Apache on loopback under
//! a limit, the growing files sampled from outside every 50 ms. One file for the agent,
//! `curl --limit-rate` and `wget --limit-rate` (part `limit`), or the same bytes split over
//! apps downloaded at once under one limit, the agent alone (part `parallel`).
//!
//! Mean rate error: bytes over the time from the first to the last byte, against the limit.
//! Worst window: the largest growth over any window of at least one second that starts after
//! the first second, as a percentage of the limit.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::bench::repo::{agent_config, delivery, make_app, write_idf};
use crate::bench::run::{Argv, Sample, argv, median, remove, sample_growth};
use crate::support::Apache;
use crate::{Options, SENDFILE, log};

/// One row of the table: limit, tool, median mean error, median worst window, worst window of
/// all runs.
type Row = (String, &'static str, f64, f64, f64);

/// Runs the part in `work` under each of `limits_mb` (the agent's `MB`: MiB per second) with
/// the bytes split over `apps` apps, and prints its table.
pub fn run(opts: &Options, work: &Path, limits_mb: &[u64], apps: usize) -> Result<()> {
    let label = if apps > 1 { "parallel" } else { "limit" };
    let file_mb = opts.limit_file_mb;
    let runs = opts.runs;
    let listed: Vec<_> = limits_mb.iter().map(|l| format!("{l}MB")).collect();
    log(format!(
        "== {label}: {apps} app(s), {file_mb} MB in all, limits {}",
        listed.join(", ")
    ));
    let docroot = tempfile::Builder::new()
        .prefix("docroot-")
        .tempdir_in(work)
        .context("cannot create the document root")?;
    let per_app = file_mb * 1000 * 1000 / apps as u64;
    let names: Vec<String> = (0..apps).map(|i| format!("app{i}")).collect();
    for name in &names {
        make_app(docroot.path(), name, "1", &[("data.bin", per_app)])?;
    }
    let apache = Apache::builder(docroot.path())
        .server_config(SENDFILE)
        .start();
    let conf_dir = work.join(format!("conf-{label}"));
    fs::create_dir_all(&conf_dir)
        .with_context(|| format!("cannot create {}", conf_dir.display()))?;
    let idf = write_idf(&conf_dir, &names)?;
    let state = work.join("state-limit");
    let out = work.join("limited.bin");
    let stderr = work.join("limited.stderr");
    let url = OsString::from(format!("{}app0/1/data.bin", apache.url()));
    // What the agent writes: the part while downloading, the file once verified and moved.
    let agent_files: Vec<PathBuf> = names
        .iter()
        .flat_map(|app| {
            ["staging", "apps"].map(|sub| state.join(sub).join(app).join("1").join("data.bin"))
        })
        .flat_map(|base| {
            let mut part = base.clone().into_os_string();
            part.push(".part");
            [base, PathBuf::from(part)]
        })
        .collect();
    let tools: &[&'static str] = if apps > 1 {
        &["agent"]
    } else {
        &["agent", "curl", "wget"]
    };

    let mut table: Vec<Row> = Vec::new();
    for &limit_mb in limits_mb {
        let limit = format!("{limit_mb}MB");
        let limit_bytes = (limit_mb * 1024 * 1024) as f64;
        let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); tools.len()];
        for r in 0..runs {
            for (t, &tool) in tools.iter().enumerate() {
                remove(&state)?;
                remove(&out)?;
                let (line, paths): (Argv, &[PathBuf]) = if tool == "agent" {
                    let conf = agent_config(&conf_dir, &apache.url(), Some(&limit), apps.max(2))?;
                    (delivery(&opts.agent, &conf, &state, &idf), &agent_files)
                } else {
                    let rate = format!("{limit_mb}M");
                    let mut line = if tool == "curl" {
                        argv(["curl", "-sS", "--limit-rate", rate.as_str(), "-o"])
                    } else {
                        argv(["wget", "-q", &format!("--limit-rate={rate}"), "-O"])
                    };
                    line.extend([out.clone().into_os_string(), url.clone()]);
                    (line, std::slice::from_ref(&out))
                };
                let samples = sample_growth(&line, paths, &stderr)?;
                let (err, worst) =
                    rate_figures(&samples, limit_bytes, (per_app * apps as u64) as f64);
                results[t].push((err, worst));
                log(format!(
                    "  {limit} run {} {tool}: mean error {err:+.2} %, worst window {worst:.1} %",
                    r + 1
                ));
            }
        }
        for (&tool, values) in tools.iter().zip(&results) {
            let errors: Vec<f64> = values.iter().map(|v| v.0).collect();
            let worsts: Vec<f64> = values.iter().map(|v| v.1).collect();
            let worst_all = worsts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            table.push((
                limit.clone(),
                tool,
                median(&errors),
                median(&worsts),
                worst_all,
            ));
        }
    }

    let title = if apps > 1 {
        "three apps in parallel"
    } else {
        "one file"
    };
    println!("\n### Bandwidth limit, {title}, {file_mb} MB, median of {runs}\n");
    println!(
        "| limit | tool | mean rate error (%) | worst 1 s window (% of limit), median | worst of all runs |"
    );
    println!("|---|---|---|---|---|");
    for (limit, tool, err, worst, worst_all) in table {
        println!("| {limit} | {tool} | {err:+.2} | {worst:.1} | {worst_all:.1} |");
    }
    Ok(())
}

/// Mean rate error and worst 1-second window after the first second, as % of the limit.
fn rate_figures(samples: &[Sample], limit_bytes: f64, total_bytes: f64) -> (f64, f64) {
    // Start at the first byte, end when everything has arrived; each is known only to within
    // one sampling interval, so take the middle of the interval in which it happened.
    let crossing = |reached: &dyn Fn(u64) -> bool| {
        samples
            .windows(2)
            .find(|w| reached(w[1].1))
            .map(|w| (w[0].0 + w[1].0) / 2.0)
            .or_else(|| samples.last().map(|s| s.0))
            .unwrap_or(0.0)
    };
    let first = crossing(&|n| n > 0);
    let done = crossing(&|n| n as f64 >= total_bytes);
    let mean_rate = total_bytes / (done - first).max(1e-9);
    let mut worst = 0.0_f64;
    for (i, &(t0, n0)) in samples.iter().enumerate() {
        if t0 < first + 1.0 {
            continue;
        }
        if let Some(&(t1, n1)) = samples[i..].iter().find(|(t1, _)| t1 - t0 >= 1.0) {
            worst = worst.max((n1 as f64 - n0 as f64) / (t1 - t0));
        }
    }
    (
        100.0 * (mean_rate - limit_bytes) / limit_bytes,
        100.0 * worst / limit_bytes,
    )
}
