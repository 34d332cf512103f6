//! Running external commands the same way everywhere: echo the command line, inherit the
//! terminal, and turn a non-zero exit into an error that names the command.
//!
//! Every step of `setup`, `test` and `demo` goes through here so that the log of a CI run
//! shows exactly what was executed, in order.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};

/// `program arg1 arg2 ...` for display.
pub fn display(command: &Command) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            parts.push(format!(
                "{}={}",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    parts.push(command.get_program().to_string_lossy().into_owned());
    parts.extend(command.get_args().map(quote_arg));
    parts.join(" ")
}

fn quote_arg(arg: &OsStr) -> String {
    let text = arg.to_string_lossy();
    if text.is_empty() || text.contains([' ', '\'', '"', '$', '*', '{', '}']) {
        format!("'{}'", text.replace('\'', r"'\''"))
    } else {
        text.into_owned()
    }
}

/// Runs `command` with the terminal inherited, echoing it first.
///
/// # Errors
/// When it cannot start or exits non-zero.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let line = display(command);
    println!("$ {line}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` quietly and returns its output, whatever its exit status.
///
/// # Errors
/// When it cannot start.
pub fn output(command: &mut Command) -> anyhow::Result<Output> {
    let line = display(command);
    command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{line}`"))
}

/// Runs `command` quietly and returns its stdout, failing on a non-zero exit.
///
/// # Errors
/// When it cannot start or exits non-zero.
pub fn stdout(command: &mut Command) -> anyhow::Result<String> {
    let line = display(command);
    let output = output(command)?;
    if !output.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_arguments_that_need_it() {
        let mut command = Command::new("cargo");
        command.args(["clippy", "--", "-D warnings", "it's"]);
        command.env("A", "1");
        assert_eq!(
            display(&command),
            r"A=1 cargo clippy -- '-D warnings' 'it'\''s'"
        );
    }

    #[test]
    fn stdout_returns_output_and_fails_on_nonzero_exit() {
        let out = stdout(Command::new("sh").args(["-c", "echo hi"])).expect("sh");
        assert_eq!(out, "hi\n");
        let err =
            stdout(Command::new("sh").args(["-c", "echo no >&2; exit 3"])).expect_err("exit 3");
        assert!(err.to_string().contains("no"), "{err}");
    }
}
