//! Chunk indexes: what lets a device fetch only the parts of a new file it does not already
//! hold (delta updates), from any stock web server, by plain `Range` requests.
//!
//! A file is cut twice, both times by its content, so that an insertion or a change moves
//! only the cuts near it:
//!
//! - into **small chunks** with FastCDC (the `fastcdc` crate, v2020, normalization level 1,
//!   256 / 1024 / 4096 bytes min / average / max), each named by the 64-bit XXH3 of its bytes;
//! - into **large chunks**, runs of small ones: a large chunk ends after a small chunk whose
//!   id is divisible by 32, or after 128 small chunks (about 40 KiB on average, at most
//!   512 KiB), each named by the SHA-256 of its bytes.
//!
//! The index file `<file>.chunks` (pinned in `app.json` by its size and SHA-256) lists the large
//! chunks; the device downloads it whole. The small chunks of all large chunks are listed in
//! `<file>.chunks.fine`, which the device reads by `Range`, only for the large chunks it does not
//! hold: they are hints for finding reusable runs, never trusted (a large chunk is written only
//! after its SHA-256 matches, whichever way its bytes were put together).
//!
//! Why two levels, with the figures that decided it (`scripts/bench delta`, 256 MiB of random
//! data, 5 % changed in runs of 1-8 KiB, against zsync's 4 KiB blocks with 7 bytes each, which
//! come to about 9.2 % of the file): one level of FastCDC chunks with a SHA-256 each must be
//! coarse to keep the index under 1 % of the file, and then fetches too much: 14.0 % at an
//! average of 5.4 KiB, 10.7 % at 2.7 KiB (where the index alone is 1.3 %). With two levels, the
//! same update costs 8.0 % (0.10 % large-chunk index, 0.43 % small-chunk lists, 7.5 % data), a
//! 64 KiB insertion 0.13 % (zsync: 0.2 %), and a device that can reuse nothing pays the 0.10 %
//! and a sample of 64 small-chunk lists (about 20 KB; see `transfer::delta`).
//! casync's `.caibx` format (one level, 64 KiB chunks by default) was not used: its cut points
//! come from a buzhash table found only in casync's LGPL source, and at 4 KiB chunks its 40
//! bytes per chunk alone are 1 %.
//!
//! Reading and chunking a local file (both levels, both hashes) runs at about 650 MB/s on the
//! benchmark machine (SHA-NI), one core.
//!
//! Formats (all integers little-endian):
//!
//! ```text
//! <file>.chunks       header (64 bytes), then one entry of 38 bytes per large chunk
//!   0  magic  "igelcidx"            8
//!   8  format version (1)           u32
//!  12  small min, avg, max           3 x u32
//!  24  group divisor, group max      2 x u32   (a large chunk ends after a small chunk whose id % divisor == 0, or after `group max` small chunks)
//!  32  file size                     u64
//!  40  large chunks                  u64
//!  48  small chunks                  u64
//!  56  reserved (0)                  u64
//!  entry: length u32, small chunks u16, SHA-256 [32]
//! <file>.chunks.fine  one entry of 10 bytes per small chunk, in file order
//!  entry: length u16, XXH3-64 of the bytes u64
//! ```

mod chunker;
mod estimate;
mod format;
mod rules;
#[cfg(test)]
mod tests;

pub use chunker::{Chunker, LargeChunk, SmallChunk, chunk_reader};
pub use estimate::{Estimate, estimate};
pub use format::{
    FINE_ENTRY_BYTES, HEADER_BYTES, Index, IndexError, LARGE_ENTRY_BYTES, LargeEntry, MAGIC,
    MAX_INDEX_BYTES, fine_entries, parse_fine_list,
};
pub use rules::{MAX_REQUEST, MERGE_GAP, MIN_REUSE_DIVISOR, plan};

/// Local files smaller than this are not searched for chunks of another file.
pub const MIN_SEED_BYTES: u64 = 256 * 1024;

/// The suffix of a file's chunk index beside it in a repository.
pub const INDEX_SUFFIX: &str = ".chunks";
/// The suffix of a file's small-chunk lists, beside its index.
pub const FINE_SUFFIX: &str = ".chunks.fine";

/// How a file is cut (stored in every index, so a device cuts its local files the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub small_min: u32,
    pub small_avg: u32,
    pub small_max: u32,
    pub group_divisor: u32,
    pub group_max: u32,
}

impl Params {
    /// What `repo index` writes (see the module comment for why).
    pub const DEFAULT: Params = Params {
        small_min: 256,
        small_avg: 1024,
        small_max: 4096,
        group_divisor: 32,
        group_max: 128,
    };

    /// The largest large chunk these parameters allow.
    pub fn large_max(&self) -> u64 {
        u64::from(self.small_max) * u64::from(self.group_max)
    }

    /// Bounds that keep the chunker within fastcdc's ranges and a device's memory small.
    pub fn check(&self) -> Result<(), String> {
        let even = |v: u32| v.is_multiple_of(2);
        let ok = (64..=65_534).contains(&self.small_min)
            && (256..=65_534).contains(&self.small_avg)
            && (1024..=65_534).contains(&self.small_max)
            && even(self.small_min)
            && even(self.small_avg)
            && even(self.small_max)
            && self.small_min <= self.small_avg
            && self.small_avg <= self.small_max
            && self.group_divisor.is_power_of_two()
            && self.group_divisor <= 4096
            && (1..=4096).contains(&self.group_max)
            && self.large_max() <= MAX_LARGE_CHUNK;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunk parameters out of bounds (small {}/{}/{}, groups of {} up to {})",
                self.small_min, self.small_avg, self.small_max, self.group_divisor, self.group_max
            ))
        }
    }
}

/// The largest large chunk any index may declare: one is held in memory while it is put
/// together and verified.
pub const MAX_LARGE_CHUNK: u64 = 1024 * 1024;
