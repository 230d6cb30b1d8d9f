//! The book in book/: tools/course-tools builds and serves it (`cargo xtask book`, with the
//! mdBook library); the check that it points only at things that exist stays here, beside the
//! command line it checks `cargo xtask ...` mentions against.

use crate::{cargo, cargo::workspace_root, tools};
use anyhow::{Context, Result};

/// Builds the book (`course-tools book`); its errors show as they come.
pub fn build() -> Result<()> {
    let mut command = tools::course_tools();
    command.arg("book");
    cargo::run(command, "the book build")
}

/// Folders and files of this repository that book pages may point at.
const REPOSITORY_PREFIXES: &[&str] = &[
    "chapters/",
    "solutions/",
    "book/",
    "xtask/",
    "tools/",
    "platform/",
    "models/fixtures",
    "models/models.toml",
    ".ci/",
    ".github/",
];

/// Every repository path and `cargo xtask` command the book mentions must exist: paths on
/// disk, subcommands in the CLI, chapters in the course, and `--task N` among that chapter's tests.
pub fn check_references() -> Result<Vec<String>> {
    let root = workspace_root();
    let pages = root.join("book/src");
    let mut problems = Vec::new();
    for entry in
        std::fs::read_dir(&pages).with_context(|| format!("cannot list {}", pages.display()))?
    {
        let page = entry?.path();
        if page.extension().is_none_or(|ext| ext != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&page)?;
        let name = page
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for token in text.split(|c: char| c.is_whitespace() || "`()[]<>\"'".contains(c)) {
            let path = token.trim_end_matches([',', '.', ':', ';']);
            let path = path.split(':').next().unwrap_or(path);
            if REPOSITORY_PREFIXES
                .iter()
                .any(|prefix| path.starts_with(prefix))
                && !root.join(path).exists()
            {
                problems.push(format!(
                    "book/src/{name} mentions {path}, which does not exist"
                ));
            }
        }
        for line in text.lines() {
            for (_, command) in line
                .match_indices("cargo xtask ")
                .map(|(at, _)| ((), &line[at + 12..]))
            {
                // The command ends with its inline code span, or a shell comment, or the line.
                let command = command.split(['`', '#']).next().unwrap_or_default();
                let words: Vec<&str> = command.split_whitespace().collect();
                if let Err(problem) = check_command(&words) {
                    problems.push(format!(
                        "book/src/{name}: `cargo xtask {}`: {problem}",
                        words.join(" ")
                    ));
                }
            }
        }
    }
    Ok(problems)
}

fn check_command(words: &[&str]) -> Result<(), String> {
    use clap::CommandFactory;
    let Some(&subcommand) = words.first() else {
        return Ok(());
    };
    if !crate::Cli::command()
        .get_subcommands()
        .any(|known| known.get_name() == subcommand)
    {
        return Err(format!("there is no subcommand `{subcommand}`"));
    }
    if subcommand != "test" {
        return Ok(());
    }
    // `<chapter>` stands for any chapter.
    let targets: Vec<String> = words[1..]
        .iter()
        .take_while(|word| !word.starts_with("--"))
        .filter(|word| !word.starts_with('<'))
        .map(|word| word.to_string())
        .collect();
    let chapters = crate::chapters::select(&targets).map_err(|error| error.to_string())?;
    if let Some(position) = words.iter().position(|word| *word == "--task") {
        let task = words.get(position + 1).ok_or("--task needs a number")?;
        let needle = format!("fn task_{task}_");
        for chapter in chapters {
            let tests = workspace_root().join(chapter.folder()).join("tests");
            let has_task = std::fs::read_dir(&tests)
                .into_iter()
                .flatten()
                .flatten()
                // A test split into a folder (tests/NAME/main.rs and its modules): its files.
                .flat_map(|entry| match std::fs::read_dir(entry.path()) {
                    Ok(folder) => folder.flatten().map(|file| file.path()).collect(),
                    Err(_) => vec![entry.path()],
                })
                .any(|file| {
                    std::fs::read_to_string(file).is_ok_and(|source| source.contains(&needle))
                });
            if !has_task {
                return Err(format!("chapter {} has no task {task}", chapter.name));
            }
        }
    }
    Ok(())
}
