//! `demo`: the whole job on an embedded default. The built-in fixture repository is served
//! twice on loopback by the embedded WebDAV server: a "branch-office" mirror (priority 200)
//! that has only some apps, and a "central" repository with all of them and a password. The
//! full life follows in a temporary state directory: a delivery under a bandwidth limit (with
//! progress), the staged status, then the Update command that activates, and the final status.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use super::{CmdResult, Failure};
use crate::config::{ConfigSource, Secret};
use crate::report::Status;
use crate::store::Store;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bandwidth limit shared by all the demo's transfers, in IGEL syntax: digits then KB, MB
    /// or GB (no unit: MB); a value that is not valid gives a warning and 2MB.
    #[arg(long, default_value = "256KB", value_name = "LIMIT")]
    bandwidth_limit: String,
    /// Keep the demo's files in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    keep: Option<std::path::PathBuf>,
}

const DEMO_PASSWORD: &str = "demo-password";

fn write_fixtures(root: &Path, only: Option<&str>) -> std::io::Result<()> {
    for (rel, bytes) in embedded::FIXTURES {
        if only.is_some_and(|app| !rel.starts_with(&format!("{app}/"))) {
            continue;
        }
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, bytes)?;
    }
    Ok(())
}

pub fn run(args: Args) -> CmdResult {
    let temp = tempfile::Builder::new()
        .prefix("igel-update-agent-demo.")
        .tempdir()
        .map_err(Failure::failed)?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let io = |e: std::io::Error| {
        Failure::failed(anyhow::anyhow!("demo directory {}: {e}", root.display()))
    };
    write_fixtures(&root.join("central"), None).map_err(io)?;
    write_fixtures(&root.join("branch"), Some("notes-viewer")).map_err(io)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let central = start_server(root.join("central"), Some(("demo".to_string(), Secret::new(DEMO_PASSWORD.into())))).await?;
        let branch = start_server(root.join("branch"), None).await?;
        let config = write_config(&root, central, branch, &args.bandwidth_limit).map_err(io)?;
        let source = ConfigSource::new(Some(&config), None);
        let settings = source.load().map_err(Failure::usage)?;
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        errln!("demo: central repository http://{central}/ (Basic auth), branch-office mirror http://{branch}/");
        errln!("demo: configuration {}, state in {}", config.display(), settings.paths.state_dir.display());
        let store = Arc::new(Store::open(&settings.paths)?);
        let idf = crate::idf::Idf { apps: settings.apps.clone() };
        use super::job::{Job, run_job};
        errln!("\ndemo: 1. delivery: transfer and stage, never activate");
        let code = run_job(settings.clone(), store.clone(), Job::Delivery(idf.clone()), true).await?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
        out!("{}", Status::new(&settings, &store.snapshot()).to_text());
        errln!("\ndemo: 2. the Update command: nothing left to transfer, activate now");
        let update = Job::Update(idf, crate::agent::UpdateOptions::default());
        let code = run_job(settings.clone(), store.clone(), update, false).await?;

        outln!();
        out!("{}", Status::new(&settings, &store.snapshot()).to_text());
        outln!();
        outln!("Versions are under {} (`current` is the active one)", settings.paths.apps_dir.display());
        if args.keep.is_none() {
            outln!("(temporary: removed when the demo ends; use --keep DIR to look at them)");
        }
        Ok(code)
    })
}

async fn start_server(
    dir: std::path::PathBuf,
    auth: Option<(String, Secret)>,
) -> Result<std::net::SocketAddr, Failure> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let listen = "127.0.0.1:0".parse().map_err(Failure::failed)?;
    tokio::spawn(async move {
        let result = crate::repo_server::serve(
            dir,
            vec![listen],
            auth,
            false,
            std::future::pending(),
            move |addr| {
                let _ = tx.send(addr);
            },
        )
        .await;
        if let Err(e) = result {
            tracing::error!("demo repository server: {e}");
        }
    });
    rx.await
        .map_err(|_| Failure::failed(anyhow::anyhow!("the demo repository server did not start")))
}

fn write_config(
    root: &Path,
    central: std::net::SocketAddr,
    branch: std::net::SocketAddr,
    limit: &str,
) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let password_file = root.join("central.pw");
    std::fs::write(&password_file, DEMO_PASSWORD)?;
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))?;
    let config = format!(
        r#"[paths]
state_dir = {state:?}

[update]
bandwidth_limit_enabled = true
bandwidth_limit = {limit:?}
parallel_downloads = 2

[[repository]]
name = "branch-office"
url = "http://{branch}/"
priority = 200

[[repository]]
name = "central"
url = "http://{central}/"
priority = 100
auth = "basic"
username = "demo"
password_file = {password_file:?}

[[app]]
name = "demo-app"
version = "latest"

[[app]]
name = "notes-viewer"
version = "2.3.1"
"#,
        state = root.join("state"),
    );
    let path = root.join("agent.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}
