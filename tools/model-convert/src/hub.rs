//! Downloading a model from the Hugging Face Hub: `models fetch NAME` for the registry's `huggingface`
//! models and `--model OWNER/NAME` for any repository.
//!
//! hf-hub does the HTTP part as the Python client does: files land in the shared cache
//! (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`, so a model downloaded by Python is reused),
//! `$HF_ENDPOINT` replaces `https://huggingface.co`, and a download cut off is resumed from its
//! `.part` file with an HTTP Range request. Around it: `$HF_TOKEN`, which hf-hub 0.4 reads only
//! from the token file; the sha256 of every LFS file (its ETag on the Hub), which hf-hub does not
//! check; errors that say what to do; and an atomic install of the model's files under models/.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use hf_hub::{
    api::{
        sync::{ApiBuilder, ApiError},
        Progress,
    },
    Cache, Repo, RepoType,
};
use indicatif::ProgressBar;

use super::{
    download::sha256_file,
    output_dir::{Marker, Partial},
    progress,
};

/// What the model directory needs besides its weights; the first two are required.
const MODEL_FILES: [&str; 6] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    // transformers 4.43+ may keep the chat template here instead of tokenizer_config.json.
    "chat_template.jinja",
];
const SINGLE_WEIGHTS: &str = "model.safetensors";
const SHARD_INDEX: &str = "model.safetensors.index.json";

/// Where and as whom to download, from the environment as huggingface_hub reads it.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// `$HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: String,
    /// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: PathBuf,
    /// `$HF_TOKEN`, else the token file `huggingface-cli login` writes (`$HF_HOME/token`).
    pub token: Option<String>,
}

impl HubSettings {
    pub fn from_env() -> Self {
        let cache = Cache::from_env();
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| cache.token());
        HubSettings {
            endpoint: std::env::var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|_| "https://huggingface.co".into()),
            cache_dir: cache.path().clone(),
            token,
        }
    }
}

/// What `fetch` installed.
#[derive(Debug)]
pub struct Fetched {
    /// The commit the files come from.
    pub commit: String,
    pub files: Vec<String>,
}

/// The marker of a directory installed from `repo` at `commit`.
pub fn marker(repo: &str, commit: &str, converter_version: u32) -> Marker {
    Marker {
        source: format!("huggingface:{repo}@{commit}"),
        converter_version,
    }
}

/// Whether `marker` says the directory came from `repo` (at any commit).
pub fn is_from(marker: &Marker, repo: &str) -> bool {
    marker
        .source
        .strip_prefix("huggingface:")
        .and_then(|rest| rest.rsplit_once('@'))
        .is_some_and(|(from, _)| from == repo)
}

/// Downloads the model files of `repo` at `revision` (a branch, tag or commit) into the cache,
/// checks them, and installs them as `destination` (replacing it atomically).
pub fn fetch(
    settings: &HubSettings,
    repo: &str,
    revision: &str,
    destination: &Path,
    converter_version: u32,
) -> Result<Fetched> {
    check_repo_id(repo)?;
    let api = ApiBuilder::from_cache(Cache::new(settings.cache_dir.clone()))
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        // Each retry resumes where the connection broke (a Range request from the .part file).
        .with_retries(3)
        .with_progress(false)
        .build()
        .map_err(|e| anyhow!("cannot set up the Hugging Face client: {e}"))?;
    let explain = |error: ApiError, what: &str| explain(error, settings, repo, what);

    let spinner = progress::spinner(format!("asking {} about {repo}", settings.endpoint));
    let info = api
        .repo(Repo::with_revision(
            repo.into(),
            RepoType::Model,
            revision.into(),
        ))
        .info();
    spinner.finish_and_clear();
    let info = info.map_err(|e| explain(e, &format!("revision {revision}")))?;
    let available: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let files = files_to_download(repo, &available)?;
    if let Some(file) = files.iter().find(|f| f.contains('/')) {
        bail!("{repo}: {file} lies in a subfolder, which this installer does not expect");
    }

    // Every file from the same commit, even if the branch moves meanwhile.
    let at_commit = api.repo(Repo::with_revision(
        repo.into(),
        RepoType::Model,
        info.sha.clone(),
    ));
    let mut local = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let mut bar = FileProgress(progress::bytes(
            0,
            format!("{repo}: {file} ({}/{})", i + 1, files.len()),
        ));
        let path = match at_commit_cached(&settings.cache_dir, repo, &info.sha, file) {
            Some(path) => path,
            None => at_commit
                .download_with_progress(file, &mut bar)
                .map_err(|e| explain(e, file))?,
        };
        bar.0.finish_and_clear();
        let hashing = progress::spinner(format!("checking the sha256 of {file}"));
        let checked = check_lfs_hash(&path, file);
        hashing.finish_and_clear();
        checked?;
        local.push((file.clone(), path));
    }

    let partial = Partial::create(destination)?;
    for (file, path) in &local {
        link_or_copy(path, &partial.path().join(file))?;
    }
    partial.commit(&marker(repo, &info.sha, converter_version))?;
    Ok(Fetched {
        commit: info.sha,
        files,
    })
}

