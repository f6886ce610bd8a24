//! (b) The agent's row: a delta update. Before every measured run (untimed, before the
//! opening wire mark, straight to Apache) a fresh state directory gets version 1 installed by
//! `update`; the measured command is `delivery` of version 2, which finds version 1 active and
//! copies what it can (the chunk indexes are written by `repo index` when the pair is
//! published). The wire log counts everything the timed command asks for: `app.json`, the
//! chunk index, the small-chunk lists and the ranges.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::bench::delta::{Bench, Published, Row};
use crate::bench::repo::{agent_config, delivery};
use crate::bench::run::remove;
use crate::support::installed_path;

/// The agent's update of `p` from version 1 to version 2, measured like every other method.
pub fn agent_delta(bench: &Bench, p: &Published) -> Result<Row> {
    let dir = bench.work.join("agent");
    let state = dir.join("state");
    let idf = dir.join("idf.json");
    let output = installed_path(&state, &p.app, "2", &p.payload);
    let mut row = bench.measure(
        "(b) igel-update-agent delta update",
        format!(
            "igel-update-agent --config agent.toml --state-dir STATE delivery --idf IDF \
             (repository $URL/{}, IDF: {} version 2, version 1 installed and active)",
            p.repo, p.app
        ),
        &p.pair.new,
        &output,
        |base| {
            remove(&dir)?;
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            // Version 1, installed straight from Apache, not counted.
            let conf = agent_config(&dir, &format!("{}{}", bench.direct_url, p.repo), None, 1)?;
            write_idf(&idf, &p.app, "1")?;
            let mut install = delivery(&bench.agent, &conf, &state, &idf);
            if let Some(word) = install.iter_mut().find(|w| *w == "delivery") {
                *word = "update".into();
            }
            let out = std::process::Command::new(&install[0])
                .args(&install[1..])
                .output()
                .context("cannot run the agent")?;
            anyhow::ensure!(
                out.status.success(),
                "installing version 1 failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let conf = agent_config(&dir, &format!("{base}{}", p.repo), None, 1)?;
            write_idf(&idf, &p.app, "2")?;
            Ok(delivery(&bench.agent, &conf, &state, &idf))
        },
    )?;
    row.note =
        Some("the agent's own bandwidth limit is off: the link limits it like the others".into());
    remove(&dir)?;
    Ok(row)
}

/// An IDF asking for `version` of `app`.
fn write_idf(path: &Path, app: &str, version: &str) -> Result<()> {
    let idf = json!({"apps": [{"name": app, "version": version}]});
    fs::write(path, idf.to_string()).with_context(|| format!("cannot write {}", path.display()))
}
