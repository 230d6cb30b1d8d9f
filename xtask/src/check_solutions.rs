//! `cargo xtask check-solutions`, for instructors and CI, rustlings-style: the platform's own
//! tests pass, every solution passes, every stub fails each of its tests, stubs and solutions share one API, the code is
//! formatted and lint-free, and the book builds and points only at things that exist.

use crate::{
    book, cargo,
    chapters::{Chapter, CHAPTERS},
    models, test, test_runner, tools,
};
use anyhow::{bail, Result};

pub fn run() -> Result<()> {
    let mut problems: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let (mut passed, mut failed) = (0, 0);

    // Tests that need the built-in model skip without it; here they must run.
    eprintln!("== the built-in model");
    models::ready_model_dir(None)?;

    eprintln!("== platform tests (MLX bridge, test support, xtask, the solutions' hardening)");
    let mut platform = cargo::command();
    platform.args([
        "test",
        "--quiet",
        "--package",
        "mlx-doctor",
        "--package",
        "test-support",
        "--package",
        "xtask",
        "--package",
        "model-convert",
        "--package",
        "course-tools",
        // Tests of given code that the stubs share, so not chapter tests: hostile files, hostile
        // requests and slow clients, and `tiny-llm serve` as a process.
        "--package",
        "load-solution",
        "--package",
        "serving-solution",
        "--package",
        "engine",
        "--features",
        "engine/solutions",
    ]);
    if cargo::run(platform, "the platform tests").is_err() {
        problems.push("the platform tests fail (see above)".into());
    }

    for chapter in CHAPTERS {
        eprintln!(
            "== chapter {} ({}): solutions",
            chapter.number, chapter.name
        );
        // Earlier chapters reach this one through its direct dependencies; swapping those for
        // their solutions swaps every type the chapter sees.
        let earlier: Vec<&Chapter> = chapter.direct_dependencies()?;
        let mut all_solutions = earlier.clone();
        all_solutions.push(chapter);
        let solved = test_runner::run(chapter, &all_solutions, None)?;
        rows.extend(test::summarize(chapter, &solved));
        passed += solved
            .outcomes
            .iter()
            .filter(|outcome| outcome.passed)
            .count();
        failed += solved
            .outcomes
            .iter()
            .filter(|outcome| !outcome.passed)
            .count();
        if !solved.compiled || solved.outcomes.is_empty() {
            problems.push(format!(
                "{}: the solution does not compile or has no tests",
                chapter.name
            ));
        }
        for outcome in solved.outcomes.iter().filter(|outcome| !outcome.passed) {
            problems.push(format!(
                "{}: the solution fails {}",
                chapter.name, outcome.name
            ));
        }

        eprintln!("== chapter {} ({}): stubs", chapter.number, chapter.name);
        let stubs = test_runner::run(chapter, &earlier, None)?;
        if !stubs.compiled {
            problems.push(format!("{}: the stubs do not compile", chapter.name));
        }
        for outcome in stubs.outcomes.iter().filter(|outcome| outcome.passed) {
            problems.push(format!(
                "{}: the stub passes {} (a test that cannot fail, or a stub that is not a stub)",
                chapter.name, outcome.name
            ));
        }

        let root = cargo::workspace_root();
        let stub_src = root.join(chapter.folder()).join("src");
        let solution_src = root.join(chapter.solution_folder()).join("src");
        problems.extend(
            tools::api_check(&stub_src, &solution_src)?
                .into_iter()
                .map(|problem| format!("{}: {problem}", chapter.name)),
        );
    }
    test::print_table(&rows);
    println!("solution tests: {passed} passed, {failed} failed");

    eprintln!("== cargo fmt --check");
    let mut format = cargo::command();
    format.args(["fmt", "--all", "--check"]);
    if cargo::run(format, "cargo fmt --check").is_err() {
        problems.push("the code is not formatted: run `cargo fmt --all`".into());
    }
    eprintln!("== cargo clippy");
    let mut clippy = cargo::command();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ]);
    if cargo::run(clippy, "cargo clippy").is_err() {
        problems.push("clippy reports warnings (see above)".into());
    }
    eprintln!("== book");
    match book::build() {
        Ok(_) => problems.extend(book::check_references()?),
        Err(error) => problems.push(format!("the book does not build: {error:#}")),
    }

    if problems.is_empty() {
        println!("\ncheck-solutions: all {} chapters pass", CHAPTERS.len());
        return Ok(());
    }
    println!("\ncheck-solutions found {} problems:", problems.len());
    for problem in &problems {
        println!("  - {problem}");
    }
    bail!("check-solutions failed")
}
