//! The delta benchmark proper: publish each pair's new version with the reference artifacts,
//! run every method with the old version on the client side, and print one table per pair.
//!
//! Every method runs `BENCH_RUNS` times twice: straight to Apache (no limit) and through the
//! throttling proxy ([`Throttle`], 2 MiB/s for all connections together). Bytes over the wire
//! come from Apache's wire log ([`Wire`]) for every run; they are deterministic, and a run
//! that differs is reported. Every output is compared with the new file byte for byte.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::bench::delta_pairs::{Pair, size};
use crate::bench::delta_proxy::Throttle;
use crate::bench::delta_wire::Tally;
use crate::bench::delta_wire::Wire;
use crate::bench::run::{Argv, GNU_TIME, argv, median, remove, shell, timed};
use crate::log;

/// One line of a table: a method and what its runs measured.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub method: String,
    /// The command, as a reader would type it (URLs shortened to `$URL`).
    pub command: String,
    /// Bytes over the wire of each run (limited and unlimited alike).
    pub bytes: Vec<u64>,
    /// The wire log's account of the first run.
    pub requests: String,
    /// Wall times through the 2 MiB/s link, and without a limit (s).
    pub limited: Vec<f64>,
    pub unlimited: Vec<f64>,
    /// Peak RSS of each run (KiB), from GNU time.
    pub rss_kib: Vec<u64>,
    /// A size computed without network (xdelta3): `bytes` is that size, times are its encoding.
    pub offline: bool,
    pub note: Option<String>,
}

/// A pair as published on the benchmark's Apache.
pub struct Published {
    pub pair: Pair,
    /// `<pair>/`: the directory of the new file, its `.zsync`, `.caibx` and chunk store,
    /// relative to the server's root.
    pub dir: String,
    /// The new file's name in it.
    pub file: String,
    /// The agent's repository (relative to the server's root, `repo/`), its app for this pair
    /// (versions `1`: old, `2`: new) and the file's name in both versions.
    pub repo: String,
    pub app: String,
    pub payload: String,
}

/// What every measurement needs: the server, the link, the work directory.
pub struct Bench {
    pub agent: PathBuf,
    pub runs: usize,
    /// Bytes per second of the link.
    pub rate: u64,
    pub work: PathBuf,
    /// `http://127.0.0.1:PORT/` of Apache itself and of the throttling proxy in front of it.
    pub direct_url: String,
    pub throttle: Throttle,
    pub wire: Wire,
}

impl Bench {
    /// Runs `make(base URL)` (which prepares the client side and returns the command line)
    /// and then the command, `runs` times without and with the limit; after each run
    /// `output` must equal `expected`.
    pub fn measure(
        &self,
        method: &str,
        command: String,
        expected: &Path,
        output: &Path,
        mut make: impl FnMut(&str) -> Result<Argv>,
    ) -> Result<Row> {
        let mut row = Row {
            method: method.to_string(),
            command,
            ..Row::default()
        };
        for run in 0..self.runs {
            for limited in [false, true] {
                let base = if limited {
                    self.throttle.url()
                } else {
                    self.direct_url.clone()
                };
                remove(output)?;
                let line = make(&base)?;
                let rss_file = self.work.join("rss.txt");
                let mut timed_line = argv([
                    OsStr::new(GNU_TIME),
                    OsStr::new("-f"),
                    OsStr::new("%M"),
                    OsStr::new("-o"),
                    rss_file.as_os_str(),
                ]);
                timed_line.extend(line);
                let start = self.wire.mark()?;
                let wall =
                    timed(&timed_line).with_context(|| format!("{method}, run {}", run + 1))?;
                let tally: Tally = self.wire.since(&start)?;
                let rss = fs::read_to_string(&rss_file)
                    .ok()
                    .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
                    .with_context(|| format!("{GNU_TIME} left no peak RSS"))?;
                same_file(expected, output)
                    .with_context(|| format!("{method}, run {}: wrong output", run + 1))?;
                log(format!(
                    "  run {} {method}{}: {wall:.2} s, {} bytes, {}",
                    run + 1,
                    if limited { " (2 MiB/s)" } else { "" },
                    tally.sent(),
                    tally.summary()
                ));
                for line in tally.unusual().iter().take(5) {
                    log(format!("    answered: {line}"));
                }
                if row.requests.is_empty() {
                    row.requests = tally.summary();
                }
                row.bytes.push(tally.sent());
                row.rss_kib.push(rss);
                if limited {
                    row.limited.push(wall);
                } else {
                    row.unlimited.push(wall);
                }
            }
        }
        remove(output)?;
        Ok(row)
    }
}

