//! Reading and writing the two index files (layout in the module above). Everything read is
//! bounded and checked against the file it describes before anything trusts it: a wrong or
//! hostile index is an [`IndexError`] naming what is wrong, never a panic or an allocation the
//! size of a number from outside.

use super::{LargeChunk, MAX_LARGE_CHUNK, Params, SmallChunk};

pub const MAGIC: &[u8; 8] = b"igelcidx";
pub const VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 64;
pub const LARGE_ENTRY_BYTES: usize = 38;
pub const FINE_ENTRY_BYTES: usize = 10;
/// The largest `<file>.chunks` a device reads (about 110,000 large chunks, a file of some
/// 4 GiB with the default parameters); a larger index means a full download.
pub const MAX_INDEX_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error(
        "not a chunk index (it does not start with {:?})",
        String::from_utf8_lossy(MAGIC)
    )]
    Magic,
    #[error("chunk index format {0} is not known to this agent (it reads format {VERSION})")]
    Version(u32),
    #[error("{0}")]
    Params(String),
    #[error("the index is for a file of {index} bytes, app.json says {manifest}")]
    FileSize { index: u64, manifest: u64 },
    #[error("the index is {actual} bytes, its header says {expected}")]
    Length { actual: u64, expected: u64 },
    #[error("the index is over the limit of {MAX_INDEX_BYTES} bytes")]
    TooLarge,
    #[error("large chunk {index}: {reason}")]
    Entry { index: usize, reason: String },
    #[error("the large chunks add up to {sum} bytes, not the file's {size}")]
    Sum { sum: u64, size: u64 },
    #[error("the large chunks list {sum} small chunks, the header says {count}")]
    SmallCount { sum: u64, count: u64 },
}

/// One large chunk as the index lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LargeEntry {
    pub len: u32,
    pub small: u16,
    pub sha256: [u8; 32],
}

