//! Delta updates against the reference tools (`scripts/bench delta`, issue 14): for each pair
//! of versions, the new one published on a private Apache on loopback (`support::Apache`), the
//! old one on the client side, in one run:
//!
//! - (a) a full download, `curl`;
//! - (b) the agent's delta update, version 1 installed ([`bench::delta_agent::agent_delta`]);
//! - (c) `zsync -i OLD` with a `.zsync` control file (`zsyncmake`, default block size);
//! - (d) `casync extract --seed=OLD` of a `.caibx` index with its chunk store on the same
//!   Apache;
//! - (e) `xdelta3 -e -9 -s OLD NEW`: the size of an ideal per-pair delta (no network).
//!
//! Bytes over the wire are what Apache sent for all requests of a run, headers included
//! (`%O` of `mod_logio`, in a log of its own: `bench::delta_wire`). Wall time is measured
//! twice: straight to Apache, and through a throttling proxy on loopback that lets 2 MiB/s
//! (2 × 1024 × 1024 bytes per second) through to the clients, all connections together
//! (`bench::delta_proxy`): zsync and casync have no limit of their own, so every method goes
//! through the same link. Peak RSS from GNU time. Every output is compared with the new file.
//!
//! Pairs (`bench::delta_pairs`; built once into `BENCH_DIR/igel-bench-delta/`, kept):
//! `wheel-tar`, `wheel-sqfs` (two releases of a wheel from PyPI, unpacked, as an uncompressed
//! tar and as a squashfs image), `random-5pct` (a random file with 5 % of its bytes changed in
//! runs of 1-8 KiB) and `insert-64k` (the same file with 64 KiB inserted at 1 MiB).
//!
//! Output: a Markdown table per pair on stdout, progress on stderr. Not a test: nothing is
//! asserted; the exit code is 2 when anything failed (a missing tool is such a failure).
//!
//! Arguments or `BENCH_DELTA_PAIRS` (comma-separated) choose the pairs, default all four.
//! Environment: `BENCH_RUNS` (3), `BENCH_DELTA_MIB` (256: the synthetic files),
//! `BENCH_DELTA_WHEELS` (`scipy==1.11.3,scipy==1.11.4`), `BENCH_DIR` (/var/tmp),
//! `IGEL_AGENT_BIN` (the binary to measure; default: the one Cargo built for this bench).
//!
//! Needs Apache (`apache2-bin`), curl, GNU time, zsync, casync, xdelta3, squashfs-tools,
//! unzip and pip (`python3 -m pip`), and PyPI for the first run.

// The bench is a crate of its own beside the test binary's root, like `transfer_bench.rs`:
// see the comment there.
#[allow(dead_code, unused_imports)]
mod support;

mod bench {
    pub mod delta;
    pub mod delta_agent;
    pub mod delta_pairs;
    pub mod delta_proxy;
    pub mod delta_publish;
    pub mod delta_wire;
    pub mod interrupt;
    pub mod options;
    // The transfer bench's apps and agent configuration; this bench uses a part of it.
    #[allow(dead_code)]
    pub mod repo;
    #[allow(dead_code)]
    pub mod run;
}

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use bench::delta::{Bench, Published, Row, casync, full_download, table, xdelta3, zsync};
use bench::delta_agent::agent_delta;
use bench::delta_pairs::{Pair, synthetic_pairs, wheel_pairs};
use bench::delta_proxy::Throttle;
use bench::delta_publish::{index_repo, prune_repo, publish};
use bench::delta_wire::{Wire, apache_directives};
use support::Apache;

/// Apache's default is off; the benchmarks have always measured Apache with sendfile.
const SENDFILE: &str = "EnableSendfile On";
/// The link: 2 MiB/s, as the agent spells `2MB` and curl `--limit-rate 2M`.
const RATE: u64 = 2 * 1024 * 1024;
const PARTS: [&str; 4] = ["wheel-tar", "wheel-sqfs", "random-5pct", "insert-64k"];

