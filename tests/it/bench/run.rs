//! The commands a transfer benchmark compares, run as processes and measured from outside:
//! wall time to exit, peak RSS from GNU time (`%M`), and the growth of the files a download
//! writes, sampled every 50 ms while it runs.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::interrupt;
use crate::support::agent::SCRUBBED_ENV;

/// GNU time, for the peak RSS of one command.
pub const GNU_TIME: &str = "/usr/bin/time";
/// How often a growing download is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
/// How much of a failed command's stderr an error shows.
const STDERR_TAIL: usize = 2000;

/// A command line, program first.
pub type Argv = Vec<OsString>;

/// `items` as a command line.
pub fn argv<I, S>(items: I) -> Argv
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    items.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

/// `sh -c SCRIPT sh ARGS...`: a shell pipeline, its arguments as `$1`, `$2`, ...
pub fn shell(script: &str, args: &[&OsStr]) -> Argv {
    let mut line = argv(["sh", "-c", script, "sh"]);
    line.extend(args.iter().map(|a| a.to_os_string()));
    line
}

/// `argv` with stdin and stdout closed, without the agent's own environment variables (so
/// that no developer's config is read), not yet started.
fn command(argv: &[OsString]) -> Result<Command> {
    let (program, args) = argv.split_first().context("empty command line")?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    for key in SCRUBBED_ENV {
        cmd.env_remove(key);
    }
    Ok(cmd)
}

fn show(argv: &[OsString]) -> String {
    let words: Vec<_> = argv.iter().map(|a| a.to_string_lossy()).collect();
    words.join(" ")
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let start = text.len().saturating_sub(STDERR_TAIL);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// Runs `argv` to its exit; returns the wall time in seconds. An error when it fails.
pub fn timed(argv: &[OsString]) -> Result<f64> {
    interrupt::check()?;
    let mut cmd = command(argv)?;
    let start = Instant::now();
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {}", show(argv)))?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            show(argv),
            out.status,
            tail(&out.stderr)
        );
    }
    Ok(wall)
}

/// Peak RSS (KiB) of one run of `argv`, from GNU time.
pub fn peak_rss_kib(argv: &[OsString]) -> Result<u64> {
    interrupt::check()?;
    let mut line = self::argv([GNU_TIME, "-f", "%M"]);
    line.extend_from_slice(argv);
    let out = command(&line)?
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {}", show(&line)))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            show(&line),
            out.status,
            tail(&out.stderr)
        );
    }
    let last = stderr.lines().last().unwrap_or_default().trim();
    last.parse()
        .with_context(|| format!("{GNU_TIME} printed {last:?}, not a size in KiB"))
}

/// `sync`: what earlier runs left in the page cache is written before the next is timed.
pub fn sync() -> Result<()> {
    timed(&argv(["sync"])).map(drop)
}

/// Removes `path` (a file or a directory tree) if it exists.
pub fn remove(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    result.with_context(|| format!("cannot remove {}", path.display()))
}

/// One sample of a growing download: seconds since sampling began, bytes on disk.
pub type Sample = (f64, u64);

/// Runs `argv` and samples the summed size of `paths` every 50 ms until it exits (its stderr
/// goes to `stderr`, shown when it fails). The files may appear, be renamed or vanish between
/// samples: a missing file counts as empty.
pub fn sample_growth(argv: &[OsString], paths: &[PathBuf], stderr: &Path) -> Result<Vec<Sample>> {
    let log =
        fs::File::create(stderr).with_context(|| format!("cannot create {}", stderr.display()))?;
    let mut child = command(argv)?
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot run {}", show(argv)))?;
    let start = Instant::now();
    let mut samples = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot poll a child")? {
            break status;
        }
        if let Err(e) = interrupt::check() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let total = paths
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        samples.push((start.elapsed().as_secs_f64(), total));
        std::thread::sleep(SAMPLE_INTERVAL);
    };
    if !status.success() {
        let text = fs::read(stderr).unwrap_or_default();
        bail!("{} failed with {status}: {}", show(argv), tail(&text));
    }
    Ok(samples)
}

/// The median (the mean of the middle two for an even count); 0 for no values.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => 0.0,
        n if n.is_multiple_of(2) => (v[mid - 1] + v[mid]) / 2.0,
        _ => v[mid],
    }
}
