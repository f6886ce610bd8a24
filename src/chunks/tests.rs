use std::io::Read;

use super::*;
use crate::manifest::sha256_hex;

/// Bytes from a fixed generator (xorshift64*), so the vectors below never depend on another
/// crate's random numbers.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn chunks_of(bytes: &[u8]) -> Vec<LargeChunk> {
    let mut out = Vec::new();
    chunk_reader(&Chunker::new(Params::DEFAULT), bytes, |c| {
        out.push(c);
        Ok(())
    })
    .unwrap();
    out
}

fn index_of(bytes: &[u8]) -> (Index, Vec<u8>) {
    let mut index = Index::new(Params::DEFAULT);
    let mut fine = Vec::new();
    for c in chunks_of(bytes) {
        index.push(&c);
        fine_entries(&c.small, &mut fine);
    }
    (index, fine)
}

/// The cut points are part of the format: a device and a repository must cut a file alike.
/// These figures were taken from fastcdc 5.0.0; if a new version of the crate (or a change
/// here) moves a single cut, this test fails and the format version must change with it.
#[test]
fn fixed_vectors_pin_the_cut_points_and_the_format() {
    let bytes = data(4 * 1024 * 1024 + 123, 42);
    let chunks = chunks_of(&bytes);
    let small: usize = chunks.iter().map(|c| c.small.len()).sum();
    let first_small: Vec<u16> = chunks[0].small.iter().take(8).map(|s| s.len).collect();
    let first_large: Vec<u32> = chunks.iter().take(6).map(|c| c.len).collect();
    let (index, fine) = index_of(&bytes);
    let encoded = index.encode();
    assert_eq!(
        (chunks.len(), small, first_small, first_large),
        (
            104,
            3406,
            vec![1606, 1154, 1162, 1026, 1080, 1106, 699, 1733],
            vec![13216, 14015, 104584, 19569, 85655, 38445]
        ),
        "cut points"
    );
    assert_eq!(
        (sha256_hex(&encoded), sha256_hex(&fine)),
        (
            "49df5a82ed4eb2beff62a319fc5c787ea11afb55ecf98f6c0fa38c697815d908".to_string(),
            "78586f2bc314848032d41bb21bf41601dbded8cce1aca45e8a52e7234817841c".to_string()
        ),
        "index files"
    );
}

#[test]
fn zeros_cut_at_the_maximum_sizes() {
    let chunks = chunks_of(&vec![0u8; 3 * 512 * 1024 + 5]);
    let lens: Vec<u32> = chunks.iter().map(|c| c.len).collect();
    assert_eq!(lens, vec![512 * 1024, 512 * 1024, 512 * 1024, 5]);
    assert!(chunks[0].small.iter().all(|s| s.len == 4096));
}