/// Programs the bench runs, and the Debian package of each.
const TOOLS: &[(&str, &str)] = &[
    ("/usr/sbin/apache2", "apache2-bin"),
    ("curl", "curl"),
    ("/usr/bin/time", "time"),
    ("zsync", "zsync"),
    ("zsyncmake", "zsync"),
    ("casync", "casync"),
    ("/usr/lib/casync/protocols/casync-http", "casync"),
    ("xdelta3", "xdelta3"),
    ("mksquashfs", "squashfs-tools"),
    ("unzip", "unzip"),
    ("tar", "tar"),
    ("cmp", "diffutils"),
    ("python3", "python3-pip"),
];

fn main() {
    if let Err(e) = run() {
        eprintln!("delta bench: {e:#}");
        std::process::exit(2);
    }
}

/// Progress, on stderr.
pub fn log(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

struct Options {
    agent: PathBuf,
    runs: usize,
    mib: u64,
    dir: PathBuf,
    parts: Vec<String>,
}

fn options() -> Result<Options> {
    use bench::options::{agent_binary, named_parts, number};
    let agent = agent_binary()?;
    let mut parts = named_parts("BENCH_DELTA_PAIRS");
    for p in &parts {
        if !PARTS.contains(&p.as_str()) {
            bail!("unknown pair {p:?} ({})", PARTS.join(", "));
        }
    }
    if parts.is_empty() {
        parts = PARTS.iter().map(|p| p.to_string()).collect();
    }
    Ok(Options {
        agent,
        runs: number("BENCH_RUNS", 3)? as usize,
        mib: number("BENCH_DELTA_MIB", 256)?,
        dir: std::env::var_os("BENCH_DIR").map_or_else(|| "/var/tmp".into(), PathBuf::from),
        parts,
    })
}

/// An error naming every missing program and its package.
fn check_tools() -> Result<()> {
    let found = |name: &str| {
        if name.starts_with('/') {
            return Path::new(name).is_file();
        }
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    let missing: Vec<_> = TOOLS.iter().filter(|(name, _)| !found(name)).collect();
    if !missing.is_empty() {
        let names: Vec<_> = missing.iter().map(|(n, _)| *n).collect();
        let mut packages: Vec<_> = missing.iter().map(|(_, p)| *p).collect();
        packages.dedup();
        bail!(
            "missing {} (apt-get install {}; scripts/bench delta installs them as root)",
            names.join(", "),
            packages.join(" ")
        );
    }
    let pip = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .context("cannot run python3")?;
    if !pip.status.success() {
        bail!("python3 -m pip does not work (apt-get install python3-pip)");
    }
    Ok(())
}

/// The first `words` words of the first line of `program args` (stdout, else stderr), for the
/// machine line.
fn first_line(program: &str, args: &[&str], words: usize) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .take(words)
                .collect::<Vec<_>>()
                .join(" ")
                .trim_end_matches(',')
                .to_string()
        })
        .unwrap_or_else(|e| format!("{program}: {e}"))
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

