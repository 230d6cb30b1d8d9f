//! `cargo xtask check-solutions`, for instructors and CI, rustlings-style: the chapter manifest
//! agrees with the crates, the engine and the book; the platform's own tests pass; every solution
//! passes; every stub fails each of its tests, also with any one of its chapter's dependencies
//! borrowed; stubs and solutions share one API; the code is formatted and lint-free; and the book
//! builds and points only at things that exist.

use crate::{book, cargo, chapters, manifest_check, models, test, test_runner, tools};
use anyhow::{bail, Result};

/// rustfmt and clippy, which a minimal rustup profile leaves out: added with rustup when missing.
fn ensure_lint_tools() -> Result<()> {
    let runs = |tool: &str| {
        cargo::command()
            .args([tool, "--version"])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if runs("fmt") && runs("clippy") {
        return Ok(());
    }
    eprintln!("rustfmt or clippy is missing; running: rustup component add rustfmt clippy");
    let added = std::process::Command::new("rustup")
        .args(["component", "add", "rustfmt", "clippy"])
        .status()
        .is_ok_and(|status| status.success());
    if !(added && runs("fmt") && runs("clippy")) {
        bail!("check-solutions needs rustfmt and clippy: install them (`rustup component add rustfmt clippy`, or your distribution's packages)");
    }
    Ok(())
}

/// What a first run writes under the target dir: 7.1 GiB on the CI machine (2026-12-06, with the
/// e2e script's release build), rounded up.
const DISK_NEEDED: u64 = 8 << 30;

pub fn run() -> Result<()> {
    // Every build here happens once, so incremental compilation's caches (gigabytes across the
    // chapters' stub and solution builds) would cost disk and buy nothing. Set before any thread
    // starts; every cargo this command runs inherits it.
    std::env::set_var("CARGO_INCREMENTAL", "0");
    if let Some(free) = cargo::free_disk_bytes().filter(|&free| free < DISK_NEEDED) {
        eprintln!(
            "warning: {:.1} GiB free on the disk holding {}; a first check-solutions writes about \
             {} GiB there. Should builds fail for space, free some or set CARGO_TARGET_DIR to a \
             larger disk.",
            free as f64 / (1u64 << 30) as f64,
            cargo::target_dir().display(),
            DISK_NEEDED >> 30
        );
    }
    let mut problems: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let (mut passed, mut failed) = (0, 0);

    eprintln!("== the chapter manifest ({})", chapters::MANIFEST);
    problems.extend(manifest_check::problems()?);

    // Tests that need the built-in model skip without it; here they must run.
    eprintln!("== the built-in model");
    models::ready_model_dir(None)?;

    eprintln!("== platform tests (MLX bridge, test support, xtask, the engine)");
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
        // `tiny-llm` as a process, on every chapter's solution.
        "--package",
        "engine",
        "--features",
        "engine/solutions",
    ]);
    if cargo::run(platform, "the platform tests").is_err() {
        problems.push("the platform tests fail (see above)".into());
    }

    for chapter in chapters::all() {
        let earlier = chapter.direct_dependencies();
        eprintln!(
            "== chapter {} ({}): solutions",
            chapter.number, chapter.name
        );
        let solved = test_runner::run(chapter, &[chapter.all_solutions_feature()], None)?;
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

        // The stubs on top of solved earlier chapters (a learner who finished them), then on top
        // of the learner's own earlier chapters with one of them borrowed, as
        // `cargo xtask test NAME --use-solution-for EARLIER` builds it.
        let solved_earlier: Vec<String> = earlier
            .iter()
            .map(|dependency| dependency.all_solutions_feature())
            .collect();
        let mut stub_builds = vec![(
            "the earlier chapters' solutions".to_string(),
            solved_earlier,
        )];
        stub_builds.extend(earlier.iter().map(|dependency| {
            (
                format!("--use-solution-for {}", dependency.name),
                vec![dependency.solution_feature()],
            )
        }));
        for (build, features) in stub_builds {
            eprintln!(
                "== chapter {} ({}): stubs with {build}",
                chapter.number, chapter.name
            );
            let stubs = test_runner::run(chapter, &features, None)?;
            if !stubs.compiled {
                problems.push(format!(
                    "{}: the stubs do not compile with {build}",
                    chapter.name
                ));
            } else if stubs.outcomes.is_empty() {
                problems.push(format!("{}: no tests ran with {build}", chapter.name));
            }
            for outcome in stubs.outcomes.iter().filter(|outcome| outcome.passed) {
                problems.push(format!(
                    "{}: the stub passes {} with {build} (a test that cannot fail, or a stub that is not a stub)",
                    chapter.name, outcome.name
                ));
            }
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

    eprintln!("== the shipped MLX C bindings against their generator");
    let mut bindings = cargo::command();
    bindings.args([
        "run",
        "--quiet",
        "--package",
        "mlx-bindgen",
        "--",
        "--check",
    ]);
    if cargo::run(bindings, "the bindings check").is_err() {
        problems.push(
            "platform/mlx-sys/bindings are stale: `cargo run -p mlx-bindgen` regenerates them"
                .into(),
        );
    }

    ensure_lint_tools()?;
    eprintln!("== cargo fmt --check");
    let mut format = cargo::command();
    format.args(["fmt", "--all", "--check"]);
    if cargo::run(format, "cargo fmt --check").is_err() {
        problems.push("the code is not formatted: run `cargo fmt --all`".into());
    }
    // Without features clippy reads the stubs; with the engine's `solutions` the solution files.
    for (code, features) in [
        ("the stubs", None),
        ("the solutions", Some("engine/solutions")),
    ] {
        eprintln!("== cargo clippy: {code}");
        let mut clippy = cargo::command();
        clippy.args(["clippy", "--workspace", "--all-targets", "--quiet"]);
        if let Some(features) = features {
            clippy.args(["--features", features]);
        }
        clippy.args(["--", "-D", "warnings"]);
        if cargo::run(clippy, "cargo clippy").is_err() {
            problems.push(format!("clippy reports warnings in {code} (see above)"));
        }
    }
    eprintln!("== book");
    match book::build() {
        Ok(_) => problems.extend(book::check_references()?),
        Err(error) => problems.push(format!("the book does not build: {error:#}")),
    }

    if problems.is_empty() {
        println!(
            "\ncheck-solutions: all {} chapters pass",
            chapters::all().len()
        );
        return Ok(());
    }
    if let Some(hint) = cargo::full_disk_hint() {
        problems.insert(0, format!("{hint} (the problems below may all be this)"));
    }
    println!("\ncheck-solutions found {} problems:", problems.len());
    for problem in &problems {
        println!("  - {problem}");
    }
    bail!("check-solutions failed")
}