/// An error unless `a` and `b` hold the same bytes.
pub fn same_file(a: &Path, b: &Path) -> Result<()> {
    let (la, lb) = (size(a)?, size(b)?);
    if la != lb {
        bail!("{} has {lb} bytes, {} has {la}", b.display(), a.display());
    }
    timed(&argv([
        OsStr::new("cmp"),
        OsStr::new("-s"),
        a.as_os_str(),
        b.as_os_str(),
    ]))
    .map(drop)
    .with_context(|| format!("{} differs from {}", b.display(), a.display()))
}

/// (a) `curl -o OUT URL`: the whole new file.
pub fn full_download(bench: &Bench, p: &Published) -> Result<Row> {
    let out = bench.work.join("full.out");
    let path = format!("{}{}", p.dir, p.file);
    bench.measure(
        "(a) full download: curl",
        format!("curl -sS -f -o OUT $URL/{path}"),
        &p.pair.new,
        &out,
        |base| {
            Ok(argv([
                OsString::from("curl"),
                "-sS".into(),
                "-f".into(),
                "-o".into(),
                out.clone().into(),
                format!("{base}{path}").into(),
            ]))
        },
    )
}

/// (c) `zsync -i OLD -o OUT URL.zsync`, in a directory of its own (it writes `OUT.part` and
/// may leave `OUT.zs-old` beside the output).
pub fn zsync(bench: &Bench, p: &Published) -> Result<Row> {
    let dir = bench.work.join("zsync");
    let out = dir.join("new.out");
    let path = format!("{}{}.zsync", p.dir, p.file);
    bench.measure(
        "(c) zsync",
        format!("zsync -q -i OLD -o OUT $URL/{path}"),
        &p.pair.new,
        &out,
        |base| {
            remove(&dir)?;
            fs::create_dir_all(&dir)?;
            let url = OsString::from(format!("{base}{path}"));
            Ok(shell(
                r#"cd "$1" && exec zsync -q -i "$2" -o "$3" "$4""#,
                &[
                    dir.as_os_str(),
                    p.pair.old.as_os_str(),
                    out.as_os_str(),
                    &url,
                ],
            ))
        },
    )
}

/// (d) `casync extract --store=URL/store/ --seed=OLD URL.caibx OUT`.
pub fn casync(bench: &Bench, p: &Published) -> Result<Row> {
    let out = bench.work.join("casync.out");
    let index = format!("{}{}.caibx", p.dir, p.file);
    let store = format!("{}store/", p.dir);
    bench.measure(
        "(d) casync extract --seed",
        format!("casync extract --store=$URL/{store} --seed=OLD $URL/{index} OUT"),
        &p.pair.new,
        &out,
        |base| {
            Ok(argv([
                OsString::from("casync"),
                "extract".into(),
                format!("--store={base}{store}").into(),
                OsString::from(format!("--seed={}", p.pair.old.display())),
                format!("{base}{index}").into(),
                out.clone().into(),
            ]))
        },
    )
}

