//! Everything that repeats `chapters/chapters.toml` must agree with it: each chapter's crate
//! (folder, package name, chapter dependencies, `solution-all` feature), the engine's `solutions`
//! feature, and the book's table of contents.

use crate::{cargo, chapters};
use anyhow::{Context, Result};
use std::{collections::BTreeSet, fs, path::Path};

/// One sentence per disagreement; empty when everything matches the manifest.
pub fn problems() -> Result<Vec<String>> {
    let root = cargo::workspace_root();
    let mut problems = Vec::new();
    let names: BTreeSet<&str> = chapters::all()
        .iter()
        .map(|chapter| chapter.name.as_str())
        .collect();

    for entry in fs::read_dir(root.join("chapters")).context("cannot list chapters/")? {
        let folder = entry?.file_name().to_string_lossy().into_owned();
        let numbered = folder
            .split_once('-')
            .filter(|(number, _)| number.len() == 2 && number.chars().all(|c| c.is_ascii_digit()));
        if let Some((_, name)) = numbered {
            if !chapters::all()
                .iter()
                .any(|chapter| chapter.folder() == format!("chapters/{folder}"))
            {
                problems.push(format!(
                    "chapters/{folder} is not in {} (or has another number or name there: `{name}`)",
                    chapters::MANIFEST
                ));
            }
        }
    }

    for chapter in chapters::all() {
        let manifest_path = root.join(chapter.folder()).join("Cargo.toml");
        let Ok(crate_manifest) = read_toml(&manifest_path) else {
            problems.push(format!(
                "{}: {} is missing or not valid TOML",
                chapter.name,
                manifest_path.display()
            ));
            continue;
        };
        let package = crate_manifest["package"]["name"].as_str().unwrap_or("");
        if package != chapter.name {
            problems.push(format!(
                "{}: the package in {} is named `{package}`",
                chapter.name,
                chapter.folder()
            ));
        }
        let dependencies: BTreeSet<&str> = crate_manifest
            .get("dependencies")
            .and_then(toml::Value::as_table)
            .into_iter()
            .flat_map(|table| table.keys())
            .map(String::as_str)
            .filter(|name| names.contains(name))
            .collect();
        let expected: BTreeSet<&str> = chapter.depends_on.iter().map(String::as_str).collect();
        if dependencies != expected {
            problems.push(format!(
                "{}: its Cargo.toml depends on the chapters {dependencies:?}, {} says {expected:?}",
                chapter.name,
                chapters::MANIFEST
            ));
        }
        let all_feature = features(&crate_manifest, "solution-all");
        let mut expected_feature: BTreeSet<String> = chapter
            .depends_on
            .iter()
            .map(|dependency| format!("{dependency}/solution-all"))
            .collect();
        expected_feature.insert("solution".into());
        if all_feature != expected_feature {
            problems.push(format!(
                "{}: its feature `solution-all` is {all_feature:?}; it must be {expected_feature:?}",
                chapter.name
            ));
        }
        if !root.join(chapter.solution_folder()).join("src").is_dir() {
            problems.push(format!(
                "{}: {}/src does not exist",
                chapter.name,
                chapter.solution_folder()
            ));
        }
    }

    problems.extend(engine_problems(&root)?);
    problems.extend(summary_problems(&root)?);
    Ok(problems)
}

fn read_toml(path: &Path) -> Result<toml::Table> {
    let text = fs::read_to_string(path)?;
    Ok(toml::from_str(&text)?)
}

fn features(manifest: &toml::Table, feature: &str) -> BTreeSet<String> {
    manifest
        .get("features")
        .and_then(|features| features.get(feature))
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_str().map(str::to_string))
        .collect()
}

/// `cargo xtask run` must run every chapter's solution: the engine's `solutions` feature turns
/// on `solution-all` of each chapter it depends on, and those reach every chapter.
fn engine_problems(root: &Path) -> Result<Vec<String>> {
    let path = root.join("solutions/engine/Cargo.toml");
    let engine = read_toml(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reached = BTreeSet::new();
    let mut problems = Vec::new();
    for item in features(&engine, "solutions") {
        if let Some(name) = item.strip_suffix("/solution-all") {
            match chapters::find(name) {
                Ok(chapter) => reach(chapter, &mut reached),
                Err(_) => problems.push(format!(
                    "solutions/engine/Cargo.toml: `{item}` in `solutions` is not a chapter"
                )),
            }
        }
    }
    for chapter in chapters::all() {
        if !reached.contains(chapter.name.as_str()) {
            problems.push(format!(
                "solutions/engine/Cargo.toml: the `solutions` feature does not reach chapter {}; add `{}/solution-all`",
                chapter.name, chapter.name
            ));
        }
    }
    Ok(problems)
}

fn reach(chapter: &'static chapters::Chapter, reached: &mut BTreeSet<&'static str>) {
    if reached.insert(&chapter.name) {
        for dependency in chapter.direct_dependencies() {
            reach(dependency, reached);
        }
    }
}

/// The book lists every chapter, in order, as `- [N. Title](weekW-NN-name.md)`.
fn summary_problems(root: &Path) -> Result<Vec<String>> {
    let path = root.join("book/src/SUMMARY.md");
    let summary =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let listed: Vec<&str> = summary
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("](week"))
        .collect();
    let expected: Vec<String> = chapters::all()
        .iter()
        .map(|chapter| {
            format!(
                "- [{}. {}]({})",
                chapter.number,
                chapter.title,
                chapter.book_file()
            )
        })
        .collect();
    if listed == expected {
        return Ok(Vec::new());
    }
    Ok(vec![format!(
        "book/src/SUMMARY.md lists the chapters as\n      {}\n    but {} says\n      {}",
        listed.join("\n      "),
        chapters::MANIFEST,
        expected.join("\n      ")
    )])
}
