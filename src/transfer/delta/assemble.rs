//! Writing a delta's file in order (see the module above): each large chunk copied from a seed,
//! put together from small chunks, or downloaded whole, and hashed before it is written.

use sha2::{Digest, Sha256};

use super::local::Location;
use super::window::Window;
use super::{
    ChunkSource, Delta, DeltaError, Progress, SMALL_BUDGET, blocking, download_failed, fallback,
};
use crate::chunks::{self, SmallChunk};
use crate::transfer::part::Pipeline;

impl Delta<'_> {
    /// Writes large chunks `done..` in order, a window of missing chunks at a time.
    pub(super) async fn assemble(
        &mut self,
        sources: &[ChunkSource],
        done: usize,
        pipe: &mut Pipeline,
        progress: &mut Progress<'_>,
    ) -> Result<(), DeltaError> {
        let n = self.index.large.len();
        let mut start = done;
        while start < n {
            // The window: chunks start..end, with at most SMALL_BUDGET small chunks missing.
            let (mut end, mut small) = (start, 0usize);
            let mut missing = Vec::new();
            while end < n {
                if let ChunkSource::Missing = sources[end - done] {
                    let count = usize::from(self.index.large[end].small);
                    if small + count > SMALL_BUDGET && !missing.is_empty() {
                        break;
                    }
                    small += count;
                    missing.push(end);
                }
                end += 1;
            }
            let window = self.window(&missing).await?;
            self.data.set_plan(self.data_plan(&missing, &window));
            for i in start..end {
                let entry = self.index.large[i];
                let (bytes, copied) = match sources[i - done] {
                    ChunkSource::Local(at) => self.copy(at, i).await?,
                    ChunkSource::Missing => match window.pieces(i, entry.small) {
                        Some(pieces) => self.put_together(i, pieces).await?,
                        None => (None, 0),
                    },
                };
                let bytes = match bytes {
                    Some(b) => b,
                    None => self.download_whole(i).await?,
                };
                pipe.push(bytes.into()).await?;
                progress.add(i64::from(entry.len), copied);
            }
            start = end;
        }
        Ok(())
    }

    /// The byte ranges of the file to download for the `missing` chunks of a window: the
    /// small chunks no seed holds, or the whole large chunk without a usable list.
    fn data_plan(&self, missing: &[usize], window: &Window) -> Vec<(u64, u64)> {
        let mut needed = Vec::new();
        for &i in missing {
            let entry = self.index.large[i];
            match window.pieces(i, entry.small) {
                Some(pieces) if pieces.iter().any(|(_, l)| l.is_some()) => {
                    let mut at = self.offsets[i];
                    for (s, l) in pieces {
                        if l.is_none() {
                            needed.push((at, u64::from(s.len)));
                        }
                        at += u64::from(s.len);
                    }
                }
                _ => needed.push((self.offsets[i], u64::from(entry.len))),
            }
        }
        chunks::plan(needed)
    }

    /// Large chunk `i` from a seed, verified; `None` when the bytes are not right.
    async fn copy(&self, at: Location, i: usize) -> Result<(Option<Vec<u8>>, u64), DeltaError> {
        let len = self.index.large[i].len as usize;
        let seeds = self.seeds.clone();
        let read = blocking(move || {
            let mut buf = vec![0u8; len];
            Ok(seeds.read(at, &mut buf).map(|()| buf))
        })
        .await?;
        self.verified(i, read, len as u64).await
    }

    /// Large chunk `i` from its small chunks: the downloaded ones first, in order, then the
    /// local ones in one go; verified. `None` when the bytes are not right.
    async fn put_together(
        &mut self,
        i: usize,
        pieces: Vec<(SmallChunk, Option<Location>)>,
    ) -> Result<(Option<Vec<u8>>, u64), DeltaError> {
        if pieces.iter().all(|(_, l)| l.is_none()) {
            return Ok((None, 0));
        }
        let len = self.index.large[i].len as usize;
        let start = self.offsets[i];
        let mut buf = Vec::with_capacity(len);
        let mut local = Vec::new();
        for (s, l) in &pieces {
            let n = u64::from(s.len);
            match l {
                Some(l) => {
                    local.push((*l, buf.len(), n as usize));
                    buf.resize(buf.len() + n as usize, 0);
                }
                None => {
                    let at = start + buf.len() as u64;
                    self.data
                        .read(at, n, &mut buf)
                        .await
                        .map_err(|e| download_failed(&e.0))?;
                }
            }
        }
        let copied: u64 = local.iter().map(|(_, _, n)| *n as u64).sum();
        let seeds = self.seeds.clone();
        let read = blocking(move || {
            let mut buf = buf;
            for (l, at, n) in local {
                if let Err(e) = seeds.read(l, &mut buf[at..at + n]) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(buf))
        })
        .await?;
        self.verified(i, read, copied).await
    }

    /// `read` if it is large chunk `i`'s bytes, with `copied` (the bytes that came from the
    /// device); else `None`, logged.
    async fn verified(
        &self,
        i: usize,
        read: std::io::Result<Vec<u8>>,
        copied: u64,
    ) -> Result<(Option<Vec<u8>>, u64), DeltaError> {
        let (start, entry) = (self.offsets[i], self.index.large[i]);
        let end = start + u64::from(entry.len) - 1;
        let buf = match read {
            Ok(buf) => buf,
            Err(e) => {
                tracing::warn!(app = %self.job.app, "{}: bytes {start}-{end}: a local copy cannot be read ({e}); downloading them", self.job.spec.path);
                return Ok((None, 0));
            }
        };
        let (buf, ok) = blocking(move || {
            let ok = Sha256::digest(&buf).as_slice() == entry.sha256;
            Ok((buf, ok))
        })
        .await?;
        if ok {
            return Ok((Some(buf), copied));
        }
        tracing::warn!(app = %self.job.app,
            "{}: bytes {start}-{end} put together from the device do not match their SHA-256 (a local copy changed?); downloading them",
            self.job.spec.path);
        Ok((None, 0))
    }

    /// Large chunk `i` downloaded in one piece and verified; a mismatch ends the delta.
    async fn download_whole(&mut self, i: usize) -> Result<Vec<u8>, DeltaError> {
        let (start, entry) = (self.offsets[i], self.index.large[i]);
        let len = u64::from(entry.len);
        let mut b = Vec::with_capacity(len as usize);
        self.data
            .read(start, len, &mut b)
            .await
            .map_err(|e| download_failed(&e.0))?;
        if Sha256::digest(&b).as_slice() != entry.sha256 {
            return Err(fallback(format!(
                "bytes {start}-{} from {} do not match the chunk index",
                start + len - 1,
                self.data.repository().unwrap_or("the repository")
            )));
        }
        Ok(b)
    }
}
