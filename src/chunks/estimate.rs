//! What a delta update of a file would cost, computed the way a device decides it (see
//! `transfer::delta`), from the old and the new file alone: `repo compare`.

use std::collections::HashSet;
use std::io::{self, Read};

use super::rules::{MIN_REUSE_DIVISOR, plan};
use super::{Chunker, FINE_ENTRY_BYTES, HEADER_BYTES, LARGE_ENTRY_BYTES, LargeChunk, Params};

/// The cost of one file's update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Estimate {
    pub size: u64,
    /// Bytes a device copies from its old files.
    pub reused: u64,
    /// Bytes of the index and of the small-chunk lists it reads.
    pub index: u64,
    /// Bytes of the file it downloads (merged gaps included).
    pub download: u64,
    /// Range requests for the file and the lists.
    pub requests: u64,
    /// Too little to reuse: the device downloads the file whole.
    pub whole: bool,
}

impl Estimate {
    /// Everything that goes over the wire (bodies only).
    pub fn over_the_wire(&self) -> u64 {
        self.index + self.download
    }
}

/// Cuts the seeds (`olds`) and the new file and says what a device holding the seeds would
/// download.
pub fn estimate<R: Read>(olds: Vec<R>, new: R) -> io::Result<Estimate> {
    let chunker = Chunker::new(Params::DEFAULT);
    let mut large = HashSet::new();
    let mut small = HashSet::new();
    for old in olds {
        super::chunk_reader(&chunker, old, |c| {
            large.insert(c.sha256);
            small.extend(c.small.iter().map(|s| (s.id, s.len)));
            Ok(())
        })?;
    }
    let mut chunks: Vec<LargeChunk> = Vec::new();
    let size = super::chunk_reader(&chunker, new, |c| {
        chunks.push(c);
        Ok(())
    })?;
    let mut e = Estimate {
        size,
        index: (HEADER_BYTES + chunks.len() * LARGE_ENTRY_BYTES) as u64,
        requests: 1,
        ..Estimate::default()
    };
    let mut lists = Vec::new();
    let mut missing = Vec::new();
    let mut fine_at = 0u64;
    for c in &chunks {
        let fine_len = c.small.len() as u64 * FINE_ENTRY_BYTES as u64;
        if large.contains(&c.sha256) {
            e.reused += u64::from(c.len);
        } else {
            lists.push((fine_at, fine_len));
            let mut at = c.offset;
            for s in &c.small {
                if small.contains(&(s.id, s.len)) {
                    e.reused += u64::from(s.len);
                } else {
                    missing.push((at, u64::from(s.len)));
                }
                at += u64::from(s.len);
            }
        }
        fine_at += fine_len;
    }
    if e.reused < size / MIN_REUSE_DIVISOR {
        e.reused = 0;
        e.whole = true;
        e.download = size;
        return Ok(e);
    }
    let (list_bytes, list_requests) = merged(&lists);
    let (file_bytes, file_requests) = merged(&missing);
    e.requests = 1 + list_requests + file_requests;
    e.index += list_bytes;
    e.download = file_bytes;
    Ok(e)
}

/// The bytes and the number of requests for `ranges` (start, length, in order).
fn merged(ranges: &[(u64, u64)]) -> (u64, u64) {
    let requests = plan(ranges.iter().copied());
    (
        requests.iter().map(|(s, e)| e - s).sum(),
        requests.len() as u64,
    )
}
