//! A terminal for tests of what people see: the agent runs under a real pseudo-terminal
//! (util-linux `script`, with `stty` setting its size), and [`Screen`] replays the bytes it
//! wrote the way a terminal draws them (carriage return, line feed, erase line, cursor up,
//! erase below, wrapping at the right margin; colours ignored). A line that wraps, a fragment
//! that a redraw leaves behind or a log line glued to a progress line shows on the screen
//! exactly as an administrator would see it.

use std::process::{Command, Stdio};
use std::time::Duration;

/// What the terminal shows after replaying `bytes` on `cols` columns.
pub struct Screen {
    pub lines: Vec<String>,
    /// Lines that were longer than the terminal and wrapped onto the next one.
    pub wrapped: usize,
}

impl Screen {
    pub fn replay(bytes: &[u8], cols: usize) -> Screen {
        let text = String::from_utf8_lossy(bytes);
        let mut rows: Vec<Vec<char>> = vec![Vec::new()];
        let (mut row, mut col, mut wrapped) = (0usize, 0usize, 0usize);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => col = 0,
                '\n' => {
                    row += 1;
                    if rows.len() <= row {
                        rows.push(Vec::new());
                    }
                }
                '\x1b' => {
                    if chars.peek() != Some(&'[') {
                        continue;
                    }
                    chars.next();
                    let mut arg = String::new();
                    let mut command = ' ';
                    for c in chars.by_ref() {
                        if c.is_ascii_digit() || c == ';' || c == '?' {
                            arg.push(c);
                        } else {
                            command = c;
                            break;
                        }
                    }
                    let n: usize = arg.parse().unwrap_or(1);
                    match command {
                        'K' => {
                            // 2K: the whole line; 0K/K: from the cursor to its end.
                            if arg == "2" {
                                rows[row].clear();
                            } else {
                                rows[row].truncate(col);
                            }
                        }
                        'A' => row = row.saturating_sub(n),
                        'J' => {
                            rows[row].truncate(col);
                            rows.truncate(row + 1);
                        }
                        _ => {} // colours and the rest: no effect on the text
                    }
                }
                c if c.is_control() => {}
                c => {
                    if col >= cols {
                        wrapped += 1;
                        row += 1;
                        col = 0;
                        if rows.len() <= row {
                            rows.push(Vec::new());
                        }
                    }
                    let line = &mut rows[row];
                    while line.len() < col {
                        line.push(' ');
                    }
                    if col < line.len() {
                        line[col] = c;
                    } else {
                        line.push(c);
                    }
                    col += 1;
                }
            }
        }
        let mut lines: Vec<String> = rows
            .into_iter()
            .map(|r| r.into_iter().collect::<String>().trim_end().to_string())
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        Screen { lines, wrapped }
    }
}

/// Runs `args` of `command` (already set up with its environment) under a `cols` x 40
/// pseudo-terminal for at most `run_for`, then ends it with SIGINT; returns the bytes it
/// wrote to the terminal.
pub fn run_in_terminal(command: &Command, cols: usize, run_for: Duration) -> Vec<u8> {
    let mut shell = format!("stty cols {cols} rows 40; exec");
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    shell.push(' ');
    shell.push_str(&quote(&command.get_program().to_string_lossy()));
    for arg in command.get_args() {
        shell.push(' ');
        shell.push_str(&quote(&arg.to_string_lossy()));
    }
    let mut script = Command::new("timeout");
    script
        .arg("--signal=INT")
        .arg(format!("{}", run_for.as_secs_f64()))
        .args(["script", "-qefc", &shell, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => script.env(key, v),
            None => script.env_remove(key),
        };
    }
    let out = script.output().expect("cannot run `script` (util-linux)");
    out.stdout
}
