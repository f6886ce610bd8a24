//! The rules a device follows when it downloads by delta, shared by the device
//! (`transfer::delta`) and the estimate of `repo compare`, so that the two never drift apart:
//! which ranges go into one request, and when a delta is not worth it.

/// Gaps a device merges into one request, and the largest request.
pub const MERGE_GAP: u64 = 1024;
pub const MAX_REQUEST: u64 = 16 * 1024 * 1024;
/// A device downloads a file whole when less than 1/16 of it is on the device.
pub const MIN_REUSE_DIVISOR: u64 = 16;

/// Needed ranges (start, length) in increasing order -> requests (start, end exclusive):
/// neighbours and gaps of up to [`MERGE_GAP`] bytes merged, none over [`MAX_REQUEST`]. A
/// request costs about 250 bytes of response headers and a round trip, and at the 2 MB/s of a
/// typical branch office 1 KiB is half a millisecond.
pub fn plan(needed: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, len) in needed {
        let end = start + len;
        match out.last_mut() {
            Some(last) if start <= last.1 + MERGE_GAP && end - last.0 <= MAX_REQUEST => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out
}
