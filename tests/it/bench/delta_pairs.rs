//! The pairs of versions the delta benchmark updates from and to, built once into
//! `BENCH_DIR/igel-bench-delta/pairs/` and kept between runs (every file is written under a
//! temporary name and renamed when complete, so what exists is whole):
//!
//! - two releases of a real binary wheel from PyPI (`pip download`, default scipy 1.11.3 and
//!   1.11.4 for CPython 3.11, manylinux2014 x86_64), unpacked with `unzip` (the wheel's own
//!   modes and timestamps) and packed twice: an uncompressed tar (`tar --sort=name --mtime=@0
//!   --owner=0 --group=0 --numeric-owner`) and a squashfs image (`mksquashfs TREE OUT
//!   -noappend`, otherwise default settings: gzip, 128 KiB blocks, the files' own timestamps
//!   and the creation time of the image, as a real release would have);
//! - a synthetic file of `BENCH_DELTA_MIB` MiB (xorshift64* from a fixed seed) and a copy with
//!   5 % of its bytes changed, in runs of 1 to 8 KiB scattered uniformly through it;
//! - the same file with 64 KiB inserted at 1 MiB (content shifts).

use std::ffi::OsStr;
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::bench::run::{argv, remove, shell, timed};
use crate::log;

/// One update: `old` is on the device, `new` is published.
#[derive(Clone, Debug)]
pub struct Pair {
    /// Short name, also the directory it is published in: `scipy-tar`, `random-5pct`, ...
    pub name: String,
    /// What the table heading says.
    pub title: String,
    pub old: PathBuf,
    pub new: PathBuf,
}

