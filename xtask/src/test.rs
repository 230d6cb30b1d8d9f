//! `cargo xtask test`: runs chapter tests against the learner's code (or the solutions) and
//! ends with a table that says, per task, what passes and where to start.

use crate::{
    cargo,
    chapters::{self, Chapter},
    test_runner::{self, ChapterRun, Outcome},
};
use anyhow::{bail, Result};
use clap::Args;
use std::collections::BTreeMap;

#[derive(Args)]
pub struct TestArgs {
    /// `week1`, `week2`, `week3` or chapter names (e.g. `attention`); nothing means every chapter.
    targets: Vec<String>,
    /// Only this task's tests (`task_N_*`).
    #[arg(long)]
    task: Option<u32>,
    /// Test the reference solutions instead of your code.
    #[arg(long)]
    solution: bool,
    /// Use the reference solution for these chapters (e.g. an earlier one you are stuck on).
    #[arg(long, value_name = "CHAPTER", num_args = 1..)]
    use_solution_for: Vec<String>,
}

pub fn run(args: TestArgs) -> Result<()> {
    let selected = chapters::select(&args.targets)?;
    let borrowed: Vec<&Chapter> = args
        .use_solution_for
        .iter()
        .map(|name| chapters::find(name))
        .collect::<Result<_>>()?;
    let filter = args.task.map(|task| format!("task_{task}_"));

    for borrowed in &borrowed {
        let used = selected.iter().any(|chapter| {
            chapter.name == borrowed.name
                || chapter
                    .direct_dependencies()
                    .iter()
                    .any(|dependency| dependency.name == borrowed.name)
        });
        if !used {
            bail!("none of the selected chapters builds on chapter {} directly, so its solution cannot be swapped in", borrowed.name);
        }
    }

    let mut rows = Vec::new();
    for chapter in selected {
        // A borrowed solution replaces the files of that chapter only; everything else stays yours.
        // Cargo can swap it where it is the chapter itself or one of its direct dependencies.
        let dependencies = chapter.direct_dependencies();
        let mut features: Vec<String> = borrowed
            .iter()
            .filter(|borrowed| {
                borrowed.name == chapter.name
                    || dependencies
                        .iter()
                        .any(|dependency| dependency.name == borrowed.name)
            })
            .map(|borrowed| borrowed.solution_feature())
            .collect();
        if args.solution {
            features.push(chapter.all_solutions_feature());
        }
        eprintln!("== chapter {} ({})", chapter.number, chapter.name);
        let run = test_runner::run(chapter, &features, filter.as_deref())?;
        if run.outcomes.is_empty() && run.compiled {
            bail!(
                "chapter {} has no tests matching {}",
                chapter.name,
                filter.as_deref().unwrap_or("anything")
            );
        }
        rows.extend(summarize(chapter, &run));
    }
    print_table(&rows);
    if let Some(first) = rows
        .iter()
        .find(|row| row.details.starts_with("not implemented yet"))
    {
        let location = first.details.trim_start_matches("not implemented yet: ");
        // A borrowed solution runs on your own earlier chapters: the stub it reached may be there.
        let unfinished = chapters::all()
            .iter()
            .find(|chapter| location.starts_with(&format!("{}/", chapter.folder())));
        match unfinished {
            Some(earlier) if earlier.name != first.chapter => {
                let chapter = chapters::find(first.chapter)?;
                let borrow = if chapter
                    .direct_dependencies()
                    .iter()
                    .any(|dependency| dependency.name == earlier.name)
                {
                    format!(", or borrow it with --use-solution-for {}", earlier.name)
                } else {
                    String::new()
                };
                println!(
                    "\nStart here: chapter {} ({}), which chapter {} runs, is not finished \
                     ({location}); its book page is {}{borrow}.",
                    earlier.number,
                    earlier.name,
                    chapter.number,
                    earlier.book_page()
                );
            }
            _ => {
                let chapter = chapters::find(first.chapter)?;
                println!(
                    "\nStart here: task {} of chapter {} ({location}); the book page is {}.",
                    first.task,
                    chapter.number,
                    chapter.book_page()
                );
            }
        }
    }
    let failing = rows.iter().filter(|row| !row.passed).count();
    if failing > 0 {
        bail!("{failing} of {} tasks are not passing yet", rows.len());
    }
    Ok(())
}

pub struct Row {
    pub chapter: &'static str,
    /// `1`, `2`, ... or `build` when the chapter did not compile.
    pub task: String,
    pub passed: bool,
    pub details: String,
}

/// One row per task: how many of its tests pass, and for a failure where to look.
pub fn summarize(chapter: &'static Chapter, run: &ChapterRun) -> Vec<Row> {
    if !run.compiled {
        let details = cargo::full_disk_hint().unwrap_or_else(|| {
            format!(
                "does not compile: see cargo's errors above ({}/src)",
                chapter.folder()
            )
        });
        return vec![Row {
            chapter: &chapter.name,
            task: "build".into(),
            passed: false,
            details,
        }];
    }
    let mut by_task: BTreeMap<u32, Vec<&Outcome>> = BTreeMap::new();
    for outcome in &run.outcomes {
        by_task
            .entry(outcome.task().unwrap_or(0))
            .or_default()
            .push(outcome);
    }
    by_task
        .into_iter()
        .map(|(task, outcomes)| {
            let passed = outcomes.iter().filter(|outcome| outcome.passed).count();
            let first_failure = outcomes
                .iter()
                .find_map(|outcome| outcome.failure.as_ref().map(|failure| (outcome, failure)));
            let details = match first_failure {
                None => format!("{passed}/{} tests pass", outcomes.len()),
                Some((_, failure)) if failure.is_not_implemented() => {
                    format!(
                        "not implemented yet: {}",
                        failure.location.as_deref().unwrap_or("a todo!() stub")
                    )
                }
                Some((outcome, failure)) => {
                    let first_line = failure.message.lines().next().unwrap_or("");
                    format!(
                        "{passed}/{} tests pass; {}: {first_line}",
                        outcomes.len(),
                        outcome.name
                    )
                }
            };
            let task = if task == 0 {
                "other".to_string()
            } else {
                task.to_string()
            };
            Row {
                chapter: &chapter.name,
                task,
                passed: passed == outcomes.len(),
                details,
            }
        })
        .collect()
}

pub fn print_table(rows: &[Row]) {
    let width = rows
        .iter()
        .map(|row| row.chapter.len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!("\n{:<width$}  task   result  details", "chapter");
    for row in rows {
        let result = if row.passed { "pass" } else { "FAIL" };
        println!(
            "{:<width$}  {:<5}  {result:<6}  {}",
            row.chapter, row.task, row.details
        );
    }
}
