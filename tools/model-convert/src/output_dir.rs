//! Writing a model directory atomically, and knowing when it is already done.
//!
//! A directory is built as a hidden sibling `models/.NAME.partial-<pid>` and renamed into place only
//! once every file is written, with a marker file naming what it was made from. So a killed fetch
//! (Ctrl-C) leaves only a `.partial-` directory, which the next fetch deletes, and a finished one is
//! recognised by its marker without reading the weights.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The marker file, written last.
const MARKER: &str = ".xtask-fetch.json";
/// Every model directory holds these, and its weights (see [`has_weights`]).
const FILES: [&str; 2] = ["config.json", "tokenizer.json"];

/// What a model directory was made from; a directory whose marker differs is made again.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// The GGUF's sha256, or `huggingface:OWNER/NAME@COMMIT` for a download.
    #[serde(alias = "source_sha256")]
    pub source: String,
    /// Bumped whenever the conversion's output changes.
    pub converter_version: u32,
}

/// Whether `dir` is a finished model directory made from `marker`'s source by this converter.
pub fn is_complete(dir: &Path, marker: &Marker) -> bool {
    read_marker(dir).as_ref() == Some(marker) && has_files(dir)
}

/// The marker of a finished model directory, if `dir` is one.
pub fn read_marker(dir: &Path) -> Option<Marker> {
    let marker = fs::read(dir.join(MARKER))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Marker>(&bytes).ok())?;
    has_files(dir).then_some(marker)
}

fn has_files(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file()) && has_weights(dir)
}

/// One `model.safetensors`, or the index of its shards.
fn has_weights(dir: &Path) -> bool {
    ["model.safetensors", "model.safetensors.index.json"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// A model directory being written.
pub struct Partial {
    path: PathBuf,
    destination: PathBuf,
}

impl Partial {
    /// Starts writing `destination`, after deleting what killed fetches left of it.
    pub fn create(destination: &Path) -> Result<Self> {
        let (parent, name) = split(destination)?;
        remove_stale_partials(parent, &name)?;
        let path = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Partial {
            path,
            destination: destination.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the marker and moves the directory into place, replacing an outdated one.
    pub fn commit(self, marker: &Marker) -> Result<()> {
        if !has_files(&self.path) {
            bail!(
                "internal error: {} lacks config.json, tokenizer.json or the weights",
                self.path.display()
            );
        }
        let marker_path = self.path.join(MARKER);
        fs::write(&marker_path, serde_json::to_vec_pretty(marker)?)
            .with_context(|| format!("cannot write {}", marker_path.display()))?;
        if self.destination.exists() {
            if !self.destination.join(MARKER).is_file() {
                bail!(
                    "{} exists but was not made by `cargo xtask models fetch` (no {MARKER} in it): move it away and run again",
                    self.destination.display()
                );
            }
            fs::remove_dir_all(&self.destination).with_context(|| {
                format!("cannot remove the outdated {}", self.destination.display())
            })?;
        }
        fs::rename(&self.path, &self.destination).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.path.display(),
                self.destination.display()
            )
        })
    }
}

impl Drop for Partial {
    /// An error or a panic leaves nothing behind; after a commit there is nothing left to remove.
    fn drop(&mut self) {
        if self.path.exists() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn split(destination: &Path) -> Result<(&Path, String)> {
    match (destination.parent(), destination.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name.to_string_lossy().into_owned())),
        _ => bail!("{} cannot be a model directory", destination.display()),
    }
}

/// Deletes `.NAME.partial-<pid>` directories whose process is gone.
fn remove_stale_partials(parent: &Path, name: &str) -> Result<()> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Ok(());
    };
    let prefix = format!(".{name}.partial-");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|pid| pid != std::process::id() && process_alive(pid));
        if !alive {
            let path = entry.path();
            fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove the stale {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    // `kill -0` checks that the process exists without signalling it.
    let status = std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
    status.is_ok_and(|s| s.success())
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> Marker {
        Marker {
            source: "ab".repeat(32),
            converter_version: 1,
        }
    }

    fn fill(dir: &Path) {
        for file in FILES.iter().chain(&["model.safetensors"]) {
            fs::write(dir.join(file), "{}").expect("write");
        }
    }

    #[test]
    fn a_marker_of_the_first_version_still_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        fill(dir.path());
        let old = r#"{"source_sha256": "abab", "converter_version": 1}"#;
        fs::write(dir.path().join(MARKER), old).expect("write");
        let expected = Marker {
            source: "abab".into(),
            converter_version: 1,
        };
        assert!(is_complete(dir.path(), &expected));
    }

    #[test]
    fn a_committed_directory_is_complete_and_a_partial_one_is_not() {
        let models = tempfile::tempdir().expect("tempdir");
        let destination = models.path().join("m");
        let partial = Partial::create(&destination).expect("create");
        fill(partial.path());
        assert!(!is_complete(&destination, &marker()));
        partial.commit(&marker()).expect("commit");
        assert!(is_complete(&destination, &marker()));
        assert!(!is_complete(
            &destination,
            &Marker {
                converter_version: 2,
                ..marker()
            }
        ));
        assert_eq!(
            fs::read_dir(models.path()).expect("read_dir").count(),
            1,
            "only m/ is left"
        );
    }

    #[test]
    fn stale_partials_are_removed_and_a_dropped_partial_cleans_up() {
        let models = tempfile::tempdir().expect("tempdir");
        // No process has pid u32::MAX - 1; a killed fetch leaves such a directory behind.
        let stale = models.path().join(format!(".m.partial-{}", u32::MAX - 1));
        fs::create_dir(&stale).expect("mkdir");
        let partial = Partial::create(&models.path().join("m")).expect("create");
        assert!(!stale.exists());
        let path = partial.path().to_path_buf();
        drop(partial);
        assert!(!path.exists());
    }

    #[test]
    fn a_directory_not_made_by_fetch_is_not_replaced() {
        let models = tempfile::tempdir().expect("tempdir");
        let destination = models.path().join("m");
        fs::create_dir(&destination).expect("mkdir");
        let partial = Partial::create(&destination).expect("create");
        fill(partial.path());
        let error = partial.commit(&marker()).expect_err("refuses").to_string();
        assert!(error.contains("was not made by"), "{error}");
    }
}