impl Pair {
    /// The name the new file is published under (`new`'s file name).
    pub fn file_name(&self) -> String {
        self.new
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn new_size(&self) -> Result<u64> {
        size(&self.new)
    }

    pub fn old_size(&self) -> Result<u64> {
        size(&self.old)
    }
}

pub fn size(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}

/// `path.tmp`: where a cached file is written before the rename.
fn temp_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Makes `path` with `make(temporary path)` unless it exists; the temporary is renamed to
/// `path` only when `make` succeeded.
fn cached(path: &Path, make: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let tmp = temp_of(path);
    remove(&tmp)?;
    make(&tmp).with_context(|| format!("cannot make {}", path.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename {}", tmp.display()))
}

// ---------------------------------------------------------------------------------------------
// The wheel pairs.

/// `name==version` of the two releases, from `BENCH_DELTA_WHEELS` (`scipy==1.11.3,scipy==1.11.4`).
pub fn wheel_specs() -> Result<(String, String)> {
    let text = std::env::var("BENCH_DELTA_WHEELS")
        .unwrap_or_else(|_| "scipy==1.11.3,scipy==1.11.4".to_string());
    let specs: Vec<_> = text.split(',').map(str::trim).collect();
    match specs.as_slice() {
        [old, new] if old.contains("==") && new.contains("==") => {
            Ok((old.to_string(), new.to_string()))
        }
        _ => bail!("BENCH_DELTA_WHEELS={text:?} is not OLD==VERSION,NEW==VERSION"),
    }
}

/// The tar and squashfs pairs of the two wheels in `cache`.
pub fn wheel_pairs(cache: &Path) -> Result<(Pair, Pair)> {
    let (old_spec, new_spec) = wheel_specs()?;
    let label = |spec: &str| spec.replace("==", "-");
    let (old_label, new_label) = (label(&old_spec), label(&new_spec));
    let dir = cache
        .join("pairs")
        .join(format!("{old_label}--{new_label}"));
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let wheels = cache.join("wheels");
    let old_wheel = download_wheel(&wheels, &old_spec)?;
    let new_wheel = download_wheel(&wheels, &new_spec)?;
    let mut made = Vec::new();
    for (label, wheel) in [(&old_label, &old_wheel), (&new_label, &new_wheel)] {
        let tar = dir.join(format!("{label}.tar"));
        let sqfs = dir.join(format!("{label}.sqfs"));
        if !tar.exists() || !sqfs.exists() {
            let tree = dir.join(format!("{label}.tree"));
            remove(&tree)?;
            unpack_wheel(wheel, &tree)?;
            cached(&tar, |tmp| {
                log(format!("  tar {}", tar.display()));
                timed(&argv([
                    OsStr::new("tar"),
                    OsStr::new("--sort=name"),
                    OsStr::new("--mtime=@0"),
                    OsStr::new("--owner=0"),
                    OsStr::new("--group=0"),
                    OsStr::new("--numeric-owner"),
                    OsStr::new("-cf"),
                    tmp.as_os_str(),
                    OsStr::new("-C"),
                    tree.as_os_str(),
                    OsStr::new("."),
                ]))
                .map(drop)
            })?;
            cached(&sqfs, |tmp| {
                log(format!("  mksquashfs {}", sqfs.display()));
                timed(&argv([
                    OsStr::new("mksquashfs"),
                    tree.as_os_str(),
                    tmp.as_os_str(),
                    OsStr::new("-noappend"),
                    OsStr::new("-quiet"),
                    OsStr::new("-no-progress"),
                ]))
                .map(drop)
            })?;
            remove(&tree)?;
        }
        made.push((tar, sqfs));
    }
    let (old_tar, old_sqfs) = made.remove(0);
    let (new_tar, new_sqfs) = made.remove(0);
    let what = format!("{old_spec} → {new_spec} (wheels for CPython 3.11, manylinux2014 x86_64)");
    Ok((
        Pair {
            name: "wheel-tar".into(),
            title: format!("{what}, unpacked, as an uncompressed tar"),
            old: old_tar,
            new: new_tar,
        },
        Pair {
            name: "wheel-sqfs".into(),
            title: format!("{what}, unpacked, as a squashfs image (mksquashfs defaults)"),
            old: old_sqfs,
            new: new_sqfs,
        },
    ))
}

/// `pip download` of one wheel into `dir` (once); its path.
fn download_wheel(dir: &Path, spec: &str) -> Result<PathBuf> {
    let (name, version) = spec.split_once("==").context("no ==")?;
    let prefix = format!("{}-{version}-", name.replace('-', "_"));
    let find = || -> Result<Option<PathBuf>> {
        if !dir.is_dir() {
            return Ok(None);
        }
        for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            if file.to_lowercase().starts_with(&prefix.to_lowercase()) && file.ends_with(".whl") {
                return Ok(Some(path));
            }
        }
        Ok(None)
    };
    if let Some(path) = find()? {
        return Ok(path);
    }
    log(format!("  pip download {spec}"));
    // Into a temporary directory first, so that an interrupted download leaves nothing behind.
    let tmp = dir.join(".download");
    remove(&tmp)?;
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    timed(&argv([
        OsStr::new("python3"),
        OsStr::new("-m"),
        OsStr::new("pip"),
        OsStr::new("download"),
        OsStr::new("--quiet"),
        OsStr::new("--no-deps"),
        OsStr::new("--only-binary=:all:"),
        OsStr::new("--python-version"),
        OsStr::new("3.11"),
        OsStr::new("--platform"),
        OsStr::new("manylinux2014_x86_64"),
        OsStr::new("-d"),
        tmp.as_os_str(),
        OsStr::new(spec),
    ]))?;
    for entry in fs::read_dir(&tmp)? {
        let path = entry?.path();
        if path.extension() == Some(OsStr::new("whl")) {
            let target = dir.join(path.file_name().unwrap_or_default());
            fs::rename(&path, &target)?;
        }
    }
    remove(&tmp)?;
    find()?.with_context(|| format!("pip download {spec} left no wheel named {prefix}*.whl"))
}

/// Unpacks `wheel` into `tree` with the wheel's modes and timestamps (`unzip`, in UTC); the
/// top directory gets the time of the wheel's `.dist-info` too, so that nothing in the tree
/// depends on when it was unpacked.
fn unpack_wheel(wheel: &Path, tree: &Path) -> Result<()> {
    log(format!("  unzip {}", wheel.display()));
    timed(&shell(
        r#"mkdir -p "$2" && TZ=UTC unzip -q "$1" -d "$2" && touch -r "$2"/*.dist-info "$2""#,
        &[wheel.as_os_str(), tree.as_os_str()],
    ))
    .map(drop)
}

// ---------------------------------------------------------------------------------------------
// The synthetic pairs.

/// xorshift64*, as `support::pseudo_random_bytes`, streamed.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        let state = seed ^ 0x9E37_79B9_7F4A_7C15;
        Random(if state == 0 { 1 } else { state })
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// Uniform in `0..n` (n > 0; the bias of the modulo is negligible for the sizes here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SEED_BASE: u64 = 14;
const SEED_CHANGES: u64 = 1405;
const SEED_INSERT: u64 = 1464;
/// 5 % of the bytes change.
const CHANGED_PERCENT: u64 = 5;
const RUN_MIN: u64 = 1024;
const RUN_MAX: u64 = 8 * 1024;
const INSERT_AT: u64 = 1 << 20;
const INSERT_LEN: u64 = 64 * 1024;
const BLOCK: usize = 4 << 20;

/// The pairs (base, 5 % changed) and (base, 64 KiB inserted) of `mib` MiB in `cache`.
pub fn synthetic_pairs(cache: &Path, mib: u64) -> Result<(Pair, Pair)> {
    let dir = cache.join("pairs").join(format!("synthetic-{mib}MiB"));
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let size = mib << 20;
    let base = dir.join("base.bin");
    let changed = dir.join("changed-5pct.bin");
    let inserted = dir.join("inserted-64KiB.bin");
    cached(&base, |tmp| {
        log(format!("  random {}", base.display()));
        let mut out = BufWriter::new(fs::File::create(tmp)?);
        let mut rng = Random::new(SEED_BASE);
        let mut buf = vec![0u8; BLOCK];
        let mut left = size;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            rng.fill(&mut buf[..n]);
            out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        out.flush()?;
        Ok(())
    })?;
    cached(&changed, |tmp| {
        log(format!("  5 % changed {}", changed.display()));
        write_changed(&base, tmp, size)
    })?;
    let at = INSERT_AT.min(size / 4);
    cached(&inserted, |tmp| {
        log(format!("  64 KiB inserted {}", inserted.display()));
        write_inserted(&base, tmp, at)
    })?;
    Ok((
        Pair {
            name: "random-5pct".into(),
            title: format!(
                "{mib} MiB random file, 5 % of its bytes changed in runs of 1-8 KiB scattered uniformly"
            ),
            old: base.clone(),
            new: changed,
        },
        Pair {
            name: "insert-64k".into(),
            title: format!("{mib} MiB random file, 64 KiB inserted at {} KiB", at >> 10),
            old: base,
            new: inserted,
        },
    ))
}

/// The runs to change: (offset, length), sorted, not overlapping, 5 % of `size` in all, the
/// gaps between them drawn uniformly.
fn change_runs(size: u64, rng: &mut Random) -> Vec<(u64, u64)> {
    let target = size * CHANGED_PERCENT / 100;
    let mut lengths = Vec::new();
    let mut total = 0;
    while total < target {
        let len = (RUN_MIN + rng.below(RUN_MAX - RUN_MIN + 1)).min(target - total);
        lengths.push(len);
        total += len;
    }
    // Gaps: len + 1 uniform weights scaled to the free bytes.
    let free = size - total;
    let weights: Vec<u64> = (0..=lengths.len())
        .map(|_| 1 + rng.below(1 << 20))
        .collect();
    let sum: u64 = weights.iter().sum();
    let mut runs = Vec::with_capacity(lengths.len());
    let mut offset = 0;
    let mut used = 0;
    for (len, weight) in lengths.iter().zip(&weights) {
        let gap = (free as u128 * *weight as u128 / sum as u128) as u64;
        used += gap;
        offset += gap;
        runs.push((offset, *len));
        offset += len;
    }
    debug_assert!(used <= free);
    runs
}

/// `base` with the runs of [`change_runs`] rewritten: every byte in them differs from the old
/// one (XOR with a non-zero random byte).
fn write_changed(base: &Path, out: &Path, size: u64) -> Result<()> {
    let mut rng = Random::new(SEED_CHANGES);
    let runs = change_runs(size, &mut rng);
    let mut data = Vec::new();
    fs::File::open(base)?.read_to_end(&mut data)?;
    for (offset, len) in runs {
        for byte in &mut data[offset as usize..(offset + len) as usize] {
            *byte ^= (rng.next() as u8) | 1;
        }
    }
    fs::write(out, &data)?;
    Ok(())
}

/// `base` with [`INSERT_LEN`] random bytes inserted at `at`.
fn write_inserted(base: &Path, out: &Path, at: u64) -> Result<()> {
    let mut data = Vec::new();
    fs::File::open(base)?.read_to_end(&mut data)?;
    let mut insert = vec![0u8; INSERT_LEN as usize];
    Random::new(SEED_INSERT).fill(&mut insert);
    let mut file = BufWriter::new(fs::File::create(out)?);
    file.write_all(&data[..at as usize])?;
    file.write_all(&insert)?;
    file.write_all(&data[at as usize..])?;
    file.flush()?;
    Ok(())
}
