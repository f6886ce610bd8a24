//! Transfers against the reference tools (`scripts/bench throughput limit parallel`), each
//! part against its own private Apache on loopback (`support::Apache`, with sendfile), in the
//! same run as the tools it is compared with, so the figures are ratios on the same machine
//! at the same moment:
//!
//! - `throughput`: one `BENCH_SIZE_MIB` MiB file, no limit: wall time of `delivery` against
//!   `curl -o F && sync F` and `curl -o F && sha256sum F && sync F`, pair by pair; peak RSS of
//!   the agent, curl and wget;
//! - `limit`: 2MB and 10MB on one `BENCH_LIMIT_MB` MB file: mean rate error and the worst
//!   1-second window after the first second, sampled from outside every 50 ms, for the agent,
//!   `curl --limit-rate` and `wget --limit-rate`;
//! - `parallel`: three apps at once under 2MB: the same figures for the sum.
//!
//! Output: Markdown tables on stdout (as `docs/BENCHMARKS.md` shows them), progress on stderr.
//! Not a test: nothing is asserted; the exit code is 2 when a command failed.
//!
//! Arguments or `BENCH_PARTS` (comma-separated) choose the parts, default all three in the
//! order above. Environment: `BENCH_RUNS` (5), `BENCH_SIZE_MIB` (1024), `BENCH_LIMIT_MB` (40),
//! `BENCH_DIR` (where the files go, /var/tmp: not a tmpfs, since persistence is part of what
//! is measured), `IGEL_AGENT_BIN` (the binary to measure; default: the one Cargo built for
//! this bench, which is not the release build: `scripts/bench` passes a copy of that).
//!
//! Needs Apache (`apache2-bin`), curl, wget and GNU time (`/usr/bin/time`).

// The bench is a crate of its own (`[[bench]] path = "tests/it/transfer_bench.rs"` in
// Cargo.toml) whose root sits beside the test binary's (`tests/it/main.rs`), so both reach the
// one `support` module by plain module resolution, without `#[path]`. It uses Apache and the
// environment the agent runs without; the rest of `support` serves the tests, and the test
// binary is where dead code in it is caught, hence the allowance here only.
#[allow(dead_code, unused_imports)]
mod support;

// The bench's own modules, files in `tests/it/bench/`: the apps it serves and the agent's
// configuration, the processes it runs and measures, one module per part, how SIGINT and
// SIGTERM end it. Declared inline so that this bench compiles none of the UMS load bench's.
mod bench {
    pub mod interrupt;
    pub mod limit;
    pub mod options;
    pub mod repo;
    pub mod run;
    pub mod throughput;
}

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Apache's default is off; the benchmarks have always measured Apache with sendfile.
pub const SENDFILE: &str = "EnableSendfile On";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Throughput,
    Limit,
    Parallel,
}

impl Part {
    const ALL: [Part; 3] = [Part::Throughput, Part::Limit, Part::Parallel];

    fn parse(name: &str) -> Result<Part> {
        match name {
            "throughput" => Ok(Part::Throughput),
            "limit" => Ok(Part::Limit),
            "parallel" => Ok(Part::Parallel),
            _ => bail!("unknown part {name:?} (throughput, limit, parallel)"),
        }
    }
}

/// What the parts need to know.
pub struct Options {
    /// The binary measured.
    pub agent: PathBuf,
    pub runs: usize,
    pub size_mib: u64,
    pub limit_file_mb: u64,
    dir: PathBuf,
    parts: Vec<Part>,
}

impl Options {
    fn from_env() -> Result<Options> {
        use bench::options::{agent_binary, named_parts, number};
        let agent = agent_binary()?;
        let mut parts = named_parts("BENCH_PARTS")
            .iter()
            .map(|p| Part::parse(p))
            .collect::<Result<Vec<_>>>()?;
        if parts.is_empty() {
            parts = Part::ALL.to_vec();
        }
        Ok(Options {
            agent,
            runs: number("BENCH_RUNS", 5)? as usize,
            size_mib: number("BENCH_SIZE_MIB", 1024)?,
            limit_file_mb: number("BENCH_LIMIT_MB", 40)?,
            dir: std::env::var_os("BENCH_DIR").map_or_else(|| "/var/tmp".into(), PathBuf::from),
            parts,
        })
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("transfer bench: {e:#}");
        std::process::exit(2);
    }
}

/// Progress, on stderr.
pub fn log(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

fn run() -> Result<()> {
    let opts = Options::from_env()?;
    bench::interrupt::catch()?;
    log(format!("agent: {}", opts.agent.display()));
    let work = tempfile::Builder::new()
        .prefix("igel-bench.")
        .tempdir_in(&opts.dir)
        .with_context(|| format!("cannot create a directory in {}", opts.dir.display()))?;
    // Apache's workers run as nobody when we are root: they must reach the document roots.
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))
        .context("cannot chmod the work directory")?;
    for part in &opts.parts {
        match part {
            Part::Throughput => bench::throughput::run(&opts, work.path())?,
            Part::Limit => bench::limit::run(&opts, work.path(), &[2, 10], 1)?,
            Part::Parallel => bench::limit::run(&opts, work.path(), &[2], 3)?,
        }
    }
    Ok(())
}
