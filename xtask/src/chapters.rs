//! The chapters of the course, in order. A chapter `NAME` is the crate `chapters/NN-NAME`
//! (package `NAME`, the learner's code) with its twin `solutions/NAME` (package `NAME-solution`).

use anyhow::{bail, Result};

pub struct Chapter {
    pub name: &'static str,
    pub week: u8,
    /// Position in the course, 1-based; the folder is `chapters/{number:02}-{name}`.
    pub number: u8,
}

pub const CHAPTERS: &[Chapter] = &[
    Chapter {
        name: "attention",
        week: 1,
        number: 1,
    },
    Chapter {
        name: "rope",
        week: 1,
        number: 2,
    },
    Chapter {
        name: "gqa",
        week: 1,
        number: 3,
    },
    Chapter {
        name: "rmsnorm-mlp",
        week: 1,
        number: 4,
    },
    Chapter {
        name: "load",
        week: 1,
        number: 5,
    },
    Chapter {
        name: "decode",
        week: 1,
        number: 6,
    },
    Chapter {
        name: "sampling",
        week: 1,
        number: 7,
    },
    Chapter {
        name: "kv-cache",
        week: 2,
        number: 8,
    },
    Chapter {
        name: "quantized-matmul",
        week: 2,
        number: 9,
    },
    Chapter {
        name: "continuous-batching",
        week: 2,
        number: 10,
    },
    Chapter {
        name: "serving",
        week: 2,
        number: 11,
    },
];

impl Chapter {
    pub fn folder(&self) -> String {
        format!("chapters/{:02}-{}", self.number, self.name)
    }

    pub fn solution_folder(&self) -> String {
        format!("solutions/{}", self.name)
    }

    pub fn book_page(&self) -> String {
        format!(
            "book/src/week{}-{:02}-{}.md",
            self.week, self.number, self.name
        )
    }

    /// The cargo feature that swaps this chapter's code for its solution.
    pub fn solution_feature(&self) -> String {
        format!("{}/solution", self.name)
    }

    /// The chapters this chapter's crate depends on directly (its Cargo.toml `[dependencies]`):
    /// the only ones cargo lets us swap for their solutions with `--features NAME/solution`.
    pub fn direct_dependencies(&self) -> Result<Vec<&'static Chapter>> {
        let path = crate::cargo::workspace_root()
            .join(self.folder())
            .join("Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        let manifest: toml::Table = toml::from_str(&text)
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        let dependencies = manifest
            .get("dependencies")
            .and_then(|table| table.as_table())
            .cloned()
            .unwrap_or_default();
        Ok(CHAPTERS
            .iter()
            .filter(|chapter| dependencies.contains_key(chapter.name))
            .collect())
    }
}

pub fn find(name: &str) -> Result<&'static Chapter> {
    CHAPTERS
        .iter()
        .find(|chapter| chapter.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = CHAPTERS.iter().map(|chapter| chapter.name).collect();
            anyhow::anyhow!(
                "there is no chapter `{name}`; the chapters are: {}",
                names.join(", ")
            )
        })
}

/// `week1`, `week2` or chapter names; nothing means every chapter.
pub fn select(targets: &[String]) -> Result<Vec<&'static Chapter>> {
    if targets.is_empty() {
        return Ok(CHAPTERS.iter().collect());
    }
    let mut selected: Vec<&'static Chapter> = Vec::new();
    for target in targets {
        let chapters: Vec<&'static Chapter> =
            match target.strip_prefix("week").map(str::parse::<u8>) {
                Some(Ok(week)) => CHAPTERS
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
