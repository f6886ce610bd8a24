//! Throughput without a limit: one file of `BENCH_SIZE_MIB` MiB from a private Apache on
//! loopback, `delivery` against `curl -o F URL && sync F` and against the same with
//! `sha256sum F` before the sync, pair by pair in the same run; then the peak RSS of the
//! agent, curl and wget fetching the same file.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use anyhow::{Context, Result};

use crate::bench::repo::{agent_config, delivery, make_app, write_idf};
use crate::bench::run::{argv, median, peak_rss_kib, remove, shell, sync, timed};
use crate::support::Apache;
use crate::{Options, SENDFILE, log};

const COMMANDS: [&str; 3] = ["agent", "curl+sync", "curl+sha256sum+sync"];
const RSS_TOOLS: [&str; 3] = ["agent", "curl", "wget"];

/// Runs the part in `work` and prints its tables.
pub fn run(opts: &Options, work: &Path) -> Result<()> {
    let size_mib = opts.size_mib;
    let runs = opts.runs;
    log(format!(
        "== throughput: {size_mib} MiB, no limit, {runs} runs"
    ));
    let docroot = tempfile::Builder::new()
        .prefix("docroot-")
        .tempdir_in(work)
        .context("cannot create the document root")?;
    make_app(docroot.path(), "big", "1", &[("big.bin", size_mib << 20)])?;
    let apache = Apache::builder(docroot.path())
        .server_config(SENDFILE)
        .start();
    let url = OsString::from(format!("{}big/1/big.bin", apache.url()));
    let url = url.as_os_str();
    let conf = agent_config(work, &apache.url(), None, 2)?;
    let idf = write_idf(work, &["big".to_string()])?;
    let out = work.join("out.bin");
    let out = out.as_os_str();
    let state = work.join("state");
    let agent = delivery(&opts.agent, &conf, &state, &idf);

    let mut walls: [Vec<f64>; 3] = Default::default();
    let mut rss: [Vec<f64>; 3] = Default::default();
    for i in 0..runs {
        for (c, name) in COMMANDS.iter().enumerate() {
            remove(&state)?;
            remove(Path::new(out))?;
            sync()?;
            let wall = match c {
                0 => timed(&agent)?,
                1 => timed(&shell(r#"curl -sS -o "$1" "$2" && sync "$1""#, &[out, url]))?,
                _ => timed(&shell(
                    r#"curl -sS -o "$1" "$2" && sha256sum "$1" >/dev/null && sync "$1""#,
                    &[out, url],
                ))?,
            };
            walls[c].push(wall);
            log(format!("  run {} {name}: {wall:.2} s", i + 1));
        }
        remove(&state)?;
        let word = OsStr::new;
        let curl = argv([word("curl"), word("-sS"), word("-o"), out, url]);
        let wget = argv([word("wget"), word("-q"), word("-O"), out, url]);
        for (values, line) in rss.iter_mut().zip([&agent, &curl, &wget]) {
            values.push(peak_rss_kib(line)? as f64);
        }
    }

    println!("\n### Throughput: {size_mib} MiB from loopback Apache, no limit, median of {runs}\n");
    println!("| command | median wall (s) | all runs (s) |\n|---|---|---|");
    for (name, values) in COMMANDS.iter().zip(&walls) {
        println!(
            "| {name} | {:.2} | {} |",
            median(values),
            join(values, |x| format!("{x:.2}"))
        );
    }
    let ratios = |reference: &[f64]| -> Vec<f64> {
        walls[0].iter().zip(reference).map(|(a, c)| a / c).collect()
    };
    println!(
        "\nagent / (curl + sync): median of pairwise ratios {:.2} (target <= 1.15)",
        median(&ratios(&walls[1]))
    );
    println!(
        "agent / (curl + sha256sum + sync): median {:.2} (target <= 0.6)",
        median(&ratios(&walls[2]))
    );
    println!("\n| peak RSS | median (MiB) | all runs (MiB) |\n|---|---|---|");
    for (name, values) in RSS_TOOLS.iter().zip(&rss) {
        println!(
            "| {name} | {:.1} | {} |",
            median(values) / 1024.0,
            join(values, |x| format!("{:.1}", x / 1024.0))
        );
    }
    Ok(())
}

fn join(values: &[f64], show: impl Fn(f64) -> String) -> String {
    values
        .iter()
        .map(|x| show(*x))
        .collect::<Vec<_>>()
        .join(", ")
}
