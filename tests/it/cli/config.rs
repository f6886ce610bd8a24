//! Whole-process tests of the configuration side of the command line (DESIGN 3, 5, 8): the
//! real binary reads real files, and every assertion is about what an administrator sees:
//! exit codes, the file, key and line an error names, the effective settings that
//! `config check --json` and `status --json` print, and secrets that never show.
//!
//! Also here: the global options and their environment variables, the single-instance lock,
//! and the IDF errors `delivery` reports before it contacts any repository.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::support::device::Device;
use crate::support::{
    Agent, RunOutput, agent_command, run_with_timeout, temp_dir, write_password_file,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// Whether `stderr` points at `line` of `file`, in either form the agent uses: `FILE:LINE`
/// (validation) or `FILE: ... line LINE` (TOML syntax and type errors).
fn names_line(stderr: &str, file: &Path, line: usize) -> bool {
    let file = file.display().to_string();
    stderr.contains(&format!("{file}:{line}"))
        || (stderr.contains(&file) && stderr.contains(&format!("line {line}")))
}

#[track_caller]
fn assert_config_error(out: &RunOutput, file: &Path, key: &str, line: usize) {
    out.assert_code(2);
    assert!(
        names_line(&out.stderr, file, line),
        "the error must name {}:{line}\n{}",
        file.display(),
        out.stderr
    );
    assert!(
        out.stderr.contains(key),
        "the error must name the key {key}\n{}",
        out.stderr
    );
}

fn bandwidth_config(value: &str) -> String {
    format!("[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = {value:?}\n")
}

#[test]
fn every_bad_bandwidth_limit_warns_naming_the_value_and_falls_back_to_2mb() {
    for bad in ["2 MB", "2mb", "1.5MB", "0", "2Mbit", ""] {
        let device = Device::unconfigured();
        device.write_config(&bandwidth_config(bad));
        let quoted = format!("{bad:?}");

        let out = device.run(&["config", "check", "--json"]);
        out.assert_success();
        assert!(
            out.stderr.contains(&quoted),
            "{quoted}: stderr must warn naming the value\n{}",
            out.stderr
        );
        let check = out.json();
        let warnings = check["warnings"].as_array().expect("warnings is a list");
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().is_some_and(|w| w.contains(&quoted))),
            "{quoted}: the JSON warnings must name the value: {warnings:?}"
        );
        assert_eq!(
            check["settings"]["update"]["bandwidth_limit_bytes_per_sec"],
            2 * MIB,
            "{quoted}"
        );

        let status = device.run(&["status", "--json"]).assert_success().json();
        assert_eq!(
            status["settings"]["bandwidth_limit_bytes_per_sec"],
            2 * MIB,
            "{quoted}: {status}"
        );
    }
}

#[test]
fn valid_bandwidth_limits_use_igel_units_without_a_warning() {
    for (good, bytes) in [("512KB", 512 * 1024), ("1GB", 1024 * MIB), ("3", 3 * MIB)] {
        let device = Device::unconfigured();
        device.write_config(&bandwidth_config(good));

        let check = device.check_json();
        assert_eq!(check["warnings"], serde_json::json!([]), "{good}");
        assert_eq!(
            check["settings"]["update"]["bandwidth_limit_bytes_per_sec"], bytes,
            "{good}"
        );
        let status = device.run(&["status", "--json"]).assert_success().json();
        assert_eq!(
            status["settings"]["bandwidth_limit_bytes_per_sec"], bytes,
            "{good}"
        );
    }
}

#[test]
fn a_disabled_bandwidth_limit_shows_as_null_in_status() {
    let device = Device::unconfigured();
    device.write_config("[update]\nbandwidth_limit_enabled = false\nbandwidth_limit = \"5MB\"\n");
    let status = device.run(&["status", "--json"]).assert_success().json();
    assert_eq!(
        status["settings"]["bandwidth_limit_bytes_per_sec"],
        Value::Null
    );
}

