//! (b) The agent's row.
//!
//! **To switch to the delta path (issue 14), change only [`agent_delta`] below.** Today it
//! measures the agent's existing full download (`delivery` of version 2 into an empty state
//! directory), so the table has the row and its plumbing is proven. For the delta update, in
//! the closure given to `measure` (which runs before every measured run, untimed):
//!
//! 1. install version 1 on a fresh state directory: write the IDF with version `1` and run
//!    `update` (or `delivery` then `activate`) against `bench.direct_url`, unthrottled; it
//!    runs before the opening wire mark, so its requests are not counted;
//! 2. return the command that updates to version 2 (`update --idf` naming version `2`)
//!    against `base` (the throttled or the direct URL, as given).
//!
//! The output to verify stays `apps/<app>/2/<payload>` in the state directory. The wire log
//! counts everything the timed command asks for: `app.json`, the chunk indexes, the ranges.

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
        "(b) igel-update-agent (today: full download)",
        format!(
            "igel-update-agent --config agent.toml --state-dir STATE delivery --idf IDF \
             (repository $URL/{}, IDF: {} version 2, empty state)",
            p.repo, p.app
        ),
        &p.pair.new,
        &output,
        |base| {
            remove(&dir)?;
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
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
