//! Cutting a byte stream into small and large chunks (see the module above), in bounded memory:
//! the reader is consumed in pieces of 256 KiB, and at most one large chunk's small-chunk list is
//! held at a time.

use std::io::{self, Read};

use fastcdc::v2020::{self, Normalization};
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_64;

use super::Params;

const READ_BYTES: usize = 256 * 1024;

/// One small chunk: its length and the XXH3-64 of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmallChunk {
    pub len: u16,
    pub id: u64,
}

/// One large chunk, with the small chunks it is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeChunk {
    pub offset: u64,
    pub len: u32,
    pub sha256: [u8; 32],
    pub small: Vec<SmallChunk>,
}

/// The cutting rules of one [`Params`], with fastcdc's masks computed once.
#[derive(Debug, Clone)]
pub struct Chunker {
    params: Params,
    mask_s: u64,
    mask_l: u64,
}

impl Chunker {
    pub fn new(params: Params) -> Chunker {
        let (mask_s, mask_l) =
            v2020::select_masks(params.small_avg as usize, Normalization::Level1);
        Chunker {
            params,
            mask_s,
            mask_l,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The length of the small chunk at the start of `data`. `data` holds at least `small_max`
    /// bytes, or everything up to the end of the stream.
    pub fn cut(&self, data: &[u8]) -> usize {
        let p = &self.params;
        let (_, len) = v2020::cut(
            data,
            p.small_min as usize,
            p.small_avg as usize,
            p.small_max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        len
    }

    /// Whether a large chunk ends after the small chunk `id`, its `count`-th.
    pub fn ends_group(&self, id: u64, count: usize) -> bool {
        id.is_multiple_of(u64::from(self.params.group_divisor))
            || count >= self.params.group_max as usize
    }
}

/// Cuts everything `reader` yields and hands every large chunk to `each`, in order. `each`
/// may stop early by returning an error. Returns the number of bytes read.
pub fn chunk_reader<R: Read>(
    chunker: &Chunker,
    mut reader: R,
    mut each: impl FnMut(LargeChunk) -> io::Result<()>,
) -> io::Result<u64> {
    let small_max = chunker.params.small_max as usize;
    let mut buf = vec![0u8; READ_BYTES + small_max];
    // buf[start..end] is read and not yet cut.
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    let mut offset = 0u64;
    let mut large = LargeChunk {
        offset: 0,
        len: 0,
        sha256: [0; 32],
        small: Vec::new(),
    };
    let mut hasher = Sha256::new();
    loop {
        if !eof && end - start < small_max {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            while end < buf.len() {
                match reader.read(&mut buf[end..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => end += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if start == end {
            break;
        }
        let len = chunker.cut(&buf[start..end]);
        let bytes = &buf[start..start + len];
        let id = xxh3_64(bytes);
        hasher.update(bytes);
        large.small.push(SmallChunk {
            // `cut` never returns more than `small_max`, which is at most 65,534.
            len: len as u16,
            id,
        });
        large.len += len as u32;
        start += len;
        offset += len as u64;
        let last = eof && start == end;
        if chunker.ends_group(id, large.small.len()) || last {
            large.sha256 = std::mem::take(&mut hasher).finalize().into();
            let next = LargeChunk {
                offset,
                len: 0,
                sha256: [0; 32],
                small: Vec::with_capacity(large.small.capacity()),
            };
            each(std::mem::replace(&mut large, next))?;
        }
    }
    Ok(offset)
}
