//! Whole-process test of the one device-wide bandwidth limit (DESIGN 5, 9): parallel
//! transfers share it instead of each getting their own. Only a lower bound on the time is
//! asserted; how closely the limit is kept is measured by the benchmarks (DESIGN 12).

use std::time::{Duration, Instant};

use crate::support::device::{Device, RepoConf};
use crate::support::{Apache, pseudo_random_bytes, temp_dir, write_app};

#[test]
fn three_apps_share_one_bandwidth_limit() {
    let root = temp_dir("repo");
    let apps: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("app{i}"), pseudo_random_bytes(200 + i, 256 * 1024)))
        .collect();
    for (name, data) in &apps {
        write_app(
            root.path(),
            name,
            "1.0",
            &[("app.bin", data.clone())],
            false,
        );
    }
    let apache = Apache::builder(root.path()).start();
    let device = Device::with_update(
        &[RepoConf::new("central", &apache.url(), 100)],
        "bandwidth_limit_enabled = true\nbandwidth_limit = \"256KB\"\nparallel_downloads = 3\n",
    );
    let wanted: Vec<(&str, &str, Option<&str>)> = apps
        .iter()
        .map(|(name, _)| (name.as_str(), "1.0", None))
        .collect();
    let idf = device.write_idf(&wanted);

    let started = Instant::now();
    device.deliver_idf(&idf).assert_success();
    let took = started.elapsed();

    for (name, data) in &apps {
        device.assert_delivered((name, "1.0"), "app.bin", data, "central");
    }
    // 768 KiB at 256 KiB/s is 3 s with one shared limit (the bucket starts empty); one
    // limit per transfer would finish in about 1 s.
    assert!(
        took >= Duration::from_millis(2500),
        "three apps under one 256KB limit finished in {took:?}"
    );
}
