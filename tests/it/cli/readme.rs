//! The README, `docs/` and `--help` stand alone, and what they show exists (issue 11).
//!
//! - Every row of the README's command tables (`| `repo serve DIR [--listen ADDR] ...` | ... |`)
//!   names a command the real binary has (its `--help` exits 0) and only options that
//!   command's `--help` lists; every command the binary has is in such a table.
//! - `examples/agent.toml` validates with the real binary (`config check` exits 0) and shows
//!   every key of `[paths]`, `[update]` and `[ums]`.
//! - No user-facing text points at a design document outside the repository, and every option
//!   and argument in `--help` has a description.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Agent, RunOutput, agent_command, run_with_timeout, temp_dir};

const TIMEOUT: Duration = Duration::from_secs(60);

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read_repo_file(relative: &str) -> String {
    let path = repo_file(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `igel-update-agent WORDS... --help`.
fn help(words: &[String]) -> RunOutput {
    let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
    args.push("--help");
    run_with_timeout(agent_command(&args), TIMEOUT)
}

/// One row of a README table whose header's first cell is `command`.
#[derive(Debug)]
struct CommandRow {
    /// 1-based line in the README.
    line: usize,
    /// The first cell without its backticks, `\|` unescaped: `repo serve DIR [--listen ADDR]`.
    usage: String,
    /// The whole row, for the options it mentions.
    text: String,
}

impl CommandRow {
    /// The command words: up to the first argument that starts with `-`, `[` or `<`, or is
    /// upper case like `DIR`, `ID`, `FILE`.
    fn words(&self) -> Vec<String> {
        self.usage
            .split_whitespace()
            .take_while(|w| !w.starts_with(['-', '[', '<']) && !is_placeholder(w))
            .map(str::to_string)
            .collect()
    }

    /// Every `--option` written anywhere in the row, usage or description.
    fn options(&self) -> BTreeSet<String> {
        long_options(&self.text)
    }
}

/// An upper-case argument name: `DIR`, `ID`, `FILE`, `KEY=VALUE...`.
fn is_placeholder(word: &str) -> bool {
    let upper = word.bytes().any(|b| b.is_ascii_uppercase());
    let lower = word.bytes().any(|b| b.is_ascii_lowercase());
    upper && !lower
}

/// `--name` tokens in `text` (a name starts with a lower-case letter).
fn long_options(text: &str) -> BTreeSet<String> {
    let mut options = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
        let after = &rest[at + 2..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        if !preceded_by_word && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            options.insert(format!("--{}", name.trim_end_matches('-')));
        }
        rest = &after[name.len()..];
    }
    options
}

/// Whether `help` lists `option` (not merely an option it is the start of).
fn help_lists(help: &str, option: &str) -> bool {
    help.match_indices(option).any(|(at, _)| {
        !help[at + option.len()..]
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// Splits a table row into cells at `|`, leaving `\|` inside a cell.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cells.last_mut().unwrap().push('|');
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// The rows of every table whose header's first cell is `command` and whose row's first cell
/// is one backticked command.
fn command_rows(markdown: &str) -> Vec<CommandRow> {
    let mut rows = Vec::new();
    let mut in_command_table = false;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if !trimmed.starts_with('|') {
            in_command_table = false;
            continue;
        }
        let row = cells(trimmed);
        let first = row.first().map_or("", String::as_str);
        if !in_command_table {
            // A header line starts a table; its first cell says what the table lists.
            in_command_table = first == "command";
            continue;
        }
        if first.chars().all(|c| c == '-' || c == ':') {
            continue; // the separator line
        }
        let Some(usage) = first
            .strip_prefix('`')
            .and_then(|f| f.strip_suffix('`'))
            .filter(|u| !u.contains('`'))
        else {
            continue;
        };
        rows.push(CommandRow {
            line: i + 1,
            usage: usage.to_string(),
            text: trimmed.replace("\\|", "|"),
        });
    }
    rows
}

/// The subcommands a `--help` output lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// What is wrong with the command tables of `markdown` against the real binary: commands it
/// lacks, options their `--help` does not list.
fn command_table_problems(markdown: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for row in command_rows(markdown) {
        let words = row.words();
        if words.is_empty() {
            problems.push(format!(
                "README:{}: `{}` names no command",
                row.line, row.usage
            ));
            continue;
        }
        let out = help(&words);
        if out.code != Some(0) {
            problems.push(format!(
                "README:{}: `{}`: `igel-update-agent {} --help` exits {:?}: {}",
                row.line,
                row.usage,
                words.join(" "),
                out.code,
                out.stderr.trim()
            ));
            continue;
        }
        for option in row.options() {
            if !help_lists(&out.stdout, &option) {
                problems.push(format!(
                    "README:{}: `{}` shows {option}, which `igel-update-agent {} --help` does not list",
                    row.line,
                    row.usage,
                    words.join(" ")
                ));
            }
        }
    }
    problems
}

#[test]
fn readme_command_tables_name_real_commands_and_options() {
    let readme = read_repo_file("README.md");
    let rows = command_rows(&readme);
    assert!(
        rows.len() >= 10,
        "expected the README's command table, found {} rows: {rows:?}",
        rows.len()
    );
    let problems = command_table_problems(&readme);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_command_of_the_binary_is_in_the_readme() {
    let readme = read_repo_file("README.md");
    let listed: BTreeSet<Vec<String>> = command_rows(&readme).iter().map(|r| r.words()).collect();
    let top = help(&[]);
    top.assert_success();
    let mut missing = Vec::new();
    for command in subcommands(&top.stdout) {
        let nested = subcommands(&help(std::slice::from_ref(&command)).stdout);
        if nested.is_empty() {
            if !listed.contains(&vec![command.clone()]) {
                missing.push(command);
            }
            continue;
        }
        for sub in nested {
            if !listed.contains(&vec![command.clone(), sub.clone()]) {
                missing.push(format!("{command} {sub}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "commands of the binary that no README command table lists: {missing:?}"
    );
}

/// The check itself: a table row naming what the binary does not have must be reported.
#[test]
fn the_command_table_check_catches_what_does_not_exist() {
    let markdown = "\
| command | does |
|---|---|
| `status [--json] [--colour]` | an option that does not exist |
| `frobnicate FILE` | a command that does not exist |
| `repo serve DIR [--listen ADDR] [--user U --password-file F]` | exists |
| `update [--idf FILE\\|URL] [--wait]` | exists |
";
    let rows = command_rows(markdown);
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[2].words(), ["repo", "serve"]);
    assert_eq!(
        rows[2].options().into_iter().collect::<Vec<_>>(),
        ["--listen", "--password-file", "--user"]
    );
    assert_eq!(rows[3].words(), ["update"]);
    let problems = command_table_problems(markdown);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("--colour"), "{problems:#?}");
    assert!(problems[1].contains("frobnicate"), "{problems:#?}");
}

/// Every command path of the binary: `[]`, `["update"]`, `["config", "check"]`, ...
fn all_command_paths() -> Vec<Vec<String>> {
    let mut paths = vec![Vec::new()];
    let mut i = 0;
    while i < paths.len() {
        let out = help(&paths[i]);
        out.assert_success();
        for sub in subcommands(&out.stdout) {
            let mut path = paths[i].clone();
            path.push(sub);
            paths.push(path);
        }
        i += 1;
    }
    paths
}

/// Entries under `Arguments:` and `Options:` of a `--help` output that have no description.
fn undescribed(help: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_section = false;
    let lines: Vec<&str> = help.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        // clap pads an entry without a description with spaces.
        let line = line.trim_end();
        if !line.starts_with(' ') {
            in_section = matches!(line.trim(), "Arguments:" | "Options:");
            continue;
        }
        let entry = line.trim_start();
        let indent = line.len() - entry.len();
        // Entries start at column 2 (`<DIR>`, `-h, --help`) or 6 (`--json`); deeper lines
        // continue a description.
        if !in_section || indent > 6 || !entry.starts_with(['-', '<', '[']) {
            continue;
        }
        // `  --listen <LISTEN>  Address ...`: the description follows two spaces; a long
        // entry may have it on the next, further indented line.
        let described = entry.contains("  ")
            || lines.get(i + 1).is_some_and(|next| {
                let text = next.trim_start();
                next.len() - text.len() > indent
                    && !text.is_empty()
                    && !text.starts_with(['-', '<', '['])
            });
        if !described {
            found.push(entry.trim().to_string());
        }
    }
    found
}

/// Arguments owned by `src/cli/repo_cmd.rs`, which this change could not touch: their
/// descriptions belong there.
const KNOWN_UNDESCRIBED: &[(&str, &str)] = &[];

#[test]
fn help_describes_every_option_and_argument_and_stands_alone() {
    let mut problems = Vec::new();
    for path in all_command_paths() {
        let out = help(&path);
        let command = path.join(" ");
        for entry in undescribed(&out.stdout) {
            if !KNOWN_UNDESCRIBED.contains(&(command.as_str(), entry.as_str())) {
                problems.push(format!(
                    "`igel-update-agent {command} --help`: {entry} has no description"
                ));
            }
        }
        for outside in ["DESIGN", "../shared"] {
            if out.stdout.contains(outside) {
                problems.push(format!(
                    "`igel-update-agent {command} --help` refers to {outside:?}, outside the repository"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn top_level_help_lists_the_exit_codes() {
    let out = help(&[]);
    out.assert_success();
    let codes = out
        .stdout
        .split("Exit codes:")
        .nth(1)
        .unwrap_or_else(|| panic!("no `Exit codes:` in --help:\n{}", out.stdout));
    for code in ["0 ", "1 ", "2 ", "3 ", "130/143 "] {
        assert!(
            codes.lines().any(|l| l.trim_start().starts_with(code)),
            "exit code {code:?} missing:\n{codes}"
        );
    }
}

#[test]
fn readme_and_docs_do_not_point_outside_the_repository() {
    let mut files = vec![repo_file("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(repo_file("docs"))
        .expect("cannot list docs/")
        .map(|e| e.expect("cannot read docs/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut problems = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("cannot read a document");
        for (i, line) in text.lines().enumerate() {
            if line.contains("DESIGN") || line.contains("../shared") {
                problems.push(format!("{}:{}: {line}", file.display(), i + 1));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "references to a design document outside the repository:\n{}",
        problems.join("\n")
    );
}

/// `examples/agent.toml` copied into a device directory with an empty state directory.
fn example_device() -> (tempfile::TempDir, Agent) {
    let dir = temp_dir("readme-example");
    let config = dir.path().join("agent.toml");
    fs::copy(repo_file("examples/agent.toml"), &config).expect("cannot copy the example");
    let agent = Agent::new(&config, dir.path().join("state"));
    (dir, agent)
}

#[test]
fn the_example_configuration_is_valid() {
    let (_dir, agent) = example_device();
    let out = agent.run(&["config", "check"], TIMEOUT);
    out.assert_success();
    assert!(
        out.stderr.contains("configuration is valid"),
        "{}",
        out.stderr
    );
    // The file in the repository itself, as the README tells to check it.
    let state = temp_dir("readme-example-state");
    let example = repo_file("examples/agent.toml");
    let out = run_with_timeout(
        agent_command(&[
            "config",
            "check",
            "--config",
            example.to_str().expect("a UTF-8 path"),
            "--state-dir",
            state.path().to_str().expect("a UTF-8 path"),
        ]),
        TIMEOUT,
    );
    out.assert_success();
}

#[test]
fn the_example_configuration_shows_every_key() {
    let (_dir, agent) = example_device();
    let out = agent.run(&["config", "check", "--json"], TIMEOUT);
    out.assert_success();
    let report = out.json();
    assert_eq!(report["valid"], true, "{report:#}");
    let settings = &report["settings"];
    assert_eq!(settings["repository"].as_array().map(Vec::len), Some(2));
    assert_eq!(settings["app"].as_array().map(Vec::len), Some(2));
    assert_eq!(settings["ums"]["urls"].as_array().map(Vec::len), Some(2));

    // Every key of these sections appears, set or behind a `#`, as `key =`.
    let example = read_repo_file("examples/agent.toml");
    let written: BTreeSet<&str> = example
        .lines()
        .map(|l| l.trim_start_matches(['#', ' ']))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
        .collect();
    let derived = ["bandwidth_limit_bytes_per_sec"];
    let mut missing = Vec::new();
    for section in ["paths", "update", "ums"] {
        let keys = settings[section]
            .as_object()
            .unwrap_or_else(|| panic!("no [{section}] in {settings:#}"));
        for key in keys.keys() {
            if !derived.contains(&key.as_str()) && !written.contains(key.as_str()) {
                missing.push(format!("[{section}] {key}"));
            }
        }
    }
    for key in [
        "name",
        "url",
        "priority",
        "auth",
        "username",
        "password_file",
        "credential",
        "ca_certificate",
        "version",
        "app_json_sha256",
    ] {
        if !written.contains(key) {
            missing.push(key.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from examples/agent.toml: {missing:?}"
    );
}