/// (e) `xdelta3 -e -9 -B WINDOW -s OLD NEW DELTA`: the size of an ideal per-pair delta, made
/// with both versions in hand (no network). The window covers the whole old file, so
/// that xdelta3 can match anything in it. Its encoding time is reported once.
pub fn xdelta3(bench: &Bench, p: &Published) -> Result<Row> {
    let out = bench.work.join("xdelta3.out");
    let window = p
        .pair
        .old_size()?
        .next_power_of_two()
        .clamp(1 << 20, 1 << 30);
    let line = argv([
        OsString::from("xdelta3"),
        "-e".into(),
        "-9".into(),
        "-f".into(),
        "-B".into(),
        window.to_string().into(),
        "-s".into(),
        p.pair.old.clone().into(),
        p.pair.new.clone().into(),
        out.clone().into(),
    ]);
    remove(&out)?;
    let wall = timed(&line).context("xdelta3")?;
    let bytes = size(&out)?;
    log(format!("  xdelta3: {bytes} bytes in {wall:.2} s"));
    remove(&out)?;
    Ok(Row {
        method: "(e) xdelta3 (per-pair delta, no network)".into(),
        command: format!("xdelta3 -e -9 -B {window} -s OLD NEW DELTA"),
        bytes: vec![bytes],
        requests: String::new(),
        limited: Vec::new(),
        unlimited: vec![wall],
        rss_kib: Vec::new(),
        offline: true,
        note: None,
    })
}

/// The table of one pair, in Markdown.
pub fn table(bench: &Bench, p: &Published, rows: &[Row]) -> Result<String> {
    let new_size = p.pair.new_size()?;
    let old_size = p.pair.old_size()?;
    let find = |prefix: &str| {
        rows.iter()
            .find(|r| r.method.starts_with(prefix))
            .map(|r| median_u64(&r.bytes))
    };
    let zsync = find("(c)");
    let xdelta = find("(e)");
    let mut t = String::new();
    let rate_mib = bench.rate as f64 / f64::from(1 << 20);
    let _ = writeln!(
        t,
        "\n### {}\n\nold {} bytes, new {} bytes (`{}`); medians of {} runs; wall time through \
         the {rate_mib} MiB/s link and without a limit\n",
        p.pair.title, old_size, new_size, p.file, bench.runs
    );
    t.push_str(
        "| method | bytes over the wire | % of new file | wall at 2 MiB/s (s) | wall unlimited (s) \
         | peak RSS (MiB) | ÷ zsync | ÷ xdelta3 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let bytes = median_u64(&r.bytes);
        let ratio = |reference: Option<u64>| match reference {
            Some(z) if z > 0 => format!("{:.2}", bytes as f64 / z as f64),
            _ => "-".into(),
        };
        let limited = if r.offline {
            format!("({:.1})", bytes as f64 / bench.rate as f64)
        } else {
            format!("{:.1}", median(&r.limited))
        };
        let rss = if r.rss_kib.is_empty() {
            "-".into()
        } else {
            format!("{:.1}", median_u64(&r.rss_kib) as f64 / 1024.0)
        };
        let varied = if r.bytes.iter().any(|b| *b != r.bytes[0]) {
            format!(
                " (varied: {}..{})",
                r.bytes.iter().min().unwrap_or(&0),
                r.bytes.iter().max().unwrap_or(&0)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "| {} | {bytes}{varied} | {:.2} % | {limited} | {:.1} | {rss} | {} | {} |",
            r.method,
            bytes as f64 * 100.0 / new_size as f64,
            median(&r.unlimited),
            ratio(zsync),
            ratio(xdelta),
        );
    }
    t.push('\n');
    for r in rows {
        let _ = write!(t, "- {}: `{}`", r.method, r.command);
        if !r.requests.is_empty() {
            let _ = write!(t, "; {}", r.requests);
        }
        if let Some(note) = &r.note {
            let _ = write!(t, "; {note}");
        }
        t.push('\n');
    }
    Ok(t)
}

fn median_u64(values: &[u64]) -> u64 {
    let v: Vec<f64> = values.iter().map(|x| *x as f64).collect();
    median(&v).round() as u64
}
