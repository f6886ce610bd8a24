//! One window of a delta (see the module above): the small-chunk lists of some missing large
//! chunks, read by `Range` from `<file>.chunks.fine`, and where the seeds hold their small
//! chunks. A window holds at most `SMALL_BUDGET` small chunks, as sorted ids and packed
//! locations, with the lists kept raw; it never writes anything.

use super::local::Location;
use super::{Delta, DeltaError, blocking, describe};
use crate::chunks::{self, FINE_ENTRY_BYTES, SmallChunk};

/// The small-chunk lists of one window's missing large chunks, and where the seeds hold
/// their small chunks.
#[derive(Default)]
pub(super) struct Window {
    /// The raw `.chunks.fine` entries of the lists read, back to back.
    lists: Vec<u8>,
    /// Per large chunk (by index), where its list starts in `lists`, when it was read and is
    /// right.
    at: std::collections::HashMap<usize, usize>,
    /// Ids of the small chunks wanted, sorted, and where a seed holds each (packed).
    ids: Vec<u64>,
    found: Vec<u64>,
}

impl Window {
    /// The small chunks of large chunk `i` with where a seed holds each, if its list is known.
    pub(super) fn pieces(
        &self,
        i: usize,
        small: u16,
    ) -> Option<Vec<(SmallChunk, Option<Location>)>> {
        let start = *self.at.get(&i)?;
        let raw = &self.lists[start..start + usize::from(small) * FINE_ENTRY_BYTES];
        Some(
            raw.chunks_exact(FINE_ENTRY_BYTES)
                .map(|e| {
                    let s = SmallChunk {
                        len: u16::from_le_bytes([e[0], e[1]]),
                        id: u64::from_le_bytes(e[2..10].try_into().expect("8 bytes")),
                    };
                    let at = self
                        .ids
                        .binary_search(&s.id)
                        .ok()
                        .and_then(|k| Location::unpack(self.found[k]));
                    (s, at)
                })
                .collect(),
        )
    }

    /// Bytes of large chunk `i` the seeds hold (0 without a list).
    pub(super) fn reusable(&self, i: usize, small: u16) -> u64 {
        self.pieces(i, small).map_or(0, |p| {
            p.iter()
                .filter(|(_, l)| l.is_some())
                .map(|(s, _)| u64::from(s.len))
                .sum()
        })
    }
}

impl Delta<'_> {
    /// Reads the small-chunk lists of the large chunks `chunks` (in increasing order) and
    /// looks for their small chunks in the seeds. A list that cannot be read or is not right
    /// leaves its large chunk to be downloaded whole.
    pub(super) async fn window(&mut self, chunks: &[usize]) -> Result<Window, DeltaError> {
        let fo = &self.fine_offsets;
        self.fine.set_plan(chunks::plan(
            chunks.iter().map(|&i| (fo[i], fo[i + 1] - fo[i])),
        ));
        let mut window = Window::default();
        let mut buf = Vec::new();
        for &i in chunks {
            buf.clear();
            let (start, len) = (fo[i], fo[i + 1] - fo[i]);
            if let Err(e) = self.fine.read(start, len, &mut buf).await {
                let job = self.job;
                tracing::info!(app = %job.app, version = %job.version,
                    "{} {}: {}: small-chunk lists not available ({}); the chunks missing are downloaded whole",
                    job.app, job.version, job.spec.path, describe(&e.0));
                break;
            }
            let last = i + 1 == self.index.large.len();
            let entry = self.index.large[i];
            if let Some(list) = chunks::parse_fine_list(&buf, &self.index.params, entry.len, last) {
                window.at.insert(i, window.lists.len());
                window.lists.extend_from_slice(&buf);
                window.ids.extend(list.iter().map(|s| s.id));
            }
        }
        window.ids.sort_unstable();
        window.ids.dedup();
        if !window.ids.is_empty() {
            let ids = std::mem::take(&mut window.ids);
            let (found, ids) = blocking({
                let (seeds, index) = (self.seeds.clone(), self.index.clone());
                move || Ok((seeds.find_small(&index, &ids), ids))
            })
            .await?;
            window.ids = ids;
            window.found = found;
        }
        Ok(window)
    }
}
