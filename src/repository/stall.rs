//! The low-speed limit (curl's, DESIGN 5): a server that sends slower than `low_speed_limit`
//! for `low_speed_time` is stalled and left for the next repository. Only the time spent
//! waiting for the network counts: a transfer held back by the device's own bandwidth limit
//! finds its data already waiting and is never taken for a stall.

use std::time::Duration;

/// The low-speed limit: below `bytes_per_sec` for `time` (of network waiting) is a stall.
/// `bytes_per_sec` 0: never.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    pub bytes_per_sec: u64,
    pub time: Duration,
}

/// Bytes and network time since the window began.
pub struct SpeedWindow {
    waited: Duration,
    bytes: u64,
}

impl SpeedWindow {
    /// Counts one read; `Some(rate)` when a whole window was below the limit.
    pub fn read(&mut self, stall: &Stall, waited: Duration, bytes: usize) -> Option<f64> {
        if stall.bytes_per_sec == 0 {
            return None;
        }
        self.waited += waited;
        self.bytes += bytes as u64;
        if self.waited < stall.time {
            return None;
        }
        let rate = self.bytes as f64 / self.waited.as_secs_f64();
        *self = SpeedWindow {
            waited: Duration::ZERO,
            bytes: 0,
        };
        (rate < stall.bytes_per_sec as f64).then_some(rate)
    }
}

impl SpeedWindow {
    pub fn new() -> SpeedWindow {
        SpeedWindow {
            waited: Duration::ZERO,
            bytes: 0,
        }
    }
}

impl Default for SpeedWindow {
    fn default() -> Self {
        SpeedWindow::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_below_the_limit_is_a_stall_and_zero_never_is() {
        let stall = Stall {
            bytes_per_sec: 1000,
            time: Duration::from_secs(2),
        };
        let mut w = SpeedWindow::new();
        assert_eq!(w.read(&stall, Duration::from_secs(1), 10), None);
        let rate = w.read(&stall, Duration::from_secs(1), 10).expect("a stall");
        assert!((rate - 10.0).abs() < 0.01, "{rate}");
        // Fast enough: the window starts again.
        assert_eq!(w.read(&stall, Duration::from_secs(2), 5000), None);
        let off = Stall {
            bytes_per_sec: 0,
            time: Duration::from_secs(1),
        };
        assert_eq!(w.read(&off, Duration::from_secs(100), 0), None);
    }
}
