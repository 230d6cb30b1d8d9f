//! Runs one chapter's tests through `cargo test` and reads libtest's report into outcomes.

use crate::{cargo, chapters::Chapter};
use anyhow::{Context, Result};
use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

pub struct Outcome {
    /// e.g. `task_1_softmax_matches_mlx_softmax::case_2_matrix_last_axis`
    pub name: String,
    pub passed: bool,
    pub failure: Option<Failure>,
}

pub struct Failure {
    /// `file:line` where the test panicked.
    pub location: Option<String>,
    pub message: String,
}

impl Failure {
    /// The test reached a `todo!()` stub.
    pub fn is_not_implemented(&self) -> bool {
        self.message.starts_with("not yet implemented")
            || self.message.starts_with("not implemented")
    }
}

impl Outcome {
    /// The task number from the `task_N_` prefix of the test's name, the last part of its path
    /// that has one (`task_3_prefill::task_3_first_tokens_match::case_1`: a test file split into
    /// modules names its tests after the module).
    pub fn task(&self) -> Option<u32> {
        self.name
            .split("::")
            .filter_map(|part| part.strip_prefix("task_")?.split('_').next()?.parse().ok())
            .last()
    }
}

pub struct ChapterRun {
    /// False when the chapter did not compile (cargo's errors were shown as they came).
    pub compiled: bool,
    pub outcomes: Vec<Outcome>,
}

/// Lines cargo prints after failing tests that only repeat what the summary table says.
fn is_noise(line: &str) -> bool {
    line.starts_with("error: test failed")
        || line.contains("target failed:")
        || line.contains("targets failed:")
        || line.trim_start().starts_with("`-p ")
}

/// `cargo test -p <chapter>` with the given solution features (`NAME/solution`,
/// `NAME/solution-all`) on, keeping only tests whose name contains `filter`.
pub fn run(chapter: &Chapter, features: &[String], filter: Option<&str>) -> Result<ChapterRun> {
    let mut command = cargo::command();
    command.args(["test", "--package", &chapter.name, "--no-fail-fast"]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    command.args(["--", "--color", "never"]);
    if let Some(filter) = filter {
        command.arg(filter);
    }
    command
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("could not start cargo test")?;

    let stderr = child.stderr.take().expect("stderr is piped");
    let forward = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !is_noise(&line) {
                eprintln!("{line}");
            }
        }
    });
    let stdout = child.stdout.take().expect("stdout is piped");
    let report: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = child.wait()?;
    forward.join().ok();

    let outcomes = parse_report(&report);
    let compiled = status.success()
        || !outcomes.is_empty()
        || report.iter().any(|line| line.starts_with("test result:"));
    Ok(ChapterRun { compiled, outcomes })
}

/// Reads `test NAME ... ok|FAILED` lines and the `---- NAME stdout ----` sections.
fn parse_report(lines: &[String]) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("test "))
        .filter_map(|rest| {
            let (name, result) = rest.rsplit_once(" ... ")?;
            let passed = match result {
                "ok" => true,
                "FAILED" => false,
                _ => return None,
            };
            Some(Outcome {
                name: name.to_string(),
                passed,
                failure: None,
            })
        })
        .collect();

    let mut index = 0;
    while index < lines.len() {
        let header = lines[index]
            .strip_prefix("---- ")
            .and_then(|rest| rest.strip_suffix(" stdout ----"));
        index += 1;
        let Some(name) = header else { continue };
        let body: Vec<&str> = lines[index..]
            .iter()
            .take_while(|line| !line.starts_with("---- ") && line.as_str() != "failures:")
            .map(String::as_str)
            .collect();
        index += body.len();
        if let Some(outcome) = outcomes.iter_mut().find(|outcome| outcome.name == name) {
            outcome.failure = Some(parse_failure(&body));
        }
    }
    outcomes
}

fn parse_failure(body: &[&str]) -> Failure {
    let panic_line = body.iter().position(|line| line.contains(" panicked at "));
    let location = panic_line.and_then(|at| {
        let place = body[at]
            .rsplit("panicked at ")
            .next()?
            .trim_end_matches(':');
        // file:line:column -> file:line
        Some(
            place
                .rsplit_once(':')
                .map_or(place, |(file_line, _)| file_line)
                .to_string(),
        )
    });
    let message = body[panic_line.map_or(0, |at| at + 1)..]
        .iter()
        .take_while(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string();
    Failure { location, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_passes_failures_and_todo_locations() {
        let report: Vec<String> = "running 2 tests
test task_2_linear::case_1 ... ok
test task_1_softmax::case_1_vector ... FAILED

failures:

---- task_1_softmax::case_1_vector stdout ----

thread 'task_1_softmax::case_1_vector' (42) panicked at chapters/01-attention/src/attention.rs:13:5:
not yet implemented: chapter 1, task 1: softmax
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

failures:
    task_1_softmax::case_1_vector

test result: FAILED. 1 passed; 1 failed; 0 ignored"
            .lines()
            .map(String::from)
            .collect();
        let outcomes = parse_report(&report);
        assert_eq!(outcomes.len(), 2);
        assert!(outcomes[0].passed);
        assert_eq!(outcomes[0].task(), Some(2));
        let failure = outcomes[1]
            .failure
            .as_ref()
            .expect("the failure section is read");
        assert_eq!(
            failure.location.as_deref(),
            Some("chapters/01-attention/src/attention.rs:13")
        );
        assert!(failure.is_not_implemented());
        assert_eq!(
            failure.message,
            "not yet implemented: chapter 1, task 1: softmax"
        );
    }

    #[test]
    fn the_task_is_read_from_the_test_path_past_its_modules() {
        let task = |name: &str| {
            Outcome {
                name: name.to_string(),
                passed: true,
                failure: None,
            }
            .task()
        };
        assert_eq!(
            task("task_4_decode::task_4_staggered::case_1_roomy"),
            Some(4)
        );
        assert_eq!(task("filters::task_3_top_p_keeps_the_nucleus"), Some(3));
        assert_eq!(task("bad_requests::malformed_bodies_are_400"), None);
        assert_eq!(task("task_12_paged::helper_test"), Some(12));
    }
}