/// A reader that hands out pieces of odd sizes, as pipes and sockets do.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step = self.step % 7919 + 1;
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn chunking_does_not_depend_on_how_the_reader_hands_out_bytes() {
    let bytes = data(3 * 1024 * 1024 + 77, 7);
    let whole = chunks_of(&bytes);
    let mut trickled = Vec::new();
    let total = chunk_reader(
        &Chunker::new(Params::DEFAULT),
        Trickle {
            data: &bytes,
            step: 0,
        },
        |c| {
            trickled.push(c);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(total, bytes.len() as u64);
    assert_eq!(whole, trickled);
    let mut offset = 0;
    for c in &whole {
        assert_eq!(c.offset, offset);
        assert_eq!(
            c.sha256.to_vec(),
            hex::decode(sha256_hex(&bytes[offset as usize..][..c.len as usize])).unwrap()
        );
        offset += u64::from(c.len);
    }
}

#[test]
fn an_insertion_moves_only_the_chunks_near_it() {
    let old = data(2 * 1024 * 1024, 3);
    let mut new = old.clone();
    new.splice(700_000..700_000, data(5000, 9));
    let old_ids: std::collections::HashSet<[u8; 32]> =
        chunks_of(&old).iter().map(|c| c.sha256).collect();
    let missing: u64 = chunks_of(&new)
        .iter()
        .filter(|c| !old_ids.contains(&c.sha256))
        .map(|c| u64::from(c.len))
        .sum();
    assert!(
        missing < 5000 + 2 * Params::DEFAULT.large_max(),
        "{missing}"
    );
}

#[test]
fn an_index_round_trips_and_its_fine_lists_match_its_chunks() {
    let bytes = data(1024 * 1024 + 3, 5);
    let (index, fine) = index_of(&bytes);
    let parsed = Index::parse(&index.encode(), bytes.len() as u64).unwrap();
    assert_eq!(parsed, index);
    assert_eq!(parsed.fine_bytes(), fine.len() as u64);
    let mut at = 0;
    for (entry, chunk) in parsed.large.iter().zip(chunks_of(&bytes)) {
        let end = at + usize::from(entry.small) * FINE_ENTRY_BYTES;
        let last = at + usize::from(entry.small) * FINE_ENTRY_BYTES == fine.len();
        let list = parse_fine_list(&fine[at..end], &parsed.params, entry.len, last).unwrap();
        assert_eq!(list, chunk.small);
        at = end;
    }
    assert_eq!(at, fine.len());
}

#[test]
fn an_empty_file_has_an_empty_index() {
    let (index, fine) = index_of(b"");
    assert!(index.large.is_empty() && fine.is_empty());
    assert_eq!(Index::parse(&index.encode(), 0).unwrap(), index);
}

#[test]
fn a_damaged_index_is_refused_naming_what_is_wrong() {
    let bytes = data(300_000, 11);
    let good = index_of(&bytes).0.encode();
    let size = bytes.len() as u64;
    let first_len = u32::from_le_bytes(good[HEADER_BYTES..HEADER_BYTES + 4].try_into().unwrap());
    let with = |at: usize, value: &[u8]| {
        let mut b = good.clone();
        b[at..at + value.len()].copy_from_slice(value);
        b
    };
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        (b"nonsense".to_vec(), size, "not a chunk index"),
        (with(0, b"igelcidy"), size, "not a chunk index"),
        (with(8, &2u32.to_le_bytes()), size, "format 2"),
        (with(12, &3u32.to_le_bytes()), size, "parameters"),
        (with(24, &3u32.to_le_bytes()), size, "parameters"),
        (with(28, &100_000u32.to_le_bytes()), size, "parameters"),
        (good.clone(), size + 1, "app.json says"),
        (good[..good.len() - 1].to_vec(), size, "header says"),
        (with(40, &u64::MAX.to_le_bytes()), size, "over the limit"),
        (
            with(HEADER_BYTES, &0u32.to_le_bytes()),
            size,
            "large chunk 0",
        ),
        (
            with(HEADER_BYTES + 4, &0u16.to_le_bytes()),
            size,
            "large chunk 0",
        ),
        (
            with(HEADER_BYTES, &(first_len + 1).to_le_bytes()),
            size,
            "add up",
        ),
        (with(48, &1u64.to_le_bytes()), size, "small chunks"),
        (
            vec![0u8; MAX_INDEX_BYTES as usize + 1],
            size,
            "over the limit",
        ),
    ];
    for (bytes, size, expect) in cases {
        let err = Index::parse(&bytes, size).unwrap_err().to_string();
        assert!(err.contains(expect), "{expect}: {err}");
    }
}

#[test]
fn a_bad_fine_list_is_no_hint() {
    let p = Params::DEFAULT;
    let entry = |len: u16| {
        let mut b = Vec::new();
        fine_entries(&[SmallChunk { len, id: 1 }], &mut b);
        b
    };
    assert!(parse_fine_list(&entry(300), &p, 300, false).is_some());
    // Shorter than the minimum: only as the file's very last small chunk.
    assert!(parse_fine_list(&entry(100), &p, 100, false).is_none());
    assert!(parse_fine_list(&entry(100), &p, 100, true).is_some());
    assert!(parse_fine_list(&entry(300), &p, 301, false).is_none());
    assert!(parse_fine_list(&entry(0), &p, 0, true).is_none());
    assert!(parse_fine_list(&entry(5000), &p, 5000, false).is_none());
    assert!(parse_fine_list(&entry(300)[..9], &p, 300, false).is_none());
}

#[test]
fn the_default_parameters_are_within_bounds() {
    Params::DEFAULT.check().unwrap();
    assert!(
        Params {
            group_max: 1024,
            ..Params::DEFAULT
        }
        .check()
        .is_err()
    );
}

#[test]
fn neighbours_and_small_gaps_merge_and_requests_stay_bounded() {
    assert_eq!(plan([(0, 10), (10, 5), (1039, 1)]), vec![(0, 1040)]);
    assert_eq!(plan([(0, 10), (1035, 1)]), vec![(0, 10), (1035, 1036)]);
    let big = plan((0..40).map(|i| (i * 1024 * 1024, 1024 * 1024)));
    assert!(big.iter().all(|(s, e)| e - s <= MAX_REQUEST));
    assert_eq!(big.len(), 3);
    assert_eq!(big.last().unwrap().1, 40 * 1024 * 1024);
    assert!(plan([]).is_empty());
}