/// The files of a model directory in `available`: the tokenizer and config files, and the
/// safetensors weights (one file, or an index and its shards).
fn files_to_download(repo: &str, available: &[&str]) -> Result<Vec<String>> {
    let has = |file: &str| available.contains(&file);
    for required in &MODEL_FILES[..2] {
        if !has(required) {
            bail!(
                "{repo} has no {required}: it is not a model in the Hugging Face layout (files: {})",
                summary(available)
            );
        }
    }
    let mut files: Vec<String> = MODEL_FILES
        .iter()
        .filter(|f| has(f))
        .map(|f| f.to_string())
        .collect();
    if has(SINGLE_WEIGHTS) {
        files.push(SINGLE_WEIGHTS.into());
    } else if has(SHARD_INDEX) {
        files.push(SHARD_INDEX.into());
        files.extend(
            available
                .iter()
                .filter(|f| f.starts_with("model-") && f.ends_with(".safetensors"))
                .map(|f| f.to_string()),
        );
    } else {
        let gguf = available.iter().find(|f| f.ends_with(".gguf"));
        let hint = match gguf {
            Some(gguf) => format!(
                "; it has GGUF files: download one (e.g. {gguf}) and pass --model-path FILE.gguf"
            ),
            None => String::new(),
        };
        bail!("{repo} has no safetensors weights (model.safetensors or {SHARD_INDEX}){hint}");
    }
    Ok(files)
}

fn summary(files: &[&str]) -> String {
    match files.len() {
        0 => "none".into(),
        n if n <= 8 => files.join(", "),
        n => format!("{} and {} more", files[..8].join(", "), n - 8),
    }
}

/// A file of `commit` already in the cache: no request needed.
fn at_commit_cached(cache_dir: &Path, repo: &str, commit: &str, file: &str) -> Option<PathBuf> {
    Cache::new(cache_dir.to_path_buf())
        .repo(Repo::with_revision(
            repo.into(),
            RepoType::Model,
            commit.into(),
        ))
        .get(file)
}

/// The Hub names a blob by its ETag: the sha256 of the file's content for LFS files (the
/// weights), a git hash for small files. Checks the former; a mismatch deletes the blob so that
/// the next run downloads it again.
fn check_lfs_hash(path: &Path, file: &str) -> Result<()> {
    let blob = fs::canonicalize(path)
        .with_context(|| format!("cannot resolve the cached {}", path.display()))?;
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !is_sha256(&etag) {
        return Ok(());
    }
    let got = sha256_file(&blob)?;
    if got != etag {
        let _ = fs::remove_file(&blob);
        let _ = fs::remove_file(path);
        bail!(
            "{file} is corrupt: its sha256 is {got}, but the Hub says {etag}; the download was deleted, run the command again"
        );
    }
    Ok(())
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// Hard-links `from` (following the cache's symlink) to `to`, so the model takes no more disk
/// space; copies where links cannot be made (another file system).
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    let from = fs::canonicalize(from).with_context(|| format!("cannot read {}", from.display()))?;
    if fs::hard_link(&from, to).is_ok() {
        return Ok(());
    }
    fs::copy(&from, to)
        .map(|_| ())
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

/// `owner/name`, as the Hub spells repositories.
fn check_repo_id(repo: &str) -> Result<()> {
    let plain = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match repo.split_once('/') {
        Some((owner, name)) if plain(owner) && plain(name) => Ok(()),
        _ => {
            bail!("{repo:?} is not a Hugging Face repository id (OWNER/NAME, e.g. Qwen/Qwen3-0.6B)")
        }
    }
}

/// One line that says what went wrong and what to do.
fn explain(error: ApiError, settings: &HubSettings, repo: &str, what: &str) -> anyhow::Error {
    let error = match error {
        ApiError::TooManyRetries(inner) => *inner,
        other => other,
    };
    let page = format!("{}/{repo}", settings.endpoint);
    match &error {
        ApiError::RequestError(request) => match request.as_ref() {
            ureq::Error::Status(401, _) if settings.token.is_none() => anyhow!(
                "{repo} needs a login (HTTP 401 for {what}): it is gated or private. Accept its license on {page}, \
                 create a read token at {}/settings/tokens and set HF_TOKEN=hf_... (or run `huggingface-cli login`), then run again",
                settings.endpoint
            ),
            ureq::Error::Status(status @ (401 | 403), _) => anyhow!(
                "your Hugging Face token has no access to {repo} (HTTP {status} for {what}): accept the model's license on {page} \
                 (gated models wait for approval) and check that HF_TOKEN holds a token of that account with read access"
            ),
            ureq::Error::Status(404, _) => anyhow!(
                "{repo}: {what} was not found on {} (HTTP 404): check the repository id and revision{}",
                settings.endpoint,
                if settings.token.is_none() { "; a private repository needs HF_TOKEN" } else { "" }
            ),
            ureq::Error::Status(status, _) => anyhow!(
                "{repo}: the Hub answered HTTP {status} for {what}; try again later"
            ),
            ureq::Error::Transport(transport) => anyhow!(
                "cannot download {what} of {repo} from {}: {transport}. Check the connection (a mirror works through HF_ENDPOINT); \
                 run again to resume",
                settings.endpoint
            ),
        },
        ApiError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => anyhow!(
            "the download of {what} of {repo} was cut off: run again to resume it"
        ),
        ApiError::LockAcquisition(lock) => anyhow!(
            "{} is locked: another download of {repo} is running (or was killed: then delete the lock file)",
            lock.display()
        ),
        _ => anyhow!("cannot download {what} of {repo} from {}: {error}", settings.endpoint),
    }
}

/// hf-hub's progress callbacks on one of our byte bars.
struct FileProgress(ProgressBar);

impl Progress for &mut FileProgress {
    fn init(&mut self, size: usize, _filename: &str) {
        self.0.set_length(size as u64);
        self.0.set_position(0);
    }
    fn update(&mut self, size: usize) {
        self.0.inc(size as u64);
    }
    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests;
