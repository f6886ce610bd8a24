//! `completions SHELL` (bash, zsh, fish) as an administrator (or `scripts/package`) runs it, and
//! the manual pages `scripts/package` writes with `examples/man-pages.rs`. The scripts are
//! handed to the real shells: each must accept its script (`bash -n`, `zsh -n`,
//! `fish --no-execute`), and bash and fish must complete through it, past the first word too.
//!
//! bash, zsh, fish and man come from Debian's `bash`, `zsh`, `fish` and `man-db` packages;
//! `scripts/test` installs them when run as root. Without one the test fails and says so.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::package::write_man_pages;
use crate::support::{RunOutput, agent_command, run_with_timeout, temp_dir};

const TIMEOUT: Duration = Duration::from_secs(60);
const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

fn completions(shell: &str) -> RunOutput {
    let out = run_with_timeout(agent_command(&["completions", shell]), TIMEOUT);
    out.assert_success();
    out
}

/// Runs `program ARGS`; a missing program is a failure that says which package brings it.
fn run_tool(program: &str, args: &[&str], package: &str) -> Output {
    match Command::new(program).args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{program} is needed for this test: install {package} (run scripts/test as root, \
             or: apt-get install -y {package})"
        ),
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

#[test]
fn completions_for_every_shell_name_the_commands() {
    for shell in SHELLS {
        let script = completions(shell).stdout;
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        for word in [
            "igel-update-agent",
            "update",
            "delivery",
            "status",
            "import-registry",
            "completions",
            // fish writes options as `-l state-dir`.
            "state-dir",
        ] {
            assert!(
                script.contains(word),
                "the {shell} script does not mention {word}"
            );
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = run_with_timeout(agent_command(&["completions", "powershell"]), TIMEOUT);
    out.assert_code(2);
    assert!(
        out.stderr.contains("bash") && out.stderr.contains("fish"),
        "{}",
        out.stderr
    );
}

/// Each shell's own parser accepts its script (what the package installs is the same text).
#[test]
fn every_shell_accepts_its_script() {
    let dir = temp_dir("completions");
    for (shell, check, package) in [
        ("bash", ["-n"].as_slice(), "bash"),
        ("zsh", &["-n"], "zsh"),
        ("fish", &["--no-execute"], "fish"),
    ] {
        let file = dir.path().join(format!("igel-update-agent.{shell}"));
        fs::write(&file, completions(shell).stdout).expect("cannot write the script");
        let mut args = check.to_vec();
        args.push(file.to_str().expect("a UTF-8 path"));
        let output = run_tool(shell, &args, package);
        crate::support::assert_process_success(&output, &format!("{shell} {}", args.join(" ")));
    }
}

/// What bash offers for `WORDS... CURRENT<TAB>` through the generated script.
fn bash_completes(script: &Path, words: &[&str], current: &str) -> Vec<String> {
    let mut all: Vec<&str> = words.to_vec();
    all.push(current);
    let quoted: Vec<String> = all.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; \
         _igel__update__agent igel-update-agent '{current}' '{}'; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        all.len() - 1,
        words.last().expect("at least the program"),
    );
    let output = run_tool("bash", &["-c", &program], "bash");
    crate::support::assert_process_success(&output, "bash completion");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_and_the_options_of_subcommands() {
    let dir = temp_dir("completions-bash");
    let script = dir.path().join("igel-update-agent");
    fs::write(&script, completions("bash").stdout).expect("cannot write the script");

    let top = bash_completes(&script, &["igel-update-agent"], "con");
    assert_eq!(top, ["config"]);
    let config = bash_completes(&script, &["igel-update-agent", "config"], "");
    assert!(
        config.contains(&"check".to_string()) && config.contains(&"import-registry".to_string()),
        "{config:?}"
    );
    // Two words deep, the hyphenated program name must not break the lookup.
    let serve = bash_completes(&script, &["igel-update-agent", "repo", "serve"], "--l");
    assert!(serve.contains(&"--listen".to_string()), "{serve:?}");
}

#[test]
fn fish_completes_commands_and_the_options_of_subcommands() {
    let dir = temp_dir("completions-fish");
    let script = dir.path().join("igel-update-agent.fish");
    fs::write(&script, completions("fish").stdout).expect("cannot write the script");
    let program = format!(
        "source '{}'; complete -C 'igel-update-agent con'; complete -C 'igel-update-agent repo serve --l'",
        script.display()
    );
    let output = run_tool("fish", &["--no-config", "-c", &program], "fish");
    crate::support::assert_process_success(&output, "fish completion");
    let offered: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split('\t').next().map(str::to_string))
        .collect();
    for word in ["config", "--listen"] {
        assert!(offered.contains(&word.to_string()), "{offered:?}");
    }
}

#[test]
fn the_zsh_script_is_an_autoloadable_completion_function() {
    let script = completions("zsh").stdout;
    assert!(
        script.starts_with("#compdef igel-update-agent\n"),
        "zsh loads files in vendor-completions by their #compdef line:\n{}",
        script.lines().next().unwrap_or_default()
    );
}

#[test]
fn man_pages_are_written_for_the_program_and_every_command() {
    let dir = temp_dir("man-pages");
    let out = write_man_pages(dir.path());
    out.assert_success();
    for page in [
        "igel-update-agent.8",
        "igel-update-agent-run.8",
        "igel-update-agent-update.8",
        "igel-update-agent-config-check.8",
        "igel-update-agent-repo-serve.8",
        "igel-update-agent-completions.8",
    ] {
        let path = dir.path().join(page);
        assert!(
            out.stdout.lines().any(|l| Path::new(l) == path),
            "{page} not reported:\n{}",
            out.stdout
        );
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        let title = page.trim_end_matches(".8").to_uppercase();
        assert!(
            text.contains(&format!(".TH {title} 8 ")),
            "{page}: no section-8 title line:\n{text}"
        );
        // man's own check of the roff (what lintian runs): no warning.
        let check = run_tool(
            "man",
            &[
                "--warnings",
                "-E",
                "UTF-8",
                "-l",
                "-Tutf8",
                "-Z",
                path.to_str().expect("UTF-8"),
            ],
            "man-db",
        );
        assert!(
            check.status.success() && check.stderr.is_empty(),
            "man --warnings {page}: {}\n{}",
            check.status,
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let main = fs::read_to_string(dir.path().join("igel-update-agent.8")).expect("main page");
    // roff escapes a hyphen as `\-`.
    for section in [
        "EXIT STATUS",
        "FILES",
        "SEE ALSO",
        r"igel\-update\-agent\-update(8)",
    ] {
        assert!(main.contains(section), "the main page lacks {section}");
    }
}
