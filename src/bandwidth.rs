//! The one device-wide token bucket that every transfer draws from (DESIGN 9).
//!
//! It starts empty (no burst at start), holds at most about 100 ms worth of the rate, and is
//! charged per socket read. Tokens count KiB so that rates up to terabytes per second fit
//! governor's 32-bit cells; each transfer carries its sub-KiB remainder forward, so nothing is
//! lost to rounding. The limit can change while transfers run: a new bucket replaces the old
//! one and every transfer moves to it with its next piece.
//!
//! This module never touches the network or files; it only makes callers wait.

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::RwLock;

const CELL: u64 = 1024;
/// The largest piece a transfer forwards at once when no limit is set.
const UNLIMITED_PIECE: usize = 256 * 1024;
/// Under a limit, pieces are a hundredth of a second's worth.
const PIECES_PER_SEC: u64 = 100;

struct Bucket {
    quota: Quota,
    /// Made at the first charge, not when the limit is set: a bucket made earlier would fill
    /// up while the agent plans, and the first transfer would start with that burst.
    limiter: OnceLock<DefaultDirectRateLimiter>,
    burst_cells: u32,
    bytes_per_sec: u64,
}

impl Bucket {
    fn new(bytes_per_sec: u64) -> Bucket {
        let cells_per_sec = (bytes_per_sec / CELL).clamp(1, 1_000_000_000) as u32;
        let burst_cells = (cells_per_sec / 10).max(1);
        Bucket {
            quota: Quota::per_second(nonzero(cells_per_sec)).allow_burst(nonzero(burst_cells)),
            limiter: OnceLock::new(),
            burst_cells,
            bytes_per_sec,
        }
    }

    fn limiter(&self) -> &DefaultDirectRateLimiter {
        self.limiter.get_or_init(|| {
            let limiter = RateLimiter::direct(self.quota);
            // A new limiter is full; drain it so that a transfer never starts with a burst.
            let _ = limiter.check_n(nonzero(self.burst_cells));
            limiter
        })
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// The shared limit. Cheap to clone through `Arc`; `None` means unlimited.
pub struct Bandwidth {
    bucket: RwLock<Option<Arc<Bucket>>>,
}

/// Per-transfer accounting: the bytes read but not yet charged (less than one cell).
#[derive(Debug, Default)]
pub struct Meter {
    uncharged: u64,
}

impl Bandwidth {
    pub fn new(bytes_per_sec: Option<u64>) -> Arc<Bandwidth> {
        Arc::new(Bandwidth {
            bucket: RwLock::new(bytes_per_sec.map(|r| Arc::new(Bucket::new(r)))),
        })
    }

    /// Changes the limit for every transfer, including those already running.
    pub fn set_limit(&self, bytes_per_sec: Option<u64>) {
        if self.limit() == bytes_per_sec {
            return;
        }
        let new = bytes_per_sec.map(|r| Arc::new(Bucket::new(r)));
        *self.bucket.write() = new;
    }

    pub fn limit(&self) -> Option<u64> {
        self.current().map(|b| b.bytes_per_sec)
    }

    fn current(&self) -> Option<Arc<Bucket>> {
        self.bucket.read().clone()
    }

    /// The largest piece a transfer should forward before waiting again: 10 ms of the rate
    /// (at least one cell). Pieces much smaller than the burst keep the file growing evenly,
    /// so that no one-second window seen from outside holds more than about 1 % over the
    /// limit; with burst-sized pieces a window could hold 11 bursts instead of 10.
    pub fn piece_size(&self) -> usize {
        match self.current() {
            None => UNLIMITED_PIECE,
            Some(b) => (b.bytes_per_sec / PIECES_PER_SEC)
                .clamp(CELL, u64::from(b.burst_cells) * CELL)
                .min(UNLIMITED_PIECE as u64) as usize,
        }
    }

    /// Waits until `bytes` just read may be passed on. Pieces larger than a burst are charged
    /// in parts, so any size is accepted.
    pub async fn charge(&self, meter: &mut Meter, bytes: usize) {
        meter.uncharged += bytes as u64;
        while meter.uncharged >= CELL {
            let Some(bucket) = self.current() else {
                meter.uncharged = 0;
                return;
            };
            let cells = (meter.uncharged / CELL).min(u64::from(bucket.burst_cells)) as u32;
            // Cannot fail: `cells` is at most the bucket's burst.
            let _ = bucket.limiter().until_n_ready(nonzero(cells)).await;
            meter.uncharged -= u64::from(cells) * CELL;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn unlimited_never_waits_and_forgets_remainders() {
        let bw = Bandwidth::new(None);
        let mut meter = Meter::default();
        let started = Instant::now();
        runtime().block_on(bw.charge(&mut meter, 100 * 1024 * 1024));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(meter.uncharged, 0);
    }

    #[test]
    fn a_new_bucket_starts_empty_so_there_is_no_initial_burst() {
        // 1 MiB/s: 256 KiB must take at least about 250 ms even though the burst is 100 ms.
        let bw = Bandwidth::new(Some(1024 * 1024));
        let mut meter = Meter::default();
        let started = Instant::now();
        runtime().block_on(bw.charge(&mut meter, 256 * 1024));
        assert!(
            started.elapsed() >= Duration::from_millis(220),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_bucket_does_not_fill_up_before_its_first_use() {
        // Planning takes a while after the limit is set; the first transfer still starts empty.
        let bw = Bandwidth::new(Some(1024 * 1024));
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        runtime().block_on(bw.charge(&mut Meter::default(), 100 * 1024));
        assert!(
            started.elapsed() >= Duration::from_millis(80),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn transfers_share_one_limit() {
        // Two transfers of 128 KiB each at 1 MiB/s: together at least ~250 ms.
        let bw = Bandwidth::new(Some(1024 * 1024));
        let started = Instant::now();
        runtime().block_on(async {
            let (a, b) = (bw.clone(), bw.clone());
            let one = async move { a.charge(&mut Meter::default(), 128 * 1024).await };
            let two = async move { b.charge(&mut Meter::default(), 128 * 1024).await };
            tokio::join!(one, two);
        });
        assert!(
            started.elapsed() >= Duration::from_millis(220),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn sub_cell_remainders_are_carried_not_lost() {
        let bw = Bandwidth::new(Some(1024 * 1024 * 1024));
        let mut meter = Meter::default();
        runtime().block_on(async {
            for _ in 0..3 {
                bw.charge(&mut meter, 1000).await;
            }
        });
        assert_eq!(meter.uncharged, 3000 - 2 * 1024);
    }

    #[test]
    fn a_new_limit_applies_to_the_next_piece() {
        let bw = Bandwidth::new(Some(1024));
        assert_eq!(bw.piece_size(), 1024);
        bw.set_limit(Some(10 * 1024 * 1024));
        assert_eq!(bw.limit(), Some(10 * 1024 * 1024));
        assert_eq!(bw.piece_size(), 10 * 1024 * 1024 / 100);
        let started = Instant::now();
        runtime().block_on(bw.charge(&mut Meter::default(), 512 * 1024));
        // At the old 1 KiB/s this would take over eight minutes.
        assert!(started.elapsed() < Duration::from_secs(20));
        bw.set_limit(None);
        assert_eq!(bw.piece_size(), UNLIMITED_PIECE);
    }
}