/// A parsed, checked `<file>.chunks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub params: Params,
    pub file_size: u64,
    pub small_count: u64,
    pub large: Vec<LargeEntry>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Index {
    /// An empty index for a file cut with `params`; [`push`](Self::push) adds its chunks.
    pub fn new(params: Params) -> Index {
        Index {
            params,
            file_size: 0,
            small_count: 0,
            large: Vec::new(),
        }
    }

    pub fn push(&mut self, chunk: &LargeChunk) {
        self.file_size += u64::from(chunk.len);
        self.small_count += chunk.small.len() as u64;
        self.large.push(LargeEntry {
            len: chunk.len,
            small: chunk.small.len() as u16,
            sha256: chunk.sha256,
        });
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.large.len() * LARGE_ENTRY_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let p = &self.params;
        for v in [
            p.small_min,
            p.small_avg,
            p.small_max,
            p.group_divisor,
            p.group_max,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.file_size, self.large.len() as u64, self.small_count, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for e in &self.large {
            out.extend_from_slice(&e.len.to_le_bytes());
            out.extend_from_slice(&e.small.to_le_bytes());
            out.extend_from_slice(&e.sha256);
        }
        out
    }

    /// Parses and checks an index for a file of `file_size` bytes.
    pub fn parse(bytes: &[u8], file_size: u64) -> Result<Index, IndexError> {
        if bytes.len() as u64 > MAX_INDEX_BYTES {
            return Err(IndexError::TooLarge);
        }
        if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
            return Err(IndexError::Magic);
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(IndexError::Version(version));
        }
        let params = Params {
            small_min: u32_at(bytes, 12),
            small_avg: u32_at(bytes, 16),
            small_max: u32_at(bytes, 20),
            group_divisor: u32_at(bytes, 24),
            group_max: u32_at(bytes, 28),
        };
        params.check().map_err(IndexError::Params)?;
        let declared = u64_at(bytes, 32);
        if declared != file_size {
            return Err(IndexError::FileSize {
                index: declared,
                manifest: file_size,
            });
        }
        let (large_count, small_count) = (u64_at(bytes, 40), u64_at(bytes, 48));
        let expected = large_count
            .checked_mul(LARGE_ENTRY_BYTES as u64)
            .and_then(|n| n.checked_add(HEADER_BYTES as u64))
            .ok_or(IndexError::TooLarge)?;
        if expected != bytes.len() as u64 {
            return Err(IndexError::Length {
                actual: bytes.len() as u64,
                expected,
            });
        }
        let mut large = Vec::with_capacity(large_count as usize);
        let (mut sum, mut small_sum) = (0u64, 0u64);
        for (index, raw) in bytes[HEADER_BYTES..]
            .chunks_exact(LARGE_ENTRY_BYTES)
            .enumerate()
        {
            let entry = LargeEntry {
                len: u32_at(raw, 0),
                small: u16::from_le_bytes([raw[4], raw[5]]),
                sha256: raw[6..38].try_into().expect("32 bytes"),
            };
            let bad = |reason: String| IndexError::Entry { index, reason };
            if entry.len == 0 || u64::from(entry.len) > params.large_max() {
                return Err(bad(format!(
                    "{} bytes is outside 1..={}",
                    entry.len,
                    params.large_max()
                )));
            }
            if entry.small == 0 || u32::from(entry.small) > params.group_max {
                return Err(bad(format!(
                    "{} small chunks is outside 1..={}",
                    entry.small, params.group_max
                )));
            }
            if u64::from(entry.len) > u64::from(entry.small) * u64::from(params.small_max)
                || u64::from(entry.small) > u64::from(entry.len) / u64::from(params.small_min) + 1
            {
                return Err(bad(format!(
                    "{} bytes cannot be {} small chunks of {} to {} bytes",
                    entry.len, entry.small, params.small_min, params.small_max
                )));
            }
            sum += u64::from(entry.len);
            small_sum += u64::from(entry.small);
            large.push(entry);
        }
        if sum != file_size {
            return Err(IndexError::Sum {
                sum,
                size: file_size,
            });
        }
        if small_sum != small_count {
            return Err(IndexError::SmallCount {
                sum: small_sum,
                count: small_count,
            });
        }
        Ok(Index {
            params,
            file_size,
            small_count,
            large,
        })
    }

    /// The size `<file>.chunks.fine` must have.
    pub fn fine_bytes(&self) -> u64 {
        self.small_count * FINE_ENTRY_BYTES as u64
    }
}

/// The `<file>.chunks.fine` entries of one large chunk.
pub fn fine_entries(small: &[SmallChunk], out: &mut Vec<u8>) {
    for s in small {
        out.extend_from_slice(&s.len.to_le_bytes());
        out.extend_from_slice(&s.id.to_le_bytes());
    }
}

/// Reads the small-chunk list of a large chunk of `len` bytes from `bytes` (`last`: the file's
/// last large chunk, whose last small chunk may be shorter than the minimum). `None` when the
/// list cannot be that chunk's (wrong size, a length out of bounds, a wrong sum): the list is
/// a hint, and a bad hint only means the large chunk is fetched whole.
pub fn parse_fine_list(
    bytes: &[u8],
    params: &Params,
    len: u32,
    last: bool,
) -> Option<Vec<SmallChunk>> {
    if !bytes.len().is_multiple_of(FINE_ENTRY_BYTES) {
        return None;
    }
    let mut sum = 0u64;
    let list: Vec<SmallChunk> = bytes
        .chunks_exact(FINE_ENTRY_BYTES)
        .map(|raw| SmallChunk {
            len: u16::from_le_bytes([raw[0], raw[1]]),
            id: u64_at(raw, 2),
        })
        .collect();
    for (k, s) in list.iter().enumerate() {
        let min = if last && k + 1 == list.len() {
            1
        } else {
            params.small_min
        };
        if u32::from(s.len) < min || u32::from(s.len) > params.small_max {
            return None;
        }
        sum += u64::from(s.len);
    }
    (sum == u64::from(len) && sum <= MAX_LARGE_CHUNK).then_some(list)
}