#[test]
fn an_unknown_key_is_refused_naming_file_key_and_line() {
    let device = Device::unconfigured();
    let file = device.write_config("[update]\ncheck_on_boot = true\nbandwith_limit = \"2MB\"\n");
    let out = device.run(&["config", "check"]);
    assert_config_error(&out, &file, "bandwith_limit", 3);
}

#[test]
fn a_value_of_the_wrong_type_is_refused_naming_file_key_and_line() {
    let device = Device::unconfigured();
    let file = device.write_config(
        "[update]\nparallel_downloads = 2\n\n[[repository]]\nname = \"a\"\nurl = \"http://a.example/\"\npriority = \"high\"\n",
    );
    let out = device.run(&["config", "check"]);
    assert_config_error(&out, &file, "priority", 7);

    let file = device.write_config("[update]\nparallel_downloads = \"four\"\n");
    let out = device.run(&["config", "check"]);
    assert_config_error(&out, &file, "parallel_downloads", 2);
}

#[test]
fn a_duplicate_repository_name_in_a_drop_in_is_refused_naming_the_drop_in_and_line() {
    let device = Device::unconfigured();
    device.write_config("[[repository]]\nname = \"central\"\nurl = \"http://a.example/\"\n");
    let drop_in = device.write_drop_in(
        "10-x.toml",
        "# branch office\n\n[[repository]]\nname = \"central\"\nurl = \"http://b.example/\"\n",
    );
    let out = device.run(&["config", "check"]);
    assert_config_error(&out, &drop_in, "name", 4);
    assert!(out.stderr.contains("central"), "{}", out.stderr);
}

