//! The crates under tools/, run as processes (`cargo run --quiet --package NAME -- ARGS`): they
//! carry the heavy dependencies (the tokenizer library, mdBook, an HTTP stack, plotting), so
//! that xtask itself compiles in seconds and a learner builds them only for the commands that
//! need them.

use crate::cargo;
use anyhow::{Context, Result};
use std::{
    path::Path,
    process::{Command, ExitStatus, Stdio},
};

/// tools/model-convert: `cargo xtask models`, and the model the other commands need.
pub fn model_convert() -> Command {
    tool("model-convert")
}

/// tools/course-tools: `cargo xtask bench`, `fuzz`, `load-test`, `gpu` and `book`.
pub fn course_tools() -> Command {
    tool("course-tools")
}

fn tool(package: &str) -> Command {
    let mut command = cargo::command();
    command.args(["run", "--quiet", "--package", package, "--"]);
    command
}

/// Runs `command` with our stdin, stdout and stderr.
pub fn forward(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .context("could not start cargo to run a tool")?;
    pass_on_failure(status);
    Ok(())
}

/// Runs `command` and returns what it printed on stdout; its stderr (progress, errors) shows as
/// it comes.
pub fn output(command: &mut Command) -> Result<String> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .context("could not start cargo to run a tool")?;
    pass_on_failure(output.status);
    String::from_utf8(output.stdout).context("a tool printed something that is not UTF-8")
}

/// The tool (or cargo, when its build fails) has said what went wrong: only pass its code on.
fn pass_on_failure(status: ExitStatus) {
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
}

/// Where a chapter's stubs and solution differ in public API (`course-tools api-check`, which
/// parses them with syn), one problem a line.
pub fn api_check(stub_src: &Path, solution_src: &Path) -> Result<Vec<String>> {
    let mut command = course_tools();
    command.arg("api-check").arg(stub_src).arg(solution_src);
    let stdout = output(&mut command)?;
    Ok(stdout.lines().map(String::from).collect())
}