fn run() -> Result<()> {
    let opts = options()?;
    check_tools()?;
    bench::interrupt::catch()?;
    let cache = opts.dir.join("igel-bench-delta");
    let www = cache.join("www");
    fs::create_dir_all(&www).with_context(|| format!("cannot create {}", www.display()))?;
    // Apache's workers run as nobody when we are root: they must reach the document root.
    for dir in [&cache, &www] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", dir.display()))?;
    }
    log(format!(
        "== delta: {} ({} runs, synthetic files {} MiB, cache {})",
        opts.parts.join(", "),
        opts.runs,
        opts.mib,
        cache.display()
    ));

    let mut pairs: Vec<Pair> = Vec::new();
    if opts.parts.iter().any(|p| p.starts_with("wheel-")) {
        let (tar, sqfs) = wheel_pairs(&cache)?;
        pairs.extend([tar, sqfs]);
    }
    if opts
        .parts
        .iter()
        .any(|p| p == "random-5pct" || p == "insert-64k")
    {
        let (changed, inserted) = synthetic_pairs(&cache, opts.mib)?;
        pairs.extend([changed, inserted]);
    }
    pairs.retain(|p| opts.parts.contains(&p.name));
    // In the order asked for.
    pairs.sort_by_key(|p| opts.parts.iter().position(|n| *n == p.name));

    let mut published = Vec::new();
    for pair in &pairs {
        published.push(publish(&www, pair)?);
    }
    let apps: Vec<String> = published.iter().map(|p| p.app.clone()).collect();
    prune_repo(&www, &apps)?;
    index_repo(&opts.agent, &www)?;

    let work = tempfile::Builder::new()
        .prefix("igel-bench-delta.")
        .tempdir_in(&opts.dir)
        .with_context(|| format!("cannot create a directory in {}", opts.dir.display()))?;
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))
        .context("cannot chmod the work directory")?;
    let wire_log = work.path().join("wire.log");
    let apache = Apache::builder(&www)
        .server_config(SENDFILE)
        .server_config(&apache_directives(&wire_log))
        .start();
    let addr: SocketAddr = format!("127.0.0.1:{}", apache.port()).parse()?;
    let bench = Bench {
        agent: opts.agent.clone(),
        runs: opts.runs,
        rate: RATE,
        work: work.path().to_path_buf(),
        direct_url: apache.url(),
        throttle: Throttle::start(addr, RATE)?,
        wire: Wire::new(wire_log, addr),
    };

    println!(
        "\nMachine: {}. Tools: {}; {}; {}; {}; {}; {}.",
        machine(),
        first_line("/usr/sbin/apache2", &["-v"], 3),
        first_line("curl", &["--version"], 2),
        first_line("zsync", &["-V"], 2),
        first_line("casync", &["--version"], 2),
        first_line("xdelta3", &["-V"], 3),
        first_line("mksquashfs", &["-version"], 3),
    );
    println!(
        "Command: BENCH_RUNS={} BENCH_DELTA_MIB={} BENCH_DELTA_WHEELS={} cargo bench --bench delta -- {}\n\nAll methods fetch through the same loopback proxy limited to 2 MiB/s for all its connections together (64 KiB burst); bytes over the wire are what Apache sent, headers included (`%O`).",
        opts.runs,
        opts.mib,
        bench::delta_pairs::wheel_specs().map_or_else(|_| "?".into(), |(a, b)| format!("{a},{b}")),
        opts.parts.join(" ")
    );
    for p in &published {
        log(format!("== {}: {}", p.pair.name, p.pair.title));
        let rows = measure_pair(&bench, p)?;
        println!("{}", table(&bench, p, &rows)?);
    }
    if let Some(p) = published.iter().max_by_key(|p| file_len(&p.pair.old)) {
        println!("{}", chunking_speed(&p.pair.old, opts.runs.max(3))?);
    }
    Ok(())
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// How fast the agent reads and cuts a local version (what a device does to every seed of a
/// delta): `chunks::chunk_reader` with the default parameters over `old`, from the page cache
/// (read once before), median of `runs`.
fn chunking_speed(old: &Path, runs: usize) -> Result<String> {
    use igel_update_agent::chunks::{Chunker, Params, chunk_reader};
    let chunker = Chunker::new(Params::DEFAULT);
    let mut rates = Vec::new();
    for _ in 0..=runs {
        let file = std::fs::File::open(old).with_context(|| format!("{}", old.display()))?;
        let started = std::time::Instant::now();
        let mut large = 0u64;
        let bytes = chunk_reader(&chunker, file, |_| {
            large += 1;
            Ok(())
        })?;
        rates.push(bytes as f64 / started.elapsed().as_secs_f64() / 1e6);
    }
    // The first run fills the page cache.
    let mut warm = rates.split_off(1);
    warm.sort_by(f64::total_cmp);
    Ok(format!(
        "### Reading and cutting a local version\n\n`chunks::chunk_reader` (FastCDC small chunks with XXH3, SHA-256 per large chunk) over {} ({} bytes, from the page cache): median {:.0} MB/s of {} runs ({}).\n",
        old.display(),
        file_len(old),
        warm[warm.len() / 2],
        warm.len(),
        warm.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Every method on one pair, in the table's order.
fn measure_pair(bench: &Bench, p: &Published) -> Result<Vec<Row>> {
    Ok(vec![
        full_download(bench, p)?,
        agent_delta(bench, p)?,
        zsync(bench, p)?,
        casync(bench, p)?,
        xdelta3(bench, p)?,
    ])
}
