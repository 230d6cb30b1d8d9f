//! The chapters of the course, in order, as `chapters/chapters.toml` lists them. A chapter `NAME`
//! numbered `N` is the crate `chapters/NN-NAME` (package `NAME`, the learner's code); the files a
//! learner writes have their reference twins in `solutions/NAME/src/`, swapped in by the crate's
//! `solution` feature (`solution-all` also swaps every chapter it builds on).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::sync::OnceLock;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Chapter {
    /// Position in the course, 1-based.
    pub number: u8,
    pub name: String,
    pub week: u8,
    /// As the book's table of contents shows it, after the number.
    pub title: String,
    /// The chapters whose crates this one's `[dependencies]` names.
    pub depends_on: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    chapter: Vec<Chapter>,
}

pub const MANIFEST: &str = "chapters/chapters.toml";

/// Every chapter, in course order. The manifest is read once; a broken one stops xtask.
pub fn all() -> &'static [Chapter] {
    static CHAPTERS: OnceLock<Vec<Chapter>> = OnceLock::new();
    CHAPTERS.get_or_init(|| match read_manifest() {
        Ok(chapters) => chapters,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
    })
}

fn read_manifest() -> Result<Vec<Chapter>> {
    let path = crate::cargo::workspace_root().join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let manifest: Manifest =
        toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
    for (index, chapter) in manifest.chapter.iter().enumerate() {
        if usize::from(chapter.number) != index + 1 {
            bail!(
                "{MANIFEST}: chapter `{}` is number {}, but it is entry {}; number the chapters 1, 2, 3... in order",
                chapter.name,
                chapter.number,
                index + 1
            );
        }
        for dependency in &chapter.depends_on {
            if !manifest.chapter[..index]
                .iter()
                .any(|earlier| &earlier.name == dependency)
            {
                bail!(
                    "{MANIFEST}: chapter `{}` depends on `{dependency}`, which is not an earlier chapter",
                    chapter.name
                );
            }
        }
    }
    Ok(manifest.chapter)
}

impl Chapter {
    pub fn folder(&self) -> String {
        format!("chapters/{:02}-{}", self.number, self.name)
    }

    pub fn solution_folder(&self) -> String {
        format!("solutions/{}", self.name)
    }

    pub fn book_file(&self) -> String {
        format!("week{}-{:02}-{}.md", self.week, self.number, self.name)
    }

    pub fn book_page(&self) -> String {
        format!("book/src/{}", self.book_file())
    }

    /// The cargo feature that swaps this chapter's files (only) for their solutions: what
    /// `--use-solution-for NAME` borrows.
    pub fn solution_feature(&self) -> String {
        format!("{}/solution", self.name)
    }

    /// The cargo feature that swaps this chapter and every chapter it builds on for their
    /// solutions: what `--solution` tests.
    pub fn all_solutions_feature(&self) -> String {
        format!("{}/solution-all", self.name)
    }

    /// The chapters this chapter's crate depends on directly: those a learner may borrow.
    pub fn direct_dependencies(&self) -> Vec<&'static Chapter> {
        self.depends_on
            .iter()
            .filter_map(|name| all().iter().find(|chapter| &chapter.name == name))
            .collect()
    }
}

pub fn find(name: &str) -> Result<&'static Chapter> {
    all()
        .iter()
        .find(|chapter| chapter.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = all().iter().map(|chapter| chapter.name.as_str()).collect();
            anyhow::anyhow!(
                "there is no chapter `{name}`; the chapters are: {}",
                names.join(", ")
            )
        })
}

/// `week1`, `week2`, `week3` or chapter names; nothing means every chapter.
pub fn select(targets: &[String]) -> Result<Vec<&'static Chapter>> {
    if targets.is_empty() {
        return Ok(all().iter().collect());
    }
    let mut selected: Vec<&'static Chapter> = Vec::new();
    for target in targets {
        let chapters: Vec<&'static Chapter> =
            match target.strip_prefix("week").map(str::parse::<u8>) {
                Some(Ok(week)) => all()
                    .iter()
                    .filter(|chapter| chapter.week == week)
                    .collect(),
                _ => vec![find(target)?],
            };
        if chapters.is_empty() {
            bail!("{target} has no chapters yet");
        }
        for chapter in chapters {
            if !selected.iter().any(|seen| seen.name == chapter.name) {
                selected.push(chapter);
            }
        }
    }
    selected.sort_by_key(|chapter| chapter.number);
    Ok(selected)
}
