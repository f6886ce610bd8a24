//! What the stand-in saw, per device: which connection belongs to which device (from the
//! hellos), and for one broadcast command the replies and the `installed` events with their
//! receive times. Plain functions over recorded frames; nothing here waits or talks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::Value;

use crate::support::Frame;

/// Connection number -> device id, from every hello the stand-in recorded.
pub fn devices_by_connection(hellos: &[Frame]) -> BTreeMap<u64, String> {
    hellos
        .iter()
        .filter_map(|f| {
            let id = f.json["hello"]["device_id"].as_str()?;
            Some((f.conn, id.to_string()))
        })
        .collect()
}

/// The distinct device ids that said hello.
pub fn greeted_devices(hellos: &[Frame]) -> BTreeSet<String> {
    devices_by_connection(hellos).into_values().collect()
}

/// The replies to one command, per device.
#[derive(Debug, Default)]
pub struct Replies {
    /// Device -> seconds from the broadcast to its first `accepted` reply.
    pub accepted: BTreeMap<String, f64>,
    /// Replies that were not `accepted` (result and error, as sent).
    pub rejected: Vec<(String, Value)>,
    /// Devices that replied more than once.
    pub duplicates: BTreeSet<String>,
    /// Replies on a connection that never said hello.
    pub unknown: usize,
}

pub fn replies(frames: &[Frame], devices: &BTreeMap<u64, String>, sent: Instant) -> Replies {
    let mut tally = Replies::default();
    let mut seen = BTreeSet::new();
    for frame in frames {
        let Some(device) = devices.get(&frame.conn) else {
            tally.unknown += 1;
            continue;
        };
        if !seen.insert(device.clone()) {
            tally.duplicates.insert(device.clone());
            continue;
        }
        if frame.json["result"] == "accepted" {
            tally
                .accepted
                .insert(device.clone(), secs_since(sent, frame.at));
        } else {
            tally.rejected.push((device.clone(), frame.json.clone()));
        }
    }
    tally
}

/// Device -> seconds from the broadcast to its first `installed` event for `app` `version`
/// that arrived after the broadcast.
pub fn installed(
    events: &[Frame],
    devices: &BTreeMap<u64, String>,
    app: &str,
    version: &str,
    sent: Instant,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for e in events {
        let fits = e.json["app"] == app
            && e.json["version"] == version
            && e.json["state"] == "installed"
            && e.at >= sent;
        if let (true, Some(device)) = (fits, devices.get(&e.conn)) {
            out.entry(device.clone())
                .or_insert_with(|| secs_since(sent, e.at));
        }
    }
    out
}

fn secs_since(start: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(start).as_secs_f64()
}

/// p50, p95 and max of `values` (nearest rank); zeros when there are none.
pub fn quantiles(values: impl IntoIterator<Item = f64>) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (rank(0.50), rank(0.95), v[v.len() - 1])
}

/// The median of integer samples (the mean of the middle two for an even count).
pub fn median(values: &[u64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) as f64 / 2.0
    } else {
        v[mid] as f64
    }
}