#[test]
fn an_inline_password_is_refused_without_echoing_it() {
    const PASSWORD: &str = "inline-Pa55word-value";
    let device = Device::unconfigured();
    let file = device.write_config(&format!(
        "[[repository]]\nname = \"central\"\nurl = \"https://dav.example/\"\nusername = \"device\"\npassword = \"{PASSWORD}\"\n"
    ));
    for args in [
        &["config", "check"][..],
        &["config", "check", "--json"],
        &["repos"],
    ] {
        let out = device.run(args);
        assert_config_error(&out, &file, "password", 5);
        assert!(
            !out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD),
            "{args:?} echoed the password\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

/// TOML syntax and type errors quote the offending source line; a password written inline on
/// that line must not be quoted with it.
#[test]
fn a_parse_error_on_the_line_of_an_inline_password_does_not_echo_it() {
    const PASSWORD: &str = "inline-Pa55word-value";
    let cases = [
        // The closing quote forgotten.
        format!(
            "[[repository]]\nname = \"central\"\nurl = \"https://dav.example/\"\npassword = \"{PASSWORD}\n"
        ),
        // An inline table with a value of the wrong type beside the password.
        format!(
            "repository = [{{ name = \"central\", url = \"https://dav.example/\", password = \"{PASSWORD}\", priority = \"high\" }}]\n"
        ),
    ];
    for text in cases {
        let device = Device::unconfigured();
        device.write_config(&text);
        let out = device.run(&["config", "check"]);
        out.assert_code(2);
        assert!(
            out.stderr
                .contains(&device.config_path().display().to_string()),
            "{}",
            out.stderr
        );
        assert!(
            !out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD),
            "the error quotes the password:\n{}",
            out.stderr
        );
    }
}

#[test]
fn a_password_file_readable_by_others_is_refused_naming_file_key_and_line() {
    let device = Device::unconfigured();
    let pw = write_password_file(&device.etc(), "central.pw", "s3cr3t-value");
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let file = device.write_config(&format!(
        "[[repository]]\nname = \"central\"\nurl = \"https://dav.example/\"\nusername = \"device\"\npassword_file = {:?}\n",
        pw.display().to_string()
    ));
    let out = device.run(&["config", "check"]);
    assert_config_error(&out, &file, "password_file", 5);
    assert!(out.stderr.contains("central.pw"), "{}", out.stderr);
    assert!(!out.stderr.contains("s3cr3t-value"), "{}", out.stderr);
}

#[test]
fn drop_ins_are_merged_in_name_order_and_later_ones_override() {
    let device = Device::unconfigured();
    let main = device.write_config(
        "[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = \"1MB\"\nparallel_downloads = 1\n",
    );
    // Written in reverse order so that directory order and name order are unlikely to agree.
    let late = device.write_drop_in("20-late.toml", "[update]\nbandwidth_limit = \"5MB\"\n");
    let early = device.write_drop_in(
        "10-early.toml",
        "[update]\nbandwidth_limit = \"3MB\"\nparallel_downloads = 3\n\n[[repository]]\nname = \"branch\"\nurl = \"http://b.example/\"\n",
    );
    device.write_drop_in("05-ignored.conf", "this is not TOML and not a drop-in\n");

    let check = device.check_json();
    let files: Vec<&str> = check["settings"]["files"]
        .as_array()
        .expect("files is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let expected: Vec<String> = [main, early, late]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(files, expected);
    let update = &check["settings"]["update"];
    assert_eq!(update["bandwidth_limit_bytes_per_sec"], 5 * MIB);
    assert_eq!(update["parallel_downloads"], 3);
    assert_eq!(check["settings"]["repository"][0]["name"], "branch");
}

#[test]
fn config_check_shows_secrets_as_stars_and_never_their_value() {
    const SECRET: &str = "s3cr3t-value";
    let device = Device::unconfigured();
    let pw = write_password_file(&device.etc(), "central.pw", SECRET);
    device.write_config(&format!(
        "[[repository]]\nname = \"central\"\nurl = \"https://dav.example/\"\nauth = \"digest\"\nusername = \"device\"\npassword_file = {:?}\n",
        pw.display().to_string()
    ));
    for args in [
        &["config", "check"][..],
        &["config", "check", "--json"],
        &["repos"],
        &["repos", "--json"],
        &["status", "--json"],
    ] {
        let out = device.run(args);
        out.assert_success();
        assert!(
            !out.stdout.contains(SECRET) && !out.stderr.contains(SECRET),
            "{args:?} printed the password\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    let text = device.run(&["config", "check"]);
    assert!(text.stdout.contains("***"), "{}", text.stdout);
    let json = device.check_json();
    assert_eq!(json["settings"]["repository"][0]["password"], "***");
}

#[test]
fn import_registry_prints_toml_with_the_repository_and_without_the_password() {
    const PASSWORD: &str = "registry-Pa55-value";
    let dir = temp_dir("registry");
    let file = dir.path().join("registry.txt");
    fs::write(
        &file,
        format!(
            "update.external_binary_source0.url=https://dav.example/apps/\n\
             update.external_binary_source0.priority=200\n\
             update.external_binary_source0.username=device\n\
             update.external_binary_source0.password={PASSWORD}\n\
             update.bandwidth_limit=512KB\n"
        ),
    )
    .expect("cannot write the registry file");
    let file = file.to_str().expect("UTF-8 temp path");

    let out = run_with_timeout(agent_command(&["config", "import-registry", file]), TIMEOUT);
    out.assert_success();
    assert!(
        !out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD),
        "the password was copied\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let doc: toml::Table = out
        .stdout
        .parse()
        .unwrap_or_else(|e| panic!("the output is not TOML ({e}):\n{}", out.stdout));
    let repos = doc["repository"].as_array().expect("[[repository]] tables");
    assert_eq!(repos.len(), 1, "{}", out.stdout);
    let repo = &repos[0];
    assert_eq!(repo["url"].as_str(), Some("https://dav.example/apps/"));
    assert_eq!(repo["priority"].as_integer(), Some(200));
    assert_eq!(repo["username"].as_str(), Some("device"));
    assert!(repo.get("password").is_none(), "{}", out.stdout);
    assert!(repo["password_file"].is_str(), "{}", out.stdout);
    assert_eq!(doc["update"]["bandwidth_limit"].as_str(), Some("512KB"));
}

#[test]
fn import_registry_output_is_a_configuration_the_agent_accepts() {
    let dir = temp_dir("registry");
    let file = dir.path().join("registry.txt");
    fs::write(
        &file,
        "update.external_binary_source0.url=https://dav.example/apps/\n\
         update.external_binary_source0.priority=-1\n\
         update.activate_after_installation=false\n\
         update.bandwidth_limit=512KB\n",
    )
    .expect("cannot write the registry file");
    let out = run_with_timeout(
        agent_command(&["config", "import-registry", file.to_str().expect("UTF-8")]),
        TIMEOUT,
    );
    out.assert_success();

    let device = Device::unconfigured();
    device.write_config(&out.stdout);
    let check = device.check_json();
    assert_eq!(
        check["settings"]["update"]["activate_after_installation"],
        false
    );
    assert_eq!(check["settings"]["repository"][0]["priority"], -1);
}

#[test]
fn import_registry_refuses_an_unknown_key_naming_the_line() {
    let dir = temp_dir("registry");
    let file = dir.path().join("registry.txt");
    fs::write(
        &file,
        "# exported from the UMS\nupdate.bandwidth_limit=512KB\nupdate.no_such_setting=1\n",
    )
    .expect("cannot write the registry file");
    let out = run_with_timeout(
        agent_command(&["config", "import-registry", file.to_str().expect("UTF-8")]),
        TIMEOUT,
    );
    out.assert_code(2);
    assert!(names_line(&out.stderr, &file, 3), "{}", out.stderr);
    assert!(out.stderr.contains("no_such_setting"), "{}", out.stderr);
}

const FOUR_REPOSITORIES: &str = r#"
[[repository]]
name = "zeta"
url = "http://zeta.example/"

[[repository]]
name = "staging"
url = "http://staging.example/"
priority = -1

[[repository]]
name = "alpha"
url = "http://alpha.example/"
priority = 100

[[repository]]
name = "branch"
url = "http://branch.example/"
priority = 4294967295
"#;

#[test]
fn repos_lists_by_priority_then_name_with_hidden_ones_marked() {
    let device = Device::unconfigured();
    device.write_config(FOUR_REPOSITORIES);

    let json = device.run(&["repos", "--json"]).assert_success().json();
    let rows = json.as_array().expect("a list of repositories");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["branch", "alpha", "zeta", "staging"]);
    let hidden: Vec<bool> = rows.iter().map(|r| r["hidden"] == true).collect();
    assert_eq!(hidden, [false, false, false, true]);

    let text = device.run(&["repos"]).assert_success().stdout.clone();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let order: Vec<&str> = lines
        .iter()
        .filter_map(|line| {
            ["branch", "alpha", "zeta", "staging"]
                .into_iter()
                .find(|name| line.contains(&format!(" {name} ")))
        })
        .collect();
    assert_eq!(order, ["branch", "alpha", "zeta", "staging"], "{text}");
    let staging = lines
        .iter()
        .find(|l| l.contains(" staging "))
        .expect("staging listed");
    assert!(staging.contains("hidden"), "{text}");
    assert!(
        lines.iter().filter(|l| l.contains("hidden")).count() == 1,
        "only the hidden repository is marked:\n{text}"
    );
}

#[test]
fn an_explicit_config_file_that_is_missing_is_an_error_naming_it() {
    let device = Device::unconfigured();
    let missing = device.etc().join("no-such-agent.toml");
    let agent = Agent::new(&missing, device.state_dir());
    for args in [&["config", "check"][..], &["repos"]] {
        let out = agent.run(args, TIMEOUT);
        out.assert_code(2);
        assert!(
            out.stderr.contains(&missing.display().to_string()),
            "{args:?}: {}",
            out.stderr
        );
    }
    // `status` always answers (from state.json here), with a warning naming the file.
    let out = agent.run(&["status"], TIMEOUT);
    out.assert_success();
    assert!(
        out.stderr.contains("warning") && out.stderr.contains(&missing.display().to_string()),
        "{}",
        out.stderr
    );
}

#[test]
fn environment_variables_choose_the_config_and_state_dir_like_the_flags() {
    let device = Device::unconfigured();
    let config = device
        .write_config("[update]\nbandwidth_limit_enabled = true\nbandwidth_limit = \"7MB\"\n");
    let state = device.state_dir();
    let env_command = |args: &[&str]| {
        let mut cmd = agent_command(args);
        cmd.env("IGEL_UPDATE_AGENT_CONFIG", &config);
        cmd.env("IGEL_UPDATE_AGENT_STATE_DIR", state);
        cmd
    };

    let check = run_with_timeout(env_command(&["config", "check", "--json"]), TIMEOUT);
    let check = check.assert_success().json();
    assert_eq!(check["settings"]["files"][0], config.display().to_string());
    assert_eq!(
        check["settings"]["paths"]["state_dir"],
        state.display().to_string()
    );
    assert_eq!(
        check["settings"]["update"]["bandwidth_limit_bytes_per_sec"],
        7 * MIB
    );

    let status = run_with_timeout(env_command(&["status", "--json"]), TIMEOUT);
    assert_eq!(
        status.assert_success().json()["settings"]["bandwidth_limit_bytes_per_sec"],
        7 * MIB
    );

    // A missing file named by the variable is as much an error as one named by the flag.
    let missing = device.etc().join("gone.toml");
    let mut cmd = agent_command(&["config", "check"]);
    cmd.env("IGEL_UPDATE_AGENT_CONFIG", &missing);
    let out = run_with_timeout(cmd, TIMEOUT);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&missing.display().to_string()),
        "{}",
        out.stderr
    );

    // The flags win over the variables.
    let other_state = device.root().join("other-state");
    let mut cmd = env_command(&["config", "check", "--json"]);
    cmd.arg("--state-dir").arg(&other_state);
    let check = run_with_timeout(cmd, TIMEOUT).assert_success().json();
    assert_eq!(
        check["settings"]["paths"]["state_dir"],
        other_state.display().to_string()
    );
}

#[test]
fn status_json_on_an_empty_state_dir_has_the_version_the_settings_and_no_apps() {
    let device = Device::unconfigured();
    device.write_config("");
    fs::create_dir_all(device.state_dir()).expect("cannot create the state dir");

    let status = device.run(&["status", "--json"]).assert_success().json();
    assert_eq!(status["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["apps"], serde_json::json!([]));
    assert_eq!(status["settings"]["activate_after_installation"], true);
    assert_eq!(
        status["settings"]["bandwidth_limit_bytes_per_sec"],
        Value::Null
    );
    assert!(status.get("update_status").is_some(), "{status}");
}

/// A configuration that `delivery` accepts; its repository refuses connections at once.
fn deliverable_config(device: &Device) {
    device.write_config(
        "[update]\nretries = 0\nretry_backoff = \"10ms\"\nconnect_timeout = \"2s\"\n\n\
         [[repository]]\nname = \"nowhere\"\nurl = \"http://127.0.0.1:1/\"\n\n\
         [[app]]\nname = \"demo-app\"\nversion = \"1.0.0\"\n",
    );
}

#[test]
fn delivery_while_another_instance_holds_the_lock_exits_3() {
    let device = Device::unconfigured();
    deliverable_config(&device);
    fs::create_dir_all(device.state_dir()).expect("cannot create the state dir");
    let lock = fs::File::create(device.state_dir().join("lock")).expect("cannot create the lock");
    lock.lock().expect("cannot take the lock");

    let out = device.run(&["delivery"]);
    out.assert_code(3);
    assert!(
        out.stderr.contains("another"),
        "the message must say another instance holds the lock: {}",
        out.stderr
    );
    assert!(!device.state_dir().join("state.json").exists());

    // Released, the same delivery gets past the lock (and fails on the dead repository).
    drop(lock);
    device.run(&["delivery"]).assert_code(1);
}

/// Issue 11.10: the lock message names the holder's pid and command, and suggests what fits:
/// `systemctl` only for the daemon.
#[test]
fn the_lock_message_names_the_holder_and_what_to_do() {
    use std::io::Write;
    let device = Device::unconfigured();
    deliverable_config(&device);
    fs::create_dir_all(device.state_dir()).expect("cannot create the state dir");
    for (content, holder, hint) in [
        (
            "4242 delivery\n",
            "`igel-update-agent delivery` (pid 4242) holds",
            "wait for it to end",
        ),
        (
            "4243 run\n",
            "the daemon (pid 4243) holds",
            "control socket",
        ),
    ] {
        let mut lock =
            fs::File::create(device.state_dir().join("lock")).expect("cannot create the lock");
        lock.write_all(content.as_bytes())
            .expect("cannot write the lock");
        lock.lock().expect("cannot take the lock");
        let out = device.run(&["delivery"]);
        out.assert_code(3);
        assert!(out.stderr.contains(holder), "{}", out.stderr);
        assert!(out.stderr.contains(hint), "{}", out.stderr);
        if content.contains("delivery") {
            assert!(!out.stderr.contains("systemctl"), "{}", out.stderr);
        }
    }
}

/// Issue 11.10: a failure is said once per app and once as the outcome, not a third time at
/// the end; without a log on stderr (`--log-level off`) the end says it once.
#[test]
fn a_failure_is_not_printed_three_times() {
    let device = Device::unconfigured();
    deliverable_config(&device);
    let out = device.run(&["delivery"]);
    out.assert_code(1);
    let lines = out
        .stderr
        .lines()
        .filter(|l| l.contains("no usable app.json"))
        .count();
    assert_eq!(lines, 2, "{}", out.stderr);
    let out = device.run(&["--log-level", "off", "delivery"]);
    out.assert_code(1);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].starts_with("demo-app: no usable app.json"),
        "{}",
        out.stderr
    );
}

/// Issue 11.10: a state directory that is a file, or under one, is bad usage named as such,
/// for every command, not a raw OS error.
#[test]
fn a_state_directory_that_is_a_file_is_named_as_such() {
    let device = Device::unconfigured();
    deliverable_config(&device);
    let file = device.root().join("afile");
    fs::write(&file, "").expect("cannot write a file");
    for (dir, problem) in [
        (file.clone(), "it exists and is not a directory"),
        (file.join("below"), "a part of its path is a file"),
    ] {
        for command in [
            &["status"][..],
            &["delivery"],
            &["config", "check"],
            &["check"],
        ] {
            let config = device.config_path();
            let mut args = vec![
                "--config",
                config.to_str().expect("utf-8"),
                "--state-dir",
                dir.to_str().expect("utf-8"),
            ];
            args.extend_from_slice(command);
            let out = run_with_timeout(agent_command(&args), TIMEOUT);
            out.assert_code(2);
            assert!(
                out.stderr
                    .contains(&format!("state directory {}: {problem}", dir.display())),
                "{command:?}: {}",
                out.stderr
            );
            assert!(
                !out.stderr.contains("os error"),
                "{command:?}: {}",
                out.stderr
            );
        }
    }
}

/// Issue 11.10: `--at` without a UTC offset says exactly that, with the forms that work.
#[test]
fn update_at_without_an_offset_says_what_is_missing() {
    let device = Device::unconfigured();
    deliverable_config(&device);
    let out = device.run(&["update", "--at", "2030-12-01T02:00:00"]);
    out.assert_code(2);
    for needle in [
        "no UTC offset",
        "2030-12-01T02:00:00Z",
        "2030-12-01T02:00:00+01:00",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert!(
        !out.stderr.contains("premature end of input"),
        "{}",
        out.stderr
    );
}

/// Issue 11.10: log lines on stderr carry local time like the status texts (one rule: local
/// time for people, RFC 3339 UTC for programs).
#[test]
fn log_lines_are_in_local_time() {
    let device = Device::unconfigured();
    deliverable_config(&device);
    let mut cmd = device.agent().command(&["delivery"]);
    // Fixed 5 hours ahead of UTC whatever the machine's zone is (POSIX signs are inverted).
    cmd.env("TZ", "XXX-5");
    let before = chrono::Utc::now();
    let out = run_with_timeout(cmd, TIMEOUT);
    let first = out.stderr.lines().next().unwrap_or_default().to_string();
    let stamp = first.get(..19).unwrap_or_default();
    let logged = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("{stamp:?} is not a local time stamp ({e}): {}", out.stderr));
    let expected = (before + chrono::Duration::hours(5)).naive_utc();
    let off = (logged - expected).num_seconds().abs();
    assert!(
        off < 60,
        "logged {logged}, expected about {expected}: {first}"
    );
}

#[test]
fn delivery_with_an_idf_that_is_not_json_is_bad_input_naming_the_file() {
    let device = Device::unconfigured();
    deliverable_config(&device);
    let idf = device.root().join("broken-idf.json");
    fs::write(&idf, "apps: [chromium]\n").expect("cannot write the IDF");

    let out = device.run(&["delivery", "--idf", idf.to_str().expect("UTF-8")]);
    out.assert_code(2);
    assert!(out.stderr.contains("broken-idf.json"), "{}", out.stderr);
    assert!(out.stderr.contains("JSON"), "{}", out.stderr);
}

#[test]
fn delivery_with_a_bad_app_name_in_the_idf_names_the_file_and_the_field() {
    let device = Device::unconfigured();
    deliverable_config(&device);
    let idf = device.root().join("bad-name-idf.json");
    fs::write(
        &idf,
        r#"{"apps": [{"name": "chromium", "version": "1"}, {"name": "../Evil App", "version": "1"}]}"#,
    )
    .expect("cannot write the IDF");

    let out = device.run(&["delivery", "--idf", idf.to_str().expect("UTF-8")]);
    out.assert_code(2);
    assert!(out.stderr.contains("bad-name-idf.json"), "{}", out.stderr);
    assert!(out.stderr.contains("apps[1].name"), "{}", out.stderr);
}

#[test]
fn delivery_without_an_idf_or_app_tables_is_bad_usage() {
    let device = Device::unconfigured();
    device.write_config("[[repository]]\nname = \"central\"\nurl = \"http://127.0.0.1:1/\"\n");
    let out = device.run(&["delivery"]);
    out.assert_code(2);
    assert!(out.stderr.contains("IDF"), "{}", out.stderr);
    assert!(out.stderr.contains("[[app]]"), "{}", out.stderr);
}

/// Issue 11.7: on a terminal the log is coloured unless `NO_COLOR` is set.
#[test]
fn no_color_turns_the_colours_of_the_log_off() {
    let device = Device::unconfigured();
    deliverable_config(&device);
    let has_colour = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        text.split("\x1b[").skip(1).any(|rest| {
            let code: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ';')
                .collect();
            !code.is_empty() && rest[code.len()..].starts_with('m')
        })
    };
    let coloured =
        crate::support::term::run_in_terminal(&device.agent().command(&["delivery"]), 100, TIMEOUT);
    assert!(
        has_colour(&coloured),
        "{}",
        String::from_utf8_lossy(&coloured)
    );
    let mut plain = device.agent().command(&["delivery"]);
    plain.env("NO_COLOR", "1");
    let plain = crate::support::term::run_in_terminal(&plain, 100, TIMEOUT);
    assert!(!has_colour(&plain), "{}", String::from_utf8_lossy(&plain));
    assert!(String::from_utf8_lossy(&plain).contains("no usable app.json"));
}
